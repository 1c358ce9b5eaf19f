package peername

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	"github.com/miekg/dns"

	"github.com/peername/peername/records"
)

// wireWriter is a dns.ResponseWriter over UDP that keeps the last reply's
// wire form, packing in WriteMsg as miekg/dns's server does.
type wireWriter struct {
	out    []byte
	writes int // replies written
	packs  int // of which through WriteMsg
}

func (w *wireWriter) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
}
func (w *wireWriter) RemoteAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (w *wireWriter) WriteMsg(m *dns.Msg) error {
	w.packs++
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
func (w *wireWriter) Write(b []byte) (int, error) {
	w.out = append(w.out[:0], b...)
	w.writes++
	return len(b), nil
}
func (w *wireWriter) Close() error        { return nil }
func (w *wireWriter) TsigStatus() error   { return nil }
func (w *wireWriter) TsigTimersOnly(bool) {}
func (w *wireWriter) Hijack()             {}

// benchServer is one CoreDNS server (dnsserver.Server, the type cmd/coredns
// runs) with the zones of integration/bench/dnsperf.sh: peer.alt. served by
// a peername handler whose resolver holds n names, hosts.test. by the hosts
// plugin with n names, and host.alt. by the hosts plugin with the same
// names as peer.alt. (same lengths). It returns the server and the wire
// queries of each zone.
func benchServer(tb testing.TB, n int) (*dnsserver.Server, map[string][][]byte) {
	tb.Helper()
	caddy.Quiet = true
	alice := testIdentity(1)
	var recs []*records.Record
	hostsLines := ""
	queries := map[string][][]byte{}
	add := func(zone, qname string) {
		m := new(dns.Msg)
		m.SetQuestion(qname, dns.TypeA)
		b, err := m.Pack()
		if err != nil {
			tb.Fatal(err)
		}
		queries[zone] = append(queries[zone], b)
	}
	for i := range n {
		addr := netip.AddrFrom4([4]byte{10, 0, byte(i / 256), byte(i % 256)})
		r := record(tb, alice, fmt.Sprintf("n%d", i), true, func(r *records.Record) {
			r.Endpoints = []netip.Addr{addr}
		})
		recs = append(recs, r)
		peer := r.Name.DNS("peer.alt.")
		host := peer[:len(peer)-len("peer.alt.")] + "host.alt."
		hostsLines += fmt.Sprintf("%s n%d.hosts.test\n%s %s\n", addr, i, addr, host)
		add("peername", peer)
		add("hosts", fmt.Sprintf("n%d.hosts.test.", i))
		add("hosts-same-length", host)
	}
	h := newHandler(tb, newMapSearcher(recs...), t0.Add(time.Minute))
	h.Zones = []string{"peer.alt."}
	peerCfg := &dnsserver.Config{Zone: "peer.alt."}
	peerCfg.AddPlugin(func(next plugin.Handler) plugin.Handler { h.Next = next; return h })

	setup, err := caddy.DirectiveAction("dns", "hosts")
	if err != nil {
		tb.Fatal(err)
	}
	group := []*dnsserver.Config{peerCfg}
	for _, zone := range []string{"hosts.test.", "host.alt."} {
		c := caddy.NewTestController("dns", "hosts {\n"+hostsLines+"ttl 3600\nno_reverse\n}")
		c.ServerBlockKeys = []string{zone + ":53"}
		if err := setup(c); err != nil {
			tb.Fatal(err)
		}
		cfg := dnsserver.GetConfig(c)
		cfg.Zone = zone
		group = append(group, cfg)
	}
	s, err := dnsserver.NewServer("dns://127.0.0.1:53", group)
	if err != nil {
		tb.Fatal(err)
	}
	return s, queries
}

// BenchmarkServeDNSPeernameVsHosts puts the two plugins side by side in one
// run at the level of the CoreDNS server: each iteration unpacks a query
// from its wire form, as miekg/dns's server does, and hands it to
// dnsserver.Server.ServeDNS (zone dispatch, the ScrubWriter, the plugin, and
// the packing of the reply); only the socket is left out. The zones and
// names are those of integration/bench/dnsperf.sh (peername's answers come
// from its resolver's cache after one warm-up pass), plus the hosts plugin
// serving names as long as the peer names. Compare the ns/op of
// "peername" with "hosts".
func BenchmarkServeDNSPeernameVsHosts(b *testing.B) {
	const n = 100
	s, queries := benchServer(b, n)
	ctx := context.WithValue(context.Background(), dnsserver.Key{}, s)
	for _, zone := range []string{"peername", "hosts", "hosts-same-length", "peername", "hosts"} {
		qs := queries[zone]
		w := &wireWriter{}
		for _, q := range qs { // warm-up: fills peername's cache
			m := new(dns.Msg)
			if err := m.Unpack(q); err != nil {
				b.Fatal(err)
			}
			s.ServeDNS(ctx, w, m)
			var reply dns.Msg
			if err := reply.Unpack(w.out); err != nil || reply.Rcode != dns.RcodeSuccess || len(reply.Answer) != 1 {
				b.Fatalf("%s: %v %v", zone, &reply, err)
			}
		}
		b.Run(zone, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				m := new(dns.Msg)
				if err := m.Unpack(qs[i%n]); err != nil {
					b.Fatal(err)
				}
				s.ServeDNS(ctx, w, m)
			}
		})
	}
}

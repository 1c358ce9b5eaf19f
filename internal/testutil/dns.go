// Package testutil holds the helpers that several packages' tests share:
// deterministic identities (Identity), names and signed records (Name,
// Signed) and a tiny DNS server (NewDNS).
package testutil

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// DNS is a tiny authoritative DNS server on 127.0.0.1 answering from a
// fixed set of records, with a net.Resolver that talks only to it.
type DNS struct {
	records map[string][]dns.RR // "name./TYPE" -> answers; a missing key is NXDOMAIN
	// Resolver talks only to this server.
	Resolver *net.Resolver
}

// NewDNS starts a DNS server answering the zone lines (in master-file
// syntax) until the test ends.
func NewDNS(t *testing.T, zone ...string) *DNS {
	t.Helper()
	td := &DNS{records: map[string][]dns.RR{}}
	for _, line := range zone {
		rr, err := dns.NewRR(line)
		if err != nil {
			t.Fatalf("bad test record %q: %v", line, err)
		}
		k := strings.ToLower(rr.Header().Name) + "/" + dns.TypeToString[rr.Header().Rrtype]
		td.records[k] = append(td.records[k], rr)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	udpAddr, tcpAddr := pc.LocalAddr().String(), ln.Addr().String()
	serveDNS(t, &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(td.serve)})
	serveDNS(t, &dns.Server{Listener: ln, Handler: dns.HandlerFunc(td.serve)})
	td.Resolver = &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			if strings.HasPrefix(network, "tcp") {
				return d.DialContext(ctx, "tcp", tcpAddr)
			}
			return d.DialContext(ctx, "udp", udpAddr)
		},
	}
	return td
}

// serveDNS runs srv until the test ends.
func serveDNS(t *testing.T, srv *dns.Server) {
	t.Helper()
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	served := make(chan error, 1)
	go func() { served <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-served:
		t.Fatalf("test DNS server: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Shutdown(); err != nil {
			t.Errorf("test DNS shutdown: %v", err)
		}
		<-served
	})
}

func (td *DNS) serve(w dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative = true
	if len(q.Question) == 1 {
		qq := q.Question[0]
		name := strings.ToLower(qq.Name)
		if rrs, ok := td.records[name+"/"+dns.TypeToString[qq.Qtype]]; ok {
			m.Answer = rrs
		} else if !td.hasName(name) {
			m.Rcode = dns.RcodeNameError
		}
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if o := q.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		m.Truncate(size) // sets TC so the client retries over TCP
	}
	_ = w.WriteMsg(m)
}

func (td *DNS) hasName(name string) bool {
	for k := range td.records {
		if strings.HasPrefix(k, name+"/") {
			return true
		}
	}
	return false
}

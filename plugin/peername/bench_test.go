package peername

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coredns/caddy"
	_ "github.com/coredns/coredns/plugin/hosts"
	"github.com/miekg/dns"

	"github.com/peername/peername/identity"
)

// BenchmarkUncachedLookup20Nodes measures what a query costs when the
// answer is not cached: 20 plugin instances on real overlay nodes on
// loopback, each publishing a name; every iteration asks one node for
// another node's name with that node's cache emptied first, so ServeDNS
// runs a full overlay search. It reports the p50 and p99 latency.
func BenchmarkUncachedLookup20Nodes(b *testing.B) {
	const n = 20
	reg := &nodeRegistry{newNode: newOverlayNode, nodes: map[string]*sharedNode{}}
	insts := make([]*instance, 0, n)
	seed := ""
	for i := range n {
		corefile := fmt.Sprintf("peername {\nlisten 127.0.0.1:0\npublish n%d 192.0.2.%d\ncloud bench\n%s}", i, i+1, seed)
		inst := newTestInstance(b, reg, testIdentity(byte(100+i)), corefile)
		if err := inst.startup(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = inst.shutdown() })
		eventually(b, fmt.Sprintf("node %d ready", i), inst.handler.Ready)
		if i == 0 {
			seed = fmt.Sprintf("bootstrap %s\n", inst.node.Load().node.Addrs()[0])
		}
		insts = append(insts, inst)
	}
	lat := make([]time.Duration, 0, 1024)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		from, owner := i%n, (i*7+3)%n
		if owner == from {
			owner = (owner + 1) % n
		}
		inst := insts[from]
		inst.res.Forget(insts[owner].names[0])
		qname := insts[owner].names[0].DNS("peer.alt.")
		start := time.Now()
		msg := query(b, inst.handler, qname, dns.TypeA)
		lat = append(lat, time.Since(start))
		if msg.Rcode != dns.RcodeSuccess || len(msg.Answer) != 1 {
			b.Fatalf("node %d resolving %s: %v", from, qname, msg)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds())
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}

// BenchmarkServerPeernameVsHosts compares, on one in-process CoreDNS server
// over UDP on loopback, cached peername answers with the hosts plugin
// serving the same number of names (the ratio of their ns/op is what the
// dnsperf comparison measures, without dnsperf).
func BenchmarkServerPeernameVsHosts(b *testing.B) {
	const n = 20
	caddy.Quiet = true
	keyFile := filepath.Join(b.TempDir(), "node.key")
	id, _, err := identity.LoadOrCreate(keyFile)
	if err != nil {
		b.Fatal(err)
	}
	// hosts serves the same names too, under host.alt. (as long as peer.alt.),
	// so that the comparison is of the plugins, not of name lengths: every
	// query and answer is parsed and packed by miekg/dns on both sides.
	var pub, hostsLines strings.Builder
	for i := range n {
		fmt.Fprintf(&pub, "publish n%d 192.0.2.%d\n", i, i+1)
		fmt.Fprintf(&hostsLines, "192.0.2.%d n%d.hosts.test\n", i+1, i)
		fmt.Fprintf(&hostsLines, "192.0.2.%d n%d.%s.host.alt\n", i+1, i, id.Authority())
	}
	corefile := fmt.Sprintf(`peer.alt.:0 {
bind 127.0.0.1
peername {
identity %s
listen 127.0.0.1:0
cloud bench-server
ttl 3600
%s}
}
hosts.test.:0 host.alt.:0 {
bind 127.0.0.1
hosts {
%sttl 3600
no_reverse
}
}
`, keyFile, pub.String(), hostsLines.String())
	inst, err := caddy.Start(corefileInput(corefile))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		inst.ShutdownCallbacks()
		_ = inst.Stop()
	})
	var servers []string
	for _, s := range inst.Servers() {
		if a := s.LocalAddr(); a != nil {
			servers = append(servers, a.String())
		}
	}
	cases := []struct {
		name  string
		qname func(i int) string
	}{
		{"peername", func(i int) string { return fmt.Sprintf("n%d.%s.peer.alt.", i, id.Authority()) }},
		{"hosts", func(i int) string { return fmt.Sprintf("n%d.%s.host.alt.", i, id.Authority()) }},
		{"hosts-short-names", func(i int) string { return fmt.Sprintf("n%d.hosts.test.", i) }},
	}
	for _, tc := range cases {
		msgs := make([]*dns.Msg, n)
		for i := range msgs {
			msgs[i] = new(dns.Msg)
			msgs[i].SetQuestion(tc.qname(i), dns.TypeA)
		}
		// The server (UDP address) that answers this zone.
		c := &dns.Client{Timeout: 5 * time.Second}
		addr := ""
		eventually(b, tc.name+" answers", func() bool {
			for _, a := range servers {
				if r, _, err := c.Exchange(msgs[n-1], a); err == nil && len(r.Answer) == 1 {
					addr = a
					return true
				}
			}
			return false
		})
		b.Run(tc.name, func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				c := &dns.Client{Timeout: 5 * time.Second}
				conn, err := c.Dial(addr)
				if err != nil {
					b.Error(err)
					return
				}
				defer conn.Close()
				for i := 0; pb.Next(); i++ {
					r, _, err := c.ExchangeWithConn(msgs[i%n], conn)
					if err != nil || len(r.Answer) != 1 {
						b.Errorf("%s: %v %v", tc.name, r, err)
						return
					}
				}
			})
		})
	}
}

package peername

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
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

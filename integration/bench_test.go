package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// BenchmarkUncachedResolution measures the DNS latency of names a node has
// never resolved before, across a cloud of 20 CoreDNS processes on
// loopback: each query goes to a node whose resolver cache has never seen
// the name, so it is answered by a search of the overlay. Every iteration is
// one (node, name) pair not queried before; the run fails rather than reuse
// a pair. It reports p50 and p99 latency and the share of failed answers.
//
//	PEERNAME_BENCH=1 go test -run '^$' -bench UncachedResolution -benchtime 1000x ./integration/
func BenchmarkUncachedResolution(b *testing.B) {
	if os.Getenv("PEERNAME_BENCH") == "" {
		b.Skip("set PEERNAME_BENCH=1 to run: it starts 20 CoreDNS processes")
	}
	const (
		nodes   = 20
		perNode = 10 // names published by each node
	)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := b.TempDir()
	type name struct {
		fqdn string
		addr netip.Addr
		pub  int // index of the publishing node
	}
	var names []name
	srvs := make([]*server, nodes)
	for i := range srvs {
		label := fmt.Sprintf("b%d", i+1)
		id, key := newKey(b, dir, label+".key")
		spec := nodeSpec{Label: label, Cloud: "bench-20", KeyFile: key, TTL: 600, Timeout: "4s"}
		for j := range perNode {
			cl := fmt.Sprintf("n%d", j)
			a := netip.AddrFrom4([4]byte{10, 20, byte(i), byte(j)})
			spec.Publish = append(spec.Publish, cl+" "+a.String())
			names = append(names, name{securedName(b, id, cl), a, i})
		}
		if i > 0 {
			// Bootstrap from a random earlier node, as a real cloud grows.
			spec.Bootstrap = []netip.AddrPort{srvs[rand.IntN(i)].overlayAddr()}
		}
		srvs[i] = startServer(b, spec)
		if err := srvs[i].waitReady(ctx); err != nil {
			b.Fatal(err)
		}
	}
	// Every name answers at its own publisher before the clock starts (this
	// caches it there only; those pairs are never measured).
	var wg sync.WaitGroup
	errs := make([]error, len(names))
	for k, n := range names {
		wg.Go(func() {
			wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
			defer wcancel()
			errs[k] = eventually(wctx, func(ctx context.Context) error {
				return resolvesTo(ctx, "udp", srvs[n.pub], n.fqdn, []netip.Addr{n.addr})
			})
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	type pair struct{ node, name int }
	var pairs []pair
	for i := range srvs {
		for k, n := range names {
			if n.pub != i {
				pairs = append(pairs, pair{i, k})
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(pairs), func(i, j int) { pairs[i], pairs[j] = pairs[j], pairs[i] })

	lat := make([]time.Duration, 0, len(pairs))
	failed := 0
	i := 0
	b.ResetTimer()
	for b.Loop() {
		if i == len(pairs) {
			b.Fatalf("all %d uncached (node, name) pairs used; run with -benchtime %dx or less", len(pairs), len(pairs))
		}
		p := pairs[i]
		i++
		n := names[p.name]
		start := time.Now()
		r, err := query(ctx, "udp", srvs[p.node].dnsAddr, n.fqdn, dns.TypeA)
		d := time.Since(start)
		if err != nil || r.Rcode != dns.RcodeSuccess || !slices.Equal(addrsOf(r), []netip.Addr{n.addr}) {
			failed++
			continue
		}
		lat = append(lat, d)
	}
	b.StopTimer()
	if len(lat) == 0 {
		b.Fatalf("no query succeeded (%d failed)", failed)
	}
	slices.Sort(lat)
	pct := func(q float64) float64 {
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
	b.ReportMetric(float64(failed)/float64(i), "failed/op")
}

// BenchmarkUpdateToResolvable measures how long a name registered by DNS
// UPDATE at one node takes to resolve at another: a three-node cloud on
// loopback, each iteration one TSIG-signed UPDATE adding a new name at node
// 1, then queries at node 2 (every 20 ms, negative_ttl 1) until it answers.
// It reports p50 and p99 from the UPDATE's sending to the first answer.
//
//	PEERNAME_BENCH=1 go test -run '^$' -bench UpdateToResolvable -benchtime 200x ./integration/
func BenchmarkUpdateToResolvable(b *testing.B) {
	if os.Getenv("PEERNAME_BENCH") == "" {
		b.Skip("set PEERNAME_BENCH=1 to run: it starts 3 CoreDNS processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := b.TempDir()
	srvs, id := updateCloud(ctx, b, dir, "bench-update", "ub", updateSecret, 3, []string{"negative_ttl 1"}, nil)
	authority := id.Authority().String()
	c := &dns.Client{Net: "tcp", Timeout: 10 * time.Second, TsigSecret: map[string]string{updateKey: updateSecret}}
	var lat []time.Duration
	first := 0
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("u%d.%s.%s", i, authority, zone)
		rr, err := dns.NewRR(name + " 60 IN A 192.0.2.200")
		if err != nil {
			b.Fatal(err)
		}
		m := new(dns.Msg)
		m.SetUpdate(zone)
		m.Insert([]dns.RR{rr})
		m.SetTsig(updateKey, dns.HmacSHA256, 300, time.Now().Unix())
		start := time.Now()
		r, _, err := c.ExchangeContext(ctx, m, srvs[0].dnsAddr)
		if err != nil || r.Rcode != dns.RcodeSuccess {
			b.Fatalf("UPDATE %s: %v %v", name, r, err)
		}
		for tries := 1; ; tries++ {
			a, err := query(ctx, "udp", srvs[1].dnsAddr, name, dns.TypeA)
			if err == nil && a.Rcode == dns.RcodeSuccess && len(a.Answer) == 1 {
				if tries == 1 {
					first++
				}
				break
			}
			if ctx.Err() != nil {
				b.Fatalf("%s never resolved at node 2", name)
			}
			time.Sleep(20 * time.Millisecond) // polling a real server; the benchmark measures wall time
		}
		lat = append(lat, time.Since(start))
		// Delete it again: a key may hold 64 names at a time.
		d := new(dns.Msg)
		d.SetUpdate(zone)
		d.RemoveName([]dns.RR{rr})
		d.SetTsig(updateKey, dns.HmacSHA256, 300, time.Now().Unix())
		if r, _, err := c.ExchangeContext(ctx, d, srvs[0].dnsAddr); err != nil || r.Rcode != dns.RcodeSuccess {
			b.Fatalf("UPDATE deleting %s: %v %v", name, r, err)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
	b.ReportMetric(float64(first)/float64(len(lat)), "first_query_ok")
}

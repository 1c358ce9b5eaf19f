package integration

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// searchCount scrapes the plugin's search histogram: the number of overlay
// searches the server has run so far.
func searchCount(ctx context.Context, metricsAddr string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+metricsAddr+"/metrics", nil)
	if err != nil {
		return 0, fmt.Errorf("metrics request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("scrape %s: %w", metricsAddr, err)
	}
	defer resp.Body.Close()
	total, seen := 0, false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "coredns_peername_search_duration_seconds_count") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		total += int(v)
		seen = true
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("scrape %s: %w", metricsAddr, err)
	}
	if !seen {
		return 0, nil // no search yet: the histogram has no series
	}
	return total, nil
}

// A flood of DNS queries for random nonexistent names, sent to a real
// CoreDNS server of a three-node cloud, turns into at most one overlay
// search per distinct name (counted from the server's own metrics), a
// second wave of the same names into none, and the server keeps answering
// a real name throughout.
func TestRandomNameFloodDNS(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t, "127.0.0.1"))
	var srvs []*server
	var real string
	for i := range 3 {
		label := fmt.Sprintf("flood%d", i+1)
		id, key := newKey(t, dir, label+".key")
		spec := nodeSpec{Label: label, Cloud: "it-flood", KeyFile: key, Timeout: "2s",
			Publish: []string{label + " 192.0.2.9"},
			// Long enough that no negative answer of the first wave expires
			// before the second wave asks again, however slow the machine.
			Extra: []string{"negative_ttl 120"}}
		if i == 0 {
			real = securedName(t, id, label)
			spec.ExtraZones = fmt.Sprintf("metrics.test.:%d {\n    bind 127.0.0.1\n    prometheus %s\n}\n",
				freePort(t, "127.0.0.1"), metricsAddr)
		} else {
			spec.Bootstrap = []netip.AddrPort{srvs[0].overlayAddr()}
		}
		s := startServer(t, spec)
		if err := s.waitReady(ctx); err != nil {
			t.Fatal(err)
		}
		srvs = append(srvs, s)
	}
	if err := eventually(ctx, func(ctx context.Context) error {
		return resolvesTo(ctx, "udp", srvs[0], real, []netip.Addr{netip.MustParseAddr("192.0.2.9")})
	}); err != nil {
		t.Fatal(err)
	}
	const (
		distinct = 1500
		clients  = 300
	)
	rng := rand.New(rand.NewPCG(42, 42))
	names := make([]string, distinct)
	for i := range names {
		names[i] = fmt.Sprintf("nx%d-%x.0.peer.alt.", i, rng.Uint64())
	}
	wave := func(label string) (rcodes map[string]int, searches int, elapsed time.Duration) {
		before, err := searchCount(ctx, metricsAddr)
		if err != nil {
			t.Fatal(err)
		}
		rcodes = map[string]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		next := make(chan string)
		start := time.Now()
		for range clients {
			wg.Go(func() {
				for name := range next {
					r, err := query(ctx, "udp", srvs[0].dnsAddr, name, dns.TypeA)
					key := "timeout/error"
					if err == nil {
						key = dns.RcodeToString[r.Rcode]
					}
					mu.Lock()
					rcodes[key]++
					mu.Unlock()
				}
			})
		}
		for _, n := range names {
			next <- n
		}
		close(next)
		wg.Wait()
		elapsed = time.Since(start)
		after, err := searchCount(ctx, metricsAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d queries for %d distinct random names from %d clients in %v: %v; %d overlay searches (%.3f per query)",
			label, len(names), distinct, clients, elapsed.Round(time.Millisecond), rcodes, after-before,
			float64(after-before)/float64(len(names)))
		return rcodes, after - before, elapsed
	}
	// The real name keeps resolving while the flood runs. Each of its
	// queries may cost one search of its own (when its cached answer has
	// expired), so those are allowed on top of the random names'.
	const realQueries = 5
	var realErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range realQueries {
			time.Sleep(time.Duration(i) * 200 * time.Millisecond)
			qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
			err := resolvesTo(qctx, "udp", srvs[0], real, []netip.Addr{netip.MustParseAddr("192.0.2.9")})
			qcancel()
			if err != nil && realErr == nil {
				realErr = err
			}
		}
	}()
	rc1, s1, _ := wave("first wave")
	<-done
	if realErr != nil {
		t.Errorf("real name during the flood: %v", realErr)
	}
	if s1 > distinct+realQueries {
		t.Errorf("first wave: %d overlay searches for %d distinct names (and %d queries for a real one)", s1, distinct, realQueries)
	}
	if rc1["NXDOMAIN"] == 0 {
		t.Errorf("first wave: no NXDOMAIN at all: %v", rc1)
	}
	// Second wave: the names searched for are cached negatives; only names
	// refused the first time (SERVFAIL) may cost a search.
	_, s2, _ := wave("second wave")
	if s2 > len(names)-rc1["NXDOMAIN"] {
		t.Errorf("second wave: %d searches, only %d names were not answered NXDOMAIN before", s2, len(names)-rc1["NXDOMAIN"])
	}
}

package resolver

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/overlay"
	"github.com/peername/peername/overlay/bootstrap"
	"github.com/peername/peername/overlay/node"
	"github.com/peername/peername/records"
)

// countingSearcher wraps a Searcher and measures the overlay searches it
// is asked for: how many, and how many at once at most.
type countingSearcher struct {
	next     Searcher
	searches atomic.Int64
	active   atomic.Int64
	peak     atomic.Int64
}

func (c *countingSearcher) Search(ctx context.Context, key identity.Key) ([]*records.Record, error) {
	c.searches.Add(1)
	n := c.active.Add(1)
	defer c.active.Add(-1)
	for p := c.peak.Load(); n > p && !c.peak.CompareAndSwap(p, n); p = c.peak.Load() {
	}
	return c.next.Search(ctx, key)
}

// slowMiss is an overlay in which nothing exists and a search takes d.
func slowMiss(d time.Duration) Searcher {
	return SearcherFunc(func(ctx context.Context, key identity.Key) ([]*records.Record, error) {
		select {
		case <-time.After(d):
			return nil, fmt.Errorf("nothing under %s: %w", key, ErrNotFound)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
}

// floodResult is what one wave of queries did.
type floodResult struct {
	queries, notFound, overloaded, other int
	searches, peak                       int64
	elapsed                              time.Duration
}

func (f floodResult) String() string {
	return fmt.Sprintf("%d queries: %d NXDOMAIN, %d overloaded, %d other; %d overlay searches (%.3f per query), peak %d concurrent, %v",
		f.queries, f.notFound, f.overloaded, f.other, f.searches, float64(f.searches)/float64(f.queries), f.peak, f.elapsed.Round(time.Millisecond))
}

// flood sends every name as a query, workers at a time, and counts outcomes.
func flood(r *Resolver, cs *countingSearcher, names []string, workers int) floodResult {
	res := floodResult{queries: len(names)}
	s0 := cs.searches.Load()
	cs.peak.Store(cs.active.Load())
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := atomic.Int64{}
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(names) {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := r.Resolve(ctx, names[i], zone)
				cancel()
				mu.Lock()
				switch {
				case errors.Is(err, ErrNotFound):
					res.notFound++
				case errors.Is(err, ErrOverloaded):
					res.overloaded++
				default:
					res.other++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.searches = cs.searches.Load() - s0
	res.peak = cs.peak.Load()
	return res
}

// randomNames returns n distinct random unsecured names, each repeated
// dup times (shuffled), as a query flood for nonexistent names would send.
func randomNames(seed uint64, n, dup int) []string {
	rng := rand.New(rand.NewPCG(seed, seed))
	var out []string
	for i := range n {
		name := fmt.Sprintf("r%d-%x.0.peer.alt.", i, rng.Uint64())
		for range dup {
			out = append(out, name)
		}
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// A flood of queries for random nonexistent names never runs more overlay
// searches at once than MaxInFlight, never more searches than distinct
// names, refuses what exceeds MaxPending at once, and a second wave of the
// same names is answered from the negative cache without any search.
func TestRandomNameFloodBounded(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name                string
		inFlight, pending   int
		names, dup, workers int
		searchTime          time.Duration
		wantOverloaded      bool
	}{
		{"defaults, 5000 names, 1000 clients", 0, 0, 5000, 1, 1000, 5 * time.Millisecond, true},
		{"defaults, 2000 names x3, 200 clients", 0, 0, 2000, 3, 200, 2 * time.Millisecond, false},
		{"small bounds", 8, 16, 1000, 2, 300, 2 * time.Millisecond, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cs := &countingSearcher{next: slowMiss(tc.searchTime)}
			r, err := New(Config{Searcher: cs, MaxInFlight: tc.inFlight, MaxPending: tc.pending,
				NegativeTTL: time.Minute, CacheSize: 100000, Timeout: 30 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			inFlight := tc.inFlight
			if inFlight == 0 {
				inFlight = DefaultMaxInFlight
			}
			names := randomNames(uint64(tc.names), tc.names, tc.dup)
			first := flood(r, cs, names, tc.workers)
			t.Logf("first wave: %v", first)
			if first.peak > int64(inFlight) {
				t.Errorf("peak %d concurrent searches, bound %d", first.peak, inFlight)
			}
			if first.searches > int64(tc.names) {
				t.Errorf("%d searches for %d distinct names", first.searches, tc.names)
			}
			if first.other != 0 || first.notFound+first.overloaded != len(names) {
				t.Errorf("unexpected outcomes: %v", first)
			}
			if (first.overloaded > 0) != tc.wantOverloaded {
				t.Errorf("overloaded %d, want some = %v", first.overloaded, tc.wantOverloaded)
			}
			// Every name searched for is now a cached negative: a second wave
			// costs a search only for the names refused the first time.
			second := flood(r, cs, names, tc.workers)
			t.Logf("second wave: %v", second)
			if second.searches > int64(first.overloaded) {
				t.Errorf("second wave: %d searches, %d names were refused before", second.searches, first.overloaded)
			}
		})
	}
}

// The same flood against a real overlay: eight nodes on loopback, the
// resolver (default bounds) on one of them. Searches stay bounded by MaxInFlight, and the
// node's concurrent operations by its own MaxOps.
func TestRandomNameFloodRealOverlay(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts eight UDP nodes")
	}
	var nodes []*node.Node
	for i := range 8 {
		var seed [32]byte
		seed[0], seed[31] = byte(i+1), 0xf1
		cfg := node.Config{
			Identity: identity.FromSeed(seed),
			Cloud:    "resolver-flood",
			Listen:   []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
			// A small identity puzzle: this test is about floods, and eight
			// 20-bit puzzles on a loaded CI machine took longer than the
			// start deadline.
			Core: overlay.Config{SearchTimeout: 3 * time.Second, PuzzleBits: 8},
		}
		if i > 0 {
			cfg.Bootstrap = []bootstrap.Provider{bootstrap.Static{Addrs: []string{nodes[0].Addrs()[0].String()}}}
		}
		n, err := node.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Prepare(t.Context()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err = n.Start(ctx)
		cancel()
		if err != nil {
			t.Fatalf("start node %d: %v", i, err)
		}
		t.Cleanup(func() { n.Close() })
		nodes = append(nodes, n)
	}
	node := nodes[len(nodes)-1]
	cs := &countingSearcher{next: SearcherFunc(func(ctx context.Context, key identity.Key) ([]*records.Record, error) {
		recs, _, err := node.Resolve(ctx, key)
		if errors.Is(err, overlay.ErrNotFound) {
			return nil, fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		return recs, err
	})}
	r, err := New(Config{Searcher: cs, NegativeTTL: time.Minute, Timeout: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var peakOps atomic.Int64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			if ops := int64(node.Stats().ActiveOps); ops > peakOps.Load() {
				peakOps.Store(ops)
			}
		}
	})
	names := randomNames(7, 1000, 1)
	res := flood(r, cs, names, 400)
	close(stop)
	sampler.Wait()
	st := node.Stats()
	t.Logf("real overlay (8 nodes): %v; node peak active ops %d (MaxOps %d), requests rate-limited by peers: %d",
		res, peakOps.Load(), st.MaxOps, func() (s uint64) {
			for _, n := range nodes {
				s += n.Stats().RateLimited
			}
			return s
		}())
	if res.peak > DefaultMaxInFlight || res.searches > int64(len(names)) || peakOps.Load() > int64(st.MaxOps) {
		t.Errorf("bounds exceeded: %v, peak ops %d", res, peakOps.Load())
	}
	// Under load (-race, a busy machine) some searches may time out
	// (counted as "other"); the bounds above are what must hold.
	if res.notFound == 0 {
		t.Errorf("outcomes: %v", res)
	}
}

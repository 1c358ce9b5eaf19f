package overlay

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func TestRateLimiterBuckets(t *testing.T) {
	t.Parallel()
	sec := time.Second.Nanoseconds()
	cases := []struct {
		name  string
		rate  float64
		burst int
		// events: (offset from start in ns, how many sent at that instant)
		at   []int64
		n    []int
		want int // allowed in total
	}{
		{"burst then empty", 10, 5, []int64{0}, []int{100}, 5},
		{"refill one per interval", 10, 5, []int64{0, sec / 10, sec / 5}, []int{5, 5, 5}, 7},
		{"full again after burst/rate", 10, 5, []int64{0, sec}, []int{5, 100}, 10},
		{"refill never exceeds the burst", 10, 5, []int64{0, 100 * sec}, []int{0, 100}, 5},
		{"sustained at the rate", 100, 1, func() []int64 {
			var out []int64
			for i := range 1000 {
				out = append(out, int64(i)*sec/100)
			}
			return out
		}(), func() []int {
			out := make([]int, 1000)
			for i := range out {
				out[i] = 1
			}
			return out
		}(), 1000},
		{"off", -1, 0, []int64{0}, []int{10000}, 10000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rl := newRateLimiter(RateLimits{RequestRate: tc.rate, RequestBurst: tc.burst, MaxSources: 16})
			a := netip.MustParseAddr("192.0.2.7")
			start := epoch.UnixNano()
			got := 0
			for i, off := range tc.at {
				for range tc.n[i] {
					if rl.allow(start+off, a, limitRequest) {
						got++
					}
				}
			}
			if got != tc.want {
				t.Errorf("allowed %d, want %d", got, tc.want)
			}
		})
	}
}

func TestRateLimiterSources(t *testing.T) {
	t.Parallel()
	cases := []struct {
		a, b string
		same bool
	}{
		{"192.0.2.1", "192.0.2.1", true},
		{"192.0.2.1", "192.0.2.2", false},
		{"192.0.2.1", "::ffff:192.0.2.1", true},
		{"2001:db8::1", "2001:db8::ffff:1", true},
		{"2001:db8::1", "2001:db8:0:0:8000::1", true},
		{"2001:db8::1", "2001:db8:0:1::1", false},
		{"fe80::1%eth0", "fe80::2%eth1", true},
	}
	for _, tc := range cases {
		t.Run(tc.a+"/"+tc.b, func(t *testing.T) {
			t.Parallel()
			rl := newRateLimiter(RateLimits{RequestRate: 1, RequestBurst: 1, MaxSources: 16})
			now := epoch.UnixNano()
			if !rl.allow(now, netip.MustParseAddr(tc.a), limitRequest) {
				t.Fatal("first event refused")
			}
			if got := !rl.allow(now, netip.MustParseAddr(tc.b), limitRequest); got != tc.same {
				t.Errorf("second source throttled = %v, want %v", got, tc.same)
			}
		})
	}
}

func TestRateLimiterKindsIndependent(t *testing.T) {
	t.Parallel()
	rl := newRateLimiter(RateLimits{RequestRate: 1, RequestBurst: 2, StoreRate: 1, StoreBurst: 1, HandshakeRate: 1, HandshakeBurst: 3})
	a, now := netip.MustParseAddr("192.0.2.9"), epoch.UnixNano()
	for kind, burst := range map[int]int{limitRequest: 2, limitStore: 1, limitHandshake: 3} {
		n := 0
		for rl.allow(now, a, kind) {
			if n++; n > 100 {
				t.Fatalf("kind %d: never throttled", kind)
			}
		}
		if n != burst {
			t.Errorf("kind %d: %d allowed, want %d", kind, n, burst)
		}
	}
}

// The table is bounded; the least recently active source is the one forgotten.
func TestRateLimiterTableBounded(t *testing.T) {
	t.Parallel()
	const max = 64
	rl := newRateLimiter(RateLimits{RequestRate: 1, RequestBurst: 1, MaxSources: max})
	now := epoch.UnixNano()
	hot := netip.MustParseAddr("198.51.100.1")
	rl.allow(now, hot, limitRequest) // hot's bucket is now empty
	for i := range 10 * max {
		a := netip.MustParseAddr(fmt.Sprintf("10.%d.%d.1", i>>8, i&0xff))
		rl.allow(now, a, limitRequest)
		if i%(max/2) == 0 && rl.allow(now, hot, limitRequest) {
			t.Fatalf("after %d sources: hot source allowed again (table forgot an active source)", i)
		}
		if len(rl.m) > max {
			t.Fatalf("table holds %d sources, bound %d", len(rl.m), max)
		}
	}
	listed := 0
	for s := rl.head; s != nil; s = s.next {
		if rl.m[s.key] != s {
			t.Fatal("LRU list and map disagree")
		}
		listed++
	}
	if listed != len(rl.m) || rl.evicted != uint64(10*max+1-max) {
		t.Errorf("listed %d of %d, evicted %d", listed, len(rl.m), rl.evicted)
	}
}

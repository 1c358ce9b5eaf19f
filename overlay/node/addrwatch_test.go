package node

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestWatchAddrs: a node bound to 0.0.0.0 sees the host's addresses change
// and hands the core its new local addresses (and a reachability check);
// while they stay the same nothing happens.
func TestWatchAddrs(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	host := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.0.2.7")}
	n, err := New(udpTestConfig(0, "0.0.0.0:0"))
	if err != nil {
		t.Fatal(err)
	}
	n.hostAddrs = func() []netip.Addr {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(host)
	}
	n.addrPoll = 10 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	port := n.Addrs()[0].Port()
	coreAddrs := func() []netip.AddrPort {
		var got []netip.AddrPort
		if err := n.exec(ctx, func(time.Time) { got = n.core.Config().LocalAddrs }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	want := []netip.AddrPort{netip.AddrPortFrom(host[0], port), netip.AddrPortFrom(host[1], port)}
	if got := coreAddrs(); !slices.Equal(got, want) {
		t.Fatalf("local addresses at start %v, want %v", got, want)
	}
	mu.Lock()
	host[1] = netip.MustParseAddr("198.51.100.9") // a new lease
	mu.Unlock()
	want[1] = netip.AddrPortFrom(netip.MustParseAddr("198.51.100.9"), port)
	for n.addrChanges.Load() == 0 {
		if ctx.Err() != nil {
			t.Fatal("the address change was not seen")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Exactly one change: a change seen while the addresses stayed the
	// same would have ended the wait before the core had the new ones.
	if got, c := coreAddrs(), n.addrChanges.Load(); !slices.Equal(got, want) || c != 1 {
		t.Errorf("after the change: local addresses %v, %d changes; want %v, 1", got, c, want)
	}
}

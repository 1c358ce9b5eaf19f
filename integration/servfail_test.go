package integration

import (
	"context"
	"fmt"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/peername/peername/identity"
)

// TestServfailWhenOverlayStalls freezes (SIGSTOP) the only peer of a node:
// a name the node does not hold cannot be searched before the deadline, so
// the answer is SERVFAIL, within about the configured timeout (well inside a
// stub resolver's 5 s) and never NXDOMAIN, which would claim the name does
// not exist. Once the peer runs again the same name gets NXDOMAIN.
func TestServfailWhenOverlayStalls(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	idA, keyA := newKey(t, dir, "a.key")
	_, keyB := newKey(t, dir, "b.key")
	a := startServer(t, nodeSpec{Label: "stall-a", Cloud: "it-stall", KeyFile: keyA, Publish: []string{"a 192.0.2.60"}})
	if err := a.waitReady(ctx); err != nil {
		t.Fatal(err)
	}
	const timeout = 800 * time.Millisecond // shorter than the overlay's 1 s request timeout
	b := startServer(t, nodeSpec{Label: "stall-b", Cloud: "it-stall", KeyFile: keyB, TTL: 1, Timeout: timeout.String(),
		Bootstrap: []netip.AddrPort{a.overlayAddr()}, Extra: []string{"negative_ttl 1"}})
	if err := b.waitReady(ctx); err != nil {
		t.Fatal(err)
	}
	other, err := identity.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	absent := securedName(t, other, "absent")

	// Precondition: b reaches a (a node that failed to join would be alone
	// and answer from its empty store).
	wctx, wcancel := context.WithTimeout(ctx, 45*time.Second)
	err = eventually(wctx, func(ctx context.Context) error {
		return resolvesTo(ctx, "udp", b, securedName(t, idA, "a"), []netip.Addr{netip.MustParseAddr("192.0.2.60")})
	})
	wcancel()
	if err != nil {
		t.Fatalf("before freezing the peer: %v", err)
	}

	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(resume) // a stopped process would ignore the SIGTERM of stop()

	for _, network := range []string{"udp", "tcp"} {
		start := time.Now()
		r, err := query(ctx, network, b.dnsAddr, absent, dns.TypeA)
		took := time.Since(start)
		if err != nil {
			t.Fatalf("%s query while the peer is frozen: %v (after %v)", network, err, took)
		}
		if r.Rcode != dns.RcodeServerFailure {
			t.Errorf("%s: %s while the only peer is frozen, want SERVFAIL", network, dns.RcodeToString[r.Rcode])
		}
		if took > timeout+2*time.Second {
			t.Errorf("%s: SERVFAIL took %v with timeout %v", network, took, timeout)
		}
	}

	resume()
	wctx, wcancel = context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	err = eventually(wctx, func(ctx context.Context) error {
		r, err := query(ctx, "udp", b.dnsAddr, absent, dns.TypeA)
		if err != nil {
			return fmt.Errorf("%w: %w", errNotYet, err)
		}
		if r.Rcode != dns.RcodeNameError {
			return fmt.Errorf("after SIGCONT: %s, want NXDOMAIN: %w", dns.RcodeToString[r.Rcode], errNotYet)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

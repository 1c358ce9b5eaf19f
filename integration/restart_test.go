package integration

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestRestart stops and starts real processes with "state DIR": a node
// stopped cleanly withdraws its name (NXDOMAIN everywhere), and started
// again publishes it anew (a newer record than the withdrawal); a node
// restarted after its peer died still serves the record it stored for that
// peer, from its saved state.
func TestRestart(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	dir := t.TempDir()
	_, keyA := newKey(t, dir, "a.key")
	idB, keyB := newKey(t, dir, "b.key")
	specA := nodeSpec{Label: "restart-a", Cloud: "it-restart", KeyFile: keyA, TTL: 1, Timeout: "2s",
		Extra: []string{"state " + t.TempDir(), "negative_ttl 1"}}
	a := startServer(t, specA)
	if err := a.waitReady(ctx); err != nil {
		t.Fatal(err)
	}
	specB := nodeSpec{Label: "restart-b", Cloud: "it-restart", KeyFile: keyB, TTL: 1, Timeout: "2s",
		Bootstrap: []netip.AddrPort{a.overlayAddr()}, Publish: []string{"b 192.0.2.80"},
		Extra: []string{"state " + t.TempDir(), "negative_ttl 1"}}
	b := startServer(t, specB)
	if err := b.waitReady(ctx); err != nil {
		t.Fatal(err)
	}
	name := securedName(t, idB, "b")
	want := []netip.Addr{netip.MustParseAddr("192.0.2.80")}
	resolves := func(when string, srv *server) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		defer wcancel()
		if err := eventually(wctx, func(ctx context.Context) error { return resolvesTo(ctx, "udp", srv, name, want) }); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
	}
	nxdomain := func(when string, srv *server) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		defer wcancel()
		err := eventually(wctx, func(ctx context.Context) error {
			r, err := query(ctx, "udp", srv.dnsAddr, name, dns.TypeA)
			if err != nil {
				return fmt.Errorf("%w: %w", errNotYet, err)
			}
			if r.Rcode != dns.RcodeNameError {
				return fmt.Errorf("%s: %s %v, want NXDOMAIN: %w", name, dns.RcodeToString[r.Rcode], r.Answer, errNotYet)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
	}
	resolves("at start", a)

	b.stop()
	nxdomain("after a clean stop of its owner", a)

	b = startServer(t, b.spec) // same key, ports and state directory
	if err := b.waitReady(ctx); err != nil {
		t.Fatal(err)
	}
	resolves("after its owner started again", a)

	b.kill(t)
	a.stop()
	// Not waiting for /ready here: the restarted node's saved routing table
	// names only the dead peer, and a node whose known peers do not answer
	// reports not ready (it retries them). It serves DNS all the same.
	a = startServer(t, a.spec)
	resolves("at a node restarted from its state after the owner died", a)
}

package integration

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestReload changes a running node's Corefile and sends SIGUSR1: CoreDNS
// starts the new configuration before stopping the old one, and the
// plugin must carry its overlay node across. A changed address is
// republished, a new name published, a dropped name withdrawn, and the node
// keeps resolving through the cloud.
func TestReload(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	dir := t.TempDir()
	_, keyA := newKey(t, dir, "a.key")
	idB, keyB := newKey(t, dir, "b.key")
	a := startServer(t, nodeSpec{Label: "reload-a", Cloud: "it-reload", KeyFile: keyA, TTL: 1, Timeout: "2s",
		Publish: []string{"a1 192.0.2.101"}})
	if err := a.waitReady(ctx); err != nil {
		t.Fatal(err)
	}
	b := startServer(t, nodeSpec{Label: "reload-b", Cloud: "it-reload", KeyFile: keyB, TTL: 1, Timeout: "2s",
		Bootstrap: []netip.AddrPort{a.overlayAddr()},
		Publish:   []string{"b1 192.0.2.111", "b2 192.0.2.112"}})
	if err := b.waitReady(ctx); err != nil {
		t.Fatal(err)
	}
	b1, b2, b3 := securedName(t, idB, "b1"), securedName(t, idB, "b2"), securedName(t, idB, "b3")
	expect := func(when string, srv *server, name string, want ...string) {
		t.Helper()
		var addrs []netip.Addr
		for _, w := range want {
			addrs = append(addrs, netip.MustParseAddr(w))
		}
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		defer wcancel()
		err := eventually(wctx, func(ctx context.Context) error {
			if len(addrs) > 0 {
				// Until the new record reaches the node, the old address
				// is a correct answer: retry on any mismatch.
				if err := resolvesTo(ctx, "udp", srv, name, addrs); err != nil {
					return fmt.Errorf("%w: %w", errNotYet, err)
				}
				return nil
			}
			r, err := query(ctx, "udp", srv.dnsAddr, name, dns.TypeA)
			if err != nil {
				return fmt.Errorf("%w: %w", errNotYet, err)
			}
			if r.Rcode != dns.RcodeNameError {
				return fmt.Errorf("%s at %s: %s %v, want NXDOMAIN: %w", name, srv.spec.Label, dns.RcodeToString[r.Rcode], r.Answer, errNotYet)
			}
			return nil
		})
		if err != nil {
			t.Errorf("%s: %v", when, err)
		}
	}
	expect("before reload", a, b1, "192.0.2.111")
	expect("before reload", a, b2, "192.0.2.112")

	b.reload(t, func(s *nodeSpec) {
		s.Publish = []string{"b1 192.0.2.121", "b3 192.0.2.113"}
	})
	expect("after reload: changed address", a, b1, "192.0.2.121")
	expect("after reload: new name", a, b3, "192.0.2.113")
	expect("after reload: dropped name withdrawn", a, b2)
	expect("after reload: the reloaded node still resolves through the cloud", b, securedName(t, mustKeyID(t, keyA), "a1"), "192.0.2.101")
	if !b.alive() {
		t.Fatal("reload-b exited after SIGUSR1")
	}
	// Its overlay socket is still served: a fresh node can join through it.
	out, err := exec.CommandContext(ctx, bin.peername, "resolve", "-cloud", "it-reload", "-timeout", "10s",
		"-bootstrap", b.overlayAddr().String(), b3).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "192.0.2.113") {
		t.Errorf("peername resolve via the reloaded node: %v\n%s", err, out)
	}
	if log := b.logTail(200); strings.Contains(log, "address already in use") {
		t.Errorf("the reload tried to bind the overlay socket twice:\n%s", log)
	}
}

// TestReloadFailure sends SIGUSR1 with a Corefile whose new server block
// cannot bind (its port is held by the test): the reload fails, the old
// configuration keeps serving and publishing, and a later SIGTERM still
// withdraws its names.
func TestReloadFailure(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	dir := t.TempDir()
	_, keyA := newKey(t, dir, "a.key")
	idB, keyB := newKey(t, dir, "b.key")
	a := startServer(t, nodeSpec{Label: "rfail-a", Cloud: "it-rfail", KeyFile: keyA, TTL: 1, Timeout: "2s",
		Extra: []string{"negative_ttl 1"}})
	if err := a.waitReady(ctx); err != nil {
		t.Fatal(err)
	}
	b := startServer(t, nodeSpec{Label: "rfail-b", Cloud: "it-rfail", KeyFile: keyB, TTL: 1, Timeout: "2s",
		Bootstrap: []netip.AddrPort{a.overlayAddr()}, Publish: []string{"b1 192.0.2.131"}})
	if err := b.waitReady(ctx); err != nil {
		t.Fatal(err)
	}
	b1 := securedName(t, idB, "b1")
	check := func(when string, srv *server, wantNX bool) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		defer wcancel()
		err := eventually(wctx, func(ctx context.Context) error {
			if !wantNX {
				return resolvesTo(ctx, "udp", srv, b1, []netip.Addr{netip.MustParseAddr("192.0.2.131")})
			}
			r, err := query(ctx, "udp", srv.dnsAddr, b1, dns.TypeA)
			if err != nil {
				return fmt.Errorf("%w: %w", errNotYet, err)
			}
			if r.Rcode != dns.RcodeNameError {
				return fmt.Errorf("%s: %s, want NXDOMAIN: %w", b1, dns.RcodeToString[r.Rcode], errNotYet)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
	}
	check("before reload", a, false)

	port := freePort(t, "127.0.0.1")
	held, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	b.reload(t, func(s *nodeSpec) {
		s.Publish = append(s.Publish, "b2 192.0.2.132")
		s.ExtraZones = fmt.Sprintf("other.test.:%d {\n    bind 127.0.0.1\n    whoami\n}\n", port)
	})
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	err = eventually(wctx, func(context.Context) error {
		if !strings.Contains(b.logTail(200), "address already in use") {
			return fmt.Errorf("no failed reload in the log yet: %w", errNotYet)
		}
		return nil
	})
	wcancel()
	if err != nil {
		t.Fatal(err)
	}
	if !b.alive() {
		t.Fatal("the failed reload stopped the server")
	}
	check("after the failed reload, at the other node", a, false)
	check("after the failed reload, at the reloaded node", b, false)

	b.stop()
	check("after SIGTERM of the node whose reload failed", a, true)
}

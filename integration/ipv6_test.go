package integration

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestIPv6Loopback runs a two-node cloud whose DNS servers and overlay
// sockets are on ::1 only, and resolves over UDP and TCP on IPv6, and with
// the CLI through an IPv6 seed.
func TestIPv6Loopback(t *testing.T) {
	t.Parallel()
	if c, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
		t.Skipf("skipping: no IPv6 loopback here: %v", err)
	} else {
		c.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	idA, keyA := newKey(t, dir, "a.key")
	_, keyB := newKey(t, dir, "b.key")
	a := startServer(t, nodeSpec{Label: "v6-a", Host: "::1", Cloud: "it-v6", KeyFile: keyA, TTL: 2, Timeout: "2s",
		Publish: []string{"six 2001:db8::6 192.0.2.6"}})
	if err := a.waitReady(ctx); err != nil {
		t.Fatal(err)
	}
	b := startServer(t, nodeSpec{Label: "v6-b", Host: "::1", Cloud: "it-v6", KeyFile: keyB, TTL: 2, Timeout: "2s",
		Bootstrap: []netip.AddrPort{a.overlayAddr()}})
	if err := b.waitReady(ctx); err != nil {
		t.Fatal(err)
	}
	name := securedName(t, idA, "six")
	want := []netip.Addr{netip.MustParseAddr("2001:db8::6"), netip.MustParseAddr("192.0.2.6")}
	for _, network := range []string{"udp", "tcp"} {
		wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
		err := eventually(wctx, func(ctx context.Context) error { return resolvesTo(ctx, network, b, name, want) })
		wcancel()
		if err != nil {
			t.Error(err)
		}
	}
	out, err := exec.CommandContext(ctx, bin.peername, "resolve", "-cloud", "it-v6", "-timeout", "10s",
		"-bootstrap", b.overlayAddr().String(), name).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "2001:db8::6") {
		t.Errorf("peername resolve -bootstrap %s: %v\n%s", b.overlayAddr(), err, out)
	}
}

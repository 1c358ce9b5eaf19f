package node

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/peername/peername/overlay/bootstrap"
)

// inLinkLocalNetNS is set in the environment of the copy of the test binary
// that runs inside a fresh network namespace.
const inLinkLocalNetNS = "PEERNAME_TEST_LINKLOCAL_NETNS"

// TestNodeLinkLocalDiscovery runs itself again inside a new network
// namespace whose loopback interface carries multicast, so that discovery
// probes never reach a real network. It needs root and unshare(1).
func TestNodeLinkLocalDiscovery(t *testing.T) {
	if os.Getenv(inLinkLocalNetNS) == "" {
		t.Parallel()
		if os.Geteuid() != 0 {
			t.Skip("needs root for a network namespace")
		}
		unshare, err := exec.LookPath("unshare")
		if err != nil {
			t.Skip("needs unshare(1)")
		}
		if _, err := exec.LookPath("ip"); err != nil {
			t.Skip("needs ip(8)")
		}
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		setup := "ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo && exec \"$0\" \"$@\""
		cmd := exec.CommandContext(ctx, unshare, "--net", "--", "sh", "-c", setup,
			os.Args[0], "-test.run=^TestNodeLinkLocalDiscovery$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), inLinkLocalNetNS+"=1")
		out, err := cmd.CombinedOutput()
		if strings.Contains(string(out), "unshare failed") || strings.Contains(string(out), "Operation not permitted") {
			t.Skipf("no network namespace here: %s", out)
		}
		if err != nil || !strings.Contains(string(out), "--- PASS: TestNodeLinkLocalDiscovery") {
			t.Fatalf("inside the namespace: %v\n%s", err, out)
		}
		return
	}

	// Inside the namespace.
	ll := &bootstrap.LinkLocalConfig{Interface: "lo", Groups: []netip.AddrPort{bootstrap.DefaultLinkLocalGroup4}}
	cfgA := udpTestConfig(600, "127.0.0.1:0")
	cfgA.LinkLocal = ll
	a := startNode(t, cfgA)
	other := udpTestConfig(601, "127.0.0.1:0")
	other.Cloud = "another-cloud"
	other.LinkLocal = ll
	startNode(t, other)
	if len(a.disco) != 1 {
		t.Fatal("a did not join the discovery group")
	}

	probe := bootstrap.LinkLocal{Interface: "lo", Cloud: "udp-test", Wait: 500 * time.Millisecond}
	seeds, err := probe.Seeds(t.Context())
	if err != nil {
		t.Fatalf("Seeds: %v", err)
	}
	if len(seeds) != 1 || seeds[0] != a.Addrs()[0] {
		t.Fatalf("Seeds = %v, want only a at %v (not the node of another cloud)", seeds, a.Addrs())
	}
	cfgB := udpTestConfig(602, "127.0.0.1:0")
	cfgB.Bootstrap = []bootstrap.Provider{probe}
	b := startNode(t, cfgB)
	if ns := b.NetStats(); ns.Seeds != 1 || ns.AloneReason != "" || b.Stats().RoutingTableSize == 0 {
		t.Fatalf("b after link-local bootstrap: %+v", ns)
	}
	lonely := bootstrap.LinkLocal{Interface: "lo", Cloud: "nobody-here", Wait: 200 * time.Millisecond}
	if seeds, err := lonely.Seeds(t.Context()); err == nil || len(seeds) != 0 {
		t.Fatalf("a cloud with no node on the link found %v, %v", seeds, err)
	}
}

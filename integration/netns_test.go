package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// netnsSubnet is the address range used inside the namespaces this test
// creates, and nowhere else: 198.18.0.0/15 is reserved for benchmarking
// (RFC 2544), so it collides with no real network.
const netnsSubnet = "198.18.77.%d"

// TestUnmodifiedApplication runs three hosts, each a network namespace on a
// bridge with its own CoreDNS on port 53 and /etc/netns/NAME/resolv.conf
// pointing at it, and checks that glibc's resolver (getent hosts) returns
// the addresses other hosts published.
func TestUnmodifiedApplication(t *testing.T) {
	t.Parallel()
	requireNetNS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	const hosts = 3
	dir := t.TempDir()
	type host struct {
		ns    string
		addr  netip.Addr
		srv   *server
		name  string
		pubIP netip.Addr // the address its name must resolve to
	}
	hs := make([]*host, hosts)
	for i, h := range netnsLAN(ctx, t, netnsSubnet, hosts, 1) {
		hs[i] = &host{ns: h.ns, addr: h.addr}
	}

	// Every host also serves boot.test. (file plugin): SRV records naming
	// the seed of the cloud, for "bootstrap dns:boot.test".
	overlayPort := uint16(3540)
	zoneFile := filepath.Join(dir, "boot.test.zone")
	zoneData := fmt.Sprintf(`$ORIGIN boot.test.
@      60 IN SOA ns.boot.test. hostmaster.boot.test. 1 3600 600 86400 60
@      60 IN NS  ns.boot.test.
ns     60 IN A   %[1]s
seed1  60 IN A   %[1]s
_peername._udp 60 IN SRV 10 10 %[2]d seed1.boot.test.
`, hs[0].addr, overlayPort)
	if err := os.WriteFile(zoneFile, []byte(zoneData), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, h := range hs {
		label := fmt.Sprintf("host%d", i+1)
		id, key := newKey(t, dir, label+".key")
		h.name = securedName(t, id, label)
		spec := nodeSpec{
			Label: label, Host: h.addr.String(), DNSPort: 53, NetNS: h.ns, Cloud: "it-netns", KeyFile: key,
			Overlay: netip.AddrPortFrom(h.addr, overlayPort), TTL: 2, Timeout: "2s",
			ExtraZones: fmt.Sprintf("boot.test.:53 {\n    bind %s\n    file %s\n}\n", h.addr, zoneFile),
		}
		if i == 1 {
			// No address given: the node publishes its own.
			spec.Publish = []string{label}
			h.pubIP = h.addr
		} else {
			h.pubIP = netip.MustParseAddr(fmt.Sprintf("192.0.2.%d", 100+i))
			spec.Publish = []string{label + " " + h.pubIP.String()}
		}
		if i > 0 {
			spec.Bootstrap = []netip.AddrPort{netip.AddrPortFrom(hs[0].addr, overlayPort)}
		}
		h.srv = startServer(t, spec)
		if i == 0 {
			if err := h.srv.waitReady(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, h := range hs[1:] {
		if err := h.srv.waitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}

	for _, at := range hs {
		for _, h := range hs {
			wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
			err := eventually(wctx, func(ctx context.Context) error {
				out, err := exec.CommandContext(ctx, "ip", "netns", "exec", at.ns, "getent", "hosts", strings.TrimSuffix(h.name, ".")).CombinedOutput()
				if err != nil {
					// getent exits 2 when the name is not found (yet).
					return fmt.Errorf("getent hosts %s in %s: %v %s: %w", h.name, at.ns, err, out, errNotYet)
				}
				fields := strings.Fields(string(out))
				if len(fields) < 2 || fields[0] != h.pubIP.String() {
					return fmt.Errorf("getent hosts %s in %s = %q, want %s", h.name, at.ns, out, h.pubIP)
				}
				return nil
			})
			wcancel()
			if err != nil {
				t.Error(err)
			}
		}
	}

	// The CLI, run on host 3, finds the cloud through the SRV records its
	// own resolver (host 3's CoreDNS) serves, and resolves host 1's name
	// over the overlay.
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", hs[2].ns, bin.peername, "resolve",
		"-cloud", "it-netns", "-timeout", "15s", "-bootstrap", "dns:boot.test", hs[0].name).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "address   "+hs[0].pubIP.String()) {
		t.Errorf("peername resolve -bootstrap dns:boot.test in %s: %v\n%s", hs[2].ns, err, out)
	} else {
		t.Logf("peername resolve -bootstrap dns:boot.test in %s:\n%s", hs[2].ns, out)
	}
}

// requireNetNS skips the test unless it can create network namespaces.
func requireNetNS(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: network namespaces need root (run the integration tests as root, as CI does)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: the ip command (iproute2) is not installed")
	}
	if _, err := exec.LookPath("getent"); err != nil {
		t.Skip("skipping: getent is not installed")
	}
	// One name per call: parallel tests probing at once must not collide
	// (a failed "add" of a taken name would skip the test).
	var sfx [4]byte
	if _, err := rand.Read(sfx[:]); err != nil {
		t.Fatal(err)
	}
	probe := "pnprobe" + hex.EncodeToString(sfx[:])
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		t.Skipf("skipping: cannot create a network namespace here: %v: %s", err, out)
	}
	if out, err := exec.Command("ip", "netns", "del", probe).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del %s: %v: %s", probe, err, out)
	}
}

// addNetNS creates a namespace and deletes it when the test ends (its veth
// ends and bridge go with it).
func addNetNS(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	mustIP(ctx, t, "netns", "add", name)
	t.Cleanup(func() {
		// Cleanups run in reverse order: the servers in the namespace have
		// been stopped already.
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
}

func mustIP(ctx context.Context, t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

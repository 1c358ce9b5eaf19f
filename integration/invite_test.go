package integration

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nsHost is a host of netnsLAN: a network namespace on a bridge, with its
// own /etc/netns/NS/resolv.conf naming its own address.
type nsHost struct {
	ns   string
	addr netip.Addr
}

// netnsLAN creates n hosts on one bridge, at the addresses subnet (a
// format with one %d, e.g. netnsSubnet) gives FIRST, FIRST+1... Everything
// is removed when the test ends.
func netnsLAN(ctx context.Context, t *testing.T, subnet string, n, first int) []*nsHost {
	t.Helper()
	var sfx [3]byte
	if _, err := rand.Read(sfx[:]); err != nil {
		t.Fatal(err)
	}
	prefix := "pn" + hex.EncodeToString(sfx[:]) // interface names stay < 16
	sw := prefix + "sw"
	addNetNS(ctx, t, sw)
	mustIP(ctx, t, "-n", sw, "link", "set", "lo", "up")
	mustIP(ctx, t, "-n", sw, "link", "add", "br0", "type", "bridge")
	mustIP(ctx, t, "-n", sw, "link", "set", "br0", "up")
	if _, err := os.Stat("/etc/netns"); errors.Is(err, fs.ErrNotExist) {
		t.Cleanup(func() { os.Remove("/etc/netns") }) // only if empty
	}
	hs := make([]*nsHost, n)
	for i := range hs {
		h := &nsHost{ns: fmt.Sprintf("%sh%d", prefix, i+1), addr: netip.MustParseAddr(fmt.Sprintf(subnet, first+i))}
		hs[i] = h
		addNetNS(ctx, t, h.ns)
		port := fmt.Sprintf("p%d", i+1)
		mustIP(ctx, t, "link", "add", "eth0", "netns", h.ns, "type", "veth", "peer", "name", port, "netns", sw)
		mustIP(ctx, t, "-n", sw, "link", "set", port, "master", "br0", "up")
		mustIP(ctx, t, "-n", h.ns, "link", "set", "lo", "up")
		mustIP(ctx, t, "-n", h.ns, "addr", "add", h.addr.String()+"/24", "dev", "eth0")
		mustIP(ctx, t, "-n", h.ns, "link", "set", "eth0", "up")
		netnsResolvConf(t, h.ns, h.addr)
	}
	return hs
}

// netnsResolvConf points namespace ns's glibc resolver at the DNS server on
// addr (/etc/netns/NS/resolv.conf, removed when the test ends).
func netnsResolvConf(t *testing.T, ns string, addr netip.Addr) {
	t.Helper()
	etc := filepath.Join("/etc/netns", ns)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(etc) })
	resolv := fmt.Sprintf("nameserver %s\noptions timeout:2 attempts:2\n", addr)
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte(resolv), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestHelperGreeter is not a test: run by TestInviteAcrossHosts inside a
// namespace (PEERNAME_GREET_ADDR set), it is the inviter's application, a
// TCP server that greets every connection.
func TestHelperGreeter(t *testing.T) {
	addr := os.Getenv("PEERNAME_GREET_ADDR")
	if addr == "" {
		t.Skip("helper process for TestInviteAcrossHosts")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("listening")
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		fmt.Fprintf(c, "hello from the inviter\n")
		c.Close()
	}
}

// TestInviteAcrossHosts is remote assistance's Easy Connect across three
// hosts in network namespaces: host 2 (the inviter) runs an application and
// `peername invite -service greet/tcp/PORT`; host 3 (the helper) runs
// `peername accept CODE -save alice`, connects to the address and port the
// invitation gave and is greeted; then, with no code, `getent hosts
// alice.contacts.peer.alt` on host 3 resolves the inviter through host 3's
// own CoreDNS (`contacts`). Host 1 is the cloud's seed.
func TestInviteAcrossHosts(t *testing.T) {
	t.Parallel()
	requireNetNS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	hs := netnsLAN(ctx, t, netnsSubnet, 3, 31)
	dir := t.TempDir()
	const cloud, overlayPort, appPort = "it-invite", 3540, 7007
	seed := netip.AddrPortFrom(hs[0].addr, overlayPort)
	keys := make([]string, 3)
	var srvs []*server
	for i, h := range hs {
		label := []string{"seed", "alice", "bob"}[i]
		_, keys[i] = newKey(t, dir, label+".key")
		spec := nodeSpec{
			Label: label, Host: h.addr.String(), DNSPort: 53, NetNS: h.ns, Cloud: cloud, KeyFile: keys[i],
			Overlay: netip.AddrPortFrom(h.addr, overlayPort), TTL: 2, Timeout: "2s",
			Publish: []string{label},
		}
		if i > 0 {
			spec.Bootstrap = []netip.AddrPort{seed}
		}
		if i == 2 {
			spec.Extra = []string{"contacts " + filepath.Join(dir, "bob-state", "contacts")}
		}
		srvs = append(srvs, startServer(t, spec))
		if err := srvs[i].waitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// The inviter's application.
	greeter := exec.CommandContext(ctx, "ip", "netns", "exec", hs[1].ns, os.Args[0], "-test.run=^TestHelperGreeter$")
	greeter.Env = append(os.Environ(), fmt.Sprintf("PEERNAME_GREET_ADDR=%s:%d", hs[1].addr, appPort))
	gout, err := greeter.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := greeter.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { greeter.Process.Kill(); greeter.Wait() })
	if line, err := bufio.NewReader(gout).ReadString('\n'); err != nil || line != "listening\n" {
		t.Fatalf("greeter: %q, %v", line, err)
	}

	// The invitation, signed with the inviter's own key.
	inv := exec.CommandContext(ctx, "ip", "netns", "exec", hs[1].ns, bin.peername, "invite",
		"-key", keys[1], "-name", "alice", "-cloud", cloud, "-bootstrap", seed.String(),
		"-addr", hs[1].addr.String(), "-service", fmt.Sprintf("greet/tcp/%d", appPort),
		"-for", "2m", "-poll", "500ms", "-json", "-save", "helper", "-state", filepath.Join(dir, "alice-state"))
	iout, err := inv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var ierr strings.Builder
	inv.Stderr = &ierr
	if err := inv.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(iout)
	var first struct {
		Code    string `json:"code"`
		Inviter string `json:"inviter"`
	}
	if !lines.Scan() || json.Unmarshal(lines.Bytes(), &first) != nil || first.Code == "" {
		inv.Wait()
		t.Fatalf("invite printed no code: %q\n%s", lines.Text(), ierr.String())
	}
	t.Logf("code %s for %s", first.Code, first.Inviter)

	// The helper types the code (lower case, spaces for dashes).
	typed := strings.ToLower(strings.ReplaceAll(first.Code, "-", " "))
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", hs[2].ns, bin.peername, "accept",
		"-key", keys[2], "-name", "bob", "-cloud", cloud, "-bootstrap", seed.String(),
		"-json", "-save", "alice", "-state", filepath.Join(dir, "bob-state"), typed).Output()
	if err != nil {
		t.Fatalf("accept: %v\n%s", err, out)
	}
	var acc struct {
		Inviter   string       `json:"inviter"`
		Addresses []netip.Addr `json:"addresses"`
		Services  []struct {
			Service string `json:"service"`
			Port    uint16 `json:"port"`
		} `json:"services"`
	}
	if err := json.Unmarshal(out, &acc); err != nil || len(acc.Addresses) == 0 || len(acc.Services) == 0 {
		t.Fatalf("accept output %s: %v", out, err)
	}
	if acc.Inviter != first.Inviter || acc.Services[0].Service != "greet" {
		t.Errorf("accepted %+v, want the invitation of %s offering greet", acc, first.Inviter)
	}

	// The helper connects to what the invitation offered.
	greeting, err := exec.CommandContext(ctx, "ip", "netns", "exec", hs[2].ns, "bash", "-c",
		fmt.Sprintf("exec 3<>/dev/tcp/%s/%d && head -n1 <&3", acc.Addresses[0], acc.Services[0].Port)).CombinedOutput()
	if err != nil || string(greeting) != "hello from the inviter\n" {
		t.Errorf("connecting to the offered service: %q, %v", greeting, err)
	}

	// The inviter learns who accepted, withdraws the invitation and exits 0.
	var last map[string]any
	for lines.Scan() {
		_ = json.Unmarshal(lines.Bytes(), &last)
	}
	if err := inv.Wait(); err != nil || last["accepted"] != true {
		t.Errorf("invite: %v, last line %v\n%s", err, last, ierr.String())
	}

	// A second use of the code is refused.
	again, err := exec.CommandContext(ctx, "ip", "netns", "exec", hs[2].ns, bin.peername, "accept",
		"-key", keys[2], "-cloud", cloud, "-bootstrap", seed.String(), first.Code).CombinedOutput()
	if err == nil || !strings.Contains(string(again), "already used") {
		t.Errorf("second accept: %v\n%s", err, again)
	}

	// Afterwards the inviter is a contact: unmodified applications on host 3
	// reach it by its petname.
	err = eventually(ctx, func(ctx context.Context) error {
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", hs[2].ns, "getent", "hosts", "alice.contacts.peer.alt").CombinedOutput()
		if err != nil {
			return fmt.Errorf("getent hosts alice.contacts.peer.alt: %v %s: %w", err, out, errNotYet)
		}
		if f := strings.Fields(string(out)); len(f) < 2 || f[0] != hs[1].addr.String() {
			return fmt.Errorf("getent hosts alice.contacts.peer.alt = %q, want %s", out, hs[1].addr)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

package integration

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestRegister runs `peername register` as an application's start script
// would: the name (with an address and a service) resolves at another node
// of the cloud while the command runs, and is gone after SIGTERM; a key
// file made by `peername keygen -tsig` and `nsupdate -k` agree on the
// format; another authority's name makes register exit 1 with the refusal.
func TestRegister(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "registrar.key")
	if out, err := exec.CommandContext(ctx, bin.peername, "keygen", "-tsig", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("keygen -tsig: %v\n%s", err, out)
	}
	data, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(data), `secret "`)
	secret, _, _ := strings.Cut(rest, `"`)

	srvs, id := updateCloud(ctx, t, dir, "it-register", "reg", secret, 2, nil, nil)
	app := securedName(t, id, "app")
	ask := func(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
		return query(ctx, "udp", srvs[1].dnsAddr, name, qtype)
	}

	reg := exec.CommandContext(ctx, bin.peername, "register", "-server", srvs[0].dnsAddr, "-key", keyFile,
		"-lease", "40s", "-addr", "192.0.2.77", "-service", "web/tcp/8080", app)
	out, err := reg.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb strings.Builder
	reg.Stderr = &errb
	if err := reg.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), "registered "+app) {
		reg.Wait()
		t.Fatalf("register: %q\n%s", lines.Text(), errb.String())
	}
	t.Log(lines.Text())
	err = eventually(ctx, func(ctx context.Context) error {
		m, err := ask(ctx, app, dns.TypeA)
		if err != nil || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 || m.Answer[0].(*dns.A).A.String() != "192.0.2.77" {
			return fmt.Errorf("A %s at node 2: %v %v: %w", app, m, err, errNotYet)
		}
		m, err = ask(ctx, "_web._tcp."+app, dns.TypeSRV)
		if err != nil || len(m.Answer) != 1 || m.Answer[0].(*dns.SRV).Port != 8080 {
			return fmt.Errorf("SRV _web._tcp.%s at node 2: %v %v: %w", app, m, err, errNotYet)
		}
		return nil
	})
	if err != nil {
		reg.Process.Kill()
		t.Fatal(err)
	}

	// The application stops: its name goes with it.
	if err := reg.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for lines.Scan() {
		t.Log(lines.Text())
	}
	if err := reg.Wait(); err != nil {
		t.Fatalf("register after SIGTERM: %v\n%s", err, errb.String())
	}
	err = eventually(ctx, func(ctx context.Context) error {
		m, err := ask(ctx, app, dns.TypeA)
		if err != nil || m.Rcode != dns.RcodeNameError {
			return fmt.Errorf("A %s at node 2 after SIGTERM: %v %v: %w", app, m, err, errNotYet)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}

	// Refusals are reported, with a non-zero exit.
	other := strings.Replace(app, "app.", "app.x", 1) // not a valid name of this node
	otherID, _ := newKey(t, dir, "other.key")
	otherName := securedName(t, otherID, "app")
	for _, name := range []string{otherName, other} {
		out, err := exec.CommandContext(ctx, bin.peername, "register", "-server", srvs[0].dnsAddr, "-key", keyFile,
			"-addr", "192.0.2.78", name).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "refused") {
			t.Errorf("register %s: %v\n%s; want a refusal and exit 1", name, err, out)
		}
	}
	// nsupdate reads the same key file.
	if nsu, err := exec.LookPath("nsupdate"); err == nil {
		host, port := splitHostPort(t, srvs[0].dnsAddr)
		cmd := exec.CommandContext(ctx, nsu, "-k", keyFile)
		cmd.Stdin = strings.NewReader(fmt.Sprintf("server %s %s\nzone %s\nupdate add %s 60 A 192.0.2.79\nsend\n", host, port, zone, app))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("nsupdate -k %s: %v\n%s", keyFile, err, out)
		}
	}
}

// TestRegisterAcrossHosts: `peername register` run by an application's
// start script on host 1 (network namespaces) makes its name resolvable by
// getent on host 2, through host 2's own CoreDNS, and SIGTERM makes it go.
func TestRegisterAcrossHosts(t *testing.T) {
	t.Parallel()
	requireNetNS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	hs := netnsLAN(ctx, t, netnsSubnet, 2, 41)
	dir := t.TempDir()
	keyFile := writeUpdateKey(t, dir)
	const overlayPort = 3540
	var app string
	for i, h := range hs {
		label := fmt.Sprintf("rh%d", i+1)
		id, key := newKey(t, dir, label+".key")
		spec := nodeSpec{Label: label, Host: h.addr.String(), DNSPort: 53, NetNS: h.ns, Cloud: "it-register-ns", KeyFile: key,
			Overlay: netip.AddrPortFrom(h.addr, overlayPort), TTL: 1, Timeout: "2s", Publish: []string{label},
			Extra: []string{"negative_ttl 1"}}
		if i == 0 {
			app = securedName(t, id, "app")
			spec.Plugins = []string{"tsig {\n        secret " + updateKey + " " + updateSecret + "\n        require_opcode UPDATE\n    }"}
			spec.Extra = append(spec.Extra, "allow "+updateKey+" * A AAAA SRV TXT")
		} else {
			spec.Bootstrap = []netip.AddrPort{netip.AddrPortFrom(hs[0].addr, overlayPort)}
		}
		s := startServer(t, spec)
		if err := s.waitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}
	reg := exec.CommandContext(ctx, "ip", "netns", "exec", hs[0].ns, bin.peername, "register",
		"-server", hs[0].addr.String()+":53", "-key", keyFile, "-addr", hs[0].addr.String(), app)
	var out strings.Builder
	reg.Stdout, reg.Stderr = &out, &out
	if err := reg.Start(); err != nil {
		t.Fatal(err)
	}
	getent := func(ctx context.Context) (string, error) {
		b, err := exec.CommandContext(ctx, "ip", "netns", "exec", hs[1].ns, "getent", "hosts", strings.TrimSuffix(app, ".")).CombinedOutput()
		return string(b), err
	}
	err := eventually(ctx, func(ctx context.Context) error {
		got, err := getent(ctx)
		if f := strings.Fields(got); err != nil || len(f) < 2 || f[0] != hs[0].addr.String() {
			return fmt.Errorf("getent hosts %s on host 2: %q %v: %w", app, got, err, errNotYet)
		}
		return nil
	})
	if err != nil {
		reg.Process.Kill()
		reg.Wait()
		t.Fatalf("%v\nregister: %s", err, out.String())
	}
	// `ip netns exec` runs register in its own process: SIGTERM reaches it
	// through ip, which execs the command.
	if err := reg.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := reg.Wait(); err != nil || !strings.Contains(out.String(), "deleted "+app) {
		t.Fatalf("register after SIGTERM: %v\n%s", err, out.String())
	}
	err = eventually(ctx, func(ctx context.Context) error {
		if got, err := getent(ctx); err == nil {
			return fmt.Errorf("getent hosts %s on host 2 after SIGTERM: %q: %w", app, got, errNotYet)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// TestRegisterLeaseExpires: an application that dies without deleting its
// name (SIGKILL to peername register) loses it when the lease it stopped
// renewing runs out (RFC 9664), as a PNRP registration died with its process.
func TestRegisterLeaseExpires(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	dir := t.TempDir()
	keyFile := writeUpdateKey(t, dir)
	srvs, id := updateCloud(ctx, t, dir, "it-register-lease", "rl", updateSecret, 2, []string{"negative_ttl 1"}, []string{"lease 2s 1h"})
	app := securedName(t, id, "app")
	reg := exec.CommandContext(ctx, bin.peername, "register", "-server", srvs[0].dnsAddr, "-key", keyFile,
		"-lease", "3s", "-addr", "192.0.2.90", app)
	var out strings.Builder
	reg.Stdout, reg.Stderr = &out, &out
	if err := reg.Start(); err != nil {
		t.Fatal(err)
	}
	answer := func(ctx context.Context) int {
		m, err := query(ctx, "udp", srvs[1].dnsAddr, app, dns.TypeA)
		if err != nil {
			return -1
		}
		return m.Rcode
	}
	if err := eventually(ctx, func(ctx context.Context) error {
		if rc := answer(ctx); rc != dns.RcodeSuccess {
			return fmt.Errorf("A %s at node 2: rcode %d: %w", app, rc, errNotYet)
		}
		return nil
	}); err != nil {
		reg.Process.Kill()
		reg.Wait()
		t.Fatalf("%v\n%s", err, out.String())
	}
	reg.Process.Kill() // dies without a word: no deletion
	reg.Wait()
	killed := time.Now()
	if err := eventually(ctx, func(ctx context.Context) error {
		if rc := answer(ctx); rc != dns.RcodeNameError {
			return fmt.Errorf("A %s at node 2 after its registrar died: rcode %d: %w", app, rc, errNotYet)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("name gone %s after the registrar was killed (3 s lease)", time.Since(killed).Round(100*time.Millisecond))
}

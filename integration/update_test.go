package integration

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/peername/peername/identity"
)

// The TSIG key of the UPDATE tests (public: tests only).
const (
	updateKey    = "registrar."
	updateSecret = "q2ZtTwYj0mN0bUq8w2iX3lSGYcVq3qC0m1B8c0Q4p9E="
	wrongSecret  = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
)

// nsupdate runs nsupdate with key (hmac-sha256 NAME:SECRET) and script and
// returns its combined output and error.
func nsupdate(ctx context.Context, t *testing.T, key string, srv *server, script string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("nsupdate")
	if err != nil {
		t.Skip("nsupdate not installed (apt-get install bind9-dnsutils)")
	}
	host, port := splitHostPort(t, srv.dnsAddr)
	full := fmt.Sprintf("server %s %s\nzone %s\n%ssend\n", host, port, zone, script)
	cmd := exec.CommandContext(ctx, bin, "-y", "hmac-sha256:"+key)
	cmd.Stdin = strings.NewReader(full)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestUpdateNsupdate registers a name with nsupdate on node 1 of a
// three-node cloud, resolves it with dig on node 2, deletes it and sees
// NXDOMAIN on node 2; a wrong key and another authority's name are refused.
func TestUpdateNsupdate(t *testing.T) {
	t.Parallel()
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig not installed (apt-get install bind9-dnsutils)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	dir := t.TempDir()
	srvs, id := updateCloud(ctx, t, dir, "it-update", "upd", updateSecret, 3, nil, nil)
	app := securedName(t, id, "app")
	host, port := splitHostPort(t, srvs[1].dnsAddr)
	digA := func(ctx context.Context, name string) (string, string) {
		out, _ := exec.CommandContext(ctx, dig, "@"+host, "-p", port, "+tries=1", "+time=3", name, "A").CombinedOutput()
		status := ""
		if _, rest, ok := strings.Cut(string(out), "status: "); ok {
			status, _, _ = strings.Cut(rest, ",")
		}
		short, _ := exec.CommandContext(ctx, dig, "@"+host, "-p", port, "+short", name, "A").CombinedOutput()
		return status, strings.TrimSpace(string(short))
	}

	if out, err := nsupdate(ctx, t, updateKey+":"+updateSecret, srvs[0], "update add "+app+" 60 A 192.0.2.55\n"); err != nil {
		t.Fatalf("nsupdate add: %v: %s", err, out)
	}
	start := time.Now()
	if err := eventually(ctx, func(ctx context.Context) error {
		if st, got := digA(ctx, app); got != "192.0.2.55" {
			return fmt.Errorf("dig %s A at node 2: %s %q: %w", app, st, got, errNotYet)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("UPDATE at node 1 to resolvable at node 2: %s", time.Since(start).Round(time.Millisecond))

	t.Run("wrong key", func(t *testing.T) {
		out, err := nsupdate(ctx, t, updateKey+":"+wrongSecret, srvs[0], "update add "+app+" 60 A 192.0.2.66\n")
		if err == nil {
			t.Fatalf("nsupdate with a wrong secret succeeded: %s", out)
		}
		t.Logf("wrong key: %s", strings.TrimSpace(out))
	})
	t.Run("another authority", func(t *testing.T) {
		other := securedName(t, mustKeyID(t, srvs[1].spec.KeyFile), "app")
		out, err := nsupdate(ctx, t, updateKey+":"+updateSecret, srvs[0], "update add "+other+" 60 A 192.0.2.66\n")
		if err == nil || !strings.Contains(out, "REFUSED") {
			t.Fatalf("nsupdate for another authority's name: %v: %s", err, out)
		}
	})
	t.Run("prerequisite", func(t *testing.T) {
		out, err := nsupdate(ctx, t, updateKey+":"+updateSecret, srvs[0], "prereq nxdomain "+app+"\nupdate add "+app+" 60 A 192.0.2.77\n")
		if err == nil || !strings.Contains(out, "YXDOMAIN") {
			t.Fatalf("create-only-if-absent on a name in use: %v: %s", err, out)
		}
	})

	if out, err := nsupdate(ctx, t, updateKey+":"+updateSecret, srvs[0], "update delete "+app+" A\n"); err != nil {
		t.Fatalf("nsupdate delete: %v: %s", err, out)
	}
	if err := eventually(ctx, func(ctx context.Context) error {
		if st, got := digA(ctx, app); st != "NXDOMAIN" {
			return fmt.Errorf("dig %s A at node 2 after delete: %s %q: %w", app, st, got, errNotYet)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if r, err := query(ctx, "udp", srvs[0].dnsAddr, app, dns.TypeA); err != nil || r.Rcode != dns.RcodeNameError {
		t.Fatalf("node 1 after delete: %v %v", r, err)
	}
}

// TestUpdateSurvivesRestart: a name registered with nsupdate at a node with
// `state DIR` is published again when the node restarts, and resolves at
// another node afterwards (the registration died with nothing but the
// process).
func TestUpdateSurvivesRestart(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	dir := t.TempDir()
	srvs, id := updateCloud(ctx, t, dir, "it-update-restart", "ur", updateSecret, 2, []string{"negative_ttl 1"}, []string{"state " + t.TempDir()})
	app := securedName(t, id, "app")
	if out, err := nsupdate(ctx, t, updateKey+":"+updateSecret, srvs[0], "update add "+app+" 60 A 192.0.2.56\n"); err != nil {
		t.Fatalf("nsupdate add: %v: %s", err, out)
	}
	resolves := func(what string) {
		t.Helper()
		err := eventually(ctx, func(ctx context.Context) error {
			m, err := query(ctx, "udp", srvs[1].dnsAddr, app, dns.TypeA)
			if err != nil || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
				return fmt.Errorf("%s: A %s at node 2: %v %v: %w", what, app, m, err, errNotYet)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	resolves("after the UPDATE")
	srvs[0].stop() // a clean stop withdraws the name...
	err := eventually(ctx, func(ctx context.Context) error {
		m, err := query(ctx, "udp", srvs[1].dnsAddr, app, dns.TypeA)
		if err != nil || m.Rcode != dns.RcodeNameError {
			return fmt.Errorf("A %s at node 2 with node 1 stopped: %v %v: %w", app, m, err, errNotYet)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	srvs[0] = startServer(t, srvs[0].spec) // ...and the restart from its state publishes it again
	resolves("after node 1 restarted from its state")
}

// updateCloud starts n loopback nodes of cloud (labels PREFIX1..PREFIXn,
// each publishing PREFIXi 192.0.2.i) and waits until each is ready. Node 1
// accepts UPDATEs signed with the key registrar. (secret) for its names of
// every type; every node's peername block gets the extra lines, node 1's
// also first1. It returns the servers and node 1's identity.
func updateCloud(ctx context.Context, t testing.TB, dir, cloud, prefix, secret string, n int, extra, first1 []string) ([]*server, *identity.Identity) {
	t.Helper()
	var srvs []*server
	var first *identity.Identity
	for i := range n {
		label := fmt.Sprintf("%s%d", prefix, i+1)
		id, key := newKey(t, dir, label+".key")
		spec := nodeSpec{Label: label, Cloud: cloud, KeyFile: key, TTL: 1, Timeout: "2s",
			Publish: []string{fmt.Sprintf("%s 192.0.2.%d", label, i+1)}, Extra: slices.Clone(extra)}
		if i == 0 {
			first = id
			spec.Plugins = []string{"tsig {\n        secret " + updateKey + " " + secret + "\n        require_opcode UPDATE\n    }"}
			spec.Extra = append(spec.Extra, "allow "+updateKey+" * A AAAA SRV TXT")
			spec.Extra = append(spec.Extra, first1...)
		} else {
			spec.Bootstrap = []netip.AddrPort{srvs[0].overlayAddr()}
		}
		s := startServer(t, spec)
		if err := s.waitReady(ctx); err != nil {
			t.Fatal(err)
		}
		srvs = append(srvs, s)
	}
	return srvs, first
}

// writeUpdateKey writes the tests' TSIG key (updateKey, updateSecret) as a
// BIND key file in dir and returns its path.
func writeUpdateKey(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "registrar.key")
	if err := os.WriteFile(path, []byte("key \""+updateKey+"\" {\n\talgorithm hmac-sha256;\n\tsecret \""+updateSecret+"\";\n};\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

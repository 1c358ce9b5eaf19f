package integration

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
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
	var srvs []*server
	var app string
	for i := range 3 {
		label := fmt.Sprintf("upd%d", i+1)
		id, key := newKey(t, dir, label+".key")
		spec := nodeSpec{Label: label, Cloud: "it-update", KeyFile: key, TTL: 1, Timeout: "2s",
			Publish: []string{fmt.Sprintf("%s 192.0.2.%d", label, i+1)}}
		if i == 0 {
			app = securedName(t, id, "app")
			spec.Plugins = []string{"tsig {\n        secret " + updateKey + " " + updateSecret + "\n        require_opcode UPDATE\n    }"}
			spec.Extra = []string{"allow " + updateKey + " * A AAAA SRV TXT"}
		} else {
			spec.Bootstrap = []netip.AddrPort{srvs[0].overlayAddr()}
		}
		s := startServer(t, spec)
		if err := s.waitReady(ctx); err != nil {
			t.Fatal(err)
		}
		srvs = append(srvs, s)
	}
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
	var srvs []*server
	var app string
	for i := range 2 {
		label := fmt.Sprintf("ur%d", i+1)
		id, key := newKey(t, dir, label+".key")
		spec := nodeSpec{Label: label, Cloud: "it-update-restart", KeyFile: key, TTL: 1, Timeout: "2s",
			Publish: []string{fmt.Sprintf("%s 192.0.2.%d", label, i+1)}, Extra: []string{"negative_ttl 1"}}
		if i == 0 {
			app = securedName(t, id, "app")
			spec.Plugins = []string{"tsig {\n        secret " + updateKey + " " + updateSecret + "\n        require_opcode UPDATE\n    }"}
			spec.Extra = append(spec.Extra, "allow "+updateKey+" * A AAAA SRV TXT", "state "+t.TempDir())
		} else {
			spec.Bootstrap = []netip.AddrPort{srvs[0].overlayAddr()}
		}
		s := startServer(t, spec)
		if err := s.waitReady(ctx); err != nil {
			t.Fatal(err)
		}
		srvs = append(srvs, s)
	}
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

package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peername/peername/identity"
)

// TestQuickStart runs the repository's Corefile.example unchanged, as the
// README's quick start does, and checks the answers the README promises.
// Its ports are fixed (1053, 3540, 8181, 9153), so it runs in a network
// namespace of its own, where they are free whatever else runs here.
func TestQuickStart(t *testing.T) {
	t.Parallel()
	requireNetNS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	root, err := moduleRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile(filepath.Join(root, "Corefile.example"))
	if err != nil {
		t.Fatal(err)
	}
	var sfx [3]byte
	if _, err := rand.Read(sfx[:]); err != nil {
		t.Fatal(err)
	}
	ns := "pn" + hex.EncodeToString(sfx[:]) + "qs"
	addNetNS(ctx, t, ns)
	mustIP(ctx, t, "-n", ns, "link", "set", "lo", "up")

	dir := t.TempDir()
	s := &server{
		spec:     nodeSpec{Label: "quickstart", Host: "127.0.0.1", NetNS: ns},
		dnsAddr:  "127.0.0.1:1053",
		readyURL: "http://127.0.0.1:8181/ready",
		corefile: filepath.Join(dir, "Corefile.example"),
		logPath:  filepath.Join(dir, "coredns.log"),
		exited:   make(chan struct{}),
	}
	if err := os.WriteFile(s.corefile, example, 0o644); err != nil {
		t.Fatal(err)
	}
	s.start(t, dir, string(example))
	if err := s.waitReady(ctx); err != nil {
		t.Fatal(err)
	}

	// The plugin created the key in the working directory, mode 0600.
	keyPath := filepath.Join(dir, "peername.key")
	st, err := os.Stat(keyPath)
	if err != nil {
		t.Fatalf("the quick start did not create peername.key: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("peername.key has mode %04o, want 0600", st.Mode().Perm())
	}
	// The name the README tells the user to look up, as the CLI prints it.
	out, err := exec.CommandContext(ctx, bin.peername, "name", "-key", keyPath, "node").Output()
	if err != nil {
		t.Fatalf("peername name: %v", err)
	}
	name := strings.TrimSpace(string(out))
	id, err := identity.LoadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if want := securedName(t, id, "node"); name != want {
		t.Fatalf("peername name printed %q, want %q", name, want)
	}
	if !strings.Contains(s.logTail(100), "publishing "+name) {
		t.Errorf("the log does not show %q being published, as the README says", name)
	}

	tests := []struct {
		network, qname, qtype string
		want                  []string // substrings of the helper's output
	}{
		{"udp", name, "A", []string{"rcode=NOERROR aa=true", "\tA\t127.0.0.1"}},
		{"tcp", name, "A", []string{"rcode=NOERROR aa=true", "\tA\t127.0.0.1"}},
		{"udp", "_ssh._tcp." + name, "SRV", []string{"rcode=NOERROR aa=true", " 22 " + name}},
		{"udp", name, "TXT", []string{"rcode=NOERROR aa=true", `"peername quick start"`}},
		{"udp", "nobody.0.peer.alt.", "A", []string{"rcode=NXDOMAIN aa=true"}},
	}
	for _, tc := range tests {
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, os.Args[0])
		cmd.Env = append(os.Environ(), helperEnv+"=dns:"+strings.Join([]string{tc.network, s.dnsAddr, tc.qname, tc.qtype}, " "))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s %s %s: %v\n%s", tc.network, tc.qname, tc.qtype, err, out)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(string(out), w) {
				t.Errorf("%s %s %s: answer lacks %q:\n%s", tc.network, tc.qname, tc.qtype, w, out)
			}
		}
	}
}

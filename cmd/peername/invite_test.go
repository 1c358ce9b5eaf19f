package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peername/peername/invite"
)

// syncBuffer is a bytes.Buffer a running command writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestInviteAccept runs the whole flow over a real overlay on loopback:
// invite publishes and prints a code, accept finds, checks and opens the
// invitation and saves the inviter as a contact, invite sees the acceptance,
// withdraws and exits 0; a second accept is refused, as are a mistyped and
// an unknown code.
func TestInviteAccept(t *testing.T) {
	t.Parallel()
	tc := startTestCloud(t, "cli-invite")
	aliceDir, bobDir := filepath.Join(t.TempDir(), "alice"), filepath.Join(t.TempDir(), "bob")
	common := []string{"-cloud", tc.cloud, "-bootstrap", tc.seed(0)}

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"invite", "-state", aliceDir, "-name", "alice-pc", "-poll", "200ms",
			"-addr", "192.0.2.44", "-service", "echo/tcp/7007", "-txt", "hello bob", "-payload", "token-1234", "-for", "10m", "-save", "bob"},
			common...), &env{stdout: &out, stderr: &errb})
	}()
	var code string
	re := regexp.MustCompile(`(?m)^code +(\S+)$`)
	for code == "" {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			code = m[1]
			break
		}
		select {
		case c := <-done:
			t.Fatalf("invite exited %d before printing a code\nstdout:\n%s\nstderr:\n%s", c, out.String(), errb.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if _, err := invite.Parse(code); err != nil {
		t.Fatalf("invite printed code %q: %v", code, err)
	}

	// A typo is caught before any lookup (no -bootstrap reachable needed).
	typo := []byte(code)
	typo[0], typo[1] = typo[1], typo[0]
	if typo[0] == typo[1] {
		typo[0] = map[bool]byte{true: 'A', false: 'B'}[typo[0] != 'A']
	}
	c, _, stderr := runCLI(t, nil, "accept", "-bootstrap", "127.0.0.1:9", string(typo))
	if c != exitFailure || !strings.Contains(stderr, "mistyped code") {
		t.Fatalf("typo: exit %d, stderr %q", c, stderr)
	}
	// A well-formed code nobody published.
	other := invite.CodeFromUint64(0x5eed).String()
	c, _, stderr = runCLI(t, nil, append([]string{"accept", "-state", filepath.Join(t.TempDir(), "x"), other}, common...)...)
	if c != exitFailure || !strings.Contains(stderr, "no invitation under this code") {
		t.Fatalf("unknown code: exit %d, stderr %q", c, stderr)
	}

	// The helper types it in lower case with spaces.
	spoken := strings.ToLower(strings.ReplaceAll(code, "-", " "))
	c, stdout, stderr := runCLI(t, nil, append([]string{"accept", "-state", bobDir, "-name", "bob-pc", "-save", "alice", spoken}, common...)...)
	if c != exitOK {
		t.Fatalf("accept: exit %d\nstdout:\n%s\nstderr:\n%s", c, stdout, stderr)
	}
	for _, w := range []string{"inviter    alice-pc.", "address    192.0.2.44", "service    _echo._tcp port 7007", `txt        "hello bob"`,
		"payload    10 bytes: " + "746f6b656e2d31323334", "saved as contact alice"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("accept stdout lacks %q:\n%s", w, stdout)
		}
	}
	select {
	case c := <-done:
		if c != exitOK {
			t.Fatalf("invite: exit %d\nstdout:\n%s\nstderr:\n%s", c, out.String(), errb.String())
		}
	case <-ctx.Done():
		t.Fatalf("invite did not see the acceptance\nstdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	}
	if s := out.String(); !strings.Contains(s, "accepted by bob-pc.") || !strings.Contains(s, "invitation withdrawn") || !strings.Contains(s, "saved as contact bob") {
		t.Fatalf("invite stdout:\n%s", s)
	}

	// Both sides now have each other as contacts.
	c, stdout, _ = runCLI(t, nil, "contacts", "-state", bobDir, "list")
	if c != exitOK || !regexp.MustCompile(`(?m)^alice +alice-pc\.[a-z2-7]{32}\.peer\.alt\.$`).MatchString(stdout) {
		t.Fatalf("bob's contacts: exit %d\n%s", c, stdout)
	}
	c, stdout, _ = runCLI(t, nil, "contacts", "-state", aliceDir, "list")
	if c != exitOK || !regexp.MustCompile(`(?m)^bob +bob-pc\.[a-z2-7]{32}\.peer\.alt\.$`).MatchString(stdout) {
		t.Fatalf("alice's contacts: exit %d\n%s", c, stdout)
	}

	// The code works once.
	c, _, stderr = runCLI(t, nil, append([]string{"accept", "-state", filepath.Join(t.TempDir(), "carol"), "-json", code}, common...)...)
	if c != exitFailure || !strings.Contains(stderr, "already used") {
		t.Fatalf("second accept: exit %d, stderr %q", c, stderr)
	}
}

// TestInviteJSONExpiry checks invite -json and that an unused invitation ends
// with exit 1 when its time is up.
func TestInviteJSONExpiry(t *testing.T) {
	t.Parallel()
	tc := startTestCloud(t, "cli-invite-expiry")
	code, stdout, stderr := runCLI(t, nil, "invite", "-cloud", tc.cloud, "-bootstrap", tc.seed(1), "-state", t.TempDir(),
		"-for", "3s", "-poll", "500ms", "-json")
	if code != exitFailure || !strings.Contains(stderr, "expired") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 2 {
		t.Fatalf("want two JSON lines, got:\n%s", stdout)
	}
	var first struct {
		Code    string    `json:"code"`
		Expires time.Time `json:"expires"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first.Code == "" || first.Expires.IsZero() {
		t.Fatalf("first line %q: %v", lines[0], err)
	}
	if _, err := invite.Parse(first.Code); err != nil {
		t.Fatal(err)
	}
	var last struct {
		Accepted bool `json:"accepted"`
	}
	if err := json.Unmarshal([]byte(lines[1]), &last); err != nil || last.Accepted {
		t.Fatalf("last line %q: %v", lines[1], err)
	}
}

func TestContactsCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	name := "laptop.hwvhn3ni7xtqshvzw4zbe3g6asnfb25x"
	if c, _, stderr := runCLI(t, nil, "contacts", "-state", dir, "add", "Alice", name+".peer.alt."); c != exitOK {
		t.Fatalf("add: %d %s", c, stderr)
	}
	if c, _, stderr := runCLI(t, nil, "contacts", "-state", dir, "add", "alice", "x.hwvhn3ni7xtqshvzw4zbe3g6asnfb25x"); c != exitFailure || !strings.Contains(stderr, "already names") {
		t.Fatalf("rebind: %d %s", c, stderr)
	}
	if c, stdout, _ := runCLI(t, nil, "contacts", "-state", dir, "list"); c != exitOK || !strings.Contains(stdout, "alice            "+name+".peer.alt.") {
		t.Fatalf("list: %d %q", c, stdout)
	}
	if c, _, stderr := runCLI(t, nil, "contacts", "-state", dir, "remove", "alice"); c != exitOK {
		t.Fatalf("remove: %d %s", c, stderr)
	}
	if c, _, stderr := runCLI(t, nil, "contacts", "-state", dir, "remove", "alice"); c != exitFailure || !strings.Contains(stderr, "no such contact") {
		t.Fatalf("remove again: %d %s", c, stderr)
	}
	if c, _, _ := runCLI(t, nil, "contacts", "-state", dir, "frobnicate"); c != exitUsage {
		t.Fatalf("bad subcommand: exit %d", c)
	}
	if c, _, stderr := runCLI(t, nil, "contacts", "-state", dir, "add", "bob", "printer.0"); c != exitFailure || !strings.Contains(stderr, "secured") {
		t.Fatalf("unsecured name: %d %s", c, stderr)
	}
}

package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peername/peername/identity"
)

// runCLI runs the command line in-process and returns its exit code and output.
func runCLI(t *testing.T, rand []byte, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdout: &out, stderr: &errb}
	if rand != nil {
		e.rand = bytes.NewReader(rand)
	}
	code = run(context.Background(), args, e)
	return code, out.String(), errb.String()
}

func testSeed() [32]byte {
	var seed [32]byte
	for i := range seed {
		seed[i] = byte(i + 1)
	}
	return seed
}

// writeKey saves the identity derived from testSeed in a fresh directory.
func writeKey(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "id.key")
	if err := identity.FromSeed(testSeed()).SaveFile(path); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"no command", nil, exitUsage, "", "Commands:"},
		{"help", []string{"-h"}, exitOK, "keygen", ""},
		{"help word", []string{"help"}, exitOK, "resolve", ""},
		{"unknown", []string{"frobnicate"}, exitUsage, "", `unknown command "frobnicate"`},
		{"subcommand help", []string{"name", "-h"}, exitOK, "", "Usage: peername name"},
		{"bad flag", []string{"name", "-nope", "x"}, exitUsage, "", "flag provided but not defined: -nope"},
		{"keygen without file", []string{"keygen"}, exitUsage, "", "missing argument"},
		{"keygen two files", []string{"keygen", "a", "b"}, exitUsage, "", `unexpected argument "b"`},
		{"version extra", []string{"version", "x"}, exitUsage, "", "unexpected argument"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCLI(t, nil, tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tc.wantCode, stderr)
			}
			if !strings.Contains(stdout, tc.wantStdout) {
				t.Errorf("stdout %q does not contain %q", stdout, tc.wantStdout)
			}
			if !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("stderr %q does not contain %q", stderr, tc.wantStderr)
			}
		})
	}
}

func TestKeygen(t *testing.T) {
	t.Parallel()
	seed := testSeed()
	want := identity.FromSeed(seed)
	path := filepath.Join(t.TempDir(), "node.key")

	code, stdout, stderr := runCLI(t, seed[:], "keygen", path)
	if code != exitOK {
		t.Fatalf("keygen: exit %d, stderr %q", code, stderr)
	}
	// ed25519 key generation reads exactly the 32-byte seed from the source.
	wantOut := "wrote " + path + "\nauthority sldun55p3m4kv6rzqqem7rbh5jkmvjl2\n" +
		"node-id   4e5f2f2605485bff56c3ec9c354ccda95ab230fc9aa97512c6ffcdec8bea5528\n"
	if stdout != wantOut {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout, wantOut)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode %04o, want 0600", perm)
	}
	got, err := identity.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !got.PublicKey().Equal(want.PublicKey()) {
		t.Error("the key file does not hold the generated key")
	}

	// A second keygen must refuse and leave the file alone.
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	other := bytes.Repeat([]byte{7}, 32)
	code, _, stderr = runCLI(t, other, "keygen", path)
	if code != exitFailure || !strings.Contains(stderr, "refusing to overwrite") {
		t.Errorf("second keygen: exit %d, stderr %q; want exit 1 refusing to overwrite", code, stderr)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("second keygen changed the existing key file")
	}
}

func TestKeygenRandomKeysDiffer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	auth := map[string]bool{}
	for _, f := range []string{"a.key", "b.key"} {
		code, stdout, stderr := runCLI(t, nil, "keygen", filepath.Join(dir, f))
		if code != exitOK {
			t.Fatalf("keygen %s: exit %d, %s", f, code, stderr)
		}
		auth[strings.Fields(strings.Split(stdout, "\n")[1])[1]] = true
	}
	if len(auth) != 2 {
		t.Errorf("two keygen runs produced the same authority: %v", auth)
	}
}

func TestName(t *testing.T) {
	t.Parallel()
	key := writeKey(t)
	loose := filepath.Join(t.TempDir(), "loose.key")
	if err := os.WriteFile(loose, []byte("irrelevant"), 0o644); err != nil {
		t.Fatal(err)
	}
	const auth = "sldun55p3m4kv6rzqqem7rbh5jkmvjl2"
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"default zone", []string{"-key", key, "alice"}, exitOK, "alice." + auth + ".peer.alt.\n", ""},
		{"flags after classifier", []string{"alice", "-key", key, "-zone", "Example.ORG"}, exitOK, "alice." + auth + ".example.org.\n", ""},
		{"case folded", []string{"-key", key, "-zone", "p2p.example.", "Web-1"}, exitOK, "web-1." + auth + ".p2p.example.\n", ""},
		{"unsecured", []string{"-unsecured", "printer"}, exitOK, "printer.0.peer.alt.\n", ""},
		{"bad classifier", []string{"-key", key, "no_underscores"}, exitFailure, "", "classifier"},
		{"long classifier", []string{"-key", key, strings.Repeat("a", 64)}, exitFailure, "", "peername name:"},
		{"bad zone", []string{"-key", key, "-zone", "a..b", "alice"}, exitFailure, "", "empty label"},
		{"missing key file", []string{"-key", filepath.Join(t.TempDir(), "nope"), "alice"}, exitFailure, "", "no such file"},
		{"world-readable key", []string{"-key", loose, "alice"}, exitFailure, "", "chmod 600"},
		{"neither key nor unsecured", []string{"alice"}, exitUsage, "", "exactly one of"},
		{"both key and unsecured", []string{"-key", key, "-unsecured", "alice"}, exitUsage, "", "exactly one of"},
		{"no classifier", []string{"-key", key}, exitUsage, "", "missing argument"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCLI(t, nil, append([]string{"name"}, tc.args...)...)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tc.wantCode, stderr)
			}
			if tc.wantStdout != "" && stdout != tc.wantStdout || tc.wantStdout == "" && stdout != "" {
				t.Errorf("stdout %q, want %q", stdout, tc.wantStdout)
			}
			if !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("stderr %q does not contain %q", stderr, tc.wantStderr)
			}
		})
	}
}

// TestNameMatchesIdentity checks the printed name parses back to the name the
// identity package builds for the key, so the CLI and the plugin agree.
func TestNameMatchesIdentity(t *testing.T) {
	t.Parallel()
	key := writeKey(t)
	code, stdout, stderr := runCLI(t, nil, "name", "-key", key, "ssh")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	got, err := identity.ParseName(strings.TrimSpace(stdout), identity.DefaultZone)
	if err != nil {
		t.Fatal(err)
	}
	want, err := identity.NewSecuredName("ssh", identity.FromSeed(testSeed()).PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("parsed %+v, want %+v", got, want)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runCLI(t, nil, "version")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.HasPrefix(stdout, "peername ") || !strings.Contains(stdout, "go1.") {
		t.Errorf("version output %q", stdout)
	}
}

func TestCanonicalZone(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"peer.alt", "peer.alt.", true},
		{"PEER.Alt.", "peer.alt.", true},
		{"", "", false},
		{".", "", false},
		{".a", "", false},
		{"a..b", "", false},
		{"a b", "", false},
	}
	for _, tc := range tests {
		got, err := canonicalZone(tc.in)
		if !tc.ok && !errors.Is(err, errBadZone) {
			t.Errorf("canonicalZone(%q) error %v, want errBadZone", tc.in, err)
		}
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("canonicalZone(%q) = %q, %v; want %q, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

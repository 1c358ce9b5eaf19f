package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/overlay"
	"github.com/peername/peername/overlay/bootstrap"
	"github.com/peername/peername/overlay/node"
	"github.com/peername/peername/records"
)

// testCloud is three in-process overlay nodes on loopback; node 2 publishes
// alice (secured, with a service and TXT) and, with node 3, the unsecured
// name shared.0.
type testCloud struct {
	cloud string
	nodes []*node.Node
	alice string // DNS name of alice
	owner *identity.Identity
}

func startTestCloud(t *testing.T, cloud string) *testCloud {
	t.Helper()
	tc := &testCloud{cloud: cloud}
	for i := range 3 {
		id, err := identity.Generate(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		cfg := node.Config{
			Identity: id,
			Listen:   []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
			Cloud:    cloud,
		}
		if i > 0 {
			cfg.Bootstrap = []bootstrap.Provider{bootstrap.Static{Addrs: []string{tc.nodes[0].Addrs()[0].String()}}}
		}
		n, err := node.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		// The identity puzzle is CPU work that a loaded -race run can
		// stretch past the start-up deadline: solve it outside.
		if err := n.Prepare(t.Context()); err != nil {
			t.Fatal(err)
		}
		// Each node gets its own start-up deadline: solving the next
		// node's puzzle must not eat into it.
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		err = n.Start(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		tc.nodes = append(tc.nodes, n)
		if i == 1 {
			tc.owner = id
		}
	}
	name, err := identity.NewSecuredName("alice", tc.owner.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	tc.alice = name.DNS(identity.DefaultZone)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err = tc.nodes[1].Publish(ctx, &records.Record{
		Name:      name,
		Endpoints: []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")},
		Services:  []records.Service{{Service: "ssh", Proto: "tcp", Port: 2222, Priority: 1, Weight: 2}},
		TXT:       []string{"hello world"},
	})
	if err != nil {
		t.Fatal(err)
	}
	shared, err := identity.NewUnsecuredName("shared")
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range tc.nodes[1:] {
		ip := netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)})
		if _, err := n.Publish(ctx, &records.Record{Name: shared, Endpoints: []netip.Addr{ip}}); err != nil {
			t.Fatal(err)
		}
	}
	return tc
}

func (tc *testCloud) seed(i int) string { return tc.nodes[i].Addrs()[0].String() }

func TestResolve(t *testing.T) {
	t.Parallel()
	tc := startTestCloud(t, "cli-resolve")
	ghost, err := identity.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ghostName, err := identity.NewSecuredName("ghost", ghost.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	common := []string{"resolve", "-cloud", tc.cloud, "-timeout", "10s", "-bootstrap", tc.seed(2)}
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout []string
		wantStderr string
	}{
		{"secured name", []string{tc.alice}, exitOK,
			[]string{"name      " + tc.alice, "authority " + tc.owner.Authority().String(), "address   192.0.2.10", "address   2001:db8::10",
				"service   _ssh._tcp port 2222 priority 1 weight 2", `txt       "hello world"`, "path      hops "}, ""},
		{"upper case, no trailing dot", []string{strings.ToUpper(strings.TrimSuffix(tc.alice, "."))}, exitOK,
			[]string{"address   192.0.2.10"}, ""},
		{"service name", []string{"_ssh._tcp." + tc.alice}, exitOK, []string{"service   _ssh._tcp port 2222"}, ""},
		{"unpublished service", []string{"_http._tcp." + tc.alice}, exitFailure, nil, "publishes no _http._tcp service"},
		{"unsecured name", []string{"shared.0.peer.alt"}, exitOK, []string{"name      shared.0.peer.alt."}, ""},
		{"not found", []string{ghostName.DNS(identity.DefaultZone)}, exitFailure, nil, "not found"},
		{"outside the zone", []string{"alice.example.com"}, exitFailure, nil, "not in the zone"},
		{"bad authority", []string{"alice.nope.peer.alt"}, exitFailure, nil, "peername resolve:"},
		// The cloud runs the default puzzle: a node without one is refused.
		{"no puzzle", []string{"-puzzle", "0", tc.alice}, exitFailure, nil, "could not join"},
		{"default puzzle given", []string{"-puzzle", fmt.Sprint(overlay.DefaultPuzzleBits), tc.alice}, exitOK, []string{"address   192.0.2.10"}, ""},
		{"mode server", []string{"-mode", "server", tc.alice}, exitOK, []string{"address   192.0.2.10"}, ""},
	}
	for _, tc2 := range tests {
		t.Run(tc2.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCLI(t, nil, append(slices.Clone(common), tc2.args...)...)
			if code != tc2.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc2.wantCode, stdout, stderr)
			}
			for _, w := range tc2.wantStdout {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout)
				}
			}
			if !strings.Contains(stderr, tc2.wantStderr) {
				t.Errorf("stderr %q does not contain %q", stderr, tc2.wantStderr)
			}
		})
	}

	t.Run("json", func(t *testing.T) {
		t.Parallel()
		code, stdout, stderr := runCLI(t, nil, "resolve", "-json", "-cloud", tc.cloud, "-bootstrap", tc.seed(0), "shared.0.peer.alt.")
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var out struct {
			Query   string
			Records []struct {
				Name      string
				Authority string
				Addresses []netip.Addr
			}
			Path struct{ Hops, Asked int }
		}
		if err := json.Unmarshal([]byte(stdout), &out); err != nil {
			t.Fatalf("%v:\n%s", err, stdout)
		}
		var got []netip.Addr
		for _, r := range out.Records {
			if r.Name != "shared.0.peer.alt." {
				t.Errorf("record name %q", r.Name)
			}
			got = append(got, r.Addresses...)
		}
		slices.SortFunc(got, netip.Addr.Compare)
		want := []netip.Addr{netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")}
		if !slices.Equal(got, want) {
			t.Errorf("shared.0 addresses %v, want both publishers %v", got, want)
		}
		if out.Query != "shared.0.peer.alt." || out.Path.Asked == 0 {
			t.Errorf("query %q, path %+v", out.Query, out.Path)
		}
	})
}

func TestResolveWrongCloud(t *testing.T) {
	t.Parallel()
	tc := startTestCloud(t, "cli-cloud-a")
	// The seed belongs to another cloud: it ignores us, so we are alone.
	code, stdout, stderr := runCLI(t, nil, "resolve", "-cloud", "cli-cloud-b", "-timeout", "8s", "-bootstrap", tc.seed(0), tc.alice)
	if code != exitFailure || !strings.Contains(stderr, "could not join") {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 1, could not join", code, stdout, stderr)
	}
}

func TestResolveUnreachableSeed(t *testing.T) {
	t.Parallel()
	// A port nobody listens on: bind one and close it.
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := c.LocalAddr().String()
	c.Close()
	start := time.Now()
	// No identity puzzle: -timeout bounds the join and search, not the
	// puzzle solved before them, and this test times the former.
	code, _, stderr := runCLI(t, nil, "resolve", "-timeout", "8s", "-puzzle", "0", "-bootstrap", dead, "x.0.peer.alt")
	if code != exitFailure || !strings.Contains(stderr, "could not join") {
		t.Errorf("exit %d, stderr %q; want exit 1, could not join", code, stderr)
	}
	if d := time.Since(start); d > 9*time.Second {
		t.Errorf("took %v with -timeout 8s", d)
	}
}

func TestResolveUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		wantStderr string
	}{
		{"no bootstrap", []string{"x.0.peer.alt"}, "at least one -bootstrap"},
		{"no name", []string{"-bootstrap", "127.0.0.1:1"}, "missing argument"},
		{"empty seed", []string{"-bootstrap", "127.0.0.1:1,,", "x.0.peer.alt"}, "empty seed"},
		{"zero timeout", []string{"-bootstrap", "127.0.0.1:1", "-timeout", "0s", "x.0.peer.alt"}, "-timeout must be positive"},
		{"puzzle too hard", []string{"-bootstrap", "127.0.0.1:1", "-puzzle", "33", "x.0.peer.alt"}, "-puzzle must be 0 to 32"},
		{"negative puzzle", []string{"-bootstrap", "127.0.0.1:1", "-puzzle", "-1", "x.0.peer.alt"}, "-puzzle must be"},
		{"unknown mode", []string{"-bootstrap", "127.0.0.1:1", "-mode", "relay", "x.0.peer.alt"}, "-mode must be auto, server or client"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, _, stderr := runCLI(t, nil, append([]string{"resolve"}, tc.args...)...)
			if code != exitUsage || !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("exit %d, stderr %q; want exit 2 with %q", code, stderr, tc.wantStderr)
			}
		})
	}
}

func TestListenFor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		seeds []string
		want  []string
	}{
		{[]string{"127.0.0.1:3540"}, []string{"127.0.0.1:0"}},
		{[]string{"127.0.0.1:3540", "127.0.0.2:3540"}, []string{"127.0.0.1:0"}},
		{[]string{"[::1]:3540"}, []string{"[::1]:0"}},
		{[]string{"192.0.2.1:3540"}, []string{"0.0.0.0:0"}},
		{[]string{"[2001:db8::1]:3540"}, []string{"[::]:0"}},
		{[]string{"127.0.0.1:3540", "[::1]:3540"}, []string{"0.0.0.0:0", "[::]:0"}},
		{[]string{"seed.example.net:3540"}, []string{"0.0.0.0:0", "[::]:0"}},
		{[]string{"dns:example.net"}, []string{"0.0.0.0:0", "[::]:0"}},
	}
	for _, tc := range tests {
		var got []string
		for _, ap := range listenFor(tc.seeds) {
			got = append(got, ap.String())
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("listenFor(%v) = %v, want %v", tc.seeds, got, tc.want)
		}
	}
}

func TestVerifyRecords(t *testing.T) {
	t.Parallel()
	now := time.Now().Truncate(time.Second)
	owner := identity.FromSeed(testSeed())
	var otherSeed [32]byte
	otherSeed[0] = 9
	other := identity.FromSeed(otherSeed)
	want, err := identity.NewSecuredName("alice", owner.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	sign := func(id *identity.Identity, name identity.Name, expires time.Time, withdrawn bool) *records.Record {
		r := &records.Record{Name: name, Seq: 1, Issued: now.Add(-time.Minute), Expires: expires, Withdrawn: withdrawn,
			Endpoints: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}
		if withdrawn {
			r.Endpoints = nil
		}
		if err := records.Sign(r, id); err != nil {
			t.Fatal(err)
		}
		return r
	}
	good := sign(owner, want, now.Add(time.Hour), false)
	forged := sign(other, want, now.Add(time.Hour), false) // Sign sets the other key's authority
	expired := sign(owner, want, now.Add(-time.Second), false)
	otherName, err := identity.NewSecuredName("bob", owner.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	wrongName := sign(owner, otherName, now.Add(time.Hour), false)
	tampered := sign(owner, want, now.Add(time.Hour), false)
	tampered.Endpoints = []netip.Addr{netip.MustParseAddr("203.0.113.66")}

	tests := []struct {
		name    string
		in      []*records.Record
		wantN   int
		wantErr error
	}{
		{"good", []*records.Record{good}, 1, nil},
		{"forged dropped, good kept", []*records.Record{forged, good}, 1, nil},
		{"forged only", []*records.Record{forged}, 0, records.ErrAuthorityMismatch},
		{"wrong name", []*records.Record{wrongName}, 0, records.ErrAuthorityMismatch},
		{"expired", []*records.Record{expired}, 0, records.ErrExpired},
		{"tampered", []*records.Record{tampered}, 0, records.ErrBadSignature},
		{"none", nil, 0, errNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := verifyRecords(tc.in, want, now)
			if len(got) != tc.wantN {
				t.Errorf("%d records passed, want %d", len(got), tc.wantN)
			}
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v, want %v", err, tc.wantErr)
			}
		})
	}
}

// TestResolveState checks -state: a run with a seed saves the peers it met,
// and a later run with no seed at all rejoins through them.
func TestResolveState(t *testing.T) {
	t.Parallel()
	tc := startTestCloud(t, "cli-state")
	dir := filepath.Join(t.TempDir(), "state")
	code, stdout, stderr := runCLI(t, nil, "resolve", "-cloud", tc.cloud, "-timeout", "10s", "-state", dir, "-bootstrap", tc.seed(0), tc.alice)
	if code != exitOK || !strings.Contains(stdout, "address   192.0.2.10") {
		t.Fatalf("first run: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	st, err := os.Stat(filepath.Join(dir, "resolve.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("state key: %v, mode %v; want a 0600 file", err, st)
	}
	code, stdout, stderr = runCLI(t, nil, "resolve", "-cloud", tc.cloud, "-timeout", "10s", "-state", dir, tc.alice)
	if code != exitOK || !strings.Contains(stdout, "address   192.0.2.10") {
		t.Fatalf("run from saved state without -bootstrap: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	// An empty state directory and no seed: nothing to join through.
	code, _, stderr = runCLI(t, nil, "resolve", "-cloud", tc.cloud, "-timeout", "5s", "-state", t.TempDir(), tc.alice)
	if code != exitFailure || !strings.Contains(stderr, "could not join") {
		t.Fatalf("empty state: exit %d, stderr %q; want exit 1, could not join", code, stderr)
	}
}

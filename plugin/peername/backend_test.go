package peername

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"

	"github.com/peername/peername/overlay"
	"github.com/peername/peername/resolver"
)

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// TestOverlayEndToEnd runs three plugin instances on real overlay nodes on
// loopback: each publishes a name, every name resolves at every node
// through ServeDNS, and a name is withdrawn when its node shuts down.
func TestOverlayEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real UDP nodes")
	}
	t.Parallel()
	reg := &nodeRegistry{newNode: newOverlayNode, nodes: map[string]*sharedNode{}}
	var insts []*instance
	seed := ""
	for i, name := range []string{"alpha", "beta", "gamma"} {
		corefile := fmt.Sprintf("peername {\nlisten 127.0.0.1:0\npublish %s 192.0.2.%d\ncloud e2e-test\ntimeout 3s\n%s}", name, i+1, seed)
		inst := newTestInstance(t, reg, testIdentity(byte(40+i)), corefile)
		if err := inst.startup(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = inst.shutdown() })
		eventually(t, name+" ready", inst.handler.Ready)
		if i == 0 {
			seed = fmt.Sprintf("bootstrap %s\n", inst.node.Load().node.Addrs()[0])
		}
		insts = append(insts, inst)
	}
	qname := func(i int) string { return insts[i].names[0].DNS("peer.alt.") }

	for from := range insts {
		for i := range insts[:2] {
			msg := query(t, insts[from].handler, qname(i), dns.TypeA)
			want := fmt.Sprintf("192.0.2.%d", i+1)
			if msg.Rcode != dns.RcodeSuccess || len(msg.Answer) != 1 || msg.Answer[0].(*dns.A).A.String() != want {
				t.Fatalf("node %d resolving %s: %v", from, qname(i), msg)
			}
		}
	}
	// gamma leaves: its withdrawal reaches the overlay before it closes.
	gamma := qname(2)
	if msg := query(t, insts[0].handler, gamma, dns.TypeA); len(msg.Answer) != 1 {
		t.Fatalf("gamma before shutdown: %v", msg)
	}
	if err := insts[2].shutdown(); err != nil {
		t.Fatal(err)
	}
	if msg := query(t, insts[1].handler, gamma, dns.TypeA); msg.Rcode != dns.RcodeNameError {
		t.Fatalf("gamma after shutdown: %v", msg)
	}
}

// TestAloneAnswers: a node that is alone because it has no seed is the
// whole cloud, so a name it does not hold does not exist (NXDOMAIN); a node
// whose seeds did not answer cannot know, so it answers SERVFAIL.
func TestAloneAnswers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real UDP nodes")
	}
	t.Parallel()
	// A UDP port nobody answers on: bound here and never read.
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	tests := []struct {
		name      string
		bootstrap string
		want      int
		ready     bool
	}{
		{name: "no seed configured", want: dns.RcodeNameError, ready: true},
		{name: "seed does not answer", bootstrap: "bootstrap " + dead.LocalAddr().String(), want: dns.RcodeServerFailure, ready: false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reg := &nodeRegistry{newNode: newOverlayNode, nodes: map[string]*sharedNode{}}
			corefile := fmt.Sprintf("peername {\nlisten 127.0.0.1:0\ncloud alone-test\ntimeout 1s\n%s\n}", tc.bootstrap)
			inst := newTestInstance(t, reg, testIdentity(byte(60+i)), corefile)
			if err := inst.startup(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = inst.shutdown() }()
			// startup returned once the node's join ended.
			if got := inst.handler.Ready(); got != tc.ready {
				t.Fatalf("Ready() = %v, want %v", got, tc.ready)
			}
			m := new(dns.Msg)
			m.SetQuestion("nobody.0.peer.alt.", dns.TypeA)
			rec := dnstest.NewRecorder(&test.ResponseWriter{})
			code, _ := inst.handler.ServeDNS(context.Background(), rec, m)
			if code != tc.want {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[code], dns.RcodeToString[tc.want])
			}
		})
	}
}

// TestSearchErrVerdict: only a conclusive "not found" (or a node that never
// had a peer) maps to resolver.ErrNotFound; an inconclusive lookup, and a
// node alone after losing its peers, does not, whatever the node's seeds.
func TestSearchErrVerdict(t *testing.T) {
	t.Parallel()
	yes := func() bool { return true }
	lostPeers := fmt.Errorf("%w: %w", overlay.ErrInconclusive, overlay.ErrAlone)
	tests := []struct {
		name     string
		err      error
		alone    func() bool
		notFound bool
	}{
		{"conclusive", fmt.Errorf("x: %w", overlay.ErrNotFound), yes, true},
		{"withdrawn", overlay.ErrWithdrawn, yes, true},
		{"inconclusive", fmt.Errorf("x: %w", overlay.ErrInconclusive), yes, false},
		{"lost its peers, no seeds configured", lostPeers, yes, false},
		{"never had a peer, no seeds configured", overlay.ErrAlone, yes, true},
		{"seeds did not answer", overlay.ErrAlone, func() bool { return false }, false},
		{"deadline", overlay.ErrTimeout, yes, false},
	}
	for _, tc := range tests {
		got := searchErr(tc.err, tc.alone)
		if errors.Is(got, resolver.ErrNotFound) != tc.notFound || !errors.Is(got, tc.err) {
			t.Errorf("%s: searchErr(%v) = %v, want ErrNotFound=%v", tc.name, tc.err, got, tc.notFound)
		}
	}
}

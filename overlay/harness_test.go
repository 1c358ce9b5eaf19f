package overlay

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"net/netip"
	"testing"
	"time"

	"github.com/peername/peername/identity"
)

// testNet is a tiny in-test network: it shuttles Outbox() sends between cores
// with a fixed latency and fires their timers from a fake clock.
type testNet struct {
	t       testing.TB
	now     time.Time
	latency time.Duration
	nodes   []*testNode
	byAddr  map[netip.AddrPort]*testNode
	inq     []pkt
	// drop, when set, decides per datagram whether it is lost.
	drop func(from, to netip.AddrPort, data []byte) bool
	// tap, when set, sees every datagram sent.
	tap   func(from, to netip.AddrPort, data []byte)
	trace uint64 // FNV hash of every delivered datagram, for determinism checks
}

type pkt struct {
	at       time.Time
	from, to netip.AddrPort
	data     []byte
}

type testNode struct {
	core  *Core
	ident *identity.Identity
	addr  netip.AddrPort
	down  bool
	done  map[OpID]Completion
}

var epoch = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func newTestNet(t testing.TB) *testNet {
	return &testNet{t: t, now: epoch, latency: 10 * time.Millisecond, byAddr: map[netip.AddrPort]*testNode{}}
}

func testIdentity(i int) *identity.Identity {
	var seed [32]byte
	binary.BigEndian.PutUint64(seed[:], uint64(i)+1)
	seed[31] = 0x5a
	return identity.FromSeed(seed)
}

// testPuzzleBits is the identity puzzle difficulty of test cores: small, so
// that networks of hundreds of cores start at once, but not zero, so that
// every test handshake carries and checks a real puzzle.
const testPuzzleBits = 8

// add creates a node; mod may adjust its config.
func (n *testNet) add(mod func(*Config)) *testNode {
	i := len(n.nodes)
	// Test cores serve unless a test says otherwise: the tests of routing,
	// storage and abuse are about servers; reach_test.go runs ModeAuto and
	// ModeClient nodes.
	cfg := Config{Identity: testIdentity(i), Seed: uint64(i) * 7919, PuzzleBits: testPuzzleBits, Mode: ModeServer}
	if mod != nil {
		mod(&cfg)
	}
	c, err := NewCore(cfg)
	if err != nil {
		n.t.Fatalf("NewCore: %v", err)
	}
	addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 3540)
	tn := &testNode{core: c, ident: cfg.Identity, addr: addr, done: map[OpID]Completion{}}
	n.nodes = append(n.nodes, tn)
	n.byAddr[addr] = tn
	return tn
}

// collect moves a node's outbox into the network.
func (n *testNet) collect(tn *testNode) {
	sends, done := tn.core.Outbox()
	for _, c := range done {
		tn.done[c.Op] = c
	}
	if tn.down {
		return
	}
	for _, s := range sends {
		from := tn.addr
		if IsProbe(s.Data) {
			// From the dialer's probe socket, as the UDP driver sends it.
			from = netip.AddrPortFrom(from.Addr(), from.Port()+1)
		}
		if n.tap != nil {
			n.tap(from, s.To, s.Data)
		}
		if n.drop != nil && n.drop(from, s.To, s.Data) {
			continue
		}
		n.inq = append(n.inq, pkt{at: n.now.Add(n.latency), from: from, to: s.To, data: s.Data})
	}
}

// stepOnce processes the earliest event; it reports false if there is none before limit.
func (n *testNet) stepOnce(limit time.Time) bool {
	for _, tn := range n.nodes {
		n.collect(tn)
	}
	next := limit
	kind, idx := 0, -1
	for i, p := range n.inq {
		if p.at.Before(next) {
			next, kind, idx = p.at, 1, i
		}
	}
	for i, tn := range n.nodes {
		if tn.down {
			continue
		}
		if at := tn.core.NextTimer(); !at.IsZero() && at.Before(next) {
			next, kind, idx = at, 2, i
		}
	}
	if idx < 0 {
		return false
	}
	if next.After(n.now) {
		n.now = next
	}
	switch kind {
	case 1:
		p := n.inq[idx]
		n.inq = append(n.inq[:idx], n.inq[idx+1:]...)
		if dst := n.byAddr[p.to]; dst != nil && !dst.down {
			h := fnv.New64a()
			h.Write(p.data)
			n.trace = n.trace*31 + h.Sum64()
			dst.core.HandleDatagram(n.now, p.from, p.data)
			n.collect(dst)
		}
	case 2:
		tn := n.nodes[idx]
		tn.core.HandleTimer(n.now)
		n.collect(tn)
	}
	return true
}

// runFor advances the network by d.
func (n *testNet) runFor(d time.Duration) {
	limit := n.now.Add(d)
	for n.stepOnce(limit) {
	}
	n.now = limit
}

// wait runs until tn reports op (at most d of virtual time).
func (n *testNet) wait(tn *testNode, op OpID, d time.Duration) Completion {
	n.t.Helper()
	limit := n.now.Add(d)
	for {
		n.collect(tn)
		if c, ok := tn.done[op]; ok {
			return c
		}
		if !n.stepOnce(limit) {
			n.t.Fatalf("op %d of %s did not complete within %v", op, tn.addr, d)
		}
	}
}

// build makes a network of size nodes joined through node 0.
func (n *testNet) build(size int, mod func(*Config)) {
	n.t.Helper()
	first := n.add(mod)
	op := first.core.Join(n.now, nil)
	if c := n.wait(first, op, time.Second); c.Err != ErrAlone {
		n.t.Fatalf("first join: %v, want ErrAlone", c.Err)
	}
	for i := 1; i < size; i++ {
		tn := n.add(mod)
		// Like the drivers, retry a join that nobody answered (lossy tests).
		var err error
		for try := 0; try < 3; try++ {
			op := tn.core.Join(n.now, []netip.AddrPort{first.addr})
			if err = n.wait(tn, op, time.Minute).Err; err == nil {
				break
			}
		}
		if err != nil {
			n.t.Fatalf("join of node %d: %v", i, err)
		}
	}
	n.runFor(5 * time.Second)
}

func (tn *testNode) String() string { return fmt.Sprintf("node %s", tn.addr) }

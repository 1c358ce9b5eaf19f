package overlay

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/records"
)

func securedTemplate(t testing.TB, tn *testNode, classifier string) *records.Record {
	t.Helper()
	name, err := identity.NewSecuredName(classifier, tn.ident.PublicKey())
	if err != nil {
		t.Fatalf("NewSecuredName: %v", err)
	}
	return &records.Record{Name: name, Endpoints: []netip.Addr{tn.addr.Addr()}}
}

func TestJoinPublishResolve(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	n.build(12, nil)
	pub := n.nodes[3]
	op := pub.core.Publish(n.now, securedTemplate(t, pub, "alice"))
	c := n.wait(pub, op, time.Minute)
	if c.Err != nil || len(c.Records) != 1 {
		t.Fatalf("publish: err=%v records=%d", c.Err, len(c.Records))
	}
	if c.Stored < 5 {
		t.Errorf("publish stored on %d nodes, want >= 5", c.Stored)
	}
	signed := c.Records[0]
	for _, tn := range n.nodes {
		op := tn.core.Resolve(n.now, signed.Key(), SearchOptions{})
		got := n.wait(tn, op, time.Minute)
		if got.Err != nil || len(got.Records) != 1 {
			t.Fatalf("%s: resolve err=%v records=%d", tn, got.Err, len(got.Records))
		}
		if got.Records[0].Seq != signed.Seq || !got.Records[0].PublicKey.Equal(pub.ident.PublicKey()) {
			t.Errorf("%s: resolved seq %d, want %d", tn, got.Records[0].Seq, signed.Seq)
		}
		if tn != pub && (got.Path.Hops < 1 || got.Path.Asked < 1 || len(got.Path.Nodes) != got.Path.Hops) {
			t.Errorf("%s: path %+v", tn, got.Path)
		}
	}
	// An unknown key is not found.
	op = n.nodes[5].core.Resolve(n.now, identity.Key{1, 2, 3}, SearchOptions{})
	if got := n.wait(n.nodes[5], op, time.Minute); !errors.Is(got.Err, ErrNotFound) {
		t.Errorf("unknown key: err=%v, want ErrNotFound", got.Err)
	}
	for _, tn := range n.nodes {
		st := tn.core.Stats()
		if !st.Joined && tn != n.nodes[0] || st.Alone {
			t.Errorf("%s: stats %+v", tn, st)
		}
	}
}

func TestRepublishAndWithdraw(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	n.build(8, func(c *Config) { c.RecordLifetime = 10 * time.Minute })
	pub := n.nodes[2]
	tmpl := securedTemplate(t, pub, "bob")
	first := n.wait(pub, pub.core.Publish(n.now, tmpl), time.Minute).Records[0]
	// After half the lifetime (plus a tick) the owner republished with a higher Seq.
	n.runFor(6 * time.Minute)
	cur := pub.core.Published(tmpl.Name)
	if cur == nil || cur.Seq <= first.Seq {
		t.Fatalf("republish: current %v, first seq %d", cur, first.Seq)
	}
	// Past the first record's expiry, the name still resolves, to the new record.
	n.runFor(5 * time.Minute)
	r := n.nodes[6]
	got := n.wait(r, r.core.Resolve(n.now, first.Key(), SearchOptions{}), time.Minute)
	if got.Err != nil || got.Records[0].Seq != pub.core.Published(tmpl.Name).Seq {
		t.Fatalf("resolve after republish: err=%v recs=%v", got.Err, got.Records)
	}
	// Withdraw: the tombstone replaces the record everywhere.
	w := n.wait(pub, pub.core.Unpublish(n.now, tmpl.Name), time.Minute)
	if w.Err != nil || !w.Records[0].Withdrawn {
		t.Fatalf("unpublish: %+v", w)
	}
	got = n.wait(r, r.core.Resolve(n.now, first.Key(), SearchOptions{}), time.Minute)
	if !errors.Is(got.Err, ErrWithdrawn) || !errors.Is(got.Err, ErrNotFound) || len(got.Records) != 0 {
		t.Fatalf("resolve withdrawn: err=%v records=%d", got.Err, len(got.Records))
	}
	if pub.core.Published(tmpl.Name) != nil {
		t.Error("still published after Unpublish")
	}
	if c := n.wait(pub, pub.core.Unpublish(n.now, tmpl.Name), time.Minute); !errors.Is(c.Err, ErrNotOwned) {
		t.Errorf("second unpublish: %v", c.Err)
	}
}

func TestUnsecuredSeveralPublishers(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	n.build(8, func(c *Config) { c.MaxPublishers = 2 })
	name, err := identity.NewUnsecuredName("printer")
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{1, 2, 3} {
		tn := n.nodes[i]
		c := n.wait(tn, tn.core.Publish(n.now, &records.Record{Name: name, Endpoints: []netip.Addr{tn.addr.Addr()}}), time.Minute)
		if c.Err != nil {
			t.Fatalf("publish %d: %v", i, c.Err)
		}
		n.runFor(2 * time.Second) // later publishers have later issue times
	}
	r := n.nodes[7]
	got := n.wait(r, r.core.Resolve(n.now, name.Key(), SearchOptions{}), time.Minute)
	if got.Err != nil {
		t.Fatalf("resolve: %v", got.Err)
	}
	// MaxPublishers=2 keeps the two latest publishers, newest first.
	if len(got.Records) != 2 || !got.Records[0].PublicKey.Equal(n.nodes[3].ident.PublicKey()) ||
		!got.Records[1].PublicKey.Equal(n.nodes[2].ident.PublicKey()) {
		t.Fatalf("got %d records", len(got.Records))
	}
	for _, tn := range n.nodes {
		count := 0
		tn.core.ForEachRecord(func(rec *records.Record) bool {
			if rec.Key() == name.Key() && tn.core.ID() != n.nodes[1].core.ID() {
				count++
			}
			return true
		})
		if count > 2 {
			t.Errorf("%s holds %d publishers, bound 2", tn, count)
		}
	}
}

func TestNearestAndRange(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	n.build(10, nil)
	var keys []identity.Key
	for i := 0; i < 6; i++ {
		tn := n.nodes[i]
		tmpl := securedTemplate(t, tn, "host")
		c := n.wait(tn, tn.core.Publish(n.now, tmpl), time.Minute)
		if c.Err != nil {
			t.Fatal(c.Err)
		}
		keys = append(keys, c.Records[0].Key())
	}
	target := keys[0]
	target[31] ^= 1
	q := n.nodes[9]
	got := n.wait(q, q.core.Nearest(n.now, target, 3, SearchOptions{}), time.Minute)
	if got.Err != nil || len(got.Keys) != 3 || got.Keys[0] != keys[0] {
		t.Fatalf("nearest: err=%v keys=%v", got.Err, got.Keys)
	}
	for i := 1; i < len(got.Keys); i++ {
		if closer(got.Keys[i], got.Keys[i-1], target) {
			t.Errorf("nearest not sorted by distance")
		}
	}
	lo, hi := keys[1], keys[1]
	lo[31], hi[31] = 0, 0xff
	rg := n.wait(q, q.core.Range(n.now, lo, hi, SearchOptions{}), time.Minute)
	if rg.Err != nil || len(rg.Keys) != 1 || rg.Keys[0] != keys[1] {
		t.Fatalf("range: err=%v keys=%v", rg.Err, rg.Keys)
	}
	var all, none identity.Key
	for i := range all {
		all[i] = 0xff
	}
	rg = n.wait(q, q.core.Range(n.now, none, all, SearchOptions{}), time.Minute)
	if rg.Err != nil || len(rg.Keys) != len(keys) {
		t.Fatalf("full range: err=%v got %d keys, want %d", rg.Err, len(rg.Keys), len(keys))
	}
	for i := 1; i < len(rg.Keys); i++ {
		if compareKeys(rg.Keys[i-1], rg.Keys[i]) >= 0 {
			t.Errorf("range keys not ascending")
		}
	}
}

func TestWrongCloudIgnored(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	n.build(3, nil)
	lan := n.add(func(c *Config) { c.Cloud = "lan" })
	c := n.wait(lan, lan.core.Join(n.now, []netip.AddrPort{n.nodes[0].addr}), time.Minute)
	if !errors.Is(c.Err, ErrAlone) {
		t.Fatalf("join across clouds: %v, want ErrAlone", c.Err)
	}
	if st := n.nodes[0].core.Stats(); st.DroppedCloud == 0 || st.RoutingTableSize != 2 {
		t.Errorf("global node: dropped-cloud=%d table=%d", st.DroppedCloud, st.RoutingTableSize)
	}
}

func TestSilentFailureAndLeave(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	n.build(16, nil)
	pub := n.nodes[4]
	c := n.wait(pub, pub.core.Publish(n.now, securedTemplate(t, pub, "carol")), time.Minute)
	key := c.Records[0].Key()
	// A third of the other nodes fail silently.
	for _, i := range []int{1, 6, 7, 9, 12} {
		n.nodes[i].down = true
	}
	// Two leave gracefully.
	for _, i := range []int{2, 3} {
		n.nodes[i].core.Leave(n.now)
		n.collect(n.nodes[i])
		if c := n.nodes[i].core.Resolve(n.now, key, SearchOptions{}); n.wait(n.nodes[i], c, time.Second).Err != ErrLeft {
			t.Errorf("resolve after leave did not report ErrLeft")
		}
	}
	n.runFor(time.Second)
	for _, tn := range n.nodes {
		if tn.down || tn.core.left {
			continue
		}
		for _, i := range []int{2, 3} {
			if tn.core.rt.contains(n.nodes[i].core.ID()) {
				t.Errorf("%s still routes to the node that left", tn)
			}
		}
	}
	for _, tn := range n.nodes {
		if tn.down || tn == n.nodes[2] || tn == n.nodes[3] {
			continue
		}
		got := n.wait(tn, tn.core.Resolve(n.now, key, SearchOptions{}), time.Minute)
		if got.Err != nil {
			t.Errorf("%s: resolve after failures: %v (path %+v)", tn, got.Err, got.Path)
		}
	}
	// After a few refresh rounds the dead nodes are evicted from live tables.
	n.runFor(40 * time.Minute)
	dead := map[identity.Key]bool{}
	for _, i := range []int{1, 6, 7, 9, 12} {
		dead[n.nodes[i].core.ID()] = true
	}
	for _, tn := range n.nodes {
		if tn.down || tn.core.left {
			continue
		}
		for _, b := range tn.core.rt.buckets {
			for _, ct := range b.live {
				if dead[ct.id] {
					t.Errorf("%s still has dead contact %s after 40 min", tn, ct.id)
				}
			}
		}
	}
}

func TestJoinRetriesDownSeed(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	n.build(3, nil)
	seed := n.nodes[0]
	seed.down = true
	late := n.add(nil)
	if c := n.wait(late, late.core.Join(n.now, []netip.AddrPort{seed.addr}), time.Minute); !errors.Is(c.Err, ErrAlone) {
		t.Fatalf("join with the seed down: %v, want ErrAlone", c.Err)
	}
	if st := late.core.Stats(); !st.Alone || st.Joined {
		t.Errorf("stats after failed join: %+v", st)
	}
	seed.down = false
	if c := n.wait(late, late.core.Join(n.now, []netip.AddrPort{seed.addr}), time.Minute); c.Err != nil {
		t.Fatalf("join once the seed is back: %v", c.Err)
	}
	if st := late.core.Stats(); st.Alone || !st.Joined || st.RoutingTableSize < 3 {
		t.Errorf("stats after join: %+v", st)
	}
}

func TestCanReachSkipsUnreachable(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	n.build(6, nil)
	// A node that "cannot reach" odd last octets never sends to them.
	v := n.add(func(c *Config) {
		c.CanReach = func(a netip.AddrPort) bool { return a.Addr().As4()[3]%2 == 0 }
	})
	odd := func(a netip.AddrPort) bool { return a.Addr().As4()[3]%2 == 1 }
	// The odd nodes and v really cannot talk, in either direction.
	n.drop = func(from, to netip.AddrPort, _ []byte) bool {
		return from == v.addr && odd(to) || to == v.addr && odd(from)
	}
	n.tap = func(from, to netip.AddrPort, _ []byte) {
		if from == v.addr && odd(to) {
			t.Errorf("sent to unreachable %s", to)
		}
	}
	if c := n.wait(v, v.core.Join(n.now, []netip.AddrPort{n.nodes[1].addr, n.nodes[0].addr}), time.Minute); c.Err != nil {
		t.Fatalf("join: %v", c.Err)
	}
	n.runFor(time.Minute)
	if st := v.core.Stats(); st.RoutingTableSize != 3 {
		t.Errorf("routing table of %d, want the 3 reachable nodes", st.RoutingTableSize)
	}
}

func TestRestartedPeerIsReachedAgainWithoutTimeout(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	n.build(2, nil)
	a, b := n.nodes[0], n.nodes[1]
	// b restarts: same identity and address, no sessions.
	fresh, err := NewCore(Config{Identity: b.ident, Seed: 99, PuzzleBits: testPuzzleBits, Mode: ModeServer})
	if err != nil {
		t.Fatal(err)
	}
	b.core = fresh
	if c := n.wait(b, b.core.Join(n.now, nil), time.Second); !errors.Is(c.Err, ErrAlone) {
		t.Fatalf("restarted join: %v", c.Err)
	}
	started := n.now
	before := a.core.Stats().HandshakesStarted
	c := n.wait(a, a.core.Resolve(n.now, identity.Key{7}, SearchOptions{}), time.Minute)
	if !errors.Is(c.Err, ErrNotFound) || c.Path.Timeouts != 0 {
		t.Fatalf("resolve via restarted peer: err=%v path=%+v", c.Err, c.Path)
	}
	if took := n.now.Sub(started); took >= DefaultRequestTimeout {
		t.Errorf("took %v: waited for a timeout instead of re-handshaking", took)
	}
	if a.core.Stats().HandshakesStarted != before+1 {
		t.Errorf("no new handshake after NO_SESSION")
	}
}

func TestSoftTimeoutRoutesAroundDeadContacts(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	n.build(12, nil)
	pub, q := n.nodes[0], n.nodes[11]
	key := n.wait(pub, pub.core.Publish(n.now, securedTemplate(t, pub, "soft")), time.Minute).Records[0].Key()
	// The querier's Alpha closest contacts to the key die silently (every node
	// holds a replica here, so the record survives).
	for _, ct := range q.core.rt.closest(nil, key, DefaultAlpha, q.core.ID()) {
		for _, tn := range n.nodes {
			if tn.core.ID() == ct.ID {
				tn.down = true
			}
		}
	}
	start := n.now
	c := n.wait(q, q.core.Resolve(n.now, key, SearchOptions{}), time.Minute)
	if c.Err != nil {
		t.Fatalf("resolve: %v", c.Err)
	}
	if took := n.now.Sub(start); took >= DefaultRequestTimeout {
		t.Errorf("resolve took %v: waited for hard timeouts of dead contacts", took)
	}
}

func TestJoinWithLostAnswersIsRetriedByMaintenance(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	n.build(3, nil)
	seed := n.nodes[0]
	late := n.add(nil)
	// Handshakes get through, but every DATA answer from the seed is lost.
	n.drop = func(from, to netip.AddrPort, data []byte) bool {
		return from == seed.addr && to == late.addr && data[1] == ptData
	}
	c := n.wait(late, late.core.Join(n.now, []netip.AddrPort{seed.addr}), time.Minute)
	if !errors.Is(c.Err, ErrAlone) {
		t.Fatalf("join with every answer lost: %v, want ErrAlone", c.Err)
	}
	if st := late.core.Stats(); st.Joined {
		t.Fatalf("joined without an answer: %+v", st)
	}
	n.drop = nil
	n.runFor(2 * DefaultTickInterval)
	if st := late.core.Stats(); !st.Joined || st.RoutingTableSize != 3 {
		t.Fatalf("after maintenance: joined=%v table=%d", st.Joined, st.RoutingTableSize)
	}
}

// puzzleShort returns a harness node index whose testPuzzleBits-bit
// solution falls short of bits (almost every key's does).
func puzzleShort(t *testing.T, from, bits int) int {
	t.Helper()
	for i := from; i < from+64; i++ {
		pub := testIdentity(i).PublicKey()
		n, err := SolvePuzzle(context.Background(), pub, testPuzzleBits)
		if err != nil {
			t.Fatal(err)
		}
		if !checkPuzzle(pub, n, bits) {
			return i
		}
	}
	t.Fatalf("no key in %d..%d with a %d-bit solution short of %d bits", from, from+64, testPuzzleBits, bits)
	return 0
}

// TestPuzzleRefusedInHandshake: a node requiring 16 bits refuses the HELLO
// and the HELLO_ACK of a peer whose certificate carries only an 8-bit
// solution, and accepts a peer that solved 16 bits.
func TestPuzzleRefusedInHandshake(t *testing.T) {
	t.Parallel()
	const hard = 16
	n := newTestNet(t)
	strict := n.add(func(c *Config) { c.PuzzleBits = hard })
	if c := n.wait(strict, strict.core.Join(n.now, nil), time.Second); !errors.Is(c.Err, ErrAlone) {
		t.Fatalf("first join: %v", c.Err)
	}
	// Node 1 (testPuzzleBits) must be a key whose 8-bit solution is short of 16 bits.
	if i := puzzleShort(t, 1, hard); i != 1 {
		t.Fatalf("test key 1 solves %d bits by chance; pick another", hard)
	}
	weak := n.add(nil)

	// weak -> strict: the HELLO is refused.
	c := n.wait(weak, weak.core.Join(n.now, []netip.AddrPort{strict.addr}), time.Minute)
	if !errors.Is(c.Err, ErrAlone) {
		t.Fatalf("join with a weak puzzle: %v, want ErrAlone", c.Err)
	}
	st := strict.core.Stats()
	if st.DroppedPuzzle == 0 || st.DroppedAuth < st.DroppedPuzzle || st.HandshakesCompleted != 0 || st.RoutingTableSize != 0 {
		t.Fatalf("strict node after a weak HELLO: %+v", st)
	}
	helloDrops := st.DroppedPuzzle

	// strict -> weak: weak accepts the strict certificate (16 >= 8 bits), but
	// strict refuses weak's HELLO_ACK.
	c = n.wait(strict, strict.core.Join(n.now, []netip.AddrPort{weak.addr}), time.Minute)
	if !errors.Is(c.Err, ErrAlone) {
		t.Fatalf("strict join through a weak node: %v, want ErrAlone", c.Err)
	}
	if st := strict.core.Stats(); st.DroppedPuzzle <= helloDrops || st.HandshakesCompleted != 0 || st.RoutingTableSize != 0 {
		t.Fatalf("strict node after a weak HELLO_ACK: %+v", st)
	}
	if st := weak.core.Stats(); st.DroppedPuzzle != 0 {
		t.Fatalf("weak node refused a certificate that exceeds its puzzle: %+v", st)
	}

	// A peer that solved the cloud's 16 bits is accepted.
	good := n.add(func(c *Config) { c.PuzzleBits = hard })
	c = n.wait(good, good.core.Join(n.now, []netip.AddrPort{strict.addr}), time.Minute)
	if c.Err != nil {
		t.Fatalf("join with a 16-bit puzzle: %v", c.Err)
	}
	if !strict.core.rt.contains(good.core.ID()) || !good.core.rt.contains(strict.core.ID()) {
		t.Fatalf("strict and good did not add each other")
	}
}

// TestPuzzleNonceTampered: the same signed certificate with its puzzle nonce
// changed to a non-solution is refused before any signature check.
func TestPuzzleNonceTampered(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	a := n.add(nil)
	b := n.add(nil)
	good := mustHello(t, b)
	bad := bytes.Clone(good)
	pub := b.ident.PublicKey()
	nonceAt := headerLen + 4 + 128
	for x := uint64(0); ; x++ {
		if !checkPuzzle(pub, x, testPuzzleBits) {
			binary.BigEndian.PutUint64(bad[nonceAt:], x)
			break
		}
	}
	from := netip.MustParseAddrPort("192.0.2.7:3540")
	a.core.HandleDatagram(n.now, from, bad)
	if sends, _ := a.core.Outbox(); len(sends) != 0 {
		t.Fatalf("answered a HELLO with an unsolved puzzle")
	}
	if st := a.core.Stats(); st.DroppedPuzzle != 1 || st.DroppedAuth != 1 || st.HalfOpenSessions != 0 {
		t.Fatalf("after a tampered HELLO: %+v", st)
	}
	a.core.HandleDatagram(n.now, from, good)
	if sends, _ := a.core.Outbox(); len(sends) != 1 || len(sends[0].Data) != helloAckLn {
		t.Fatalf("the untampered HELLO got %d answers", len(sends))
	}
	if st := a.core.Stats(); st.DroppedPuzzle != 1 || st.HalfOpenSessions != 1 {
		t.Fatalf("after the good HELLO: %+v", st)
	}
}

// TestVerifyCertPuzzle: the certificate check reports a short puzzle with
// ErrPuzzle, and the difficulty is the receiver's.
func TestVerifyCertPuzzle(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	b := n.add(nil)
	hl := parseHello(mustHello(t, b), ptHello)
	pub := b.ident.PublicKey()
	got := newPuzzleInput(pub).zeroBits(hl.puzzle)
	for _, tc := range []struct {
		bits int
		ok   bool
	}{{-1, true}, {1, true}, {testPuzzleBits, true}, {got, true}, {got + 1, false}, {MaxPuzzleBits, got >= MaxPuzzleBits}} {
		cfg := Config{Identity: testIdentity(50), PuzzleBits: testPuzzleBits}
		if err := cfg.ApplyDefaults(); err != nil {
			t.Fatal(err)
		}
		hk, err := newHandshakeKeys(&cfg)
		if err != nil {
			t.Fatal(err)
		}
		hk.puzzleBits = tc.bits // the receiver's difficulty (its own solution is irrelevant here)
		id, err := hk.verifyCert(&hl)
		switch {
		case tc.ok && (err != nil || id != b.core.ID()):
			t.Errorf("receiver at %d bits: %v, %s; want %s", tc.bits, err, id, b.core.ID())
		case !tc.ok && !errors.Is(err, ErrPuzzle):
			t.Errorf("receiver at %d bits: err = %v, want ErrPuzzle", tc.bits, err)
		case !tc.ok && hk.puzzleDrop != 1:
			t.Errorf("receiver at %d bits: %d puzzle drops counted", tc.bits, hk.puzzleDrop)
		}
	}
}

// TestPuzzleConfig: the default difficulty, a precomputed nonce used as given,
// and out-of-range difficulties refused.
func TestPuzzleConfig(t *testing.T) {
	t.Parallel()
	id := testIdentity(60)
	pub := id.PublicKey()
	certNonce := func(c *Core) uint64 { return binary.BigEndian.Uint64(c.hk.cert[128:]) }

	// A precomputed solution is used as given (here the second-smallest one,
	// which NewCore would never find itself).
	first, err := SolvePuzzle(context.Background(), pub, 12)
	if err != nil {
		t.Fatal(err)
	}
	in := newPuzzleInput(pub)
	second := first + 1
	for in.zeroBits(second) < 12 {
		second++
	}
	c, err := NewCore(Config{Identity: id, PuzzleBits: 12, PuzzleNonce: second})
	if err != nil {
		t.Fatal(err)
	}
	if certNonce(c) != second {
		t.Errorf("certificate nonce %d, want the given %d", certNonce(c), second)
	}
	// A nonce that is no solution is replaced by NewCore's own.
	c, err = NewCore(Config{Identity: id, PuzzleBits: 12, PuzzleNonce: first + 1})
	if err != nil {
		t.Fatal(err)
	}
	if certNonce(c) != first {
		t.Errorf("certificate nonce %d, want the solved %d", certNonce(c), first)
	}
	// No puzzle: nonce 0, and peers are not checked.
	c, err = NewCore(Config{Identity: id, PuzzleBits: -1})
	if err != nil || c.cfg.PuzzleBits != -1 || certNonce(c) != 0 {
		t.Errorf("no puzzle: %v, bits %d, nonce %d", err, c.cfg.PuzzleBits, certNonce(c))
	}
	for _, bits := range []int{MaxPuzzleBits + 1, 64} {
		if _, err := NewCore(Config{Identity: id, PuzzleBits: bits}); !errors.Is(err, ErrBadConfig) {
			t.Errorf("PuzzleBits %d: err = %v, want ErrBadConfig", bits, err)
		}
	}
	// A bare core takes PuzzleBits as given (the Node picks the default).
	c, err = NewCore(Config{Identity: id})
	if err != nil || c.cfg.PuzzleBits != 0 || certNonce(c) != 0 {
		t.Errorf("zero PuzzleBits: %v, bits %d, nonce %d", err, c.cfg.PuzzleBits, certNonce(c))
	}
	if testing.Short() {
		return
	}
	// NewCore solves DefaultPuzzleBits itself (~0.2 s).
	c, err = NewCore(Config{Identity: id, PuzzleBits: DefaultPuzzleBits})
	if err != nil {
		t.Fatal(err)
	}
	if !checkPuzzle(pub, certNonce(c), DefaultPuzzleBits) {
		t.Errorf("nonce %d does not solve %d bits", certNonce(c), DefaultPuzzleBits)
	}
}

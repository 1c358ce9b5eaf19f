package overlay

import (
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
	fresh, err := NewCore(Config{Identity: b.ident, Seed: 99})
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

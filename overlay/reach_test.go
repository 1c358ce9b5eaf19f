package overlay

import (
	"net/netip"
	"testing"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/records"
)

// natNet is a test network with public addresses (each node in its own
// /24) in which some nodes sit behind an endpoint-dependent filter: a
// datagram reaches such a node only from an address it sent to in the last
// 30 s, as behind a port-restricted NAT.
type natNet struct {
	*testNet
	natted map[netip.AddrPort]bool
	sent   map[[2]netip.AddrPort]time.Time
}

func newNATNet(t *testing.T) *natNet {
	n := &natNet{testNet: newTestNet(t), natted: map[netip.AddrPort]bool{}, sent: map[[2]netip.AddrPort]time.Time{}}
	n.tap = func(from, to netip.AddrPort, _ []byte) { n.sent[[2]netip.AddrPort{from, to}] = n.now }
	n.drop = func(from, to netip.AddrPort, _ []byte) bool {
		if !n.natted[to] {
			return false
		}
		at, ok := n.sent[[2]netip.AddrPort{to, from}]
		return !ok || n.now.Sub(at) > 30*time.Second
	}
	return n
}

// publicAddr is node i's address: 44.x.y.1, a global address in a /24 of its own.
func publicAddr(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{44, byte(i >> 8), byte(i), 1}), 3540)
}

// join adds a node in mode m (behind the filter if natted) and joins it
// through node 0.
func (n *natNet) join(m Mode, natted bool) *testNode {
	n.t.Helper()
	tn := n.add(func(c *Config) { c.Mode, c.K, c.Replication = m, 8, 8 })
	delete(n.byAddr, tn.addr)
	tn.addr = publicAddr(len(n.nodes) - 1)
	n.byAddr[tn.addr] = tn
	n.natted[tn.addr] = natted
	var seeds []netip.AddrPort
	if len(n.nodes) > 1 {
		seeds = []netip.AddrPort{n.nodes[0].addr}
	}
	op := tn.core.Join(n.now, seeds)
	if c := n.wait(tn, op, time.Minute); c.Err != nil && len(seeds) > 0 {
		n.t.Fatalf("join of %s: %v", tn, c.Err)
	}
	return tn
}

func (n *natNet) byID(id identity.Key) *testNode {
	for _, tn := range n.nodes {
		if tn.core.ID() == id {
			return tn
		}
	}
	return nil
}

// inTables returns how many other nodes hold tn in their routing tables.
func (n *natNet) inTables(tn *testNode) int {
	k := 0
	for _, o := range n.nodes {
		if o != tn && o.core.rt.contains(tn.core.ID()) {
			k++
		}
	}
	return k
}

// foreignRecords counts the records tn holds for other publishers.
func foreignRecords(tn *testNode) int {
	k := 0
	tn.core.ForEachRecord(func(r *records.Record) bool {
		if !r.PublicKey.Equal(tn.ident.PublicKey()) {
			k++
		}
		return true
	})
	return k
}

// untilRound steps the network until tn is in a detection round with at
// least want relays asked.
func (n *natNet) untilRound(tn *testNode, want int) {
	n.t.Helper()
	limit := n.now.Add(2 * time.Minute)
	for !(tn.core.reach.inRound && len(tn.core.reach.asks) >= want) {
		if !n.stepOnce(limit) {
			n.t.Fatalf("%s started no round with %d relays", tn, want)
		}
	}
}

func TestReachAutoPublicNodesServe(t *testing.T) {
	t.Parallel()
	n := newNATNet(t)
	for range 48 {
		n.join(ModeAuto, false)
	}
	n.runFor(3 * time.Minute)
	public := 0
	for _, tn := range n.nodes {
		r := tn.core.Reach()
		if r.Reachability == ReachUnreachable || r.Client {
			t.Errorf("%s: %+v, want serving", tn, r)
		}
		if r.Reachability == ReachPublic {
			public++
		}
		if r.External != tn.addr {
			t.Errorf("%s: external %v, want %v", tn, r.External, tn.addr)
		}
		if n.inTables(tn) == 0 {
			t.Errorf("%s is in no routing table", tn)
		}
	}
	// In a cloud this small every node has talked to most others, whose
	// probes prove nothing; most still meet two they never sent to.
	if public < len(n.nodes)*3/4 {
		t.Errorf("%d of %d nodes found public, want >= 3/4", public, len(n.nodes))
	}
}

func TestReachBehindNATRunsAsClient(t *testing.T) {
	t.Parallel()
	n := newNATNet(t)
	for range 48 {
		n.join(ModeAuto, false)
	}
	var natted []*testNode
	for range 4 {
		natted = append(natted, n.join(ModeAuto, true))
	}
	n.runFor(time.Minute)
	for _, tn := range natted {
		r := tn.core.Reach()
		if r.Reachability != ReachUnreachable || !r.Client {
			t.Errorf("%s behind NAT: %+v, want unreachable and a client", tn, r)
		}
	}
	// Every node publishes; every name resolves everywhere, and no
	// natted node holds records for others.
	var keys []identity.Key
	for _, tn := range n.nodes {
		op := tn.core.Publish(n.now, securedTemplate(t, tn, "host"))
		c := n.wait(tn, op, time.Minute)
		if c.Err != nil || c.Stored < 4 {
			t.Fatalf("%s: publish err=%v stored=%d", tn, c.Err, c.Stored)
		}
		keys = append(keys, c.Records[0].Key())
	}
	for _, tn := range n.nodes {
		for i, k := range keys {
			c := n.wait(tn, tn.core.Resolve(n.now, k, SearchOptions{}), time.Minute)
			if c.Err != nil || len(c.Records) != 1 {
				t.Errorf("%s: resolve of %s's name: err=%v records=%d", tn, n.nodes[i], c.Err, len(c.Records))
			}
		}
	}
	for _, tn := range natted {
		// A peer that lost its session with the node before it turned
		// client, and so missed its MODE, evicts it at the first request
		// that times out (as before this mode existed); the publishes and
		// lookups above are that traffic.
		if k := n.inTables(tn); k != 0 {
			t.Errorf("%s behind NAT is in %d routing tables", tn, k)
		}
		if k := foreignRecords(tn); k != 0 {
			t.Errorf("%s behind NAT holds %d records of others", tn, k)
		}
		if tn.core.Reach().Keepalives == 0 {
			t.Errorf("%s behind NAT sent no keepalives", tn)
		}
	}
}

func TestClientModeNeverInTables(t *testing.T) {
	t.Parallel()
	n := newNATNet(t)
	for range 40 {
		n.join(ModeAuto, false)
	}
	clients := []*testNode{n.join(ModeClient, false), n.join(ModeClient, false)}
	for _, cl := range clients {
		op := cl.core.Publish(n.now, securedTemplate(t, cl, "laptop"))
		c := n.wait(cl, op, time.Minute)
		if c.Err != nil || c.Stored < 4 {
			t.Fatalf("%s: publish err=%v stored=%d", cl, c.Err, c.Stored)
		}
		// Lookups from everywhere (they would meet the client if it were
		// a candidate), then the client's record is checked.
		for _, tn := range n.nodes {
			got := n.wait(tn, tn.core.Resolve(n.now, c.Records[0].Key(), SearchOptions{}), time.Minute)
			if got.Err != nil || len(got.Records) != 1 {
				t.Errorf("%s: resolve of %s's name: err=%v records=%d", tn, cl, got.Err, len(got.Records))
			}
		}
		holders := 0
		for _, tn := range n.nodes {
			if tn != cl && tn.core.store.get(c.Records[0].Key(), n.now.UnixNano()) != nil {
				holders++
			}
		}
		if holders < 4 {
			t.Errorf("%s's record is held by %d servers, want >= 4", cl, holders)
		}
	}
	n.runFor(2 * time.Minute)
	for _, cl := range clients {
		if k := n.inTables(cl); k != 0 {
			t.Errorf("%s in mode client is in %d routing tables", cl, k)
		}
		if r := cl.core.Reach(); !r.Client {
			t.Errorf("%s: %+v, want a client", cl, r)
		}
		if k := foreignRecords(cl); k != 0 {
			t.Errorf("%s in mode client holds %d records of others", cl, k)
		}
	}
}

// A node behind NAT is dialled back only by nodes it cannot hear; hostile
// nodes that know round tokens (as relays, or as dialers an honest relay
// chose) forge probes from addresses the node never sent to. One hostile
// node, from one /24, cannot make it reachable; two colluding /24s can,
// which shows the test would see the rule fail.
func TestReachLoneHostileDialBackClaimer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		prefixes   int
		wantClient bool
	}{
		{"one hostile node", 1, true},
		{"two colluding prefixes", 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := newNATNet(t)
			for range 40 {
				n.join(ModeAuto, false)
			}
			a := n.join(ModeAuto, true)
			n.runFor(time.Minute)
			if r := a.core.Reach(); !r.Client {
				t.Fatalf("before the forgery: %+v, want a client", r)
			}
			a.core.CheckReachability(n.now)
			n.untilRound(a, 2)
			asks := a.core.reach.asks
			for i := range 2 {
				// The hostile node of prefix p forges the probe of ask i
				// from a second address in its /24 (never sent to).
				h := n.byID(asks[min(i, tc.prefixes-1)].relay)
				from := netip.AddrPortFrom(netip.AddrFrom4(h.addr.Addr().As4()), 9999)
				b := from.Addr().As4()
				b[3] = 77
				from = netip.AddrPortFrom(netip.AddrFrom4(b), 9999)
				pkt := appendHeader(nil, ptProbe, a.core.hk.tag)
				pkt = append(pkt, asks[i].token[:]...)
				a.core.HandleDatagram(n.now, from, pkt)
			}
			n.runFor(time.Minute)
			r := a.core.Reach()
			if r.Client != tc.wantClient {
				t.Errorf("after forged probes from %d prefix(es): %+v, want client=%v", tc.prefixes, r, tc.wantClient)
			}
			if tc.wantClient && n.inTables(a) != 0 {
				t.Errorf("%s in %d routing tables after one hostile node's forgery", a, n.inTables(a))
			}
		})
	}
}

// A relay that lies about the address it sees cannot change the external
// address the node believes; a majority of liars in other groups can.
func TestReachLyingObserver(t *testing.T) {
	t.Parallel()
	fake := netip.MustParseAddrPort("45.1.2.3:4000")
	for _, tc := range []struct {
		name  string
		liars int
		want  func(tn *testNode) netip.AddrPort
	}{
		{"one liar", 1, func(tn *testNode) netip.AddrPort { return tn.addr }},
		{"three liars of four", 3, func(*testNode) netip.AddrPort { return fake }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := newNATNet(t)
			for range 40 {
				n.join(ModeAuto, false)
			}
			a := n.nodes[10]
			n.runFor(time.Minute)
			if got := a.core.Reach().External; got != a.addr {
				t.Fatalf("before the lies: external %v, want %v", got, a.addr)
			}
			a.core.CheckReachability(n.now)
			n.untilRound(a, 4)
			for i := range tc.liars {
				ask := a.core.reach.asks[i]
				s := a.core.sess.byPeer[ask.relay]
				a.core.onReachMsg(n.now.UnixNano(), s, &msg{typ: mDialAck, reqID: ask.reqID, n: dialDispatched, addr: fake})
			}
			n.runFor(10 * time.Second)
			if got, want := a.core.Reach().External, tc.want(a); got != want {
				t.Errorf("%d liar(s): external %v, want %v", tc.liars, got, want)
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Mode
		err  bool
	}{
		{"auto", ModeAuto, false}, {"SERVER", ModeServer, false}, {"client", ModeClient, false},
		{"", ModeAuto, false}, {"relay", ModeAuto, true},
	} {
		got, err := ParseMode(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseMode(%q) = %v, %v", tc.in, got, err)
		}
		if err == nil && tc.in != "" {
			if back, _ := ParseMode(got.String()); back != got {
				t.Errorf("%v does not round-trip", got)
			}
		}
	}
	if _, err := NewCore(Config{Identity: testIdentity(1), Mode: ModeClient + 1}); err == nil {
		t.Error("NewCore accepted an unknown mode")
	}
}

// In a cloud of a few nodes a NATed node talks to every one of them while it
// joins, so no dialer is one it never sent to. Dialers send their probes from
// a port of their own (IsProbe), which it never sent to: its NAT drops them
// all the same, and it turns client within one round or two.
func TestReachSmallCloudBehindNAT(t *testing.T) {
	t.Parallel()
	n := newNATNet(t)
	for range 6 {
		n.join(ModeAuto, false)
	}
	a := n.join(ModeAuto, true)
	for _, tn := range n.nodes[1 : len(n.nodes)-1] {
		if !a.core.reach.solicited(tn.addr.Addr(), n.now.UnixNano()) {
			t.Fatalf("%s has not sent to %s: the test needs a cloud it talked to whole", a, tn)
		}
	}
	joined := n.now
	limit := joined.Add(time.Minute)
	for !a.core.Reach().Client && n.stepOnce(limit) {
	}
	r := a.core.Reach()
	if r.Reachability != ReachUnreachable || !r.Client {
		t.Fatalf("%s behind NAT in a cloud of %d: %+v a minute after joining, want unreachable and a client", a, len(n.nodes), r)
	}
	t.Logf("client %v after joining", n.now.Sub(joined))
	n.runFor(30 * time.Second)
	if k := n.inTables(a); k != 0 {
		t.Errorf("%s behind NAT is in %d routing tables", a, k)
	}
	for _, tn := range n.nodes[:len(n.nodes)-1] {
		if r := tn.core.Reach(); r.Client || r.Reachability == ReachUnreachable {
			t.Errorf("public %s: %+v, want serving", tn, r)
		}
	}
}

// A node behind NAT that joined while its cloud was only its seed hears of
// the nodes that came later from nobody (their requests cannot reach it):
// it looks itself up again while its table is that small, learns them, and
// so has the peers a detection round needs.
func TestReachLoneSeedJoinerLearnsCloud(t *testing.T) {
	t.Parallel()
	n := newNATNet(t)
	n.join(ModeAuto, false)
	a := n.join(ModeAuto, true)
	for range 6 {
		n.join(ModeAuto, false)
	}
	n.runFor(3 * time.Minute)
	if got := a.core.rt.size; got < 3 {
		t.Fatalf("%s behind NAT, joined through a lone seed: %d contacts three minutes after the cloud grew to %d", a, got, len(n.nodes))
	}
	if r := a.core.Reach(); !r.Client {
		t.Errorf("%s behind NAT: %+v, want a client", a, r)
	}
}

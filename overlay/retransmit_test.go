package overlay

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/peername/peername/identity"
)

// dropFirst loses the first k datagrams sent from one address to each
// other address.
func dropFirst(from netip.AddrPort, k int) func(a, b netip.AddrPort, _ []byte) bool {
	seen := map[netip.AddrPort]int{}
	return func(a, b netip.AddrPort, _ []byte) bool {
		if a != from {
			return false
		}
		seen[b]++
		return seen[b] <= k
	}
}

// TestRetransmitRequests: the first copy of every request from one node is
// lost; retransmission recovers every one of them within RequestTimeout, so
// the lookups neither time a candidate out nor evict a contact, and an
// unknown key is conclusively not found (without retransmission: every
// closest node times out, and the verdict is inconclusive).
func TestRetransmitRequests(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	n.build(8, nil)
	pub := n.nodes[3]
	op := pub.core.Publish(n.now, securedTemplate(t, pub, "alice"))
	c := n.wait(pub, op, time.Minute)
	if c.Err != nil {
		t.Fatalf("publish: %v", c.Err)
	}
	key := c.Records[0].Key()
	asker := n.nodes[6]
	table := asker.core.Stats().RoutingTableSize
	n.drop = dropFirst(asker.addr, 1)
	start := n.now
	op = asker.core.Resolve(n.now, key, SearchOptions{})
	got := n.wait(asker, op, time.Minute)
	if got.Err != nil || len(got.Records) != 1 || got.Path.Timeouts != 0 {
		t.Fatalf("resolve with first copies lost: err=%v records=%d path=%+v", got.Err, len(got.Records), got.Path)
	}
	if d := n.now.Sub(start); d >= DefaultRequestTimeout {
		t.Errorf("resolve took %v, want < RequestTimeout (%v)", d, DefaultRequestTimeout)
	}
	n.drop = dropFirst(asker.addr, 1)
	op = asker.core.Resolve(n.now, identity.Key{9, 9, 9}, SearchOptions{})
	if got := n.wait(asker, op, time.Minute); !errors.Is(got.Err, ErrNotFound) || got.Path.Timeouts != 0 {
		t.Fatalf("unknown key with first copies lost: err=%v path=%+v, want ErrNotFound and no timeout", got.Err, got.Path)
	}
	st := asker.core.Stats()
	if st.Retransmits == 0 || st.RoutingTableSize != table {
		t.Errorf("retransmits %d, table %d (was %d): want retransmits and no eviction", st.Retransmits, st.RoutingTableSize, table)
	}
}

// TestRetransmitHandshake: a new node's first two datagrams to every peer
// (its HELLOs) are lost; the resent HELLOs complete the handshakes, and
// its join and a resolve succeed without a single failed request.
func TestRetransmitHandshake(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	n.build(6, nil)
	pub := n.nodes[2]
	op := pub.core.Publish(n.now, securedTemplate(t, pub, "bob"))
	c := n.wait(pub, op, time.Minute)
	if c.Err != nil {
		t.Fatalf("publish: %v", c.Err)
	}
	tn := n.add(nil)
	n.drop = dropFirst(tn.addr, 2)
	op = tn.core.Join(n.now, []netip.AddrPort{n.nodes[0].addr})
	if got := n.wait(tn, op, time.Minute); got.Err != nil || got.Path.Timeouts != 0 {
		t.Fatalf("join with first HELLOs lost: err=%v path=%+v", got.Err, got.Path)
	}
	op = tn.core.Resolve(n.now, c.Records[0].Key(), SearchOptions{})
	if got := n.wait(tn, op, time.Minute); got.Err != nil || got.Path.Timeouts != 0 {
		t.Fatalf("resolve: err=%v path=%+v", got.Err, got.Path)
	}
	if st := tn.core.Stats(); st.HandshakesResent == 0 {
		t.Errorf("stats %+v: want resent HELLOs", st)
	}
}

// TestQuorumNotHeldByQuietCandidate: a quorum read does not wait up to its
// deadline for a closest replica whose first sends went unanswered (a lossy
// or dead link): once quiet it no longer holds the quorum up. (Without: the
// read waits for the request's whole lifetime, 2 * RequestTimeout.)
func TestQuorumNotHeldByQuietCandidate(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	n.build(8, func(c *Config) { c.Defence.Quorum = 3 })
	pub := n.nodes[1]
	op := pub.core.Publish(n.now, securedTemplate(t, pub, "dave"))
	c := n.wait(pub, op, time.Minute)
	if c.Err != nil {
		t.Fatalf("publish: %v", c.Err)
	}
	key := c.Records[0].Key()
	asker := n.nodes[7]
	var closest *testNode
	for _, tn := range n.nodes[:7] {
		if closest == nil || closer(tn.core.ID(), closest.core.ID(), key) {
			closest = tn
		}
	}
	n.drop = func(_, b netip.AddrPort, _ []byte) bool { return b == closest.addr }
	start := n.now
	op = asker.core.Resolve(n.now, key, SearchOptions{})
	got := n.wait(asker, op, time.Minute)
	if got.Err != nil || len(got.Records) != 1 {
		t.Fatalf("resolve: err=%v records=%d", got.Err, len(got.Records))
	}
	if d := n.now.Sub(start); d >= DefaultRequestTimeout {
		t.Fatalf("quorum read took %v with the closest replica silent, want < %v", d, DefaultRequestTimeout)
	}
}

// TestSmallCloudNotHeldByDeadNode: in a cloud smaller than the quorum (five
// nodes, Quorum 8) a resolve cannot end by count; with one node dead, it
// must end once everyone else answered and the dead one went quiet, not
// wait out the dead node's request lifetime (which is the plugin's whole
// timeout: every lookup near a SIGKILLed node answered SERVFAIL).
func TestSmallCloudNotHeldByDeadNode(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	n.build(5, func(c *Config) { c.Defence = DefaultDefence(c.K) })
	pub := n.nodes[1]
	op := pub.core.Publish(n.now, securedTemplate(t, pub, "erin"))
	c := n.wait(pub, op, time.Minute)
	if c.Err != nil {
		t.Fatalf("publish: %v", c.Err)
	}
	key := c.Records[0].Key()
	dead := n.nodes[3]
	n.drop = func(_, b netip.AddrPort, _ []byte) bool { return b == dead.addr }
	asker := n.nodes[4]
	start := n.now
	op = asker.core.Resolve(n.now, key, SearchOptions{Deadline: n.now.Add(2 * time.Second)})
	got := n.wait(asker, op, time.Minute)
	if got.Err != nil || len(got.Records) != 1 {
		t.Fatalf("resolve with a dead node: err=%v records=%d", got.Err, len(got.Records))
	}
	if d := n.now.Sub(start); d >= DefaultRequestTimeout {
		t.Fatalf("resolve took %v with one of five nodes dead, want < %v", d, DefaultRequestTimeout)
	}
}

package overlay

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/records"
)

// holders returns the live nodes holding a record under key.
func recordHolders(n *testNet, key identity.Key) map[*testNode]bool {
	out := map[*testNode]bool{}
	for _, tn := range n.nodes {
		if tn.down || tn.core.left {
			continue
		}
		tn.core.ForEachRecord(func(r *records.Record) bool {
			if r.Key() == key {
				out[tn] = true
				return false
			}
			return true
		})
	}
	return out
}

// closestLive returns the r live nodes closest to key (the global view).
func closestLiveNodes(n *testNet, key identity.Key, r int) []*testNode {
	var live []*testNode
	for _, tn := range n.nodes {
		if !tn.down && !tn.core.left {
			live = append(live, tn)
		}
	}
	slices.SortFunc(live, func(a, b *testNode) int {
		if closer(a.core.ID(), b.core.ID(), key) {
			return -1
		}
		return 1
	})
	return live[:min(r, len(live))]
}

func TestReplicationFollowsNeighbourhood(t *testing.T) {
	t.Parallel()
	const repl = 3
	mod := func(c *Config) { c.Replication = repl; c.K = 8 }
	n := newTestNet(t)
	n.build(10, mod)
	pub := n.nodes[0]
	key := n.wait(pub, pub.core.Publish(n.now, securedTemplate(t, pub, "moving")), time.Minute).Records[0].Key()

	// New nodes join; some of them become the key's closest: they must get the record.
	for i := 0; i < 20; i++ {
		tn := n.add(mod)
		if c := n.wait(tn, tn.core.Join(n.now, []netip.AddrPort{n.nodes[1].addr}), time.Minute); c.Err != nil {
			t.Fatal(c.Err)
		}
	}
	n.runFor(2 * DefaultTickInterval)
	h := recordHolders(n, key)
	for _, tn := range closestLiveNodes(n, key, repl) {
		if !h[tn] {
			t.Errorf("after joins: %s is among the %d closest but holds no copy", tn, repl)
		}
	}

	// The closest replicas fail silently (the owner stays); the survivors and the
	// republishing owner must restore the replica set among the live nodes.
	for _, tn := range closestLiveNodes(n, key, repl) {
		if tn != pub {
			tn.down = true
		}
	}
	n.runFor(DefaultRecordLifetime/2 + 2*DefaultTickInterval)
	h = recordHolders(n, key)
	for _, tn := range closestLiveNodes(n, key, repl) {
		if !h[tn] {
			t.Errorf("after failures: %s is among the %d closest live nodes but holds no copy", tn, repl)
		}
	}
	r := n.nodes[len(n.nodes)-1]
	if c := n.wait(r, r.core.Resolve(n.now, key, SearchOptions{}), time.Minute); c.Err != nil {
		t.Errorf("resolve after failures: %v", c.Err)
	}
}

// TestJoinerGetsRecordsPromptly: a node that joins and is one of a key's
// closest holds the record seconds after its join, not at the holders' next
// maintenance tick (30 s).
func TestJoinerGetsRecordsPromptly(t *testing.T) {
	t.Parallel()
	const repl = 3
	mod := func(c *Config) { c.Replication = repl; c.K = 8 }
	n := newTestNet(t)
	n.build(10, mod)
	pub := n.nodes[0]
	key := n.wait(pub, pub.core.Publish(n.now, securedTemplate(t, pub, "prompt")), time.Minute).Records[0].Key()
	n.runFor(time.Second)
	got := 0
	for i := 0; i < 20 && got < 3; i++ {
		tn := n.add(mod)
		if c := n.wait(tn, tn.core.Join(n.now, []netip.AddrPort{n.nodes[1].addr}), time.Minute); c.Err != nil {
			t.Fatal(c.Err)
		}
		if !slices.Contains(closestLiveNodes(n, key, repl), tn) {
			continue
		}
		got++
		n.runFor(3 * time.Second)
		if !recordHolders(n, key)[tn] {
			t.Errorf("joiner %d is among the %d closest to the key and holds no copy 3 s after its join", i, repl)
		}
	}
	if got == 0 {
		t.Fatal("no joiner landed among the key's closest; pick another name")
	}
}

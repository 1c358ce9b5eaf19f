package overlay

import (
	"net/netip"
	"testing"
	"time"
)

// TestReplicaAcked: a replica that did not acknowledge the publisher's
// STORE (every datagram between them lost during the publish) is not
// counted as holding the record: the publisher retries it with backoff and
// it holds the record within seconds, long before the next maintenance
// tick. (Before: the whole replica set was marked as holding it, and the
// replica never got it.)
func TestReplicaAcked(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	n.build(8, nil)
	pub, x := n.nodes[3], n.nodes[5]
	n.drop = func(a, b netip.AddrPort, _ []byte) bool {
		return a == pub.addr && b == x.addr || a == x.addr && b == pub.addr
	}
	op := pub.core.Publish(n.now, securedTemplate(t, pub, "carol"))
	c := n.wait(pub, op, time.Minute)
	if c.Err != nil {
		t.Fatalf("publish: %v", c.Err)
	}
	key := c.Records[0].Key()
	if len(x.core.store.get(key, n.now.UnixNano())) != 0 {
		t.Fatalf("replica got the record although every datagram to it was lost")
	}
	if held, want := pub.core.Replicas(c.Records[0].Name); held != 6 || want != 7 {
		t.Errorf("Replicas after the publish = %d of %d, want 6 of 7 (one replica cut off)", held, want)
	}
	n.drop = nil
	n.runFor(10 * time.Second) // the maintenance tick is 30 s
	if len(x.core.store.get(key, n.now.UnixNano())) == 0 {
		t.Fatalf("replica that missed the STORE does not hold the record 10 s later")
	}
	for _, sr := range pub.core.store.get(key, n.now.UnixNano()) {
		if len(sr.pushed) != 7 {
			t.Errorf("publisher counts %d acknowledged replicas, want 7", len(sr.pushed))
		}
	}
	if held, want := pub.core.Replicas(c.Records[0].Name); held != 7 || want != 7 {
		t.Errorf("Replicas once the replica is back = %d of %d, want 7 of 7", held, want)
	}
}

// TestConfirmedFollowsRepublish: Confirmed is the Seq of the last publish
// the replicas acknowledged; a republish moves Published at once and
// Confirmed only when its STOREs were acknowledged, and never while every
// replica is cut off.
func TestConfirmedFollowsRepublish(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	n.build(5, nil)
	pub := n.nodes[2]
	c := n.wait(pub, pub.core.Publish(n.now, securedTemplate(t, pub, "frank")), time.Minute)
	if c.Err != nil {
		t.Fatalf("publish: %v", c.Err)
	}
	name := c.Records[0].Name
	if got := pub.core.Confirmed(name); got != c.Records[0].Seq {
		t.Fatalf("Confirmed after publish = %d, want %d", got, c.Records[0].Seq)
	}
	first := c.Records[0].Seq
	n.runFor(DefaultRecordLifetime/2 - 2*DefaultTickInterval)
	// Cut the owner's outgoing datagrams for the tick that republishes, so
	// that republish's STOREs are lost; its contacts survive the outage.
	n.drop = func(a, _ netip.AddrPort, _ []byte) bool { return a == pub.addr }
	for i := 0; i < 200 && pub.core.Published(name).Seq == first; i++ {
		n.runFor(time.Second)
	}
	if pub.core.Published(name).Seq == first {
		t.Fatal("no republish happened")
	}
	n.runFor(3 * time.Second) // past the STOREs' lifetime: the republish op ends unstored
	if got := pub.core.Confirmed(name); got != first {
		t.Fatalf("Confirmed = %d with the republish's STOREs lost, want the first publish's %d", got, first)
	}
	n.drop = nil
	n.runFor(DefaultTickInterval)
	if cur, got := pub.core.Published(name).Seq, pub.core.Confirmed(name); got != cur {
		t.Fatalf("Confirmed = %d once the replicas answer again, want the current %d", got, cur)
	}
}

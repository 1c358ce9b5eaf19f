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

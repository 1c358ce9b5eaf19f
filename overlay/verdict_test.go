package overlay

import (
	"errors"
	"testing"
	"time"

	"github.com/peername/peername/identity"
)

// TestVerdictInconclusive: "not found" is reported only when the closest
// nodes all answered; a lookup that did not hear one of them is
// inconclusive (ErrInconclusive, not ErrNotFound), and so is a node that
// lost every peer it had. A node that never had one is plainly alone.
func TestVerdictInconclusive(t *testing.T) {
	t.Parallel()
	unknown := identity.Key{1, 2, 3}
	n := newTestNet(t)
	n.build(6, nil)
	asker := n.nodes[5]

	op := asker.core.Resolve(n.now, unknown, SearchOptions{})
	if got := n.wait(asker, op, time.Minute); !errors.Is(got.Err, ErrNotFound) || errors.Is(got.Err, ErrInconclusive) {
		t.Fatalf("all nodes up: err=%v, want ErrNotFound", got.Err)
	}

	// One of the five other nodes (all of them are among the K closest)
	// does not answer: it might be the one holding the record.
	n.nodes[2].down = true
	op = asker.core.Resolve(n.now, unknown, SearchOptions{})
	got := n.wait(asker, op, time.Minute)
	if errors.Is(got.Err, ErrNotFound) || !errors.Is(got.Err, ErrInconclusive) {
		t.Fatalf("one closest node silent: err=%v, want ErrInconclusive (not ErrNotFound)", got.Err)
	}
	if got.Path.Timeouts == 0 {
		t.Errorf("path %+v: want a timeout", got.Path)
	}

	// Every peer silent: the table empties, and the node, which had peers,
	// is alone but cannot conclude anything.
	for _, tn := range n.nodes[:5] {
		tn.down = true
	}
	for i := 0; i < 10 && asker.core.Stats().RoutingTableSize > 0; i++ {
		op = asker.core.Resolve(n.now, unknown, SearchOptions{})
		got = n.wait(asker, op, time.Minute)
		if errors.Is(got.Err, ErrNotFound) {
			t.Fatalf("peers silent, try %d: err=%v, want no ErrNotFound", i, got.Err)
		}
	}
	op = asker.core.Resolve(n.now, unknown, SearchOptions{})
	got = n.wait(asker, op, time.Minute)
	if !errors.Is(got.Err, ErrAlone) || !errors.Is(got.Err, ErrInconclusive) || errors.Is(got.Err, ErrNotFound) {
		t.Fatalf("lost all peers (table %d): err=%v, want ErrAlone and ErrInconclusive", asker.core.Stats().RoutingTableSize, got.Err)
	}

	// A node that never had a peer is alone, conclusively.
	m := newTestNet(t)
	solo := m.add(nil)
	op = solo.core.Resolve(m.now, unknown, SearchOptions{})
	got = m.wait(solo, op, time.Minute)
	if !errors.Is(got.Err, ErrAlone) || errors.Is(got.Err, ErrInconclusive) {
		t.Fatalf("never had a peer: err=%v, want plain ErrAlone", got.Err)
	}
}

package sim

import (
	"bytes"
	"math/bits"
	"slices"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/overlay"
	"github.com/peername/peername/records"
)

// wanted is what a census looks for under one key: a record at seq or
// newer, held by a node other than owner.
type wanted struct {
	k     int32 // the name's index in w.names
	seq   uint64
	owner int
}

// holding is what countHolders found: per key, how many live honest storing
// nodes besides its owner hold the wanted record (held), how many of those
// are outside NAT (reach), and how many live honest storing nodes there are
// (alive).
type holding struct {
	held, reach map[identity.Key]int
	alive       int
}

// countHolders walks every live honest storing node's store once and counts, for
// each key in want, the nodes other than its owner that hold a record at
// the wanted sequence number or newer that is not withdrawn.
func (w *World) countHolders(want map[identity.Key]wanted) holding {
	h := holding{held: map[identity.Key]int{}, reach: map[identity.Key]int{}}
	for i, n := range w.nodes {
		if !w.storing(i) {
			continue
		}
		h.alive++
		rw, ok := n.Core.(RecordWalker)
		if !ok {
			continue
		}
		behind := w.e.Behind(i)
		rw.ForEachRecord(func(r *records.Record) bool {
			k := r.Key()
			if d, ok := want[k]; ok && d.owner != i && r.Seq >= d.seq && !r.Withdrawn {
				h.held[k]++
				if !behind {
					h.reach[k]++
				}
			}
			return true
		})
	}
	return h
}

// replicaTarget is how many holders besides its owner a name should have
// in a cloud of alive live honest nodes: min(Replication, alive - 1).
func (w *World) replicaTarget(alive int) int {
	return min(w.replication(), alive-1)
}

// replication is the cores' Replication, the default when unset.
func (w *World) replication() int {
	if r := w.cfg.Core.Replication; r > 0 {
		return r
	}
	return overlay.DefaultReplication
}

// census counts, at the end of a run, how many live honest nodes besides
// its owner hold each published name's current record (its owner's newest
// sequence number): Report.ReplicasMin, ReplicasMean and UnderReplicated
// (names held by fewer than min(Replication, live nodes - 1)).
func (w *World) census() {
	want := map[identity.Key]wanted{}
	for _, k := range w.live {
		p := &w.names[k]
		if !w.e.Alive(int(p.owner)) || w.hostile(int(p.owner)) {
			continue
		}
		want[p.key] = wanted{k: k, seq: w.currentSeq(int(k)), owner: int(p.owner)}
	}
	if len(want) == 0 {
		return
	}
	h := w.countHolders(want)
	target := w.replicaTarget(h.alive)
	sum, lo, rsum := 0, -1, 0
	for k := range want {
		n := h.held[k]
		sum += n
		rsum += h.reach[k]
		if h.reach[k] == 0 {
			w.rep.RecordsLost++
		}
		if lo < 0 || n < lo {
			lo = n
		}
		if n < target {
			w.rep.UnderReplicated++
		}
	}
	w.rep.ReplicasMin = lo
	w.rep.ReplicasMean = float64(sum) / float64(len(want))
	w.rep.ReachableReplicasMean = float64(rsum) / float64(len(want))
	w.rep.ReplicaTarget = target
}

// change is a node joining, finishing its join or failing: for two ticks
// after it, the census leaves alone the names whose replica set it is in.
type change struct {
	at time.Duration
	id identity.Key
}

// noteChange records that node id joined, finished joining or failed now.
func (w *World) noteChange(id identity.Key) {
	w.changes = append(w.changes, change{at: w.e.Elapsed(), id: id})
}

// censusSweep is the replica census of the -check sweep: every live name
// (its owner alive and honest) whose current record was issued two ticks
// (2 × TickInterval) or more ago, and whose replica set (its Replication + 1
// closest nodes) no node joined, finished joining, left, or turned client or
// back in those two ticks (a mode change is seen at the sweep after it),
// must be held at its owner's newest Seq by min(Replication, live storing
// nodes - 1) live honest nodes besides its owner. Each name that is not is a
// violation (Report.CensusShort); the checks made are Report.CensusChecks.
// Names whose owner's core does not tell what it publishes (Publisher) are
// not checked, nor is a run with hostile nodes, which may sit in a replica
// set and drop what they get.
func (w *World) censusSweep(now time.Time) {
	if w.attack != nil {
		return
	}
	tick := w.cfg.Core.TickInterval
	if tick <= 0 {
		tick = overlay.DefaultTickInterval
	}
	grace := 2 * tick
	at := w.e.Elapsed()
	w.noteModeChanges()
	recent := w.changes[:0]
	for _, c := range w.changes {
		if at-c.at < grace {
			recent = append(recent, c)
		}
	}
	w.changes = recent
	want := map[identity.Key]wanted{}
	for _, k := range w.live {
		p := &w.names[k]
		o := int(p.owner)
		if !w.e.Alive(o) || w.nodes[o].Core == nil {
			continue
		}
		pub, ok := w.nodes[o].Core.(Publisher)
		if !ok {
			continue
		}
		r := pub.Published(p.name)
		if r == nil || r.Withdrawn || at-r.Issued.Sub(Epoch) < grace {
			continue
		}
		want[p.key] = wanted{k: k, seq: r.Seq, owner: o}
	}
	if len(want) == 0 {
		return
	}
	h := w.countHolders(want)
	target := w.replicaTarget(h.alive)
	var ids []identity.Key // live storing nodes, sorted, once a change needs them
	if len(recent) > 0 {
		ids = w.storingIDs()
	}
	for _, k := range w.live { // in publish order, so violations replay in one order
		key := w.names[k].key
		d, ok := want[key]
		if !ok || d.k != k || w.unsettled(key, recent, ids) {
			continue
		}
		w.rep.CensusChecks++
		if n := h.held[key]; n < target {
			w.rep.CensusShort++
			w.violate(now, "replica census: %s (owner node %d, seq %d) held by %d of %d live nodes besides its owner",
				w.names[k].name, d.owner, d.seq, n, target)
		}
	}
}

// noteModeChanges notes, as a change, every live node that turned client
// or back to serving since the last sweep: it left or joined the nodes that
// store records, as a failure or a join does.
func (w *World) noteModeChanges() {
	for i, n := range w.nodes {
		if i >= len(w.wasClient) {
			w.wasClient = append(w.wasClient, false)
		}
		if !w.e.Alive(i) || n.Core == nil {
			continue
		}
		rc, ok := n.Core.(Reacher)
		if !ok {
			continue
		}
		if c := rc.Reach().Client; c != w.wasClient[i] {
			w.wasClient[i] = c
			w.noteChange(n.Core.ID())
		}
	}
}

// unsettled reports whether one of the recent changes is a node among the
// Replication + 1 closest to key (of ids, the live storing nodes, and the
// changed node itself).
func (w *World) unsettled(key identity.Key, recent []change, ids []identity.Key) bool {
	n := w.replication() + 1
	for _, c := range recent {
		if closeTo(c.id, key, ids, n) {
			return true
		}
	}
	return false
}

// storingIDs returns the node IDs of the live honest nodes that store
// records for others (not clients), sorted.
func (w *World) storingIDs() []identity.Key {
	var ids []identity.Key
	for i, n := range w.nodes {
		if w.storing(i) {
			ids = append(ids, n.Core.ID())
		}
	}
	slices.SortFunc(ids, func(a, b identity.Key) int { return bytes.Compare(a[:], b[:]) })
	return ids
}

// storing reports whether node i is alive, honest and stores records for
// others (a client-mode node does not).
func (w *World) storing(i int) bool {
	n := w.nodes[i]
	if !w.e.Alive(i) || w.hostile(i) || n.Core == nil {
		return false
	}
	if rc, ok := n.Core.(Reacher); ok && rc.Reach().Client {
		return false
	}
	return true
}

// closeTo reports whether fewer than n of sorted (which may hold c itself)
// are strictly closer to key than c in XOR distance. Every node whose ID
// shares more leading bits with key than c's does is closer, every node
// sharing fewer is farther, and those sharing exactly as many share one more
// with c: two ranges of the sorted IDs, found by binary search.
func closeTo(c, key identity.Key, sorted []identity.Key, n int) bool {
	b := commonPrefix(c, key)
	if b == len(key)*8 {
		return true
	}
	lo, hi := prefixRange(sorted, key, b+1)
	closer := hi - lo
	if closer >= n {
		return false
	}
	lo, hi = prefixRange(sorted, c, b+1)
	for _, id := range sorted[lo:hi] {
		if identity.Closer(id, c, key) {
			closer++
		}
	}
	return closer < n
}

// commonPrefix is how many leading bits a and b share.
func commonPrefix(a, b identity.Key) int {
	for i := range a {
		if x := a[i] ^ b[i]; x != 0 {
			return i*8 + bits.LeadingZeros8(x)
		}
	}
	return len(a) * 8
}

// prefixRange returns the half-open range of sorted whose IDs share their
// first n bits with p.
func prefixRange(sorted []identity.Key, p identity.Key, n int) (lo, hi int) {
	first, last := p, p
	for i := range p {
		switch {
		case (i+1)*8 <= n:
		case i*8 >= n:
			first[i], last[i] = 0, 0xff
		default:
			m := byte(0xff) >> (n - i*8)
			first[i], last[i] = p[i]&^m, p[i]|m
		}
	}
	lo, _ = slices.BinarySearchFunc(sorted, first, func(a, t identity.Key) int { return bytes.Compare(a[:], t[:]) })
	hi, found := slices.BinarySearchFunc(sorted, last, func(a, t identity.Key) int { return bytes.Compare(a[:], t[:]) })
	if found {
		hi++
	}
	return lo, hi
}

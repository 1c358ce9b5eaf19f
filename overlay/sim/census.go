package sim

import (
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/overlay"
	"github.com/peername/peername/records"
)

// census counts, at the end of a run, how many live honest nodes besides
// its owner hold each published name's current record (its owner's newest
// sequence number): Report.ReplicasMin, ReplicasMean and UnderReplicated
// (names held by fewer than min(Replication, live nodes - 1)).
func (w *World) census() {
	want := map[identity.Key]uint64{}
	owner := map[identity.Key]int{}
	for _, k := range w.live {
		p := &w.names[k]
		if !w.e.Alive(int(p.owner)) || w.hostile(int(p.owner)) {
			continue
		}
		want[p.key] = w.currentSeq(int(k))
		owner[p.key] = int(p.owner)
	}
	if len(want) == 0 {
		return
	}
	held := map[identity.Key]int{}
	reach := map[identity.Key]int{} // held by nodes outside NAT
	alive := 0
	for i, n := range w.nodes {
		if !w.e.Alive(i) || w.hostile(i) || n.Core == nil {
			continue
		}
		alive++
		rw, ok := n.Core.(RecordWalker)
		if !ok {
			continue
		}
		rw.ForEachRecord(func(r *records.Record) bool {
			k := r.Key()
			if s, ok := want[k]; ok && r.Seq >= s && owner[k] != i {
				held[k]++
				if !w.e.Behind(i) {
					reach[k]++
				}
			}
			return true
		})
	}
	repl := w.cfg.Core.Replication
	if repl == 0 {
		repl = overlay.DefaultReplication
	}
	target := min(repl, alive-1)
	sum, lo, rsum := 0, -1, 0
	for k := range want {
		h := held[k]
		sum += h
		rsum += reach[k]
		if reach[k] == 0 {
			w.rep.RecordsLost++
		}
		if lo < 0 || h < lo {
			lo = h
		}
		if h < target {
			w.rep.UnderReplicated++
		}
	}
	w.rep.ReplicasMin = lo
	w.rep.ReplicasMean = float64(sum) / float64(len(want))
	w.rep.ReachableReplicasMean = float64(rsum) / float64(len(want))
	w.rep.ReplicaTarget = target
}

// censusSweep is the replica census of the -check sweep: every live name
// (its owner alive and honest) whose current record was issued two ticks
// (2 × TickInterval) or more ago, when no node joined, finished joining or
// failed in those two ticks either, must be held at its owner's newest Seq
// by min(Replication, live honest nodes - 1) live honest nodes besides its
// owner. Each name that is not is a violation (Report.CensusShort); the
// checks made are Report.CensusChecks. Names whose owner's core does not
// tell what it publishes (Publisher) are not checked, nor is a run with
// hostile nodes, which may sit in a replica set and drop what they get.
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
	if at-w.lastChange < grace {
		return
	}
	type due struct {
		k     int32
		seq   uint64
		owner int
	}
	want := map[identity.Key]due{}
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
		want[p.key] = due{k: k, seq: r.Seq, owner: o}
	}
	if len(want) == 0 {
		return
	}
	held := map[identity.Key]int{}
	alive := 0
	for i, n := range w.nodes {
		if !w.e.Alive(i) || n.Core == nil {
			continue
		}
		alive++
		rw, ok := n.Core.(RecordWalker)
		if !ok {
			continue
		}
		rw.ForEachRecord(func(r *records.Record) bool {
			k := r.Key()
			if d, ok := want[k]; ok && d.owner != i && r.Seq >= d.seq && !r.Withdrawn {
				held[k]++
			}
			return true
		})
	}
	repl := w.cfg.Core.Replication
	if repl <= 0 {
		repl = overlay.DefaultReplication
	}
	target := min(repl, alive-1)
	for _, k := range w.live { // in publish order, so violations replay in one order
		d, ok := want[w.names[k].key]
		if !ok || d.k != k {
			continue
		}
		w.rep.CensusChecks++
		if h := held[w.names[k].key]; h < target {
			w.rep.CensusShort++
			w.violate(now, "replica census: %s (owner node %d, seq %d) held by %d of %d live nodes besides its owner",
				w.names[k].name, d.owner, d.seq, h, target)
		}
	}
}

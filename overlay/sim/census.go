package sim

import (
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

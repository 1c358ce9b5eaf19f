package overlay

// Defence holds the switches of the overlay's defences against hostile
// nodes (docs/security.md, "Hostile nodes (simulator)"). The zero value is
// the protocol as it was before them; DefaultDefence turns them on.
type Defence struct {
	// Quorum: a Resolve that found a record does not stop at the first
	// answers (ValueGrace): it goes on until Quorum distinct nodes returned a
	// valid record for the key, or until its K closest candidates have all
	// answered or failed, and takes the newest valid record seen. A stale
	// replica held back by colluders then loses to the current one held by
	// any honest storer among the K closest. 0 = off.
	Quorum int
	// DisjointPaths: lookups that read or place records run over this many
	// disjoint paths (each node is asked by one path only) and end when every
	// path has reached its K closest. 0 or 1 = off; at most 8.
	DisjointPaths int
}

// DefaultDefence is what `peername sim -defence on` runs with.
func DefaultDefence(k int) Defence {
	if k <= 0 {
		k = DefaultK
	}
	return Defence{Quorum: max(1, k/2), DisjointPaths: 3}
}

// quorumMet reports whether a Resolve that found a record may end now.
func (c *Core) quorumMet(op *operation) bool {
	return c.cfg.Defence.Quorum <= 0 || op.foundFrom >= c.cfg.Defence.Quorum
}

// maxDisjointPaths bounds Defence.DisjointPaths.
const maxDisjointPaths = 8

// disjointPaths is the number of disjoint paths op's lookup runs: the join's
// self-lookup (which fills the neighbourhood a node is found through) and
// lookups that read or place records (Resolve, Publish, Unpublish, Store)
// use Defence.DisjointPaths; refreshes and key searches use one.
func (c *Core) disjointPaths(op *operation) uint8 {
	d := min(c.cfg.Defence.DisjointPaths, maxDisjointPaths)
	switch op.kind {
	case opJoin, opResolve, opPublish, opUnpublish, opStore:
		if d > 1 {
			return uint8(d)
		}
	}
	return 1
}

// assignPath puts candidate i on a path: a contact from the own routing
// table (or a seed) goes to the paths in turn, closest first; a contact
// learnt from an answer stays on the path of the node that named it. A node
// is a candidate once per lookup, so it is asked by one path only: the paths
// are disjoint, and colluders that capture one path cannot steer the others
// (S/Kademlia, Baumgart and Mies 2007).
func (op *operation) assignPath(i int32) {
	if op.paths <= 1 {
		return
	}
	cd := &op.all[i]
	if cd.ref >= 0 && int(cd.ref) < len(op.all) {
		cd.path = op.all[cd.ref].path
		return
	}
	cd.path = op.nextPath
	op.nextPath = (op.nextPath + 1) % op.paths
}

// stepDisjoint is step over op.paths disjoint paths: each path keeps Alpha
// requests in flight to the closest fresh candidates of its own, and ends
// when its K closest candidates have answered or failed; the lookup ends
// when every path has ended. Records and closest nodes are taken from all
// paths together.
func (c *Core) stepDisjoint(now int64, op *operation) {
	var active [maxDisjointPaths]int
	for i := range op.all {
		if cd := &op.all[i]; cd.state == cInflight && !cd.slow {
			active[cd.path]++
		}
	}
	width := op.width(c.cfg)
	for p := range op.paths {
		considered := 0
		for _, i := range op.order {
			if active[p] >= c.cfg.Alpha {
				break
			}
			cd := &op.all[i]
			if cd.path != p || cd.state == cFailed {
				continue
			}
			if cd.hasID {
				if considered >= width {
					break
				}
				considered++
			}
			if cd.state == cFresh && c.askCandidate(now, op, i) {
				active[p]++
			}
		}
	}
	if op.inflight == 0 {
		c.finishLookup(now, op)
	}
}

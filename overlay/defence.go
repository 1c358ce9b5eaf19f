package overlay

import "net/netip"

// Defence holds the switches of the overlay's defences against hostile
// nodes (docs/security.md, the section on the simulator's hostile nodes). The zero value is
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
	// PrefixCap bounds how many contacts of one network prefix (an IPv4 /24,
	// an IPv6 /48: what one operator, hosting customer or small ISP
	// typically holds) a routing-table bucket keeps, and how many candidates
	// of one prefix a lookup takes from answers and its own table. Nodes on
	// addresses the Internet never routes (loopback, private, unique-local,
	// link-local, shared and benchmarking ones: a LAN cloud, a lab) are
	// exempt (netPrefix). An attacker who runs many nodes from few prefixes then
	// fills a bucket or a lookup's shortlist with at most PrefixCap of them
	// per prefix (in the spirit of BEP 42; Ethereum's discovery table keeps 2
	// per /24 per bucket). 0 = off.
	PrefixCap int
}

// DefaultDefence is what `peername sim -defence on` runs with.
func DefaultDefence(k int) Defence {
	if k <= 0 {
		k = DefaultK
	}
	return Defence{Quorum: max(1, k/2), DisjointPaths: 3, PrefixCap: 2}
}

// quorumMet reports whether a Resolve that found a record may end now: with
// quorum reads, once Quorum distinct nodes returned a valid record and the
// Quorum closest candidates known (over all paths) have all answered or
// failed.
// The second condition is what keeps a stale replica out: colluders that
// answer first with an old record would otherwise make up the quorum while
// the honest storers closest to the key, which hold the current record,
// are still being asked.
func (c *Core) quorumMet(op *operation) bool {
	q := c.cfg.Defence.Quorum
	return q <= 0 || op.foundFrom >= q && op.closestSettled(q)
}

// closestSettled reports whether the k closest candidates with a known ID
// have all answered or failed, or are quiet: still in flight after
// quietSends sends went unanswered (on a lossy link the request lives on
// and its answer still counts if it comes, but the quorum does not wait
// for it up to the search deadline).
func (op *operation) closestSettled(k int) bool {
	n := 0
	for _, i := range op.order {
		cd := &op.all[i]
		if !cd.hasID {
			continue
		}
		if cd.state == cFresh || cd.state == cInflight && !cd.quiet {
			return false
		}
		if n++; n >= k {
			break
		}
	}
	return true
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
	if op.inflight == 0 || op.onlyQuietLeft() {
		c.finishLookup(now, op)
	}
}

// onlyQuietLeft reports whether a Resolve that found a record has nothing
// left to wait for but quiet candidates (in flight, quietSends sends
// unanswered): a dead or cut-off node among the closest then does not hold
// the answer up to the end of its request's lifetime, which can be the
// search deadline itself. It matters where the quorum cannot be met by
// count (a cloud smaller than Quorum, or fewer holders than Quorum), as
// closestSettled already lets quiet candidates pass once it is. A lookup
// that found nothing keeps waiting: the quiet node may be the holder, and
// the verdict needs it.
func (op *operation) onlyQuietLeft() bool {
	if op.kind != opResolve || len(op.recs) == 0 || op.inflight == 0 {
		return false
	}
	for i := range op.all {
		if cd := &op.all[i]; cd.state == cInflight && !cd.quiet {
			return false
		}
	}
	return true
}

// netPrefix is the network prefix PrefixCap counts a's node under: the /24 of
// an IPv4 address (or IPv4-mapped IPv6), the /48 of an IPv6 address. It
// reports false for addresses the cap exempts, those of a LAN or a lab that
// the Internet never routes: loopback, private (RFC 1918, unique-local
// fc00::/7), link-local, unspecified, shared (100.64.0.0/10, RFC 6598) and
// benchmarking (198.18.0.0/15, RFC 2544) ones.
func netPrefix(a netip.Addr) (netip.Prefix, bool) {
	a = a.Unmap().WithZone("")
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsUnspecified() ||
		sharedSpace.Contains(a) || benchSpace.Contains(a) {
		return netip.Prefix{}, false
	}
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, err := a.Prefix(bits)
	return p, err == nil
}

var (
	sharedSpace = netip.MustParsePrefix("100.64.0.0/10")
	benchSpace  = netip.MustParsePrefix("198.18.0.0/15")
)

// prefixFull reports whether cs already holds capN contacts in a's prefix.
func prefixFull(cs []rtContact, a netip.Addr, capN int) bool {
	if capN <= 0 {
		return false
	}
	p, ok := netPrefix(a)
	if !ok {
		return false
	}
	n := 0
	for i := range cs {
		if p.Contains(cs[i].addr.Addr().Unmap()) {
			if n++; n >= capN {
				return true
			}
		}
	}
	return false
}

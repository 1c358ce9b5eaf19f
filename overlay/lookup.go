package overlay

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/records"
)

type opKind uint8

const (
	opJoin opKind = iota + 1
	opRefresh
	opPublish
	opUnpublish
	opStore
	opResolve
	opNearest
	opRange
)

// Candidate states in an iterative lookup.
const (
	cFresh    = 0
	cInflight = 1
	cDone     = 2
	cFailed   = 3 // timed out, unreachable, or beyond the hop limit
)

type cand struct {
	c       contact
	hasID   bool // false for a seed known only by address
	retried bool // a seed gets a second request if the first is lost
	hop     uint8
	state   uint8
	ref     int32 // index of the candidate that referred this one (-1: own table or seed)
	path    uint8 // disjoint lookup path (Defence.DisjointPaths)
	slow    bool  // in flight past its soft timeout
	quiet   bool  // in flight, quietSends sends unanswered (see closestSettled)
}

// operation is one API call (or internal maintenance) in progress: an
// iterative lookup, possibly followed by a store phase.
type operation struct {
	id       OpID
	kind     opKind
	internal bool // no Completion is reported
	target   identity.Key
	lo, hi   identity.Key
	n        int
	deadline int64
	maxHops  int

	all         []cand
	order       []int32 // indices into all: seeds first, then closest to target first
	inflight    int
	paths       uint8 // disjoint paths (1 unless Defence.DisjointPaths)
	nextPath    uint8 // the path of the next candidate from the own table
	slow        int   // requests in flight past their soft timeout (they no longer hold an Alpha slot)
	path        Path
	hopLimited  bool
	deadlineHit bool
	anyResponse bool
	done        bool
	// prefixRefused counts candidates turned away by Defence.PrefixCap.
	prefixRefused int

	// Resolve: the best record per publisher, and who answered first.
	recs       []*records.Record
	verified   []verifiedRecord // encodings that passed records.Verify in this lookup
	foundRef   int32
	foundFrom  int
	graceArmed bool

	// Nearest / Range.
	keys    []identity.Key
	keysRef int32

	// Store phase.
	rec      *records.Record
	enc      []byte
	storing  bool
	storeOut int
	stored   int
	ackedBy  []uint64 // ID prefixes of the nodes whose STORE_ACK came back
}

// verifiedRecord is an encoding that decoded and verified during one
// lookup, and its record.
type verifiedRecord struct {
	enc []byte
	r   *records.Record
}

// maxVerified bounds operation.verified: a quorum read hears the same few
// versions of one record from many storers.
const maxVerified = 8

// acceptRecord decodes and verifies enc, an answer's record for op.target,
// and reports the record or nil. An encoding byte for byte equal to one
// already verified in this lookup (the same record from another storer,
// what a quorum read hears most) is not decoded and verified again: its
// signature was checked and cannot differ; its expiry is checked anew.
func (c *Core) acceptRecord(now int64, op *operation, enc []byte) *records.Record {
	for _, v := range op.verified {
		if bytes.Equal(v.enc, enc) {
			if !unixTime(now).Before(v.r.Expires) {
				return nil
			}
			return v.r
		}
	}
	own := bytes.Clone(enc)
	r, err := records.Decode(own)
	if err != nil || r.Key() != op.target || records.Verify(r, unixTime(now)) != nil {
		return nil
	}
	if len(op.verified) < maxVerified {
		op.verified = append(op.verified, verifiedRecord{enc: own, r: r})
	}
	return r
}

// width is how many of the closest known candidates must have answered (or
// failed) for the lookup to end: K, except for bucket refreshes, whose only
// purpose is to meet a few live nodes in a far bucket (any one of them halves
// the distance to keys there), so Alpha answers are enough. This keeps a
// join (self-lookup + one refresh per far bucket) near K + Alpha*log2(n/K)
// new peers instead of K*log2(n/K).
func (op *operation) width(cfg Config) int {
	if op.kind == opRefresh {
		return cfg.Alpha
	}
	return cfg.K
}

// maxCandidates bounds an operation's candidate list.
const maxCandidates = 16 * maxK

func (op *operation) addSeed(a netip.AddrPort) {
	for _, i := range op.order {
		if !op.all[i].hasID && op.all[i].c.Addr == a {
			return
		}
	}
	op.all = append(op.all, cand{c: contact{Addr: a}, hop: 1, ref: -1})
	idx := int32(len(op.all) - 1)
	// seeds go before every candidate with an ID
	pos := 0
	for pos < len(op.order) && !op.all[op.order[pos]].hasID {
		pos++
	}
	op.order = slices.Insert(op.order, pos, idx)
}

// addCandidate inserts a contact in distance order unless already known, or
// unless prefixCap (Defence.PrefixCap) candidates of its network prefix are
// in the lookup already.
func (op *operation) addCandidate(c contact, hop int, ref int32, self identity.Key, canReach func(netip.AddrPort) bool, prefixCap int) {
	if c.ID == self || len(op.all) >= maxCandidates || canReach != nil && !canReach(c.Addr) {
		return
	}
	// One pass over the candidates finds a duplicate and counts those of
	// the contact's prefix (when the cap applies to it).
	pfx, capped := netip.Prefix{}, false
	if prefixCap > 0 {
		pfx, capped = netPrefix(c.Addr.Addr())
	}
	p := binary.BigEndian.Uint64(c.ID[:8])
	inPrefix := 0
	for i := range op.all {
		o := &op.all[i]
		if !o.hasID {
			continue
		}
		if binary.BigEndian.Uint64(o.c.ID[:8]) == p && o.c.ID == c.ID {
			return
		}
		if capped && pfx.Contains(o.c.Addr.Addr().Unmap()) {
			inPrefix++
		}
	}
	if capped && inPrefix >= prefixCap {
		op.prefixRefused++
		return
	}
	op.all = append(op.all, cand{c: c, hasID: true, hop: uint8(min(hop, 255)), ref: ref})
	idx := int32(len(op.all) - 1)
	op.assignPath(idx)
	pos := len(op.order)
	for pos > 0 {
		o := &op.all[op.order[pos-1]]
		if !o.hasID || !closer(c.ID, o.c.ID, op.target) {
			break
		}
		pos--
	}
	op.order = slices.Insert(op.order, pos, idx)
}

// addRecord merges a verified record: the newest per publisher (one for a secured name).
func (op *operation) addRecord(r *records.Record) {
	for i, have := range op.recs {
		if r.Name.Secured || bytes.Equal(have.PublicKey, r.PublicKey) {
			if records.Newer(r, have) {
				op.recs[i] = r
			}
			return
		}
	}
	op.recs = append(op.recs, r)
}

// mergeKeys merges keys found by candidate ref.
func (op *operation) mergeKeys(keys []identity.Key, ref int32) {
	for _, k := range keys {
		if op.kind == opRange && (compareKeys(k, op.lo) < 0 || compareKeys(k, op.hi) > 0) {
			continue
		}
		if slices.Contains(op.keys, k) {
			continue
		}
		if op.kind == opNearest {
			if len(op.keys) == op.n && !closer(k, op.keys[op.n-1], op.target) {
				continue
			}
			pos := len(op.keys)
			for pos > 0 && closer(k, op.keys[pos-1], op.target) {
				pos--
			}
			if pos == 0 {
				op.keysRef = ref
			}
			if len(op.keys) < op.n {
				op.keys = append(op.keys, identity.Key{})
			}
			copy(op.keys[pos+1:], op.keys[pos:len(op.keys)-1])
			op.keys[pos] = k
			continue
		}
		if len(op.keys) >= op.n {
			break
		}
		if len(op.keys) == 0 {
			op.keysRef = ref
		}
		op.keys = append(op.keys, k)
	}
}

func (c *Core) startInternalLookup(now int64, kind opKind, target identity.Key) {
	op, err := c.newOp(now, kind, target, SearchOptions{})
	if err != nil {
		return
	}
	op.internal = true
	c.startLookup(now, op)
}

// startLookup seeds the candidates from the routing table and sends the first requests.
func (c *Core) startLookup(now int64, op *operation) {
	op.foundRef, op.keysRef = -1, -1
	if op.all == nil {
		op.all = make([]cand, 0, 4*c.cfg.K)
		op.order = make([]int32, 0, 4*c.cfg.K)
	}
	if i := commonPrefixLen(c.id, op.target); i < len(c.rt.buckets) {
		c.rt.buckets[i].lastLookup = now
	}
	op.paths = c.disjointPaths(op)
	if op.paths > 1 {
		// Seeds (a join's) are dealt to the paths in turn, like contacts from
		// the own table: a hostile seed then captures one path at most, and
		// the nodes an honest seed names stay on that seed's path.
		for _, i := range op.order {
			if !op.all[i].hasID {
				op.assignPath(i)
			}
		}
	}
	for _, ct := range c.rt.closest(nil, op.target, c.cfg.K, c.id) {
		op.addCandidate(ct, 1, -1, c.id, c.cfg.CanReach, c.cfg.Defence.PrefixCap)
	}
	c.step(now, op)
}

func (c *Core) requestFor(op *operation) (msg, byte) {
	switch op.kind {
	case opResolve:
		return msg{typ: mFindValue, key: op.target}, mValue
	case opNearest:
		return msg{typ: mNearest, key: op.target, n: op.n}, mKeys
	case opRange:
		return msg{typ: mRange, key: op.lo, key2: op.hi, n: op.n}, mKeys
	}
	return msg{typ: mFindNode, key: op.target}, mNodes
}

// step sends requests to the closest fresh candidates, alpha at a time, and
// ends the lookup when the K closest known candidates have all answered or failed.
func (c *Core) step(now int64, op *operation) {
	if op.done || op.storing {
		return
	}
	if op.kind == opResolve && len(op.recs) > 0 && op.foundFrom > 0 && c.quorumMet(op) {
		// Found: send nothing new; wait for the answers in flight (bounded by
		// the grace timer) to prefer the newest replica.
		if op.inflight == 0 || op.foundFrom >= 2 {
			c.finishLookup(now, op)
		}
		return
	}
	if op.kind == opRange && len(op.keys) >= op.n {
		c.finishLookup(now, op)
		return
	}
	if op.kind == opResolve && op.foundFrom > 0 && c.cfg.Defence.Quorum > 0 && c.askQuorum(now, op) {
		// The Quorum closest in flight can make the quorum by themselves:
		// farther candidates are asked only if they do not (see askQuorum).
		if op.inflight == 0 {
			c.finishLookup(now, op)
		}
		return
	}
	if op.paths > 1 {
		c.stepDisjoint(now, op)
		return
	}
	considered := 0
	for _, i := range op.order {
		if op.inflight-op.slow >= c.cfg.Alpha {
			break
		}
		cd := &op.all[i]
		if cd.state == cFailed {
			continue
		}
		if cd.hasID {
			if considered >= op.width(c.cfg) {
				break
			}
			considered++
		}
		if cd.state == cFresh {
			c.askCandidate(now, op, i)
		}
	}
	if op.inflight == 0 || op.onlyQuietLeft() {
		c.finishLookup(now, op)
	}
}

// askQuorum asks, all at once, every fresh candidate among the Quorum
// closest known ones. A quorum read waits for all of them to answer or fail
// (quorumMet) once a record has been found, so asking them alpha at a time
// would only add round trips; the answer still needs the same storers.
//
// It reports whether those closest requests, with the records found so
// far, can still make up the quorum: the records found plus the requests to
// the Quorum closest still in flight (neither quiet nor past their soft
// timeout) reach Quorum. While they can, the lookup asks nobody farther:
// farther candidates cannot settle the closest and would only add records
// the quorum does not need (on loopback, where CPU and not round trips is
// the cost, this halved the requests of a quorum read: BenchmarkLoopback100).
// Closer candidates named in the answers join the Quorum closest and are
// asked at once by the next call. When the closest cannot make the quorum
// (some answered without the record, or are slow or quiet), the disjoint
// paths go on as before.
func (c *Core) askQuorum(now int64, op *operation) bool {
	n, pending := 0, 0
	for _, i := range op.order {
		cd := &op.all[i]
		if !cd.hasID || cd.state == cFailed {
			continue
		}
		if cd.state == cFresh {
			c.askCandidate(now, op, i)
		}
		if cd.state == cInflight && !cd.quiet && !cd.slow {
			pending++
		}
		if n++; n >= c.cfg.Defence.Quorum {
			break
		}
	}
	return op.foundFrom+pending >= c.cfg.Defence.Quorum
}

// askCandidate sends op's lookup request to the fresh candidate op.all[i]
// and marks it in flight. A candidate past the hop limit, or one the request
// cannot be sent to, is marked failed instead, and askCandidate reports false.
func (c *Core) askCandidate(now int64, op *operation, i int32) bool {
	cd := &op.all[i]
	if int(cd.hop) > op.maxHops {
		cd.state = cFailed
		op.hopLimited = true
		return false
	}
	m, expect := c.requestFor(op)
	if err := c.sendRequest(now, cd.c, cd.hasID, &m, op, i, reqLookup, expect); err != nil {
		cd.state = cFailed
		return false
	}
	cd.state = cInflight
	op.inflight++
	op.path.Asked++
	return true
}

func (c *Core) opResponse(now int64, req *request, peer identity.Key, m *msg) {
	op := req.op
	if op.done {
		return
	}
	if req.kind == reqStore {
		if op.storing {
			op.storeOut--
			if m.n == storeOK {
				op.stored++
			}
			// Any answer settles the replica: it stored the record, holds an
			// equal or newer one, or refused it (resending would not help).
			op.ackedBy = append(op.ackedBy, binary.BigEndian.Uint64(peer[:8]))
			if op.storeOut == 0 {
				c.complete(now, op)
			}
		}
		return
	}
	if req.kind != reqLookup || int(req.cand) >= len(op.all) {
		return
	}
	cd := &op.all[req.cand]
	if cd.state != cInflight {
		return
	}
	cd.state = cDone
	if !cd.hasID {
		cd.hasID, cd.c.ID = true, peer
	}
	op.inflight--
	if req.slow {
		op.slow--
	}
	op.anyResponse = true
	for _, ct := range m.contacts {
		op.addCandidate(ct, int(cd.hop)+1, req.cand, c.id, c.cfg.CanReach, c.cfg.Defence.PrefixCap)
	}
	switch op.kind {
	case opResolve:
		got := false
		for _, enc := range m.records {
			r := c.acceptRecord(now, op, enc)
			if r == nil {
				c.st.RecordsRejected++
				continue
			}
			op.addRecord(r)
			got = true
		}
		if got {
			if op.foundFrom == 0 {
				op.foundRef = req.cand
			}
			op.foundFrom++
			if !op.graceArmed {
				op.graceArmed = true
				c.timers.push(timer{at: now + c.cfg.ValueGrace.Nanoseconds(), kind: tGrace, id: uint64(op.id)})
			}
		}
	case opNearest, opRange:
		if len(m.keys) > 0 {
			op.mergeKeys(m.keys, req.cand)
		}
	}
	c.step(now, op)
}

// onSoftTimeout frees the Alpha slot of a lookup request that is taking much
// longer than this node's typical round trip: the lookup asks the next
// candidate instead of waiting for the full RequestTimeout. The late request
// still counts if its answer comes.
func (c *Core) onSoftTimeout(now int64, req *request) {
	op := req.op
	if op == nil || op.done || op.storing || req.kind != reqLookup || req.slow ||
		int(req.cand) >= len(op.all) || op.all[req.cand].state != cInflight {
		return
	}
	req.slow = true
	op.slow++
	op.all[req.cand].slow = true
	c.step(now, op)
}

// softTimeout is 3 smoothed round trips (handshakes included), within
// [50 ms, RequestTimeout/2]; RequestTimeout/2 until a round trip was measured.
func (c *Core) softTimeout() int64 {
	hi := c.cfg.RequestTimeout.Nanoseconds() / 2
	if c.srtt == 0 {
		return hi
	}
	return min(max(3*c.srtt, int64(50*time.Millisecond)), hi)
}

func (c *Core) opFailure(now int64, req *request, timedOut bool) {
	op := req.op
	if op.done {
		return
	}
	if timedOut {
		op.path.Timeouts++
	}
	if req.kind == reqStore {
		if op.storing {
			op.storeOut--
			if op.storeOut == 0 {
				c.complete(now, op)
			}
		}
		return
	}
	if int(req.cand) < len(op.all) && op.all[req.cand].state == cInflight {
		cd := &op.all[req.cand]
		cd.state = cFailed
		if !cd.hasID && !cd.retried && timedOut {
			// A seed is often the only way in: one lost datagram must not
			// make a join fail, so it is asked a second time.
			cd.state, cd.retried = cFresh, true
		}
		op.inflight--
		if req.slow {
			op.slow--
		}
	}
	c.step(now, op)
}

// finishLookup ends the lookup phase: store operations go on to their store
// phase, the others complete.
func (c *Core) finishLookup(now int64, op *operation) {
	if op.done || op.storing {
		if op.storing && op.deadlineHit {
			c.complete(now, op) // stores still unanswered at the deadline count as failed
		}
		return
	}
	switch op.kind {
	case opPublish, opUnpublish, opStore:
		op.storing = true
		targets := op.closestDone(c.cfg.Replication)
		for _, i := range targets {
			m := msg{typ: mStore, key: op.target, records: [][]byte{op.enc}}
			if c.sendRequest(now, op.all[i].c, true, &m, op, i, reqStore, mStoreAck) == nil {
				op.storeOut++
			}
		}
		if op.storeOut == 0 {
			c.complete(now, op)
		}
		return
	}
	c.complete(now, op)
}

// closestDone returns up to n candidates (indices) that answered, closest first.
func (op *operation) closestDone(n int) []int32 {
	var out []int32
	for _, i := range op.order {
		if len(out) == n {
			break
		}
		if cd := &op.all[i]; cd.hasID && cd.state == cDone {
			out = append(out, i)
		}
	}
	return out
}

// pathTo fills the path's hop count and referral chain ending at candidate i.
func (op *operation) pathTo(i int32) {
	if i < 0 || int(i) >= len(op.all) {
		return
	}
	op.path.Hops = int(op.all[i].hop)
	var chain []identity.Key
	for j := i; j >= 0 && len(chain) < 256; j = op.all[j].ref {
		chain = append(chain, op.all[j].c.ID)
	}
	slices.Reverse(chain)
	op.path.Nodes = chain
}

func (c *Core) dropOp(op *operation) {
	c.st.PrefixRefused += uint64(op.prefixRefused)
	op.done = true
	delete(c.ops, op.id)
}

// complete ends an operation and reports it.
func (c *Core) complete(now int64, op *operation) {
	if op.done {
		return
	}
	c.dropOp(op)
	var comp Completion
	comp.Op = op.id
	switch op.kind {
	case opJoin:
		if op.anyResponse {
			c.joined = true
		}
		done := op.closestDone(c.cfg.K)
		c.deepestOf(op, done)
		if !op.anyResponse {
			// Nobody answered the join lookup (handshakes may have completed
			// and left contacts in the table, but no FIND_NODE came back):
			// report it, and let the maintenance tick retry the self-lookup.
			comp.Err = ErrAlone
		}
		if op.anyResponse && !c.cfg.SkipJoinRefresh {
			c.joinRefresh(now)
		}
	case opRefresh:
	case opPublish, opUnpublish, opStore:
		comp.Records = []*records.Record{op.rec}
		comp.Stored = op.stored
		c.deepestOf(op, op.closestDone(c.cfg.Replication))
		switch {
		case op.stored > 0:
		case !op.anyResponse && c.rt.size == 0:
			comp.Err = ErrAlone
		default:
			comp.Err = ErrNotStored
		}
		// Only the replicas that acknowledged hold it; the others get it
		// from replicate, retried with backoff until they acknowledge.
		if c.markAcked(op.target, op.enc, op.ackedBy) {
			c.dirty = true
			c.armReplicate(now)
		}
		if op.kind == opStore && op.stored == 0 && !op.anyResponse {
			c.store.putRecord(now, op.rec.Key(), op.rec, op.enc, netip.Addr{})
		}
		if o := c.owned[op.target]; o != nil && op.kind == opPublish && op.stored > 0 && o.rec.Seq == op.rec.Seq {
			o.confirmed = op.rec.Seq
		}
	case opResolve:
		op.pathTo(op.foundRef)
		var live []*records.Record
		withdrawn := false
		for _, r := range op.recs {
			if r.Withdrawn {
				withdrawn = true
			} else {
				live = append(live, r)
			}
		}
		slices.SortStableFunc(live, func(a, b *records.Record) int {
			if d := b.Issued.Compare(a.Issued); d != 0 {
				return d
			}
			return cmpU64(b.Seq, a.Seq)
		})
		comp.Records = live
		if len(live) == 0 {
			comp.Err = op.notFoundErr(withdrawn, c.rt.size == 0, c.everPeered, op.width(c.cfg))
		}
	case opNearest, opRange:
		op.pathTo(op.keysRef)
		comp.Keys = op.keys
		if op.kind == opRange {
			slices.SortFunc(comp.Keys, compareKeys)
		}
		if len(comp.Keys) == 0 {
			comp.Err = op.notFoundErr(false, c.rt.size == 0, c.everPeered, op.width(c.cfg))
		}
	}
	comp.Path = op.path
	if !op.internal {
		c.done = append(c.done, comp)
	}
}

// notFoundErr is the verdict of a lookup that found nothing. ErrNotFound is
// reserved for a conclusive one (see conclusive); a node alone that had
// peers, like any lookup that did not hear the closest nodes, is
// inconclusive.
func (op *operation) notFoundErr(withdrawn, alone, hadPeers bool, width int) error {
	switch {
	case withdrawn:
		return ErrWithdrawn
	case op.deadlineHit:
		return ErrTimeout
	case op.hopLimited:
		return ErrHopLimit
	case !op.anyResponse && alone && hadPeers:
		return errInconclusiveAlone
	case !op.anyResponse && alone:
		return ErrAlone
	case !op.conclusive(width):
		return ErrInconclusive
	}
	return ErrNotFound
}

// conclusive reports whether the lookup heard the nodes responsible for its
// key: the min(width, known) closest candidates with a known ID all
// answered. One of them that timed out, failed or was never asked (it may
// be the one holding the record) makes "nobody has it" unproven.
func (op *operation) conclusive(width int) bool {
	n := 0
	for _, i := range op.order {
		cd := &op.all[i]
		if !cd.hasID {
			continue
		}
		if cd.state != cDone {
			return false
		}
		if n++; n >= width {
			break
		}
	}
	return true
}

func (c *Core) deepestOf(op *operation, done []int32) {
	best := int32(-1)
	for _, i := range done {
		if best < 0 || op.all[i].hop > op.all[best].hop {
			best = i
		}
	}
	op.pathTo(best)
}

// joinRefresh looks up a random ID in every bucket farther than our closest
// neighbour, as Kademlia's join does, so the table covers the whole key space.
func (c *Core) joinRefresh(now int64) {
	nearest := c.rt.closest(nil, c.id, 1, c.id)
	if len(nearest) == 0 {
		return
	}
	deepest := commonPrefixLen(c.id, nearest[0].ID)
	for i := 0; i < deepest && len(c.ops) < c.cfg.MaxOps/2; i++ {
		c.startInternalLookup(now, opRefresh, randomIDInBucket(c.id, i, c.rng.Uint64))
	}
}

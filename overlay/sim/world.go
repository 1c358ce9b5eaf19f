package sim

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"runtime"
	"slices"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/overlay"
	"github.com/peername/peername/records"
)

// Core is the part of *overlay.Core the simulator drives. Tests substitute
// fakes, and hostile-node experiments substitute cores that misbehave.
type Core interface {
	ID() identity.Key
	Join(now time.Time, seeds []netip.AddrPort) overlay.OpID
	HandleDatagram(now time.Time, from netip.AddrPort, data []byte)
	HandleTimer(now time.Time)
	NextTimer() time.Time
	Publish(now time.Time, tmpl *records.Record) overlay.OpID
	Resolve(now time.Time, key identity.Key, o overlay.SearchOptions) overlay.OpID
	Outbox() (sends []overlay.Send, done []overlay.Completion)
	Stats() overlay.Stats
}

// RecordWalker is implemented by cores that let the simulator inspect the
// records they hold, so that the "no node holds a record that fails Verify"
// invariant is checked on stored state and not only on answers.
type RecordWalker interface {
	ForEachRecord(fn func(*records.Record) bool)
}

// Publisher is implemented by cores that tell which record they currently
// publish for a name (overlay.Core does: owners re-sign with a higher Seq at
// every republish). Without it, the Seq of the publish completion is current.
type Publisher interface {
	Published(name identity.Name) *records.Record
	// Confirmed is the Seq of the newest publish or republish of name the
	// replicas acknowledged (overlay.Core.Confirmed).
	Confirmed(name identity.Name) uint64
}

// ErrInvariant is wrapped by the error World.Run returns when an invariant
// failed; the message carries the seed that replays the run.
var ErrInvariant = errors.New("sim: invariant violated")

// Config describes one simulated run: the network, the population, the
// workload and the checks.
type Config struct {
	Seed  uint64
	Nodes int // nodes that join at the start
	Net   Network

	// JoinRate is how many nodes join per virtual second (default max(100, Nodes/60)).
	JoinRate float64
	// Seeds is how many earlier, joined nodes a joining node bootstraps from (default 3).
	Seeds int
	// Settle is the quiet time after the last join and after the publishes (default 20 s).
	Settle time.Duration

	// FlashCrowd, when set, replaces the steady joins by a crowd: the
	// CrowdSeeds first nodes join one after another (the first alone, the
	// others through it), then every other node joins within FlashCrowd
	// (uniformly spread), through those seeds only. A node whose join gets
	// no answer tries again as the UDP driver does (node.Config.JoinBackoff):
	// after 1 s, doubling up to 30 s, each wait jittered between half and all
	// of it, for as long as the run lasts. Report.JoinTimes give the time
	// from each crowd node's first try to its successful join.
	FlashCrowd time.Duration
	CrowdSeeds int // default 1

	// Publishers is the fraction of nodes that publish one secured name (default 0.1).
	Publishers float64
	// Payload is the size of the opaque payload of every published record
	// (0 to records.MaxPayload; default none): large records make STOREs
	// and answers that the UDP driver fragments (Network.MaxDatagram).
	Payload int
	// Lookups is the number of lookups of published names, issued from random
	// live nodes, spread evenly over LookupPhase (default 120 s).
	Lookups       int
	LookupPhase   time.Duration
	LookupTimeout time.Duration // deadline of one lookup (default 10 s)

	// Fail is the fraction of the initial nodes that fail silently at random
	// times during the lookup phase; JoinLate the fraction (of Nodes) of new
	// nodes joining during it.
	Fail, JoinLate float64

	// CheckEvery is the virtual period of the state sweep: every live node's
	// Stats within its bounds and, for a RecordWalker, every held record
	// verifies, and the replica census (census.go) finds every live name
	// on its replicas (0 = no sweep; answers are always checked).
	CheckEvery time.Duration
	// ProbeEvery is the virtual period of the liveness probe: every published
	// name whose owner is alive must resolve, within ProbeAttempts lookups from
	// random live nodes (0 = off). Probes pause while a partition is active
	// and for ProbeGrace after it heals.
	ProbeEvery    time.Duration
	ProbeAttempts int           // default 3
	ProbeGrace    time.Duration // default 60 s
	// StopOnViolation ends the run at the first violated invariant.
	StopOnViolation bool

	// Core holds the tunables of every node; Identity and Seed are set per node.
	Core overlay.Config
	// NewCore builds node i's core (default: overlay.NewCore). Hostile-node
	// experiments return misbehaving cores for chosen indices.
	NewCore func(i int, cfg overlay.Config) (Core, error)
	// Attack, if set, makes a fraction of the nodes hostile (attack.go).
	Attack *Attack

	// HashData folds datagram contents into the trace hash (slower).
	HashData bool
	// Progress, if set, receives a line every ProgressEvery of virtual time
	// (default 10 s) but at most one per ProgressWall of wall time (default 2 s).
	Progress      io.Writer
	ProgressEvery time.Duration
	ProgressWall  time.Duration
}

func (c *Config) applyDefaults() error {
	if c.Nodes < 1 {
		return fmt.Errorf("%w: nodes = %d", ErrBadConfig, c.Nodes)
	}
	if c.Payload < 0 || c.Payload > records.MaxPayload {
		return fmt.Errorf("%w: payload %d bytes: want 0 to %d", ErrBadConfig, c.Payload, records.MaxPayload)
	}
	if c.Lookups < 0 || !prob(c.Publishers) || !prob(c.Fail) || c.JoinLate < 0 || c.JoinRate < 0 {
		return fmt.Errorf("%w: lookups, publishers, fail or join-late out of range", ErrBadConfig)
	}
	if c.JoinRate == 0 {
		c.JoinRate = max(100, float64(c.Nodes)/60)
	}
	if c.Seeds <= 0 {
		c.Seeds = 3
	}
	if c.FlashCrowd < 0 || c.CrowdSeeds < 0 || c.FlashCrowd > 0 && c.CrowdSeeds >= c.Nodes {
		return fmt.Errorf("%w: flash crowd %v through %d seeds of %d nodes", ErrBadConfig, c.FlashCrowd, c.CrowdSeeds, c.Nodes)
	}
	if c.CrowdSeeds == 0 {
		c.CrowdSeeds = 1
	}
	if c.Settle <= 0 {
		c.Settle = 20 * time.Second
	}
	if c.Publishers == 0 {
		c.Publishers = 0.1
	}
	if c.LookupPhase <= 0 {
		c.LookupPhase = 120 * time.Second
	}
	if c.LookupTimeout <= 0 {
		c.LookupTimeout = 10 * time.Second
	}
	if c.ProbeAttempts <= 0 {
		c.ProbeAttempts = 3
	}
	if c.ProbeGrace <= 0 {
		c.ProbeGrace = 60 * time.Second
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = 10 * time.Second
	}
	if c.ProgressWall <= 0 {
		c.ProgressWall = 2 * time.Second
	}
	if c.NewCore == nil {
		c.NewCore = defaultCore
	}
	return c.Net.Validate()
}

// vnode is a Core attached to the engine.
type vnode struct {
	Core
	w   *World
	idx int32
}

// Flush hands the core's datagrams to the network and its completions to the
// workload.
func (n *vnode) Flush(now time.Time, send func(netip.AddrPort, []byte)) {
	sends, done := n.Outbox()
	for _, s := range sends {
		send(s.To, s.Data)
	}
	for i := range done {
		n.w.complete(n.idx, now, &done[i])
	}
}

type opKind uint8

const (
	opJoin opKind = iota + 1
	opPublish
	opLookup
	opProbe
)

type opKey struct {
	node int32
	op   overlay.OpID
}

type opInfo struct {
	kind    opKind
	attempt int8
	name    int32
	start   int64
	want    uint64 // lookups: the name's current Seq when the lookup was issued
}

// published is one name of the workload.
type published struct {
	owner int32
	name  identity.Name
	key   identity.Key
	pub   ed25519.PublicKey
	seq   uint64 // newest Seq the owner published; valid when ok
	ok    bool
}

// World is one simulated run: an Engine, its nodes, the workload and the
// invariant checks. Build it with NewWorld and call Run once.
type World struct {
	cfg   Config
	e     *Engine
	nodes []*vnode
	names []published
	live  []int32 // indices into names that were published
	ready []int32 // nodes whose join completed
	// Flash crowd: when each node first tried to join, and how long its join
	// took (-1: not joined yet).
	joinFirst, joinTook []int64
	doom                []bool // nodes scheduled to fail
	ops                 map[opKey]opInfo

	attack *attackState // nil without Config.Attack

	// changes are the joins, finished joins and failures of the last two
	// ticks (the replica census leaves names near them alone).
	changes []change
	// wasClient is whether each node acted as a client at the last sweep.
	wasClient []bool

	joinEnd, lookupStart, lookupEnd, end time.Duration

	rep        Report
	hops       []int
	samples    []LookupSample // every workload lookup, in completion order
	lats       []time.Duration
	violations []string
	atLookup   Counters
	baseHeap   uint64
	lastWall   time.Time
	wallStart  time.Time
	err        error
}

// NewWorld validates cfg and prepares a run.
func NewWorld(cfg Config) (*World, error) {
	if err := cfg.applyDefaults(); err != nil {
		return nil, err
	}
	e, err := NewEngine(cfg.Seed, cfg.Net, cfg.HashData)
	if err != nil {
		return nil, err
	}
	w := &World{cfg: cfg, e: e, ops: make(map[opKey]opInfo)}
	w.rep.Nodes = cfg.Nodes
	w.rep.Seed = cfg.Seed
	w.rep.Lookups = cfg.Lookups
	return w, nil
}

// Engine exposes the run's engine (for partitions added by tests, counters).
func (w *World) Engine() *Engine { return w.e }

// identityOf derives node i's identity from the run's seed.
func (w *World) identityOf(i int) *identity.Identity {
	return identity.FromSeed(DeriveBytes(w.cfg.Seed, "identity", uint64(i)))
}

// Run plays the whole scenario and returns its report. The error wraps
// ErrInvariant (and names the seed) if an invariant failed, or ctx's error if
// ctx ended first.
func (w *World) Run(ctx context.Context) (*Report, error) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	w.baseHeap = ms.HeapAlloc
	w.wallStart = time.Now()
	w.lastWall = w.wallStart

	c := &w.cfg
	rng := w.e.Rand()
	joinSpan := time.Duration(float64(c.Nodes-1) / c.JoinRate * float64(time.Second))
	if c.FlashCrowd > 0 {
		// The seeds, 100 ms apart, then the crowd.
		joinSpan = crowdStart(c.CrowdSeeds) + c.FlashCrowd
	}
	w.joinEnd = joinSpan + c.Settle
	publishSpan := 10 * time.Second
	w.lookupStart = w.joinEnd + publishSpan + c.Settle
	w.lookupEnd = w.lookupStart + c.LookupPhase
	w.end = w.lookupEnd + c.LookupTimeout + time.Second

	w.setupAttack()
	// Initial joins, one call chained to the next so the queue stays small.
	if c.FlashCrowd > 0 {
		w.chain(c.CrowdSeeds, 0, crowdStart(c.CrowdSeeds)-100*time.Millisecond, func(int, time.Time) { w.addNode() })
		w.chain(c.Nodes-c.CrowdSeeds, crowdStart(c.CrowdSeeds), c.FlashCrowd, func(int, time.Time) { w.addNode() })
	} else {
		w.chain(c.Nodes, 0, joinSpan, func(k int, _ time.Time) { w.addNode() })
	}

	// Publishers: a random subset of the initial nodes.
	nPub := int(math.Round(c.Publishers * float64(c.Nodes)))
	for _, i := range rng.Perm(c.Nodes)[:nPub] {
		if w.hostile(i) {
			continue
		}
		id := w.identityOf(i)
		name, err := identity.NewSecuredName(fmt.Sprintf("n%d", i), id.PublicKey())
		if err != nil {
			return nil, fmt.Errorf("sim: name of node %d: %w", i, err)
		}
		w.names = append(w.names, published{owner: int32(i), name: name, key: name.Key(), pub: id.PublicKey()})
	}
	w.rep.Names = len(w.names)
	w.chain(len(w.names), w.joinEnd, publishSpan, func(k int, now time.Time) { w.publish(k, now, 0) })
	w.scheduleAttack(publishSpan)

	// Silent failures and late joins during the lookup phase.
	nFail := int(math.Round(c.Fail * float64(c.Nodes)))
	w.doom = make([]bool, c.Nodes)
	victims := rng.Perm(c.Nodes)[:nFail]
	for _, v := range victims {
		w.doom[v] = true
	}
	w.chain(nFail, w.lookupStart, c.LookupPhase, func(k int, _ time.Time) {
		if core := w.nodes[victims[k]].Core; core != nil {
			w.noteChange(core.ID())
		}
		w.e.Fail(victims[k])
		w.nodes[victims[k]].Core = nil
		w.rep.FailedNodes++
	})
	nLate := int(math.Round(c.JoinLate * float64(c.Nodes)))
	w.chain(nLate, w.lookupStart, c.LookupPhase, func(int, time.Time) { w.addNode(); w.rep.LateJoins++ })

	w.chain(c.Lookups, w.lookupStart, c.LookupPhase, func(_ int, now time.Time) { w.lookup(now) })
	w.e.At(w.lookupStart, func(time.Time) { w.startLookupPhase() })
	w.e.At(w.lookupEnd, func(time.Time) { w.endLookupPhase() })

	if c.CheckEvery > 0 {
		w.every(c.CheckEvery, c.CheckEvery, w.sweep)
	}
	if c.ProbeEvery > 0 {
		w.every(w.lookupStart, c.ProbeEvery, w.probeRound)
	}
	if c.Progress != nil {
		w.every(c.ProgressEvery, c.ProgressEvery, func(now time.Time) { w.progress(false) })
	}

	for w.e.Elapsed() < w.end && w.err == nil {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("sim: run interrupted at %v (seed %d): %w", w.e.Elapsed(), c.Seed, err)
		}
		w.e.Run(min(w.e.Elapsed()+100*time.Millisecond, w.end))
	}
	if c.Progress != nil {
		w.progress(true)
	}
	w.finish()
	if len(w.violations) > 0 {
		return &w.rep, fmt.Errorf("%w (seed %d): %d violation(s), first: %s", ErrInvariant, c.Seed, len(w.violations), w.violations[0])
	}
	return &w.rep, nil
}

// chain runs fn(k) for k in [0, n), evenly spread over [start, start+span),
// scheduling each call from the previous one.
func (w *World) chain(n int, start, span time.Duration, fn func(k int, now time.Time)) {
	if n <= 0 {
		return
	}
	at := func(k int) time.Duration {
		if n == 1 {
			return start
		}
		return start + time.Duration(float64(span)*float64(k)/float64(n))
	}
	var step func(k int) func(time.Time)
	step = func(k int) func(time.Time) {
		return func(now time.Time) {
			fn(k, now)
			if k+1 < n {
				w.e.At(at(k+1), step(k+1))
			}
		}
	}
	w.e.At(at(0), step(0))
}

// every runs fn at start and then every period until the run ends.
func (w *World) every(start, period time.Duration, fn func(now time.Time)) {
	var tick func(now time.Time)
	tick = func(now time.Time) {
		fn(now)
		if next := w.e.Elapsed() + period; next < w.end {
			w.e.At(next, tick)
		}
	}
	w.e.At(start, tick)
}

func (w *World) violate(now time.Time, format string, args ...any) {
	msg := fmt.Sprintf("t=%v: ", now.Sub(Epoch)) + fmt.Sprintf(format, args...)
	w.violations = append(w.violations, msg)
	w.rep.Violations++
	if w.cfg.StopOnViolation && w.err == nil {
		w.err = errors.New(msg)
	}
}

// addNode creates the next node and starts its join.
func (w *World) addNode() {
	i := len(w.nodes)
	cfg := w.cfg.Core
	cfg.Identity = w.identityOf(i)
	cfg.Seed = Derive(w.cfg.Seed, "core", uint64(i))
	core, err := w.cfg.NewCore(i, cfg)
	if err != nil {
		w.violate(w.e.Now(), "node %d: new core: %v", i, err)
		w.nodes = append(w.nodes, &vnode{w: w, idx: int32(i)})
		w.e.Add(nopHost{})
		w.e.Fail(i)
		return
	}
	n := &vnode{Core: core, w: w, idx: int32(i)}
	w.nodes = append(w.nodes, n)
	w.noteChange(core.ID())
	if i >= len(w.doom) {
		w.doom = append(w.doom, false)
	}
	w.e.Add(n)
	w.join(i, 0)
}

// crowdStart is when a flash crowd starts after its n seeds.
func crowdStart(n int) time.Duration { return time.Duration(n)*100*time.Millisecond + time.Second }

func (w *World) join(i int, attempt int8) {
	if !w.e.Alive(i) {
		return
	}
	now := w.e.Now()
	seeds := w.pickSeeds(i)
	if w.cfg.FlashCrowd > 0 {
		seeds = seeds[:0]
		for j := range min(i, w.cfg.CrowdSeeds) {
			seeds = append(seeds, w.e.addrOf(j))
		}
		for len(w.joinFirst) <= i {
			w.joinFirst, w.joinTook = append(w.joinFirst, -1), append(w.joinTook, -1)
		}
		if w.joinFirst[i] < 0 {
			w.joinFirst[i] = int64(w.e.Elapsed())
		}
	}
	w.attackSeeds(i, seeds)
	op := w.nodes[i].Join(now, seeds)
	w.ops[opKey{int32(i), op}] = opInfo{kind: opJoin, attempt: attempt, start: int64(w.e.Elapsed())}
	w.e.Poke(i)
}

func (w *World) pickSeeds(self int) []netip.AddrPort {
	var seeds []netip.AddrPort
	rng := w.e.Rand()
	for tries := 0; len(seeds) < w.cfg.Seeds && tries < 8*w.cfg.Seeds && len(w.ready) > 0; tries++ {
		j := int(w.ready[rng.IntN(len(w.ready))])
		a := w.e.addrOf(j)
		if j == self || !w.e.Alive(j) || slices.Contains(seeds, a) || w.e.Behind(j) {
			continue
		}
		seeds = append(seeds, a)
	}
	return seeds
}

func (w *World) publish(k int, now time.Time, attempt int8) {
	p := &w.names[k]
	i := int(p.owner)
	if !w.e.Alive(i) {
		return
	}
	tmpl := &records.Record{
		Name:      p.name,
		Endpoints: []netip.Addr{w.e.addrOf(i).Addr()},
		TXT:       []string{fmt.Sprintf("node=%d", i)},
	}
	if n := w.cfg.Payload; n > 0 {
		tmpl.Payload = bytes.Repeat([]byte{byte(k)}, n)
	}
	op := w.nodes[i].Publish(now, tmpl)
	w.ops[opKey{int32(i), op}] = opInfo{kind: opPublish, attempt: attempt, name: int32(k), start: int64(w.e.Elapsed())}
	w.e.Poke(i)
}

// pickSource is a random live, joined node that is not scheduled to fail and
// is not avoid; -1 if none was found.
func (w *World) pickSource(avoid int32) int {
	rng := w.e.Rand()
	for range 64 {
		if len(w.ready) == 0 {
			return -1
		}
		j := int(w.ready[rng.IntN(len(w.ready))])
		if int32(j) != avoid && w.e.Alive(j) && !w.doom[j] && !w.hostile(j) {
			return j
		}
	}
	return -1
}

// pickName is a random published name whose owner is alive; -1 if none.
func (w *World) pickName() int {
	rng := w.e.Rand()
	for range 64 {
		if len(w.live) == 0 {
			return -1
		}
		k := int(w.live[rng.IntN(len(w.live))])
		if w.e.Alive(int(w.names[k].owner)) {
			return k
		}
	}
	return -1
}

func (w *World) lookup(now time.Time) {
	k := w.pickName()
	src := -1
	if k >= 0 {
		src = w.pickSource(w.names[k].owner)
	}
	if k < 0 || src < 0 {
		w.rep.NotIssued++ // counted as a failure: the workload could not run it
		return
	}
	w.resolve(src, k, opLookup, 0, now)
}

func (w *World) resolve(src, k int, kind opKind, attempt int8, now time.Time) {
	want := w.currentSeq(k)
	op := w.nodes[src].Resolve(now, w.names[k].key, overlay.SearchOptions{Deadline: now.Add(w.cfg.LookupTimeout)})
	w.ops[opKey{int32(src), op}] = opInfo{kind: kind, attempt: attempt, name: int32(k), start: int64(w.e.Elapsed()), want: want}
	w.e.Poke(src)
}

// currentSeq is the Seq of the newest record of name k that its owner's
// replicas acknowledged (its publish, or a republish, completed): a lookup
// started now must return it or a newer one. A republish still placing its
// record does not count yet: until its STOREs land, the previous record is
// the current one for everybody else.
func (w *World) currentSeq(k int) uint64 {
	p := &w.names[k]
	if o := int(p.owner); w.e.Alive(o) {
		if pub, ok := w.nodes[o].Core.(Publisher); ok {
			p.seq = max(p.seq, pub.Confirmed(p.name))
		}
	}
	return p.seq
}

// complete handles one completion of node i. It never calls into a core:
// follow-up work is scheduled.
func (w *World) complete(i int32, now time.Time, c *overlay.Completion) {
	for _, r := range c.Records {
		if err := records.Verify(r, now); err != nil {
			w.violate(now, "node %d returned a record for %s that fails Verify: %v", i, r.Name, err)
		}
	}
	key := opKey{i, c.Op}
	info, ok := w.ops[key]
	if !ok {
		return
	}
	delete(w.ops, key)
	switch info.kind {
	case opJoin:
		switch {
		case c.Err == nil, i == 0 && errors.Is(c.Err, overlay.ErrAlone):
			w.ready = append(w.ready, i)
			w.noteChange(w.nodes[i].Core.ID())
			if w.cfg.FlashCrowd > 0 && int(i) < len(w.joinTook) {
				w.joinTook[i] = int64(w.e.Elapsed()) - w.joinFirst[i]
			}
		case w.cfg.FlashCrowd > 0:
			// The driver's backoff: 1 s doubling to 30 s, jittered.
			w.rep.JoinRetries++
			nominal := min(time.Second<<min(info.attempt, 5), 30*time.Second)
			wait := nominal/2 + time.Duration(w.e.Rand().Int64N(int64(nominal/2)+1))
			w.e.After(wait, func(time.Time) { w.join(int(i), min(info.attempt+1, 100)) })
		case info.attempt < 4:
			w.rep.JoinRetries++
			w.e.After(2*time.Second, func(time.Time) { w.join(int(i), info.attempt+1) })
		default:
			w.rep.JoinFailures++
		}
	case opPublish:
		p := &w.names[info.name]
		if c.Err == nil && len(c.Records) > 0 {
			r := c.Records[0]
			if !bytes.Equal(r.PublicKey, p.pub) || r.Name != p.name {
				w.violate(now, "node %d: publish of %s completed with a record for %s", i, p.name, r.Name)
				return
			}
			if !p.ok {
				w.live = append(w.live, info.name)
			}
			p.seq, p.ok = max(p.seq, r.Seq), true
			return
		}
		if info.attempt < 4 {
			w.rep.PublishRetries++
			w.e.After(5*time.Second, func(now time.Time) { w.publish(int(info.name), now, info.attempt+1) })
			return
		}
		w.rep.PublishFailures++
	case opLookup:
		w.lookupDone(i, now, info, c)
	case opProbe:
		w.probeDone(i, now, info, c)
	}
}

// current reports whether c returned a record of name k's owner (found) with
// at least Seq want (current).
func (w *World) current(k int32, want uint64, c *overlay.Completion) (found, current bool) {
	p := &w.names[k]
	for _, r := range c.Records {
		if r.Name != p.name || !bytes.Equal(r.PublicKey, p.pub) {
			continue
		}
		found = true
		if r.Seq >= want && !r.Withdrawn {
			return true, true
		}
	}
	return found, false
}

func (w *World) lookupDone(i int32, now time.Time, info opInfo, c *overlay.Completion) {
	w.attackLookupDone(i, now, info, c)
	found, cur := w.current(info.name, info.want, c)
	lat := time.Duration(int64(w.e.Elapsed()) - info.start)
	w.samples = append(w.samples, LookupSample{At: w.e.Elapsed(), Latency: lat, Hops: c.Path.Hops, OK: c.Err == nil && cur})
	switch {
	case c.Err == nil && cur:
		w.rep.Succeeded++
		w.hops = append(w.hops, c.Path.Hops)
		w.lats = append(w.lats, lat)
	case c.Err == nil && found:
		w.rep.Stale++
	case c.Err == nil:
		w.rep.WrongRecord++
	case errors.Is(c.Err, overlay.ErrTimeout):
		w.rep.Timeouts++
	case errors.Is(c.Err, overlay.ErrNotFound):
		w.rep.NotFound++
	case errors.Is(c.Err, overlay.ErrInconclusive):
		w.rep.Inconclusive++
	case errors.Is(c.Err, overlay.ErrHopLimit):
		w.rep.HopLimit++
	default:
		w.rep.OtherErrors++
		if w.rep.OtherErrorKinds == nil {
			w.rep.OtherErrorKinds = map[string]int{}
		}
		w.rep.OtherErrorKinds[c.Err.Error()]++
	}
}

func (w *World) probeRound(now time.Time) {
	if w.partitioned(now) {
		return
	}
	for _, k := range w.live {
		if !w.e.Alive(int(w.names[k].owner)) {
			continue
		}
		if src := w.pickSource(w.names[k].owner); src >= 0 {
			w.rep.Probes++
			w.resolve(src, int(k), opProbe, 0, now)
		}
	}
}

// partitioned reports whether a partition is active or healed less than
// ProbeGrace ago.
func (w *World) partitioned(now time.Time) bool {
	at := now.Sub(Epoch)
	for _, p := range w.cfg.Net.Partitions {
		if at >= p.Start && (p.End <= p.Start || at < p.End+w.cfg.ProbeGrace) {
			return true
		}
	}
	return false
}

func (w *World) probeDone(i int32, now time.Time, info opInfo, c *overlay.Completion) {
	if _, cur := w.current(info.name, info.want, c); c.Err == nil && cur {
		return
	}
	p := &w.names[info.name]
	if !w.e.Alive(int(p.owner)) || w.partitioned(now) {
		return // the owner failed meanwhile: no longer required to resolve
	}
	w.rep.ProbeRetries++
	if int(info.attempt)+1 >= w.cfg.ProbeAttempts {
		w.violate(now, "name %s (owner node %d alive, seq %d) did not resolve in %d attempts; last from node %d: err=%v records=%d",
			p.name, p.owner, p.seq, w.cfg.ProbeAttempts, i, c.Err, len(c.Records))
		return
	}
	w.e.After(0, func(now time.Time) {
		if src := w.pickSource(p.owner); src >= 0 {
			w.resolve(src, int(info.name), opProbe, info.attempt+1, now)
		}
	})
}

// sweep checks every live node's state against its bounds and every record
// it holds, then takes the replica census (censusSweep).
func (w *World) sweep(now time.Time) {
	maxPerSource := w.cfg.Core.MaxPerSource
	if maxPerSource <= 0 {
		maxPerSource = overlay.DefaultMaxPerSource
	}
	for i, n := range w.nodes {
		if !w.e.Alive(i) {
			continue
		}
		w.rep.Sweeps++
		s := n.Stats()
		check := func(what string, v, bound int) {
			if bound > 0 && v > bound {
				w.violate(now, "node %d: %s = %d exceeds its bound %d", i, what, v, bound)
			}
		}
		check("routing table", s.RoutingTableSize, s.RoutingTableMax)
		check("sessions", s.Sessions-s.HalfOpenSessions, s.MaxSessions)
		check("half-open sessions", s.HalfOpenSessions, s.MaxHalfOpen)
		check("records stored", s.RecordsStored, s.MaxRecords)
		check("record bytes", s.RecordBytes, s.MaxRecordBytes)
		check("pending requests", s.PendingRequests, s.MaxPending)
		check("active ops", s.ActiveOps, s.MaxOps)
		check("records from one source", s.MaxSourceRecords, maxPerSource)
		w.rep.MaxRoutingTable = max(w.rep.MaxRoutingTable, s.RoutingTableSize)
		w.rep.MaxRecordsStored = max(w.rep.MaxRecordsStored, s.RecordsStored)
		w.rep.MaxPending = max(w.rep.MaxPending, s.PendingRequests)
		if rw, ok := n.Core.(RecordWalker); ok {
			rw.ForEachRecord(func(r *records.Record) bool {
				w.rep.RecordsChecked++
				if err := records.Verify(r, now); err != nil {
					w.violate(now, "node %d holds a record for %s that fails Verify: %v", i, r.Name, err)
					return false
				}
				return true
			})
		}
	}
	w.censusSweep(now)
}

func (w *World) startLookupPhase() {
	w.atLookup = w.e.Counters()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if alive := w.aliveCount(); alive > 0 && ms.HeapAlloc > w.baseHeap {
		w.rep.HeapBytesPerNode = float64(ms.HeapAlloc-w.baseHeap) / float64(alive)
	}
	w.rep.Joined = len(w.ready)
	w.rep.Published = len(w.live)
	w.crowdReport()
}

// crowdReport fills the flash crowd's join-time figures (at the start of
// the lookup phase): percentiles of the crowd nodes' join times, how many
// were joined within 10, 30 and 60 s of their first try, and how many were
// alone (not joined, or with an empty routing table).
func (w *World) crowdReport() {
	if w.cfg.FlashCrowd <= 0 {
		return
	}
	var took []time.Duration
	for i := w.cfg.CrowdSeeds; i < len(w.joinTook); i++ {
		if !w.e.Alive(i) {
			continue
		}
		if w.joinTook[i] < 0 || w.nodes[i].Stats().RoutingTableSize == 0 {
			w.rep.Alone++
			continue
		}
		took = append(took, time.Duration(w.joinTook[i]))
	}
	slices.Sort(took)
	w.rep.JoinTimes = took
	pct := func(p float64) float64 {
		if len(took) == 0 {
			return 0
		}
		return float64(took[min(len(took)-1, int(p*float64(len(took))))]) / 1e6
	}
	w.rep.JoinP50ms, w.rep.JoinP90ms, w.rep.JoinP99ms = pct(0.5), pct(0.9), pct(0.99)
	if len(took) > 0 {
		w.rep.JoinMaxMs = float64(took[len(took)-1]) / 1e6
	}
	for _, d := range took {
		if d <= 10*time.Second {
			w.rep.JoinedIn10s++
		}
		if d <= 30*time.Second {
			w.rep.JoinedIn30s++
		}
		if d <= 60*time.Second {
			w.rep.JoinedIn60s++
		}
	}
	c := w.e.Counters()
	w.rep.Overloaded, w.rep.InboxStale, w.rep.Queued, w.rep.MaxInbox = c.Overloaded, c.Stale, c.Queued, c.MaxInbox
}

func (w *World) endLookupPhase() {
	c := w.e.Counters()
	ns := c.NodeSeconds - w.atLookup.NodeSeconds
	if ns > 0 {
		w.rep.LookupMsgsPerNodePerS = float64(c.Sent-w.atLookup.Sent) / ns
		w.rep.LookupBytesPerNodePerS = float64(c.SentBytes-w.atLookup.SentBytes) / ns
	}
}

func (w *World) aliveCount() int {
	n := 0
	for i := range w.nodes {
		if w.e.Alive(i) {
			n++
		}
	}
	return n
}

func (w *World) progress(final bool) {
	now := time.Now()
	if !final && now.Sub(w.lastWall) < w.cfg.ProgressWall {
		return
	}
	w.lastWall = now
	r := &w.rep
	done := r.Succeeded + r.Timeouts + r.NotFound + r.Inconclusive + r.Stale + r.WrongRecord + r.HopLimit + r.OtherErrors + r.NotIssued
	fmt.Fprintf(w.cfg.Progress, "sim seed=%d t=%v nodes=%d alive=%d joined=%d published=%d lookups=%d/%d ok=%d queue=%d wall=%.1fs\n",
		w.cfg.Seed, w.e.Elapsed().Truncate(time.Second), len(w.nodes), w.aliveCount(), len(w.ready), len(w.live),
		done, w.cfg.Lookups, r.Succeeded, len(w.e.queue), now.Sub(w.wallStart).Seconds())
}

func (w *World) finish() {
	r := &w.rep
	c := w.e.Counters()
	for k := range w.ops {
		if w.ops[k].kind == opLookup {
			r.Unfinished++
		}
	}
	r.Failures = r.Lookups - r.Succeeded
	w.census()
	r.Series = &Series{Lookups: w.samples, Traffic: w.e.Seconds()}
	if r.Lookups > 0 {
		r.SuccessRate = float64(r.Succeeded) / float64(r.Lookups)
	}
	if len(w.hops) > 0 {
		sum := 0
		for _, h := range w.hops {
			sum += h
		}
		r.HopsMean = float64(sum) / float64(len(w.hops))
		slices.Sort(w.hops)
		r.HopsP99 = float64(w.hops[quantileIndex(len(w.hops), 0.99)])
		r.HopsMax = w.hops[len(w.hops)-1]
	}
	if len(w.lats) > 0 {
		slices.Sort(w.lats)
		r.LatencyP50ms = ms(w.lats[quantileIndex(len(w.lats), 0.50)])
		r.LatencyP99ms = ms(w.lats[quantileIndex(len(w.lats), 0.99)])
	}
	if c.NodeSeconds > 0 {
		r.MsgsPerNodePerS = float64(c.Sent) / c.NodeSeconds
		r.BytesPerNodePerS = float64(c.SentBytes) / c.NodeSeconds
	}
	r.VirtualS = w.e.Elapsed().Seconds()
	r.WallS = time.Since(w.wallStart).Seconds()
	r.Events = c.Events
	r.MaxQueue = c.MaxQueue
	r.Sent, r.Lost, r.Duplicated, r.Partitioned, r.ToDead = c.Sent, c.Lost, c.Duplicated, c.Partitioned, c.ToDead
	r.Fragmented, r.FragmentLost = c.Fragmented, c.FragmentLost
	r.Trace = fmt.Sprintf("%016x", w.e.Trace())
	w.reachReport()
	r.Attack = w.attackReport()
	if n := len(w.violations); n > 0 {
		r.ViolationList = w.violations[:min(n, 20)]
	}
}

// quantileIndex is the nearest-rank index of quantile q in n sorted values.
func quantileIndex(n int, q float64) int {
	return min(n-1, max(0, int(math.Ceil(q*float64(n)))-1))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// nopHost stands in for a node whose core could not be built.
type nopHost struct{}

func (nopHost) HandleDatagram(time.Time, netip.AddrPort, []byte) {}
func (nopHost) HandleTimer(time.Time)                            {}
func (nopHost) NextTimer() time.Time                             { return time.Time{} }
func (nopHost) Flush(time.Time, func(netip.AddrPort, []byte))    {}

package sim

import (
	"bytes"
	"fmt"
	"net/netip"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/overlay"
	"github.com/peername/peername/records"
)

// Attack makes a fraction of the nodes hostile and colluding. Hostile nodes
// never publish the workload's names and never issue its lookups: every
// lookup the report counts is an honest node resolving an honest name.
type Attack struct {
	Kind HostileKind
	// Fraction of the initial nodes that are hostile (node 0, the first
	// bootstrap, is always honest).
	Fraction float64
	// Defence turns on overlay.DefaultDefence in every honest core.
	Defence bool
	// FloodEvery is how often a flooding node publishes one more junk name
	// (default 2 s); ChurnEvery how often a churning node takes a fresh
	// identity and rejoins (default 30 s).
	FloodEvery, ChurnEvery time.Duration
	// Prefixes, if > 0, puts the hostile nodes' addresses in that many IPv6
	// /48s (colluder j in prefix j mod Prefixes), as an attacker renting
	// servers from a few providers would have them; 0 gives every hostile
	// node its own /48, like honest nodes (an attacker with a botnet's
	// address diversity, against which Defence.PrefixCap does nothing).
	Prefixes int
}

// AttackReport is the attack's effect, in Report.Attack.
type AttackReport struct {
	Kind      string  `json:"kind"`
	Fraction  float64 `json:"malicious_fraction"`
	Malicious int     `json:"malicious_nodes"`
	Defence   bool    `json:"defence"`
	// HonestSuccessRate is Report.SuccessRate: lookups by honest nodes of
	// honest names that returned the owner's current record.
	HonestSuccessRate float64 `json:"honest_success_rate"`
	// ForgedAccepted counts records an honest resolver returned that fail
	// records.Verify or are not the looked-up name's owner's record. Must be 0.
	ForgedAccepted int `json:"forged_accepted"`
	// StaleAccepted counts lookups that returned an older Seq than the
	// owner's current while a live honest node held the current one.
	StaleAccepted int `json:"stale_accepted"`
	// Eclipsed counts lookups that returned no record of the owner although
	// a live honest node held its current record.
	Eclipsed int `json:"eclipsed"`
	// SeedEclipsedNodes counts honest nodes whose every bootstrap seed (the
	// world gives each joining node a few random joined nodes) was hostile:
	// such a node only ever hears of colluders, whatever its lookups do.
	// EclipsedBySeeds counts the eclipsed lookups issued by such a node or
	// for a name it owns.
	SeedEclipsedNodes int `json:"seed_eclipsed_nodes"`
	EclipsedBySeeds   int `json:"eclipsed_by_seeds"`
	// Lying answers sent by the hostile nodes.
	ForgedAnswers   uint64 `json:"forged_answers"`
	StaleAnswers    uint64 `json:"stale_answers"`
	EclipseAnswers  uint64 `json:"eclipse_answers"`
	DroppedRequests uint64 `json:"dropped_requests"`
	FloodPublishes  int    `json:"flood_publishes"`
	Churns          int    `json:"identity_churns"`
	Republished     int    `json:"republished"` // stale: names republished with a higher Seq before the lookups
}

// attackState is the World's side of an attack.
type attackState struct {
	cfg     Attack
	hostile []bool
	seedEcl map[int]bool // honest nodes whose latest join had only hostile seeds
	h       *hostility
	byKey   map[identity.Key]identity.Name
	rep     AttackReport
}

// setupAttack picks the hostile nodes and wraps the core constructor. It
// runs before the first node is added.
func (w *World) setupAttack() {
	a := w.cfg.Attack
	if a == nil {
		return
	}
	if a.FloodEvery <= 0 {
		a.FloodEvery = 2 * time.Second
	}
	if a.ChurnEvery <= 0 {
		a.ChurnEvery = 30 * time.Second
	}
	// Attack runs measure the lookup defences alone, without the per-source
	// rate limits (until 3ea2d6f every simulated node shared one IPv6 /64,
	// i.e. one rate-limited source; the figures in docs/security.md were
	// taken that way and stay comparable).
	w.cfg.Core.RateLimits = overlay.RateLimits{RequestRate: -1, StoreRate: -1, HandshakeRate: -1}
	st := &attackState{cfg: *a, hostile: make([]bool, w.cfg.Nodes), byKey: make(map[identity.Key]identity.Name)}
	st.rep = AttackReport{Kind: a.Kind.String(), Fraction: a.Fraction, Defence: a.Defence}
	k := w.cfg.Core.K
	if k <= 0 {
		k = overlay.DefaultK
	}
	st.h = &hostility{kind: a.Kind, k: k, nameOf: func(k identity.Key) (identity.Name, bool) {
		n, ok := st.byKey[k]
		return n, ok
	}}
	cut := uint64(a.Fraction * (1 << 32))
	var group map[int]uint32
	if a.Prefixes > 0 {
		group = make(map[int]uint32)
		w.e.net.PrefixOf = func(i int) (uint32, bool) {
			g, ok := group[i]
			return g, ok
		}
	}
	for i := 1; i < w.cfg.Nodes; i++ {
		if Derive(w.cfg.Seed, "malicious", uint64(i))&(1<<32-1) < cut {
			if group != nil {
				group[i] = 1<<27 + uint32(st.rep.Malicious%a.Prefixes)
			}
			st.hostile[i] = true
			st.rep.Malicious++
			st.h.colluders = append(st.h.colluders, overlay.Contact{ID: w.identityOf(i).NodeID(), Addr: w.e.addrOf(i)})
		}
	}
	honest := w.cfg.NewCore
	w.cfg.NewCore = func(i int, cfg overlay.Config) (Core, error) {
		if !st.isHostile(i) {
			return honest(i, cfg)
		}
		cfg.Defence = overlay.Defence{}
		cfg.Intercept = st.h.intercept(cfg.Identity)
		inner, err := overlay.NewCore(cfg)
		if err != nil {
			return nil, fmt.Errorf("sim: hostile core %d: %w", i, err)
		}
		hc := &hostileCore{Core: inner, w: w, st: st, i: i, cfg: cfg}
		switch a.Kind {
		case HostileFlood:
			hc.every = a.FloodEvery
		case HostileChurn:
			hc.every = a.ChurnEvery
		}
		return hc, nil
	}
	w.attack = st
}

func (st *attackState) isHostile(i int) bool {
	return st != nil && i >= 0 && i < len(st.hostile) && st.hostile[i]
}

// hostile reports whether node i is hostile.
func (w *World) hostile(i int) bool { return w.attack.isHostile(i) }

// scheduleAttack runs once the workload's names are chosen: the adversary
// learns them (forge), and for a stale attack every owner republishes (a
// higher Seq) after the colluders kept the first record.
func (w *World) scheduleAttack(publishSpan time.Duration) {
	st := w.attack
	if st == nil {
		return
	}
	for _, p := range w.names {
		st.byKey[p.key] = p.name
	}
	if st.cfg.Kind == HostileStale {
		w.chain(len(w.names), w.joinEnd+publishSpan+w.cfg.Settle/4, w.cfg.Settle/2, func(k int, now time.Time) {
			if w.names[k].ok {
				st.rep.Republished++
				w.publish(k, now, 0)
			}
		})
	}
}

// attackSeeds notes whether every seed of honest node i's join is hostile.
func (w *World) attackSeeds(i int, seeds []netip.AddrPort) {
	st := w.attack
	if st == nil || st.isHostile(i) {
		return
	}
	all := len(seeds) > 0
	for _, a := range seeds {
		all = all && st.isHostile(IndexOf(a))
	}
	if st.seedEcl == nil {
		st.seedEcl = make(map[int]bool)
	}
	if all {
		st.seedEcl[i] = true
	} else {
		delete(st.seedEcl, i)
	}
}

// attackLookupDone counts the attack's effect on one lookup by node i.
func (w *World) attackLookupDone(i int32, now time.Time, info opInfo, c *overlay.Completion) {
	st := w.attack
	if st == nil {
		return
	}
	p := &w.names[info.name]
	found, cur := false, false
	for _, r := range c.Records {
		if records.Verify(r, now) != nil || r.Name != p.name || !bytes.Equal(r.PublicKey, p.pub) {
			st.rep.ForgedAccepted++
			continue
		}
		found = true
		cur = cur || r.Seq >= info.want
	}
	if cur || !w.honestHolds(p.key, info.want) {
		return
	}
	if found {
		st.rep.StaleAccepted++
	} else {
		st.rep.Eclipsed++
		if st.seedEcl[int(i)] || st.seedEcl[int(p.owner)] {
			st.rep.EclipsedBySeeds++
		}
	}
}

// honestHolds reports whether a live honest node holds a record under key
// with at least Seq seq.
func (w *World) honestHolds(key identity.Key, seq uint64) bool {
	for i, n := range w.nodes {
		if w.hostile(i) || !w.e.Alive(i) || n.Core == nil {
			continue
		}
		rw, ok := n.Core.(RecordWalker)
		if !ok {
			continue
		}
		held := false
		rw.ForEachRecord(func(r *records.Record) bool {
			if r.Key() == key && r.Seq >= seq {
				held = true
				return false
			}
			return true
		})
		if held {
			return true
		}
	}
	return false
}

// attackReport completes the attack's report.
func (w *World) attackReport() *AttackReport {
	st := w.attack
	if st == nil {
		return nil
	}
	st.rep.HonestSuccessRate = w.rep.SuccessRate
	st.rep.SeedEclipsedNodes = len(st.seedEcl)
	st.rep.ForgedAnswers, st.rep.StaleAnswers = st.h.forged, st.h.stale
	st.rep.EclipseAnswers, st.rep.DroppedRequests = st.h.eclipsed, st.h.dropped
	r := st.rep
	return &r
}

// hostileCore is a hostile node: a real core whose answers lie through its
// Intercept hook (hostile.go), plus the behaviours driven from outside a core (store
// floods, identity churn).
type hostileCore struct {
	*overlay.Core
	w     *World
	st    *attackState
	i     int
	cfg   overlay.Config
	every time.Duration
	next  time.Time
	gen   int
	seeds []netip.AddrPort
}

func (h *hostileCore) Join(now time.Time, seeds []netip.AddrPort) overlay.OpID {
	h.seeds = seeds
	if h.every > 0 {
		h.next = now.Add(h.every/2 + time.Duration(Derive(h.w.cfg.Seed, "attack-phase", uint64(h.i))%uint64(h.every)))
	}
	return h.Core.Join(now, seeds)
}

func (h *hostileCore) NextTimer() time.Time {
	t := h.Core.NextTimer()
	if !h.next.IsZero() && (t.IsZero() || h.next.Before(t)) {
		return h.next
	}
	return t
}

func (h *hostileCore) HandleTimer(now time.Time) {
	h.Core.HandleTimer(now)
	if h.next.IsZero() || now.Before(h.next) {
		return
	}
	h.next = now.Add(h.every)
	h.gen++
	switch h.st.cfg.Kind {
	case HostileFlood:
		name, err := identity.NewSecuredName(fmt.Sprintf("flood%d", h.gen), h.cfg.Identity.PublicKey())
		if err != nil {
			return
		}
		h.st.rep.FloodPublishes++
		h.Core.Publish(now, &records.Record{Name: name, Endpoints: []netip.Addr{h.w.e.addrOf(h.i).Addr()},
			Payload: bytes.Repeat([]byte{0xf1}, 2048)})
	case HostileChurn:
		seeds := h.seeds
		for _, ct := range h.Core.Contacts(3) {
			seeds = append(seeds, ct.Addr)
		}
		cfg := h.cfg
		cfg.Identity = identity.FromSeed(DeriveBytes(h.w.cfg.Seed, fmt.Sprintf("churn-%d", h.gen), uint64(h.i)))
		cfg.Seed = Derive(h.w.cfg.Seed, fmt.Sprintf("churn-core-%d", h.gen), uint64(h.i))
		inner, err := overlay.NewCore(cfg)
		if err != nil {
			return
		}
		// The old identity's pending sends are dropped with it: a churning
		// node vanishes without a LEAVE.
		h.Core.Outbox()
		h.Core = inner
		h.st.rep.Churns++
		h.Core.Join(now, seeds[:min(len(seeds), 6)])
	}
}

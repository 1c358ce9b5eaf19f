package overlay

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/peername/peername/identity"
)

// Reachability and client mode (docs/protocol.md, "Behind NAT").
//
// A node behind a NAT or a stateful firewall can talk to anyone it sent to
// first, but nobody can reach it unsolicited: in a routing table it only
// wastes other nodes' lookups, and records stored on it are lost to the
// cloud. Such a node runs as a *client*: it says so with a MODE message as
// the first DATA of each of its sessions (and on every session when its
// mode changes); its peers then keep it out of their routing tables, so it
// is never a lookup candidate or a replica, and it refuses to store
// records for others. It still resolves and publishes: its lookups go to
// the servers in its own table, and its records to the replicas they name.
//
// Whether unsolicited datagrams reach a node is found out by asking peers
// it already has sessions with (relays, in distinct network groups) for a
// dial-back: each relay passes a random token to another of its peers (a
// dialer), which sends it in a bare PROBE datagram to the address the relay
// sees the asker at. A probe from an address the asker sent nothing to
// recently proves that such datagrams arrive. Evidence is believed only
// from two relays of different groups whose dialers are of different groups
// too, so one lying or hostile node cannot flip the verdict; the relays'
// acknowledgements carry the address they observe, and an external
// address is believed only when relays of two groups agree on it.

// Mode is the role a node is configured for (Config.Mode).
type Mode uint8

const (
	// ModeAuto (the default) serves until dial-backs show that unsolicited
	// datagrams do not reach it, then acts as a client (and serves again
	// if a later round shows it reachable).
	ModeAuto Mode = iota
	// ModeServer always serves: in peers' tables, storing for others. It
	// asks for no dial-backs (it still relays and dials for others), so it
	// learns no external address.
	ModeServer
	// ModeClient never serves (laptops on battery, phones, known NATs).
	ModeClient
)

func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeServer:
		return "server"
	case ModeClient:
		return "client"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// ParseMode parses "auto", "server" or "client" (case-insensitive).
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(s) {
	case "auto", "":
		return ModeAuto, nil
	case "server":
		return ModeServer, nil
	case "client":
		return ModeClient, nil
	}
	return ModeAuto, fmt.Errorf("%w: mode %q: want auto, server or client", ErrBadConfig, s)
}

// Reachability is what dial-backs showed about unsolicited datagrams.
type Reachability uint8

const (
	ReachUnknown     Reachability = iota // no conclusive round yet
	ReachPublic                          // two independent dial-backs arrived (or the peers see us at our own LAN address)
	ReachUnreachable                     // dial-backs dispatched through relays of two groups, by dialers of two groups, did not arrive
)

func (r Reachability) String() string {
	switch r {
	case ReachPublic:
		return "public"
	case ReachUnreachable:
		return "unreachable"
	}
	return "unknown"
}

// ReachInfo is a snapshot of a node's mode and reachability (Core.Reach).
type ReachInfo struct {
	Mode         Mode           // configured
	Client       bool           // acting as a client now
	Reachability Reachability   // the last conclusive verdict
	External     netip.AddrPort // the address relays of two groups agreed on (invalid: none)
	// Changes counts changes of Client, Reachability or External: a driver
	// that polls compares it to log and republish.
	Changes uint64
	// Counters since NewCore.
	Rounds        uint64 // detection rounds started
	Confirmations uint64 // probes accepted as evidence
	ProbesVoid    uint64 // probes from an address this node had sent to (no evidence)
	ProbesUnknown uint64 // probes with no matching token
	DialsRelayed  uint64 // dial-back requests this node passed on (as relay)
	DialsSent     uint64 // probes this node sent (as dialer)
	DialsRefused  uint64 // dial-backs refused over the dialer's budget
	Keepalives    uint64 // keepalive PINGs sent in client mode
}

// Wire numbers (docs/protocol.md).
const (
	ptProbe  = 5 // dial-back probe: header | token (32)
	probeLen = headerLen + 32

	mMode    = 0x20 // flags (1): bit 0 client
	mDialReq = 0x21 // token (32)
	mDial    = 0x22 // target address, token (32)
	mDialAck = 0x23 // status (1), observed address of the requester, dialer address (dispatched only)

	modeFlagClient = 1

	dialDispatched = 0
	dialNoDialer   = 1
	dialRefused    = 2
	dialMaxStatus  = dialRefused

	reqReach = 5 // a DIAL_REQUEST (request kind)

	tReach     = 7 // the detection round timer
	tKeepalive = 8 // client keepalives
)

// Timing and bounds of detection and keepalives (docs/protocol.md, timer table).
const (
	reachFirstDelay   = 2 * time.Second  // first round after the first peer
	reachRoundTime    = 4 * time.Second  // a round's probes must arrive within this
	reachRetry        = 30 * time.Second // after an inconclusive round
	reachSuspect      = 3 * time.Second  // after a first round that met the unreachable rule
	reachNegRounds    = 2                // rounds in a row it must be met
	reachRecheck      = 15 * time.Minute // after a positive one
	reachRecheckNAT   = 5 * time.Minute  // after a negative one
	reachChangeMin    = time.Minute      // at most one address-change round per minute
	reachRelays       = 4                // relays asked per round
	reachSentWindow   = 3 * time.Minute  // a probe from an address sent to within this proves nothing
	reachSentMax      = 4096             // addresses remembered; overflow voids probes for a window
	dialRate          = 10               // probes a dialer sends per second at most...
	dialBurst         = 20               // ...after a burst of this many
	keepaliveInterval = 15 * time.Second // under the 30 s UDP timeout of common NATs
	keepaliveMax      = 32               // sessions kept alive per interval
)

// reachAsk is one dial-back asked of one relay in the current round.
type reachAsk struct {
	token      identity.Key
	reqID      uint64
	relay      identity.Key
	relayGroup netGroup
	acked      bool // the relay dispatched it
	answered   bool
	arrived    bool // a probe with its token arrived (evidence or not)
	observed   netip.AddrPort
	dialerAt   netip.AddrPort // where the relay says its dialer is
	confirmed  bool
	dialer     netGroup
}

// reachEvidence is one accepted dial-back: through which relay's group,
// from which dialer's group, when.
type reachEvidence struct {
	relay, dialer netGroup
	at            int64
}

// reachEvidenceMax bounds the confirmations remembered (reachRecheck long).
const reachEvidenceMax = 8

// reachState is the detection, mode and keepalive state of a Core.
type reachState struct {
	client   bool
	verdict  Reachability
	external netip.AddrPort
	info     ReachInfo // counters

	now       int64 // time of the event being handled (Core.touch)
	started   bool  // a first round is scheduled
	nextAt    int64 // when tReach fires next
	inRound   bool
	roundEnd  int64
	arrived   int // probes of this round that arrived (evidence or not)
	negRounds int // rounds in a row that met the unreachable rule
	asks      []reachAsk
	evidence  []reachEvidence // confirmations of recent rounds
	changeAt  int64           // last address-change round
	keepAt    int64           // when tKeepalive fires next
	dialTAT   int64           // dialer budget (GCRA theoretical arrival time)
	sent      map[netip.Addr]int64
	sentFull  int64 // when sent last overflowed (probes void for a window)
	sentPrune int64
}

// netGroup is the unit of independence for the agreement rule: a /24 of a
// global IPv4 address, a /48 of a global IPv6 address; for an address that
// is not global (loopback, private, link-local: a LAN's or one host's
// nodes), the address and port.
type netGroup struct {
	pfx  netip.Prefix
	port uint16
}

func groupOf(a netip.AddrPort) netGroup {
	ip := a.Addr().Unmap()
	if !globalAddr(ip) {
		return netGroup{pfx: netip.PrefixFrom(ip, ip.BitLen()), port: a.Port()}
	}
	bits := 48
	if ip.Is4() {
		bits = 24
	}
	p, _ := ip.Prefix(bits)
	return netGroup{pfx: p}
}

// globalAddr reports whether ip is a global unicast address (not loopback,
// private, link-local, CGNAT shared space or unspecified).
func globalAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsGlobalUnicast() || ip.IsPrivate() || ip.IsLoopback() || ip.IsLinkLocalUnicast() {
		return false
	}
	return !cgnat.Contains(ip)
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// Reach returns the node's mode and reachability.
func (c *Core) Reach() ReachInfo {
	r := c.reach.info
	r.Mode = c.cfg.Mode
	r.Client = c.reach.client
	r.Reachability = c.reach.verdict
	r.External = c.reach.external
	return r
}

// SetLocalAddrs tells the core the addresses its sockets are bound to
// (Config.LocalAddrs), once the driver knows their ports.
func (c *Core) SetLocalAddrs(addrs []netip.AddrPort) {
	c.cfg.LocalAddrs = slices.Clone(addrs)
}

// CheckReachability starts a detection round soon (the driver saw its
// addresses change). Rounds so triggered are at most one a minute.
func (c *Core) CheckReachability(now time.Time) {
	ns := now.UnixNano()
	c.touch(ns)
	c.recheckSoon(ns)
}

func (c *Core) recheckSoon(now int64) {
	if c.left || c.cfg.Mode == ModeServer || c.reach.inRound || now-c.reach.changeAt < reachChangeMin.Nanoseconds() && c.reach.changeAt != 0 {
		return
	}
	c.reach.changeAt = now
	c.armReach(now + int64(time.Second))
}

func (c *Core) armReach(at int64) {
	c.reach.started = true
	c.reach.nextAt = at
	c.timers.push(timer{at: at, kind: tReach})
}

// noteSent remembers that this node sent to a (every emitted datagram).
func (r *reachState) noteSent(a netip.Addr) {
	if r.sent == nil {
		r.sent = make(map[netip.Addr]int64)
	}
	if _, ok := r.sent[a]; !ok && len(r.sent) >= reachSentMax {
		win := reachSentWindow.Nanoseconds()
		for k, t := range r.sent {
			if r.now-t > win {
				delete(r.sent, k)
			}
		}
		if len(r.sent) >= reachSentMax {
			clear(r.sent)
			r.sentFull = r.now
		}
	}
	r.sent[a] = r.now
}

// solicited reports whether a datagram from a may have passed a NAT or
// firewall only because this node sent to a recently.
func (r *reachState) solicited(a netip.Addr, now int64) bool {
	win := reachSentWindow.Nanoseconds()
	if r.sentFull != 0 && now-r.sentFull <= win {
		return true
	}
	t, ok := r.sent[a]
	return ok && now-t <= win
}

// reachSeen runs after an authenticated message: the first peer schedules
// the first round, and the table may have stopped being empty.
func (c *Core) reachSeen(now int64) {
	if !c.reach.started && !c.left && c.cfg.Mode != ModeServer {
		c.armReach(now + reachFirstDelay.Nanoseconds())
	}
	c.updateActing(now)
}

// peerIsClient reports whether peer said it runs as a client on the session
// used to reach it.
func (c *Core) peerIsClient(peer identity.Key) bool {
	s := c.sess.byPeer[peer]
	return s != nil && s.peerClient
}

// wantClient is the mode the node should act in now.
func (c *Core) wantClient() bool {
	switch c.cfg.Mode {
	case ModeClient:
		return true
	case ModeServer:
		return false
	}
	// Auto serves until dial-backs show it unreachable (docs/protocol.md
	// says why not the other way round).
	return c.reach.verdict == ReachUnreachable
}

// updateActing switches between client and server when wantClient changed,
// telling every established session.
func (c *Core) updateActing(now int64) {
	want := c.wantClient()
	if want == c.reach.client || c.left {
		return
	}
	c.reach.client = want
	c.reach.info.Changes++
	for _, s := range c.sess.sorted() {
		if s.state == sessEstablished {
			c.sendMode(now, s)
		}
	}
	if want {
		// Peers that hold us in their tables but have no session with us
		// (theirs timed out: their requests met our NAT) would keep us
		// until their own requests failed twice: tell every contact of our
		// table, over a new session where there is none (we can open one).
		for i := range c.rt.buckets {
			for _, ct := range c.rt.buckets[i].live {
				if s := c.sess.byPeer[ct.id]; s == nil || s.state != sessEstablished {
					c.transmit(now, ct.id, true, ct.addr, appendMsg(nil, &msg{typ: mMode, reqID: c.rng.Uint64(), n: modeFlagClient}))
				}
			}
		}
		c.dropForeignRecords()
		c.armKeepalive(now)
		return
	}
	// Now a server: a self-lookup meets the neighbourhood, which adds us.
	if c.rt.size > 0 {
		c.startInternalLookup(now, opRefresh, c.id)
	}
}

func (c *Core) sendMode(now int64, s *session) {
	flags := 0
	if c.reach.client {
		flags = modeFlagClient
	}
	c.emit(s.addr, s.seal(c.hk.tag, appendMsg(nil, &msg{typ: mMode, reqID: c.rng.Uint64(), n: flags})))
}

// announceMode runs when a session is established: a client says so first.
func (c *Core) announceMode(now int64, s *session) {
	if c.reach.client {
		c.sendMode(now, s)
	}
}

// peekMode handles a MODE message before the routing table sees its sender.
func (c *Core) peekMode(s *session, m *msg) {
	if m.typ != mMode {
		return
	}
	client := m.n&modeFlagClient != 0
	if client == s.peerClient {
		return
	}
	// Every session with the peer (each side may have initiated one).
	for _, x := range c.sess.byIdx {
		if x.hasPeer && x.peer == s.peer {
			x.peerClient = client
		}
	}
	if client && c.rt.remove(s.peer) {
		c.dirty = true
	}
}

// dropForeignRecords forgets the records held for others: a client serves
// none, and their replicas re-replicate once it has left their tables.
func (c *Core) dropForeignRecords() {
	for _, k := range c.store.sortedKeys() {
		if _, own := c.owned[k]; own {
			continue
		}
		sl := c.store.m[k]
		for _, sr := range sl.recs {
			c.store.drop(sr)
		}
		delete(c.store.m, k)
	}
}

// reachTimer handles tReach and tKeepalive.
func (c *Core) reachTimer(now int64, t timer) {
	switch t.kind {
	case tReach:
		if t.at != c.reach.nextAt {
			return
		}
		c.reach.nextAt = 0
		if c.reach.inRound {
			c.endRound(now)
		} else {
			c.startRound(now)
		}
		c.updateActing(now)
	case tKeepalive:
		if t.at == c.reach.keepAt {
			c.reach.keepAt = 0
			c.keepalive(now)
		}
	}
}

// startRound asks up to reachRelays peers of distinct groups for a dial-back.
func (c *Core) startRound(now int64) {
	type relay struct {
		s     *session
		g     netGroup
		table bool
	}
	var cands []relay
	for _, s := range c.sess.sorted() {
		if s.state != sessEstablished || !s.hasPeer {
			continue
		}
		cands = append(cands, relay{s: s, g: groupOf(s.addr), table: c.rt.contains(s.peer)})
	}
	// Routing-table contacts (servers) first, then the others; shuffled
	// within each so rounds ask different relays.
	c.rng.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
	slices.SortStableFunc(cands, func(a, b relay) int {
		switch {
		case a.table && !b.table:
			return -1
		case b.table && !a.table:
			return 1
		}
		return 0
	})
	var picked []relay
	for _, r := range cands {
		if len(picked) == reachRelays {
			break
		}
		if !slices.ContainsFunc(picked, func(p relay) bool { return p.g == r.g }) {
			picked = append(picked, r)
		}
	}
	if len(picked) < 2 {
		c.armReach(now + reachRetry.Nanoseconds()/3) // too few peers yet
		return
	}
	c.reach.info.Rounds++
	c.reach.inRound = true
	c.reach.arrived = 0
	c.reach.asks = c.reach.asks[:0]
	for _, r := range picked {
		var tok identity.Key
		for i := 0; i < 32; i += 8 {
			binary.BigEndian.PutUint64(tok[i:], c.rng.Uint64())
		}
		m := msg{typ: mDialReq, key: tok}
		if c.sendRequest(now, contact{ID: r.s.peer, Addr: r.s.addr}, true, &m, nil, -1, reqReach, mDialAck) != nil {
			continue
		}
		c.reach.asks = append(c.reach.asks, reachAsk{token: tok, reqID: m.reqID, relay: r.s.peer, relayGroup: r.g})
	}
	c.reach.roundEnd = now + reachRoundTime.Nanoseconds()
	c.armReach(c.reach.roundEnd)
}

// endRound settles the round's verdict and schedules the next one.
func (c *Core) endRound(now int64) {
	c.evaluate(now, true)
	c.reach.inRound = false
	for _, a := range c.reach.asks {
		delete(c.pending, a.reqID) // unanswered relays no longer matter
	}
	c.reach.asks = c.reach.asks[:0]
	next := reachRetry
	switch {
	case c.reach.verdict == ReachPublic:
		next = reachRecheck
	case c.reach.verdict == ReachUnreachable:
		next = reachRecheckNAT
	case c.reach.negRounds > 0:
		next = reachSuspect
	}
	c.armReach(now + next.Nanoseconds())
}

// evaluate applies the agreement rule to the current round's evidence.
// Before the round's end (final false) it only concludes positively.
func (c *Core) evaluate(now int64, final bool) {
	asks := c.reach.asks
	// External address: the one most relay groups observed, if two agree
	// and no other address has as many.
	var best netip.AddrPort
	bestN, second := 0, 0
	for i := range asks {
		if !asks[i].answered || !asks[i].observed.IsValid() {
			continue
		}
		var gs []netGroup
		for j := range asks {
			if asks[j].answered && asks[j].observed == asks[i].observed && !slices.Contains(gs, asks[j].relayGroup) {
				gs = append(gs, asks[j].relayGroup)
			}
		}
		switch {
		case asks[i].observed == best:
		case len(gs) > bestN:
			best, bestN, second = asks[i].observed, len(gs), bestN
		case len(gs) > second:
			second = len(gs)
		}
	}
	if bestN <= second {
		bestN = 0 // a tie: no agreement
	}
	if bestN >= 2 && best != c.reach.external {
		c.reach.external = best
		c.reach.info.Changes++
	}
	// Reachable: two confirmations through relays of different groups by
	// dialers of different groups; or the peers agree we are at one of our
	// own LAN addresses (no translation between us and them).
	// Confirmations of earlier rounds count too, for reachRecheck: a node
	// that talked to most of a small cloud hears few unsolicited probes.
	ev := c.reach.evidence
	public := false
	for i := range ev {
		for j := i + 1; j < len(ev) && !public; j++ {
			public = ev[i].relay != ev[j].relay && ev[i].dialer != ev[j].dialer
		}
	}
	if !public && bestN >= 2 && !globalAddr(best.Addr()) && slices.Contains(c.cfg.LocalAddrs, best) {
		public = true
	}
	verdict := c.reach.verdict
	switch {
	case public:
		verdict = ReachPublic
	case final:
		// Unreachable: in two rounds in a row, probes that relays of two
		// groups dispatched from dialers of two groups did not arrive, and
		// no probe of the round arrived at all. A dialer sends its probe
		// from a port of its own (IsProbe), which this node never sent
		// to: a probe that did not arrive was filtered even when this
		// node talks to the dialer's overlay port. Any arrival vetoes the
		// round (behind an address-restricted NAT, a probe from a dialer
		// it sent to arrives and proves nothing either way), and so does
		// a round alone: a DIAL or both copies of a probe lost on a lossy
		// path (30 % loss loses one of three asks) must not make a public
		// node a client.
		var neg []*reachAsk
		confirmed := false
		for i := range asks {
			a := &asks[i]
			confirmed = confirmed || a.confirmed
			if a.acked && !a.arrived && a.dialerAt.IsValid() {
				neg = append(neg, a)
			}
		}
		two := false
		for i := range neg {
			for j := i + 1; j < len(neg) && !two; j++ {
				two = neg[i].relayGroup != neg[j].relayGroup && groupOf(neg[i].dialerAt) != groupOf(neg[j].dialerAt)
			}
		}
		if !two || confirmed || c.reach.arrived > 0 {
			c.reach.negRounds = 0
		} else if c.reach.negRounds++; c.reach.negRounds >= reachNegRounds {
			verdict = ReachUnreachable
			c.reach.evidence = c.reach.evidence[:0]
		}
	}
	if verdict != c.reach.verdict {
		c.reach.verdict = verdict
		c.reach.info.Changes++
	}
	if public && !final && c.reach.inRound {
		// Conclusive early: end the round now.
		c.reach.inRound = false
		for _, a := range asks {
			delete(c.pending, a.reqID)
		}
		c.reach.asks = c.reach.asks[:0]
		c.armReach(now + reachRecheck.Nanoseconds())
		c.updateActing(now)
	}
}

// onReachMsg handles DIAL_REQUEST, DIAL and DIAL_ACK on an authenticated session.
func (c *Core) onReachMsg(now int64, s *session, m *msg) {
	switch m.typ {
	case mDialReq:
		if !c.rl.allow(now, s.addr.Addr(), limitRequest) {
			c.st.RateLimited++
			return
		}
		c.relayDial(now, s, m)
	case mDial:
		c.dialBack(now, m)
	case mDialAck:
		req := c.pending[m.reqID]
		if req == nil || req.kind != reqReach || req.peer != s.peer {
			return
		}
		delete(c.pending, req.id)
		for i := range c.reach.asks {
			a := &c.reach.asks[i]
			if a.reqID != m.reqID {
				continue
			}
			a.answered = true
			a.acked = m.n == dialDispatched
			a.observed = m.addr
			a.dialerAt = m.addr2
		}
		if c.reach.inRound {
			c.evaluate(now, false)
		}
	}
}

// relayDial passes a dial-back request to another peer, of another group
// than the asker if there is one, and acknowledges with the address the
// asker is seen at.
func (c *Core) relayDial(now int64, s *session, m *msg) {
	ag := groupOf(s.addr)
	var other, same []*session
	for _, x := range c.sess.sorted() {
		if x == s || x.state != sessEstablished || !x.hasPeer || x.peer == s.peer || x.addr.Addr() == s.addr.Addr() {
			continue
		}
		if x.peerClient && now-x.lastRecv > keepaliveInterval.Nanoseconds() {
			// A client's NAT may have dropped its mapping for us: the DIAL
			// would be lost, and the asker would count a probe that never
			// left as one its NAT stopped.
			continue
		}
		if groupOf(x.addr) != ag {
			other = append(other, x)
		} else {
			same = append(same, x)
		}
	}
	pool := other
	if len(pool) == 0 {
		pool = same
	}
	status := dialNoDialer
	if len(pool) > 0 {
		d := pool[c.rng.IntN(len(pool))]
		c.reply(now, d, &msg{typ: mDial, reqID: c.rng.Uint64(), addr: s.addr, key: m.key})
		c.reach.info.DialsRelayed++
		c.reply(now, s, &msg{typ: mDialAck, reqID: m.reqID, n: dialDispatched, addr: s.addr, addr2: d.addr})
		return
	}
	c.reply(now, s, &msg{typ: mDialAck, reqID: m.reqID, n: status, addr: s.addr})
}

// IsProbe reports whether a datagram the core emitted is a dial-back PROBE.
// A driver sends it from a socket of its own (another local port), not from
// the overlay socket: the node it tests never sent to that port, so a NAT
// or stateful firewall that filters by address and port drops it even when
// the node talks to this one (docs/protocol.md, "Behind NAT"). A driver
// that sends it from the overlay socket only makes the probe count for
// less (a node that sent to it ignores it).
func IsProbe(data []byte) bool {
	return len(data) == probeLen && data[0] == wireVersion && data[1] == ptProbe
}

// dialBack sends the probe a relay asked for, within the dialer's budget
// (a relay cannot turn this node into a flood: one 42-byte probe per
// DIAL, at most dialRate a second).
func (c *Core) dialBack(now int64, m *msg) {
	if !validWireAddr(m.addr) || c.cfg.CanReach != nil && !c.cfg.CanReach(m.addr) {
		return
	}
	step := int64(time.Second) / dialRate
	tat := max(c.reach.dialTAT, now)
	if tat-now > step*(dialBurst-1) {
		c.reach.info.DialsRefused++
		return
	}
	c.reach.dialTAT = tat + step
	pkt := make([]byte, 0, probeLen)
	pkt = appendHeader(pkt, ptProbe, c.hk.tag)
	pkt = append(pkt, m.key[:]...)
	// Twice: one lost datagram must not pass for a NAT.
	c.emit(m.addr, pkt)
	c.emit(m.addr, pkt)
	c.reach.info.DialsSent++
}

// onProbe takes a dial-back probe as evidence when it matches a token of
// the current round and comes from an address this node did not send to.
func (c *Core) onProbe(now int64, from netip.AddrPort, data []byte) {
	tok := identity.Key(data[headerLen:probeLen])
	for i := range c.reach.asks {
		a := &c.reach.asks[i]
		if a.token != tok || !c.reach.inRound {
			continue
		}
		c.reach.arrived++
		a.arrived = true
		if a.confirmed {
			return
		}
		if c.reach.solicited(from.Addr(), now) {
			c.reach.info.ProbesVoid++
			return
		}
		a.confirmed, a.dialer = true, groupOf(from)
		c.reach.info.Confirmations++
		old := now - reachRecheck.Nanoseconds()
		c.reach.evidence = slices.DeleteFunc(c.reach.evidence, func(e reachEvidence) bool { return e.at < old })
		if len(c.reach.evidence) == reachEvidenceMax {
			c.reach.evidence = slices.Delete(c.reach.evidence, 0, 1)
		}
		c.reach.evidence = append(c.reach.evidence, reachEvidence{relay: a.relayGroup, dialer: a.dialer, at: now})
		c.evaluate(now, false)
		return
	}
	c.reach.info.ProbesUnknown++
}

// notePong watches the observed address PONGs carry: one that differs from
// the agreed external address starts a re-check (at most one a minute).
func (c *Core) notePong(now int64, m *msg) {
	if m.typ == mPong && c.reach.external.IsValid() && m.addr != c.reach.external {
		c.recheckSoon(now)
	}
}

func (c *Core) armKeepalive(now int64) {
	if c.reach.keepAt > now {
		return
	}
	c.reach.keepAt = now + keepaliveInterval.Nanoseconds()
	c.timers.push(timer{at: c.reach.keepAt, kind: tKeepalive})
}

// keepalive, in client mode, PINGs the most recently used sessions with
// routing-table contacts (the servers its lookups start from), so that the
// NAT keeps their mappings and the sessions keep their addresses. The PINGs
// are not tracked as requests (their PONGs are ignored, apart from the
// observed address) and do not count as use of the session.
func (c *Core) keepalive(now int64) {
	if !c.reach.client || c.left {
		return
	}
	n := 0
	idle := c.cfg.SessionIdle.Nanoseconds()
	for s := c.sess.lruTail; s != nil && n < keepaliveMax; s = s.lruPrev {
		if s.state != sessEstablished || !s.hasPeer || now-s.lastUsed > idle || !c.rt.contains(s.peer) {
			continue
		}
		c.emit(s.addr, s.seal(c.hk.tag, appendMsg(nil, &msg{typ: mPing, reqID: c.rng.Uint64()})))
		c.reach.info.Keepalives++
		n++
	}
	c.armKeepalive(now)
}

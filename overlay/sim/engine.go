package sim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc64"
	"math"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/peername/peername/overlay"
)

// Epoch is virtual time zero. It is a fixed instant so that records signed in
// a run (whole seconds, UTC) are the same bytes in every replay.
var Epoch = time.Date(2030, time.January, 1, 0, 0, 0, 0, time.UTC)

// Port is the UDP port of every virtual node.
const Port = 3540

// Host is one virtual machine attached to the simulated network: the engine
// hands it datagrams and timer expiries, and collects what it wants to send.
// overlay.Core is wrapped into a Host by the world layer; tests use small fakes.
type Host interface {
	HandleDatagram(now time.Time, from netip.AddrPort, data []byte)
	HandleTimer(now time.Time)
	// NextTimer is when HandleTimer must be called next; zero means never.
	NextTimer() time.Time
	// Flush passes every datagram the host has queued to send, in order.
	Flush(now time.Time, send func(to netip.AddrPort, data []byte))
}

// Interceptor sees every datagram before the network model does. Hostile-node
// experiments use it to drop, rewrite or inject traffic: it returns the bytes
// to carry on, or nil to drop the datagram.
type Interceptor func(now time.Time, from, to int, data []byte) []byte

// Partition cuts the network for a period: while active, two nodes whose Group
// values differ cannot exchange datagrams (sent or in flight). Nodes beyond
// len(Group) are in group 0.
type Partition struct {
	Start, End time.Duration // virtual offsets from Epoch; End <= Start means never heals
	Group      []uint8
}

func (p *Partition) active(at int64) bool {
	return at >= int64(p.Start) && (p.End <= p.Start || at < int64(p.End))
}

func (p *Partition) group(i int32) uint8 {
	if int(i) < len(p.Group) {
		return p.Group[i]
	}
	return 0
}

// Network is the fault model of the virtual network.
type Network struct {
	// RTTMin and RTTMax bound the round-trip time of a link. Each pair of
	// nodes gets a fixed RTT drawn uniformly from [RTTMin, RTTMax] (derived
	// from the seed and the pair, so it costs no memory); a datagram takes
	// half of it.
	RTTMin, RTTMax time.Duration
	Loss           float64       // probability a datagram is lost
	Duplicate      float64       // probability a datagram is delivered twice
	Reorder        float64       // probability a datagram is held back by up to ReorderDelay
	ReorderDelay   time.Duration // extra delay of reordered and duplicated datagrams; default RTTMax
	Partitions     []Partition
	Intercept      Interceptor
	// MaxDatagram, if positive, is the UDP driver's largest datagram
	// (DefaultMaxDatagram for a real node): a message that does not fit in
	// one with the driver's 1-byte frame travels as the fragments
	// overlay/node/frag.go cuts it into (Fragments), each lost on its own,
	// and arrives only if all of them do. Zero: messages travel whole.
	MaxDatagram int
	// Burst, if positive, makes the loss bursty (Gilbert–Elliott): each
	// sender's link is good (nothing lost) or bad (every datagram lost),
	// leaves the bad state with probability 1/Burst per datagram, so a burst
	// lasts Burst datagrams on average, and enters it with the probability
	// that keeps the long-run loss rate at Loss. Zero: uniform loss.
	Burst float64
	// PrefixOf, if set, puts node i's address in the /48 of group g (g >=
	// 2^27 keeps clear of the nodes' own /48s; see addrIn) when it reports
	// true; other nodes keep their own /48 (AddrOf).
	PrefixOf func(i int) (g uint32, ok bool)
	// NAT, when set, puts node i behind an endpoint-dependent filter (a
	// port-restricted NAT or a stateful firewall) when NAT[i]: it only
	// receives datagrams from nodes it sent to in the last NATTimeout
	// (default 30 s, a common UDP mapping timeout); everything else is
	// dropped (Counters.NATFiltered). Its address is not translated: the
	// filter is what makes a node unreachable.
	NAT        []bool
	NATTimeout time.Duration

	// The per-node processing budget, as a real node's single event loop
	// has: each datagram occupies its receiver for ServiceTime (a HELLO or
	// HELLO_ACK, which costs a certificate check and an X25519, for
	// HandshakeTime when that is set), one after another in arrival order; a
	// datagram that arrives while the node is busy waits in its inbox, and
	// one that finds InboxLimit datagrams waiting is dropped (Overloaded),
	// as the UDP driver drops when its loop falls behind. Zero ServiceTime
	// and HandshakeTime: every node is infinitely fast (the default).
	// Timers and API calls take no time.
	ServiceTime, HandshakeTime time.Duration
	InboxLimit                 int // 0 = unbounded
	// InboxMaxWait, when set, drops a datagram that would wait longer than
	// this in a busy node's inbox (Stale), as the UDP driver drops what sat
	// in its inbox past node.Config.InboxMaxWait: its sender has given up
	// on it, and serving it only delays those that have not.
	InboxMaxWait time.Duration
}

// Validate reports whether the model is usable.
func (n *Network) Validate() error {
	switch {
	case n.RTTMin < 0 || n.RTTMax < n.RTTMin:
		return fmt.Errorf("%w: rtt %v:%v", ErrBadConfig, n.RTTMin, n.RTTMax)
	case !prob(n.Loss) || !prob(n.Duplicate) || !prob(n.Reorder):
		return fmt.Errorf("%w: probabilities must be in [0,1]", ErrBadConfig)
	case n.ReorderDelay < 0:
		return fmt.Errorf("%w: negative reorder delay", ErrBadConfig)
	case n.ServiceTime < 0 || n.HandshakeTime < 0 || n.InboxLimit < 0 || n.InboxMaxWait < 0:
		return fmt.Errorf("%w: negative processing budget", ErrBadConfig)
	case n.MaxDatagram < 0 || n.MaxDatagram > 0 && n.MaxDatagram < minMaxDatagram:
		return fmt.Errorf("%w: max datagram %d: want 0 (no fragmentation) or at least %d", ErrBadConfig, n.MaxDatagram, minMaxDatagram)
	case math.IsNaN(n.Burst) || n.Burst < 0 || n.Burst > 0 && n.Burst < 1:
		return fmt.Errorf("%w: burst %v: want 0 (uniform loss) or a mean burst of at least 1 datagram", ErrBadConfig, n.Burst)
	case n.Burst > 0 && n.Loss > n.Burst/(1+n.Burst):
		// good -> bad = Loss/(Burst*(1-Loss)) must be a probability.
		return fmt.Errorf("%w: loss %v with bursts of %v: the long-run rate needs loss <= burst/(1+burst)", ErrBadConfig, n.Loss, n.Burst)
	}
	return nil
}

// The UDP driver's framing (overlay/node/frag.go): a whole message has a
// 1-byte frame, a fragment an 11-byte header, and the smallest datagram it
// cuts carries 64 bytes of message. TestFragmentsMatchDriver in
// overlay/node holds these to the driver's.
const (
	// DefaultMaxDatagram is the UDP driver's datagram size
	// (node.DefaultMaxDatagram), the default of `peername sim -max-datagram`.
	DefaultMaxDatagram = 1200
	fragHeaderLen      = 11
	minMaxDatagram     = fragHeaderLen + 64
)

// Fragments is how many datagrams the UDP driver sends for a message of n
// bytes when its datagrams are at most maxDatagram bytes: 1 if the message
// fits with its frame byte, else ceil(n / (maxDatagram - 11)).
func Fragments(n, maxDatagram int) int {
	if maxDatagram <= 0 || 1+n <= maxDatagram {
		return 1
	}
	room := max(maxDatagram, minMaxDatagram) - fragHeaderLen
	return (n + room - 1) / room
}

func prob(p float64) bool { return p >= 0 && p <= 1 }

// ErrBadConfig is returned for an unusable simulation configuration.
var ErrBadConfig = errors.New("sim: bad configuration")

// Counters are the engine's traffic totals.
type Counters struct {
	Sent, SentBytes       uint64 // datagrams handed to the network by live hosts
	Delivered             uint64 // datagrams handed to a live host
	Lost, Partitioned     uint64 // dropped by the fault model
	ToDead, Unroutable    uint64 // addressed to a failed node or to no node
	Duplicated, Reordered uint64
	Intercepted           uint64 // dropped by the Interceptor
	// Fragmented counts messages sent as several datagrams
	// (Network.MaxDatagram), FragmentLost those of them lost because one
	// of their fragments was (a part of Lost).
	Fragmented, FragmentLost uint64
	NATFiltered              uint64  // unsolicited datagrams dropped at a node behind NAT (Network.NAT)
	Queued                   uint64  // datagrams that waited for their busy receiver
	Overloaded               uint64  // dropped at a full inbox (Network.InboxLimit)
	Stale                    uint64  // dropped for waiting too long (Network.InboxMaxWait)
	MaxInbox                 int     // most datagrams waiting at one node
	Timers, Calls            uint64  // timer expiries and scheduled calls run
	Events                   uint64  // everything popped from the queues
	MaxQueue                 int     // high-water mark of datagrams and calls in flight
	NodeSeconds              float64 // virtual seconds summed over live nodes
}

// event is a datagram in flight or a scheduled call. Ordered by (at, seq).
type event struct {
	at   int64
	seq  uint64
	to   int32
	from int32
	data []byte
	fn   func(now time.Time)
	// admitted: the datagram waited in its receiver's inbox and is due now
	admitted bool
	// probe: a dial-back probe, from the sender's probe port (Port+1)
	probe bool
}

type timerEntry struct {
	at   int64
	seq  uint64
	node int32
}

type slot struct {
	host     Host
	alive    bool
	timerPos int32 // index in the timer heap, -1 when none
	timerAt  int64
	since    int64 // when it was added (for node-seconds)
	busy     int64 // the node's loop is busy until then (processing budget)
	waiting  int32 // datagrams in its inbox
}

// Engine is the discrete-event loop: a virtual clock, a queue of datagrams and
// calls, one timer per host, and the fault model. It is not safe for
// concurrent use; a simulation is one goroutine.
type Engine struct {
	net     Network
	seed    uint64
	now     int64
	seq     uint64
	queue   []event
	timers  []timerEntry
	slots   []slot
	rng     *rand.Rand
	c       Counters
	secs    []Second // traffic per virtual second
	trace   uint64
	hashing bool
	step    func(now time.Time) // called after every event (invariant checks)
	bad     []bool              // Gilbert–Elliott state of each sender's link (Network.Burst)
	// natSent[i][j]: when node i (behind NAT) last sent to node j.
	natSent []map[int32]int64
}

// NewEngine returns an engine for the network model, deciding every random
// choice from seed. hashData also folds datagram contents into the trace hash.
func NewEngine(seed uint64, n Network, hashData bool) (*Engine, error) {
	if err := n.Validate(); err != nil {
		return nil, err
	}
	if n.ReorderDelay == 0 {
		n.ReorderDelay = n.RTTMax
	}
	if n.NATTimeout <= 0 {
		n.NATTimeout = 30 * time.Second
	}
	return &Engine{
		net:     n,
		seed:    seed,
		rng:     rand.New(rand.NewPCG(Derive(seed, "network", 0), Derive(seed, "network", 1))),
		hashing: hashData,
		trace:   Derive(seed, "trace", 0),
	}, nil
}

// AddrOf is the virtual address of node i: in 3fff::/20 (the IPv6
// documentation prefix of RFC 9637, which the core treats as a public
// address), with its own /48 (bits 20-47 hold i+1) and the index again in
// the interface ID, so every node has its own /48 and /64 as distinct hosts
// on the Internet do (the core's rate limits group IPv6 sources by /64, its
// prefix cap by /48). These addresses never touch a socket.
func AddrOf(i int) netip.AddrPort { return addrIn(i, uint32(i)+1) }

// addrIn is node i's address with its /48 taken from group g (< 2^28): nodes
// of one group share a /48, as an attacker renting addresses from one
// provider does (Network.PrefixOf).
func addrIn(i int, g uint32) netip.AddrPort {
	var b [16]byte
	b[0], b[1] = 0x3f, 0xff
	b[2] = byte(g>>24) & 0x0f
	b[3], b[4], b[5] = byte(g>>16), byte(g>>8), byte(g)
	binary.BigEndian.PutUint32(b[8:12], uint32(i)+1)
	b[15] = 1
	return netip.AddrPortFrom(netip.AddrFrom16(b), Port)
}

// IndexOf is the node index of a virtual address, or -1. The index is read
// from the interface ID; the /48 may be the node's own or its group's.
func IndexOf(a netip.AddrPort) int {
	if a.Port() != Port || !a.Addr().Is6() || a.Addr().Zone() != "" {
		return -1
	}
	b := a.Addr().As16()
	if b[0] != 0x3f || b[1] != 0xff || b[2]&0xf0 != 0 || b[6] != 0 || b[7] != 0 || b[15] != 1 {
		return -1
	}
	for _, x := range b[12:15] {
		if x != 0 {
			return -1
		}
	}
	v := binary.BigEndian.Uint32(b[8:12])
	if v == 0 {
		return -1
	}
	return int(v - 1)
}

// addrOf is node i's address under the network's prefix layout.
func (e *Engine) addrOf(i int) netip.AddrPort {
	if e.net.PrefixOf != nil {
		if g, ok := e.net.PrefixOf(i); ok {
			return addrIn(i, g)
		}
	}
	return AddrOf(i)
}

// Now is the current virtual time.
func (e *Engine) Now() time.Time { return Epoch.Add(time.Duration(e.now)) }

// Elapsed is the virtual time since Epoch.
func (e *Engine) Elapsed() time.Duration { return time.Duration(e.now) }

// Counters returns the traffic totals so far.
func (e *Engine) Counters() Counters {
	c := e.c
	c.NodeSeconds = e.nodeSeconds()
	return c
}

func (e *Engine) nodeSeconds() float64 {
	var ns float64
	for i := range e.slots {
		if e.slots[i].alive {
			ns += float64(e.now - e.slots[i].since)
		}
	}
	return e.c.NodeSeconds + ns/1e9
}

// Second is the traffic of one virtual second of a run.
type Second struct {
	Msgs, Bytes uint64 // datagrams (and their bytes) sent by live hosts
	Live        int    // live hosts at the second's first datagram or at its end, whichever is more
}

// Seconds returns the traffic of each virtual second so far, from Epoch.
func (e *Engine) Seconds() []Second { return e.secs }

func (e *Engine) liveCount() int {
	n := 0
	for i := range e.slots {
		if e.slots[i].alive {
			n++
		}
	}
	return n
}

// Trace is a running hash of every event the engine processed: two runs with
// the same seed and configuration end with the same value.
func (e *Engine) Trace() uint64 { return e.trace }

// Len is the number of hosts added so far.
func (e *Engine) Len() int { return len(e.slots) }

// Alive reports whether node i is up.
func (e *Engine) Alive(i int) bool { return i >= 0 && i < len(e.slots) && e.slots[i].alive }

// Host returns node i's host (nil once it failed).
func (e *Engine) Host(i int) Host { return e.slots[i].host }

// OnStep installs fn to run after every event (nil removes it).
func (e *Engine) OnStep(fn func(now time.Time)) { e.step = fn }

// Rand is the engine's random source for workload choices; it is part of the
// seeded state, so a run that uses it stays reproducible.
func (e *Engine) Rand() *rand.Rand { return e.rng }

// Add attaches a host as the next node index and returns the index.
func (e *Engine) Add(h Host) int {
	i := len(e.slots)
	e.slots = append(e.slots, slot{host: h, alive: true, timerPos: -1, since: e.now})
	e.mix(4, int32(i), 0, nil)
	return i
}

// Fail silently stops node i: its timer is cancelled, datagrams to it are
// dropped and its host is released.
func (e *Engine) Fail(i int) {
	s := &e.slots[i]
	if !s.alive {
		return
	}
	e.unsetTimer(int32(i))
	s.alive = false
	s.host = nil
	e.c.NodeSeconds += float64(e.now-s.since) / 1e9
	e.mix(5, int32(i), 0, nil)
}

// At schedules fn at virtual offset d from Epoch (or now, if d is past).
func (e *Engine) At(d time.Duration, fn func(now time.Time)) {
	at := max(int64(d), e.now)
	e.push(event{at: at, to: -1, from: -1, fn: fn})
}

// After schedules fn d after the current virtual time.
func (e *Engine) After(d time.Duration, fn func(now time.Time)) {
	e.At(time.Duration(e.now)+d, fn)
}

// Poke tells the engine that node i was driven from outside the loop (an API
// call such as Join or Resolve): it flushes the host's datagrams and re-reads
// its timer.
func (e *Engine) Poke(i int) {
	if e.slots[i].alive {
		e.settle(int32(i))
	}
}

// Run processes events until the queue is empty or virtual time would pass
// until (an offset from Epoch; zero means no limit). It returns the number of
// events processed.
func (e *Engine) Run(until time.Duration) int {
	n := 0
	for {
		useTimer, ok := e.peek()
		if !ok {
			break
		}
		var at int64
		if useTimer {
			at = e.timers[0].at
		} else {
			at = e.queue[0].at
		}
		if until > 0 && at > int64(until) {
			e.now = max(e.now, int64(until))
			break
		}
		e.now = at
		n++
		e.c.Events++
		if useTimer {
			t := e.timers[0]
			e.unsetTimer(t.node)
			e.fireTimer(t.node)
		} else {
			ev := e.popQueue()
			e.dispatch(ev)
		}
		if e.step != nil {
			e.step(e.Now())
		}
	}
	if until > 0 && e.now < int64(until) {
		e.now = int64(until)
	}
	return n
}

// peek reports whether the next event is a timer, and whether there is one.
func (e *Engine) peek() (timer, ok bool) {
	switch {
	case len(e.timers) == 0 && len(e.queue) == 0:
		return false, false
	case len(e.timers) == 0:
		return false, true
	case len(e.queue) == 0:
		return true, true
	}
	t, q := e.timers[0], e.queue[0]
	return t.at < q.at || (t.at == q.at && t.seq < q.seq), true
}

func (e *Engine) fireTimer(i int32) {
	s := &e.slots[i]
	if !s.alive {
		return
	}
	e.c.Timers++
	e.mix(1, i, 0, nil)
	s.host.HandleTimer(e.Now())
	e.settle(i)
}

func (e *Engine) dispatch(ev event) {
	if ev.fn != nil {
		e.c.Calls++
		e.mix(2, -1, 0, nil)
		ev.fn(e.Now())
		return
	}
	s := &e.slots[ev.to]
	if !s.alive {
		e.c.ToDead++
		return
	}
	if !ev.admitted && e.cut(ev.from, ev.to) {
		e.c.Partitioned++
		return
	}
	if ev.admitted {
		s.waiting--
	} else if cost := e.serviceTime(ev.data); cost > 0 {
		if s.busy > e.now {
			if lim := e.net.InboxLimit; lim > 0 && int(s.waiting) >= lim {
				e.c.Overloaded++
				return
			}
			if mw := int64(e.net.InboxMaxWait); mw > 0 && s.busy-e.now > mw {
				e.c.Stale++
				return
			}
			s.waiting++
			e.c.Queued++
			e.c.MaxInbox = max(e.c.MaxInbox, int(s.waiting))
			ev.at, ev.admitted = s.busy, true
			s.busy += cost
			e.push(ev)
			return
		}
		s.busy = e.now + cost
	}
	e.c.Delivered++
	e.mix(3, ev.to, ev.from, ev.data)
	from := e.addrOf(int(ev.from))
	if ev.probe {
		from = netip.AddrPortFrom(from.Addr(), Port+1)
	}
	s.host.HandleDatagram(e.Now(), from, ev.data)
	e.settle(ev.to)
}

// serviceTime is how long a datagram occupies its receiver (Network's
// processing budget). The packet type is the second byte of the core's
// datagram header (docs/protocol.md): 1 HELLO, 2 HELLO_ACK, 6 HELLO with an early request.
func (e *Engine) serviceTime(data []byte) int64 {
	if e.net.HandshakeTime > 0 && len(data) > 1 && (data[1] == 1 || data[1] == 2 || data[1] == 6) {
		return int64(e.net.HandshakeTime)
	}
	return int64(e.net.ServiceTime)
}

// settle collects node i's datagrams and reschedules its timer.
func (e *Engine) settle(i int32) {
	s := &e.slots[i]
	now := e.Now()
	s.host.Flush(now, func(to netip.AddrPort, data []byte) { e.send(i, to, data) })
	next := s.host.NextTimer()
	if next.IsZero() {
		e.unsetTimer(i)
		return
	}
	at := max(int64(next.Sub(Epoch)), e.now)
	if s.timerPos >= 0 && s.timerAt == at {
		return
	}
	e.setTimer(i, at)
}

func (e *Engine) cut(a, b int32) bool {
	for k := range e.net.Partitions {
		p := &e.net.Partitions[k]
		if p.active(e.now) && p.group(a) != p.group(b) {
			return true
		}
	}
	return false
}

func (e *Engine) send(from int32, to netip.AddrPort, data []byte) {
	e.c.Sent++
	e.c.SentBytes += uint64(len(data))
	sec := int(e.now / int64(time.Second))
	if len(e.secs) <= sec {
		live := e.liveCount()
		if n := len(e.secs); n > 0 {
			e.secs[n-1].Live = max(e.secs[n-1].Live, live) // joins during the second count
		}
		for len(e.secs) <= sec {
			e.secs = append(e.secs, Second{Live: live})
		}
	}
	e.secs[sec].Msgs++
	e.secs[sec].Bytes += uint64(len(data))
	j := IndexOf(to)
	if j < 0 || j >= len(e.slots) {
		e.c.Unroutable++
		return
	}
	if e.net.Intercept != nil {
		if data = e.net.Intercept(e.Now(), int(from), j, data); data == nil {
			e.c.Intercepted++
			return
		}
	}
	if e.cut(from, int32(j)) {
		e.c.Partitioned++
		return
	}
	probe := overlay.IsProbe(data)
	if probe && e.Behind(j) || !probe && e.natFiltered(from, int32(j)) {
		// A probe comes from the dialer's probe port (as the UDP driver
		// sends it), which a node behind NAT never sent to.
		e.c.NATFiltered++
		return
	}
	if e.lost(from, len(data)) {
		e.c.Lost++
		return
	}
	lat := e.latency(from, int32(j))
	if e.net.Reorder > 0 && e.rng.Float64() < e.net.Reorder {
		e.c.Reordered++
		lat += e.extra()
	}
	if e.net.Duplicate > 0 && e.rng.Float64() < e.net.Duplicate {
		e.c.Duplicated++
		dup := append([]byte(nil), data...)
		e.push(event{at: e.now + lat + e.extra(), to: int32(j), from: from, data: dup, probe: probe})
	}
	e.push(event{at: e.now + lat, to: int32(j), from: from, data: data, probe: probe})
}

// lost decides whether a message of n bytes from a sender is lost: each of
// its datagrams (several if Network.MaxDatagram fragments it) is lost on its
// own, under the uniform or the bursty model, and losing one loses the
// message. Without loss it draws nothing from the random source, and a
// message in one datagram draws what it always did, so runs that neither
// fragment nor use bursts replay as before.
func (e *Engine) lost(from int32, n int) bool {
	frags := Fragments(n, e.net.MaxDatagram)
	if frags > 1 {
		e.c.Fragmented++
	}
	if e.net.Loss <= 0 {
		return false
	}
	lost := false
	for range frags {
		if e.net.Burst > 0 {
			lost = e.burstLost(from) || lost
		} else if e.rng.Float64() < e.net.Loss {
			lost = true
		}
	}
	if lost && frags > 1 {
		e.c.FragmentLost++
	}
	return lost
}

// burstLost moves the sender's Gilbert–Elliott chain on by one datagram and
// reports whether that datagram is lost (it is in the bad state). With r =
// 1/Burst (bad to good) and p = Loss·r/(1-Loss) (good to bad), the chain is
// bad p/(p+r) = Loss of the time.
func (e *Engine) burstLost(from int32) bool {
	for int(from) >= len(e.bad) {
		e.bad = append(e.bad, false)
	}
	r := 1 / e.net.Burst
	p := e.net.Loss * r / (1 - e.net.Loss)
	if e.bad[from] {
		e.bad[from] = e.rng.Float64() >= r
	} else {
		e.bad[from] = e.rng.Float64() < p
	}
	return e.bad[from]
}

func (e *Engine) extra() int64 {
	if e.net.ReorderDelay <= 0 {
		return 0
	}
	return e.rng.Int64N(int64(e.net.ReorderDelay) + 1)
}

// latency is the one-way delay of the link a-b: half an RTT drawn from
// [RTTMin, RTTMax] by a hash of the seed and the unordered pair.
func (e *Engine) latency(a, b int32) int64 {
	lo, hi := int64(e.net.RTTMin), int64(e.net.RTTMax)
	if hi <= lo {
		return lo / 2
	}
	if a > b {
		a, b = b, a
	}
	h := mix64(e.seed ^ mix64(uint64(uint32(a))<<32|uint64(uint32(b))))
	return (lo + int64(h%uint64(hi-lo+1))) / 2
}

var crcTable = crc64.MakeTable(crc64.ECMA)

// mix folds one processed event into the trace hash.
func (e *Engine) mix(kind uint8, to, from int32, data []byte) {
	h := e.trace
	h = mix64(h ^ uint64(e.now))
	h = mix64(h ^ uint64(kind)<<56 ^ uint64(uint32(to))<<24 ^ uint64(uint32(from)))
	h = mix64(h ^ uint64(len(data)))
	if e.hashing && len(data) > 0 {
		h = mix64(h ^ crc64.Checksum(data, crcTable))
	}
	e.trace = h
}

// mix64 is the SplitMix64 finalizer.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// --- the datagram/call queue: a binary heap ordered by (at, seq) ---

func (e *Engine) push(ev event) {
	e.seq++
	ev.seq = e.seq
	e.queue = append(e.queue, ev)
	q := e.queue
	i := len(q) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !evLess(&q[i], &q[p]) {
			break
		}
		q[i], q[p] = q[p], q[i]
		i = p
	}
	if len(q) > e.c.MaxQueue {
		e.c.MaxQueue = len(q)
	}
}

func evLess(a, b *event) bool { return a.at < b.at || (a.at == b.at && a.seq < b.seq) }

func (e *Engine) popQueue() event {
	q := e.queue
	top := q[0]
	last := len(q) - 1
	q[0] = q[last]
	q[last] = event{} // release the datagram
	q = q[:last]
	i := 0
	for {
		l := 2*i + 1
		if l >= len(q) {
			break
		}
		m := l
		if r := l + 1; r < len(q) && evLess(&q[r], &q[l]) {
			m = r
		}
		if !evLess(&q[m], &q[i]) {
			break
		}
		q[i], q[m] = q[m], q[i]
		i = m
	}
	e.queue = q
	if cap(q) > 1024 && len(q) < cap(q)/4 {
		e.queue = append(make([]event, 0, cap(q)/2), q...)
	}
	return top
}

// --- the timer heap: at most one entry per node, indexed for in-place updates ---

func tLess(a, b *timerEntry) bool { return a.at < b.at || (a.at == b.at && a.seq < b.seq) }

func (e *Engine) setTimer(i int32, at int64) {
	s := &e.slots[i]
	e.seq++
	s.timerAt = at
	if s.timerPos < 0 {
		e.timers = append(e.timers, timerEntry{at: at, seq: e.seq, node: i})
		s.timerPos = int32(len(e.timers) - 1)
		e.tUp(int(s.timerPos))
		return
	}
	p := int(s.timerPos)
	e.timers[p].at, e.timers[p].seq = at, e.seq
	e.tUp(p)
	e.tDown(int(e.slots[i].timerPos))
}

func (e *Engine) unsetTimer(i int32) {
	s := &e.slots[i]
	p := int(s.timerPos)
	if p < 0 {
		return
	}
	s.timerPos = -1
	last := len(e.timers) - 1
	if p != last {
		e.timers[p] = e.timers[last]
		e.slots[e.timers[p].node].timerPos = int32(p)
	}
	e.timers = e.timers[:last]
	if p < last {
		moved := e.timers[p].node
		e.tUp(p)
		e.tDown(int(e.slots[moved].timerPos))
	}
}

func (e *Engine) tSwap(a, b int) {
	t := e.timers
	t[a], t[b] = t[b], t[a]
	e.slots[t[a].node].timerPos = int32(a)
	e.slots[t[b].node].timerPos = int32(b)
}

func (e *Engine) tUp(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !tLess(&e.timers[i], &e.timers[p]) {
			return
		}
		e.tSwap(i, p)
		i = p
	}
}

func (e *Engine) tDown(i int) {
	t := e.timers
	for {
		l := 2*i + 1
		if l >= len(t) {
			return
		}
		m := l
		if r := l + 1; r < len(t) && tLess(&t[r], &t[l]) {
			m = r
		}
		if !tLess(&t[m], &t[i]) {
			return
		}
		e.tSwap(i, m)
		i = m
	}
}

// Behind returns whether node i is behind NAT (Network.NAT).
func (e *Engine) Behind(i int) bool { return i >= 0 && i < len(e.net.NAT) && e.net.NAT[i] }

// natFiltered records a datagram from -> to and reports whether the filter
// of a receiver behind NAT drops it: to must have sent to from within
// NATTimeout.
func (e *Engine) natFiltered(from, to int32) bool {
	if e.Behind(int(from)) {
		for len(e.natSent) <= int(from) {
			e.natSent = append(e.natSent, nil)
		}
		if e.natSent[from] == nil {
			e.natSent[from] = make(map[int32]int64)
		}
		e.natSent[from][to] = e.now
	}
	if !e.Behind(int(to)) {
		return false
	}
	if int(to) >= len(e.natSent) || e.natSent[to] == nil {
		return true
	}
	at, ok := e.natSent[to][from]
	return !ok || e.now-at > int64(e.net.NATTimeout)
}

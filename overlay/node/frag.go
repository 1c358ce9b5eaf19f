package node

// Datagram framing and fragmentation used by the UDP driver.
//
// The core emits messages of any size; a UDP datagram larger than about
// 1,200 bytes risks IP fragmentation or silent loss on real paths. The driver
// therefore frames every datagram it sends:
//
//	whole message:  0x10 || message
//	fragment:       0x11 || msgID uint32 BE || index uint8 || count uint8 ||
//	                total uint32 BE || chunk
//
// A message that fits in one datagram with the 1-byte header is sent whole.
// A larger one is split into count (2..255) fragments of equal size (the
// last one may be shorter); total is the length of the whole message. The
// receiver reassembles with bounded state: at most maxPerSource messages in
// flight per source address, maxInFlight in total, maxBuffered bytes in
// total, each message at most maxMessage bytes, and every partial message
// expires a fixed time after its first fragment arrived. When a bound is
// hit the oldest partial message (of that source, or overall) is evicted, so
// a flood from spoofed sources cannot pin memory or starve honest peers for
// longer than the expiry. Time is always passed in by the caller.
//
// The framing carries no authentication: the core authenticates the
// reassembled message, so a forged or mangled fragment only makes that
// message fail to reassemble or fail the core's check.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"time"
)

// Frame kinds: the high nibble is the framing version (1).
const (
	frameWhole    byte = 0x10
	frameFragment byte = 0x11
)

const (
	fragHeaderLen = 1 + 4 + 1 + 1 + 4
	// maxFragments is the most fragments one message may be split into.
	maxFragments = 255

	// DefaultMaxDatagram is the largest datagram the driver sends: small
	// enough to cross the IPv6 minimum MTU (1,280) with IP and UDP headers.
	DefaultMaxDatagram = 1200
	// minMaxDatagram keeps fragments large enough to be worth sending.
	minMaxDatagram = fragHeaderLen + 64

	defaultMaxMessage   = 64 << 10
	defaultMaxPerSource = 8
	defaultMaxInFlight  = 256
	defaultMaxBuffered  = 4 << 20
	defaultFragExpiry   = 5 * time.Second
)

// Errors of the framing layer.
var (
	// ErrFrame reports a datagram whose framing is malformed.
	ErrFrame = errors.New("overlay: malformed datagram frame")
	// ErrMessageTooLarge reports a message over the size the framing carries.
	ErrMessageTooLarge = errors.New("overlay: message too large")
)

// frame is one decoded datagram.
type frame struct {
	kind  byte
	msgID uint32
	index int
	count int
	total int
	data  []byte // aliases the datagram
}

// decodeFrame parses a datagram's framing. It never panics; data aliases b.
func decodeFrame(b []byte) (frame, error) {
	if len(b) == 0 {
		return frame{}, fmt.Errorf("%w: empty datagram", ErrFrame)
	}
	switch b[0] {
	case frameWhole:
		if len(b) == 1 {
			return frame{}, fmt.Errorf("%w: empty message", ErrFrame)
		}
		return frame{kind: frameWhole, count: 1, total: len(b) - 1, data: b[1:]}, nil
	case frameFragment:
		if len(b) <= fragHeaderLen {
			return frame{}, fmt.Errorf("%w: fragment of %d bytes is too short", ErrFrame, len(b))
		}
		f := frame{
			kind:  frameFragment,
			msgID: binary.BigEndian.Uint32(b[1:5]),
			index: int(b[5]),
			count: int(b[6]),
			total: int(binary.BigEndian.Uint32(b[7:11])),
			data:  b[fragHeaderLen:],
		}
		switch {
		case f.count < 2:
			return frame{}, fmt.Errorf("%w: fragment count %d", ErrFrame, f.count)
		case f.index >= f.count:
			return frame{}, fmt.Errorf("%w: fragment index %d of %d", ErrFrame, f.index, f.count)
		case f.total < f.count || len(f.data) > f.total:
			return frame{}, fmt.Errorf("%w: fragment of %d bytes in a message of %d", ErrFrame, len(f.data), f.total)
		}
		return f, nil
	default:
		return frame{}, fmt.Errorf("%w: unknown frame kind %#02x", ErrFrame, b[0])
	}
}

// fragmenter splits outgoing messages into datagrams. It is deterministic:
// message IDs count up from the value it was created with.
type fragmenter struct {
	maxDatagram int
	maxMessage  int
	nextID      uint32
}

func newFragmenter(maxDatagram, maxMessage int, firstID uint32) *fragmenter {
	if maxDatagram <= 0 {
		maxDatagram = DefaultMaxDatagram
	}
	if maxDatagram < minMaxDatagram {
		maxDatagram = minMaxDatagram
	}
	if maxMessage <= 0 {
		maxMessage = defaultMaxMessage
	}
	return &fragmenter{maxDatagram: maxDatagram, maxMessage: maxMessage, nextID: firstID}
}

// split frames msg into one or more datagrams, each at most maxDatagram
// bytes. The datagrams do not alias msg.
func (f *fragmenter) split(msg []byte) ([][]byte, error) {
	if len(msg) == 0 {
		return nil, fmt.Errorf("%w: empty message", ErrFrame)
	}
	if len(msg) > f.maxMessage {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMessageTooLarge, len(msg), f.maxMessage)
	}
	if 1+len(msg) <= f.maxDatagram {
		d := make([]byte, 1+len(msg))
		d[0] = frameWhole
		copy(d[1:], msg)
		return [][]byte{d}, nil
	}
	room := f.maxDatagram - fragHeaderLen
	count := (len(msg) + room - 1) / room
	if count > maxFragments {
		return nil, fmt.Errorf("%w: %d bytes need %d fragments, limit %d", ErrMessageTooLarge, len(msg), count, maxFragments)
	}
	// Spread the bytes evenly so the last fragment is not a runt.
	chunk := (len(msg) + count - 1) / count
	id := f.nextID
	f.nextID++
	out := make([][]byte, 0, count)
	for i := range count {
		lo := i * chunk
		hi := min(lo+chunk, len(msg))
		d := make([]byte, fragHeaderLen+hi-lo)
		d[0] = frameFragment
		binary.BigEndian.PutUint32(d[1:5], id)
		d[5] = byte(i)
		d[6] = byte(count)
		binary.BigEndian.PutUint32(d[7:11], uint32(len(msg)))
		copy(d[fragHeaderLen:], msg[lo:hi])
		out = append(out, d)
	}
	return out, nil
}

// reasmConfig bounds a reassembler; zero fields take defaults.
type reasmConfig struct {
	maxMessage   int           // bytes of one reassembled message
	maxPerSource int           // partial messages per source address
	maxInFlight  int           // partial messages in total
	maxBuffered  int           // bytes held in partial messages in total
	expiry       time.Duration // lifetime of a partial message
}

func (c reasmConfig) withDefaults() reasmConfig {
	if c.maxMessage <= 0 {
		c.maxMessage = defaultMaxMessage
	}
	if c.maxPerSource <= 0 {
		c.maxPerSource = defaultMaxPerSource
	}
	if c.maxInFlight <= 0 {
		c.maxInFlight = defaultMaxInFlight
	}
	if c.maxBuffered <= 0 {
		c.maxBuffered = defaultMaxBuffered
	}
	if c.expiry <= 0 {
		c.expiry = defaultFragExpiry
	}
	return c
}

type reasmKey struct {
	from  netip.AddrPort
	msgID uint32
}

type partial struct {
	key      reasmKey
	seq      uint64 // arrival order of the first fragment, for eviction
	deadline time.Time
	count    int
	total    int
	have     int // fragments received
	bytes    int // bytes received
	parts    [][]byte
}

// ReassemblyStats counts what the driver's fragment reassembly did (NetStats.Reassembly).
type ReassemblyStats struct {
	Completed  uint64 // messages reassembled from fragments
	Duplicates uint64 // fragments already held
	Expired    uint64 // partial messages dropped at their deadline
	Evicted    uint64 // partial messages dropped to respect a bound
	Rejected   uint64 // fragments inconsistent with their message or over a bound
}

// reassembler rebuilds messages from fragments with bounded state. It is not
// safe for concurrent use; the driver's event loop owns it.
type reassembler struct {
	cfg      reasmConfig
	msgs     map[reasmKey]*partial
	bySource map[netip.AddrPort]int
	// recent remembers messages completed less than an expiry ago (bounded
	// like msgs), so a late duplicate fragment does not start a new one;
	// recentQ holds them in completion order, which is deadline order.
	recent  map[reasmKey]struct{}
	recentQ []recentEntry
	// earliest is no later than the first deadline of a partial message,
	// so expire has nothing to scan before it.
	earliest time.Time
	buffered int
	seq      uint64
	stats    ReassemblyStats
}

func newReassembler(cfg reasmConfig) *reassembler {
	return &reassembler{
		cfg:      cfg.withDefaults(),
		msgs:     make(map[reasmKey]*partial),
		bySource: make(map[netip.AddrPort]int),
		recent:   make(map[reasmKey]struct{}),
	}
}

// add takes one datagram from a source. It returns the complete message when
// the datagram completes one (or is a whole message), nil when more
// fragments are needed, and an error wrapping ErrFrame or
// ErrMessageTooLarge when the datagram is refused.
func (r *reassembler) add(now time.Time, from netip.AddrPort, datagram []byte) ([]byte, error) {
	f, err := decodeFrame(datagram)
	if err != nil {
		return nil, err
	}
	if f.total > r.cfg.maxMessage {
		r.stats.Rejected++
		return nil, fmt.Errorf("%w: %d bytes from %s, limit %d", ErrMessageTooLarge, f.total, from, r.cfg.maxMessage)
	}
	if f.kind == frameWhole {
		return f.data, nil
	}
	r.expire(now)
	k := reasmKey{from: from, msgID: f.msgID}
	p := r.msgs[k]
	if p == nil {
		if _, done := r.recent[k]; done {
			r.stats.Duplicates++
			return nil, nil
		}
		r.makeRoom(from)
		r.seq++
		p = &partial{
			key:      k,
			seq:      r.seq,
			deadline: now.Add(r.cfg.expiry),
			count:    f.count,
			total:    f.total,
			parts:    make([][]byte, f.count),
		}
		r.msgs[k] = p
		r.bySource[from]++
		if r.earliest.IsZero() || p.deadline.Before(r.earliest) {
			r.earliest = p.deadline
		}
	}
	if p.count != f.count || p.total != f.total {
		// Two messages under one ID, or a forged fragment: neither can be
		// trusted to reassemble, so drop both.
		r.drop(p)
		r.stats.Rejected++
		return nil, fmt.Errorf("%w: fragment %d/%d (%d bytes) disagrees with message %d from %s", ErrFrame, f.index, f.count, f.total, f.msgID, from)
	}
	if p.parts[f.index] != nil {
		r.stats.Duplicates++
		return nil, nil
	}
	for r.buffered+len(f.data) > r.cfg.maxBuffered && r.evictOldest(func(q *partial) bool { return q != p }) {
	}
	if p.bytes+len(f.data) > p.total || r.buffered+len(f.data) > r.cfg.maxBuffered {
		r.drop(p)
		r.stats.Rejected++
		return nil, fmt.Errorf("%w: fragments of message %d from %s exceed its %d bytes or the buffer", ErrFrame, f.msgID, from, p.total)
	}
	p.parts[f.index] = append([]byte(nil), f.data...)
	p.have++
	p.bytes += len(f.data)
	r.buffered += len(f.data)
	if p.have < p.count {
		return nil, nil
	}
	r.drop(p)
	if p.bytes != p.total {
		r.stats.Rejected++
		return nil, fmt.Errorf("%w: message %d from %s reassembled to %d bytes, header says %d", ErrFrame, f.msgID, from, p.bytes, p.total)
	}
	msg := make([]byte, 0, p.total)
	for _, part := range p.parts {
		msg = append(msg, part...)
	}
	r.remember(now, k)
	r.stats.Completed++
	return msg, nil
}

// makeRoom evicts the oldest partial messages until a new one from src fits
// the per-source and total message bounds. Bytes are bounded as fragments
// arrive.
func (r *reassembler) makeRoom(src netip.AddrPort) {
	fromSrc := func(p *partial) bool { return p.key.from == src }
	for r.bySource[src] >= r.cfg.maxPerSource && r.evictOldest(fromSrc) {
	}
	for len(r.msgs) >= r.cfg.maxInFlight && r.evictOldest(nil) {
	}
}

// evictOldest drops the oldest partial message that match accepts (any when
// match is nil) and reports whether there was one.
func (r *reassembler) evictOldest(match func(*partial) bool) bool {
	var oldest *partial
	for _, p := range r.msgs {
		if match != nil && !match(p) {
			continue
		}
		if oldest == nil || p.seq < oldest.seq {
			oldest = p
		}
	}
	if oldest == nil {
		return false
	}
	r.drop(oldest)
	r.stats.Evicted++
	return true
}

func (r *reassembler) drop(p *partial) {
	if r.msgs[p.key] != p {
		return
	}
	delete(r.msgs, p.key)
	r.buffered -= p.bytes
	if r.bySource[p.key.from]--; r.bySource[p.key.from] <= 0 {
		delete(r.bySource, p.key.from)
	}
}

type recentEntry struct {
	key      reasmKey
	deadline time.Time
}

// remember records a completed message until an expiry from now, forgetting
// the oldest one if the record is full.
func (r *reassembler) remember(now time.Time, k reasmKey) {
	if len(r.recentQ) >= r.cfg.maxInFlight {
		r.forgetOldest()
	}
	r.recent[k] = struct{}{}
	r.recentQ = append(r.recentQ, recentEntry{key: k, deadline: now.Add(r.cfg.expiry)})
}

func (r *reassembler) forgetOldest() {
	delete(r.recent, r.recentQ[0].key)
	r.recentQ[0] = recentEntry{}
	r.recentQ = r.recentQ[1:]
}

// expire drops partial messages whose deadline is not after now. It costs
// nothing until the earliest deadline passes.
func (r *reassembler) expire(now time.Time) {
	for len(r.recentQ) > 0 && !now.Before(r.recentQ[0].deadline) {
		r.forgetOldest()
	}
	if r.earliest.IsZero() || now.Before(r.earliest) {
		return
	}
	r.earliest = time.Time{}
	for _, p := range r.msgs {
		if !now.Before(p.deadline) {
			r.drop(p)
			r.stats.Expired++
		} else if r.earliest.IsZero() || p.deadline.Before(r.earliest) {
			r.earliest = p.deadline
		}
	}
}

// nextExpiry returns when expire next has a partial message to drop (it may
// be early if that message completed meanwhile), or the zero time when none
// is held.
func (r *reassembler) nextExpiry() time.Time {
	if len(r.msgs) == 0 {
		return time.Time{}
	}
	return r.earliest
}

// inFlight returns the partial messages held, oldest first (for tests and
// statistics).
func (r *reassembler) inFlight() []reasmKey {
	ps := make([]*partial, 0, len(r.msgs))
	for _, p := range r.msgs {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].seq < ps[j].seq })
	keys := make([]reasmKey, len(ps))
	for i, p := range ps {
		keys[i] = p.key
	}
	return keys
}

package overlay

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/records"
)

// Core is one overlay node's protocol state machine. It is not safe for
// concurrent use: the driver serializes calls. Every method that takes now
// treats it as the current time; time never goes backwards for a Core.
type Core struct {
	cfg   Config
	ident *identity.Identity
	id    identity.Key
	rng   *rand.Rand
	hk    *handshakeKeys

	sess    sessionTable
	rt      routingTable
	store   recordStore
	owned   map[identity.Key]*ownedRecord
	pending map[uint64]*request
	ops     map[OpID]*operation
	nextOp  OpID
	timers  timerHeap
	tickAt  int64

	sends []Send
	done  []Completion
	buf   []byte // decrypted plaintext of the datagram being handled

	joined bool
	// everPeered: a session was established once (or contacts restored), so
	// an empty table later means peers were lost, not that there are none.
	everPeered bool
	left       bool
	dirty      bool   // the neighbourhood changed since the last replication pass
	srtt       int64  // smoothed request round trip (ns), for soft timeouts
	rtt        rttEst // the node's round-trip estimate over all peers (RTO fallback)
	replAt     int64  // when the armed replication retry fires (0: none)
	replRetry  int64  // the next replication retry's backoff
	st         Stats
	rl         rateLimiter
	reach      reachState // reachability, client mode, keepalives (reach.go)
	// replyBudget, while positive, bounds the DATA packet reply sends: the
	// answer to an early request (early.go).
	replyBudget int
}

// ownedRecord is a record this node published and keeps republishing.
type ownedRecord struct {
	rec         *records.Record
	republishAt int64
	confirmed   uint64 // Seq of the last publish or republish the replicas acknowledged
}

// Request kinds.
const (
	reqLookup    = 1 // part of an operation's iterative lookup
	reqStore     = 2 // an operation's STORE
	reqPing      = 3 // liveness check of a full bucket's oldest contact
	reqReplicate = 4 // maintenance STORE (re-replication)
)

type request struct {
	id     uint64
	peer   identity.Key
	hasID  bool
	addr   netip.AddrPort
	body   []byte
	sentAt int64
	op     *operation
	cand   int32
	kind   uint8
	expect byte // the response message type
	resent bool
	slow   bool // past its soft timeout (lookups)
	// Retransmission (retransmit.go).
	tries uint8         // resends so far
	rto   int64         // the current retransmission timeout
	rto0  int64         // the first one
	sr    *storedRecord // what a reqReplicate STORE carries
	end   int64         // when the request fails if still unanswered
}

// NewCore returns a core for cfg.Identity. It does nothing until driven.
func NewCore(cfg Config) (*Core, error) {
	if err := cfg.ApplyDefaults(); err != nil {
		return nil, err
	}
	hk, err := newHandshakeKeys(&cfg)
	if err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	id := cfg.Identity.NodeID()
	c := &Core{
		cfg:   cfg,
		ident: cfg.Identity,
		id:    id,
		rng:   rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		hk:    hk,
		sess: sessionTable{byIdx: make(map[uint32]*session), byPeer: make(map[identity.Key]*session),
			halfOpen: make(map[helloKey]*session), max: cfg.MaxSessions},
		rt:      routingTable{self: id, k: cfg.K, prefixCap: cfg.Defence.PrefixCap},
		store:   newRecordStore(&cfg),
		owned:   make(map[identity.Key]*ownedRecord),
		pending: make(map[uint64]*request),
		ops:     make(map[OpID]*operation),
		rl:      newRateLimiter(cfg.RateLimits),
	}
	c.st.ID = id
	c.reach.client = cfg.Mode == ModeClient // reach.go
	return c, nil
}

// ID returns the node's overlay ID.
func (c *Core) ID() identity.Key { return c.id }

// Config returns the core's configuration, defaults applied.
func (c *Core) Config() Config { return c.cfg }

// NextTimer returns when HandleTimer must next be called (zero: no timer).
func (c *Core) NextTimer() time.Time {
	if len(c.timers) == 0 {
		return time.Time{}
	}
	return time.Unix(0, c.timers[0].at)
}

// Outbox drains the datagrams to send and the completed operations.
func (c *Core) Outbox() (sends []Send, done []Completion) {
	sends, done = c.sends, c.done
	c.sends, c.done = nil, nil
	return sends, done
}

// Stats returns a snapshot of sizes, bounds and counters.
func (c *Core) Stats() Stats {
	s := c.st
	s.Joined = c.joined
	s.DroppedPuzzle = c.hk.puzzleDrop
	s.PrefixRefused += c.rt.prefixRefused
	s.Alone = c.rt.size == 0
	s.RoutingTableSize = c.rt.size
	s.RoutingTableMax = len(c.rt.buckets) * c.cfg.K
	s.ReplacementCacheSize = c.rt.repl
	s.Sessions = len(c.sess.byIdx)
	s.HalfOpenSessions = len(c.sess.halfOpen)
	s.MaxSessions = c.cfg.MaxSessions
	s.MaxHalfOpen = c.cfg.MaxHalfOpen
	s.RecordsStored = c.store.count
	s.RecordBytes = c.store.bytes
	s.MaxRecords = c.cfg.MaxRecords
	s.MaxRecordBytes = c.cfg.MaxRecordBytes
	s.MaxSourceRecords = c.store.maxSourceCount()
	s.OwnedRecords = len(c.owned)
	s.PendingRequests = len(c.pending)
	s.MaxPending = c.cfg.MaxPending
	s.ActiveOps = len(c.ops)
	s.MaxOps = c.cfg.MaxOps
	s.TimerEntries = len(c.timers)
	return s
}

// touch starts the maintenance timer on the first event.
func (c *Core) touch(now int64) {
	c.reach.now = now // reach.go: when datagrams are sent
	if c.tickAt == 0 && !c.left {
		// Jitter the first tick so that nodes started together do not tick together.
		c.tickAt = now + c.cfg.TickInterval.Nanoseconds()/2 + c.rng.Int64N(c.cfg.TickInterval.Nanoseconds()/2+1)
		c.timers.push(timer{at: c.tickAt, kind: tTick})
	}
}

func (c *Core) emit(to netip.AddrPort, data []byte) {
	c.st.MsgsSent++
	c.st.BytesSent += uint64(len(data))
	c.reach.noteSent(to.Addr()) // reach.go
	c.sends = append(c.sends, Send{To: to, Data: data})
}

func (c *Core) newReqID() uint64 {
	for {
		id := c.rng.Uint64()
		if _, dup := c.pending[id]; id != 0 && !dup {
			return id
		}
	}
}

func (c *Core) newSessionIdx() uint32 {
	for {
		idx := c.rng.Uint32()
		if _, dup := c.sess.byIdx[idx]; idx != 0 && !dup {
			return idx
		}
	}
}

func (c *Core) fillNonce(now int64, n *[nonceLen]byte) {
	// PCG output mixed with the time: with a driver seeding from crypto/rand it
	// is unpredictable; after a restart with a reused seed it still differs.
	binary.BigEndian.PutUint64(n[:8], c.rng.Uint64())
	binary.BigEndian.PutUint64(n[8:], c.rng.Uint64()^uint64(now))
}

// ---- sending ----

// sendRequest sends m as a request and tracks its timeout.
func (c *Core) sendRequest(now int64, to contact, hasID bool, m *msg, op *operation, cand int32, kind uint8, expect byte) error {
	if len(c.pending) >= c.cfg.MaxPending {
		return ErrBusy
	}
	m.reqID = c.newReqID()
	req := &request{
		id: m.reqID, peer: to.ID, hasID: hasID, addr: to.Addr, body: appendMsg(nil, m),
		sentAt: now, op: op, cand: cand, kind: kind, expect: expect,
	}
	c.pending[req.id] = req
	c.armRequest(now, req)
	if kind == reqLookup {
		c.timers.push(timer{at: now + c.softTimeout(), kind: tSoft, id: req.id})
	}
	if hasID && c.earlyEligible(op, kind, m) && len(req.body) <= earlyMax && c.sessionFor(to.ID, hasID, to.Addr) == nil && to.Addr.IsValid() {
		c.startHandshake(now, to.ID, hasID, to.Addr, req.body) // early.go
		return nil
	}
	c.transmit(now, to.ID, hasID, to.Addr, req.body)
	return nil
}

// transmit sends a plaintext to a peer over its session, starting a handshake if needed.
func (c *Core) transmit(now int64, peer identity.Key, hasID bool, addr netip.AddrPort, body []byte) {
	s := c.sessionFor(peer, hasID, addr)
	if s == nil {
		if !addr.IsValid() {
			return
		}
		s = c.startHandshake(now, peer, hasID, addr, nil)
	}
	c.sess.touch(s, now)
	if s.state == sessInitSent {
		if len(s.hs.queue) < maxQueuedPerHandshake {
			s.hs.queue = append(s.hs.queue, body)
		}
		return
	}
	c.emit(s.addr, s.seal(c.hk.tag, body))
}

// sessionFor returns the session used to send to a peer (by ID, or by address
// for a seed whose ID is not known yet), or nil.
func (c *Core) sessionFor(peer identity.Key, hasID bool, addr netip.AddrPort) *session {
	if hasID {
		return c.sess.byPeer[peer]
	}
	for _, x := range c.sess.sorted() {
		if x.addr == addr && x.state != sessHalfOpen {
			return x
		}
	}
	return nil
}

// Scratch buffers shared by all cores of the process (a per-core buffer
// would cost every one of 100,000 simulated nodes its peak size).
var (
	scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}
	contactPool = sync.Pool{New: func() any { b := make([]contact, 0, maxContactsPerMessage); return &b }}
)

// contactScratch returns a buffer for the contacts of one reply; reply
// recycles it once the message is sealed.
func contactScratch() []contact {
	return (*contactPool.Get().(*[]contact))[:0]
}

func putContactScratch(cs []contact) {
	cs = cs[:0]
	contactPool.Put(&cs)
}

// reply answers a request on the session it arrived on.
func (c *Core) reply(now int64, s *session, m *msg) {
	c.sess.touch(s, now)
	bp := scratchPool.Get().(*[]byte)
	*bp = appendMsg((*bp)[:0], m) // sealed into a new packet: the body is not kept
	if c.replyBudget > 0 {
		*bp = c.fitBudget(*bp, m) // early.go
	}
	if len(*bp) > 0 {
		c.emit(s.addr, s.seal(c.hk.tag, *bp))
	}
	if cap(*bp) <= 4096 {
		scratchPool.Put(bp)
	}
	if cap(m.contacts) == maxContactsPerMessage {
		putContactScratch(m.contacts)
	}
}

// makeRoom evicts, before a session is added, the oldest half-open session
// when MaxHalfOpen of them are waiting (halfOpen), or else the least
// recently used other session while MaxSessions are open. The two are kept
// apart: a crowd of joiners handshaking with one seed does not evict each
// other's half-open sessions, nor the seed's established ones, before the
// joiners' first DATA arrives.
func (c *Core) makeRoom(now int64, halfOpen bool) {
	if halfOpen {
		if len(c.sess.halfOpen) >= c.cfg.MaxHalfOpen {
			if v := c.sess.victim(true); v != nil {
				c.sess.remove(v)
				c.st.HalfOpenEvicted++
			}
		}
		return
	}
	for len(c.sess.byIdx)-len(c.sess.halfOpen) >= c.cfg.MaxSessions {
		v := c.sess.victim(false)
		if v == nil {
			return
		}
		c.sess.remove(v)
	}
}

// startHandshake initiates a session with a peer. A non-nil early is a
// request sent with the HELLO (early.go) instead of after the handshake.
func (c *Core) startHandshake(now int64, peer identity.Key, hasID bool, addr netip.AddrPort, early []byte) *session {
	c.makeRoom(now, false)
	s := &session{
		localIdx: c.newSessionIdx(), state: sessInitSent, hasPeer: hasID, peer: peer,
		addr: addr, lastUsed: now,
	}
	s.hs = &handshakeState{early: early}
	c.fillNonce(now, &s.hs.nonce)
	c.sess.add(s)
	if hasID {
		c.sess.byPeer[peer] = s
	}
	c.st.HandshakesStarted++
	c.emit(addr, c.helloPacket(s))
	return s
}

// helloPacket builds the HELLO of an initiated session; a resend is the same
// bytes, which the responder answers with the same HELLO_ACK.
func (c *Core) helloPacket(s *session) []byte {
	pkt := make([]byte, 0, helloLen)
	pkt = appendHeader(pkt, ptHello, c.hk.tag)
	pkt = binary.BigEndian.AppendUint32(pkt, s.localIdx)
	pkt = append(pkt, c.hk.cert[:]...)
	pkt = append(pkt, s.hs.nonce[:]...)
	pkt = append(pkt, make([]byte, helloPad)...)
	if s.hs.early != nil {
		return appendEarlyHello(pkt, s.hs.early)
	}
	return pkt
}

// ---- receiving ----

// HandleDatagram processes one datagram received from the given address.
func (c *Core) HandleDatagram(now time.Time, from netip.AddrPort, data []byte) {
	if c.left {
		return
	}
	ns := now.UnixNano()
	c.touch(ns)
	c.st.MsgsReceived++
	c.st.BytesReceived += uint64(len(data))
	h, err := decodeHeader(data)
	if err != nil {
		c.st.DroppedMalformed++
		return
	}
	if h.cloud != c.hk.tag {
		c.st.DroppedCloud++
		return
	}
	if !from.IsValid() || from.Port() == 0 {
		c.st.DroppedMalformed++
		return
	}
	switch h.typ {
	case ptHello, ptHelloReq:
		c.onHello(ns, from, data)
	case ptHelloAck:
		c.onHelloAck(ns, from, data)
	case ptData:
		c.onData(ns, from, data)
	case ptNoSession:
		c.onNoSession(ns, from, data)
	case ptProbe:
		c.onProbe(ns, from, data) // reach.go
	}
}

func (c *Core) onHello(now int64, from netip.AddrPort, data []byte) {
	if !c.admitHello(now, from) {
		return
	}
	hl := parseHello(data, ptHello)
	if s := c.sess.halfOpen[helloKey{from, hl.senderIdx}]; s != nil {
		if bytes.Equal(s.hs.hello, data) {
			// A duplicated or retransmitted HELLO: resend the same answer
			// (and answer its early request again: its answer may be what
			// was lost).
			c.emit(from, s.hs.ack)
			c.answerEarly(now, s, data)
			return
		}
		c.sess.remove(s) // the peer restarted and reused its index
	}
	peer, err := c.hk.verifyCert(&hl)
	if err != nil || peer == c.id {
		c.st.DroppedAuth++
		return
	}
	c.makeRoom(now, true)
	s := &session{
		localIdx: c.newSessionIdx(), remoteIdx: hl.senderIdx, state: sessHalfOpen, hasPeer: true,
		peer: peer, addr: from, lastUsed: now,
	}
	var nonceR [nonceLen]byte
	c.fillNonce(now, &nonceR)
	i2r, r2i, err := c.hk.deriveKeys(hl.xPub[:], peer, c.id, hl.nonce[:], nonceR[:], hl.senderIdx, s.localIdx)
	if err != nil {
		c.st.DroppedAuth++
		return
	}
	s.recv, s.send = i2r, r2i
	ack := make([]byte, 0, helloAckLn)
	ack = appendHeader(ack, ptHelloAck, c.hk.tag)
	ack = binary.BigEndian.AppendUint32(ack, s.localIdx)
	ack = binary.BigEndian.AppendUint32(ack, hl.senderIdx)
	ack = append(ack, c.hk.cert[:]...)
	ack = append(ack, nonceR[:]...)
	n0 := aeadNonce(0)
	ack = r2i.Seal(ack, n0[:], nil, ackAD(ack, earlyRequest(data)))
	s.hs = &handshakeState{ack: ack, hello: bytes.Clone(data)}
	c.sess.add(s)
	c.sess.halfOpen[helloKey{from, hl.senderIdx}] = s
	c.emit(from, ack)
	c.answerEarly(now, s, data)
}

func (c *Core) onHelloAck(now int64, from netip.AddrPort, data []byte) {
	hl := parseHello(data, ptHelloAck)
	s := c.sess.byIdx[hl.recvIdx]
	if s == nil || s.state != sessInitSent || s.addr != from {
		c.st.DroppedAuth++
		return
	}
	peer, err := c.hk.verifyCert(&hl)
	if err != nil || peer == c.id || (s.hasPeer && peer != s.peer) {
		c.st.DroppedAuth++
		return
	}
	i2r, r2i, err := c.hk.deriveKeys(hl.xPub[:], c.id, peer, s.hs.nonce[:], hl.nonce[:], s.localIdx, hl.senderIdx)
	if err != nil {
		c.st.DroppedAuth++
		return
	}
	n0 := aeadNonce(0)
	if _, err := r2i.Open(nil, n0[:], data[helloAckLn-tagLen:], ackAD(data[:helloAckLn-tagLen], s.hs.early)); err != nil {
		c.st.DroppedAuth++
		return
	}
	s.send, s.recv = i2r, r2i
	s.remoteIdx = hl.senderIdx
	s.state = sessEstablished
	s.lastRecv = now
	c.sess.touch(s, now)
	s.hasPeer, s.peer = true, peer
	early := s.hs.early != nil && len(s.hs.queue) == 0
	c.adoptSession(s)
	if early {
		// Nothing else to send: a PING proves our key to the responder,
		// which completes its side and learns us (onSeen) as it would
		// from a request that waited for the handshake. It is tracked and
		// retransmitted like one: a lost confirmation would leave the
		// responder's table without us (early.go).
		m := msg{typ: mPing}
		if c.sendRequest(now, contact{ID: peer, Addr: s.addr}, true, &m, nil, -1, reqPing, mPong) != nil {
			c.sendMode(now, s) // MaxPending requests in flight: untracked
		}
	}
	c.st.HandshakesCompleted++
	c.onSeen(now, peer, s.addr)
}

// adoptSession makes s the session used to send to its peer and flushes
// whatever waited for a handshake with that peer.
func (c *Core) adoptSession(s *session) {
	if old := c.sess.byPeer[s.peer]; old != nil && old != s && old.state == sessInitSent {
		if s.hs == nil {
			s.hs = &handshakeState{}
		}
		s.hs.queue = append(s.hs.queue, old.hs.queue...)
		old.hs.queue = nil
		c.sess.remove(old)
	}
	c.sess.byPeer[s.peer] = s
	c.everPeered = true
	c.announceMode(c.reach.now, s) // reach.go: a client says so first
	var q [][]byte
	if s.hs != nil {
		q = s.hs.queue
	}
	s.hs = nil
	for _, body := range q {
		c.emit(s.addr, s.seal(c.hk.tag, body))
	}
}

func (c *Core) onData(now int64, from netip.AddrPort, data []byte) {
	idx := binary.BigEndian.Uint32(data[headerLen:])
	s := c.sess.byIdx[idx]
	if s == nil {
		c.st.DroppedAuth++
		// Tell the sender its session is gone (smaller than what it sent).
		hint := make([]byte, 0, noSessLen)
		hint = appendHeader(hint, ptNoSession, c.hk.tag)
		hint = binary.BigEndian.AppendUint32(hint, idx)
		c.emit(from, hint)
		return
	}
	if s.addr != from || s.state == sessInitSent {
		c.st.DroppedAuth++
		return
	}
	if cap(c.buf) < len(data) {
		c.buf = make([]byte, 0, max(len(data), 2048))
	}
	plain, err := s.open(data, c.buf)
	if err != nil {
		c.st.DroppedAuth++
		return
	}
	s.lastRecv = now
	c.sess.touch(s, now)
	if s.state == sessHalfOpen {
		c.makeRoom(now, false)
		s.state = sessEstablished
		c.sess.confirm(s)
		s.hs = nil
		c.st.HandshakesCompleted++
		c.adoptSession(s)
	}
	cbuf := contactScratch()
	defer putContactScratch(cbuf)
	m, err := decodeMsgInto(plain, cbuf) // contacts are copied by whoever keeps them
	if err != nil {
		c.st.DroppedMalformed++
		return
	}
	c.peekMode(s, &m) // reach.go: before the table sees a client
	c.onSeen(now, s.peer, s.addr)
	if c.admit(now, s, &m) {
		c.onMessage(now, s, &m)
	}
}

func (c *Core) onNoSession(now int64, from netip.AddrPort, data []byte) {
	idx := binary.BigEndian.Uint32(data[headerLen:])
	var lost *session
	for _, s := range c.sess.sorted() {
		if s.remoteIdx == idx && s.addr == from && s.state == sessEstablished {
			lost = s
			break
		}
	}
	if lost == nil {
		return
	}
	c.sess.remove(lost)
	// Resend, over a new handshake, the requests that went through the lost session.
	var redo []*request
	for _, r := range c.pending {
		if !r.resent && r.addr == from && (!r.hasID || r.peer == lost.peer) {
			redo = append(redo, r)
		}
	}
	slices.SortFunc(redo, func(a, b *request) int { return cmpU64(a.id, b.id) })
	for _, r := range redo {
		r.resent = true
		c.transmit(now, r.peer, r.hasID, r.addr, r.body)
	}
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// onSeen updates the routing table after an authenticated message from peer.
func (c *Core) onSeen(now int64, peer identity.Key, addr netip.AddrPort) {
	if c.peerIsClient(peer) { // reach.go: clients never enter the table
		return
	}
	defer c.reachSeen(now)
	r := c.rt.seen(peer, addr, now, c.cfg.PingAge.Nanoseconds())
	if r.added {
		// A new contact may be one of the closest for keys this node
		// holds: hand them over now, not at the next tick.
		c.dirty = true
		c.replicateSoon(now)
	}
	if r.ping != nil {
		m := msg{typ: mPing}
		if err := c.sendRequest(now, contact{ID: r.ping.id, Addr: r.ping.addr}, true, &m, nil, -1, reqPing, mPong); err != nil {
			c.rt.failed(r.ping.id, 1<<7) // clears the pinging mark; tried again next time
		}
	}
}

// onMessage dispatches an authenticated message received on s.
func (c *Core) onMessage(now int64, s *session, m *msg) {
	if c.cfg.Intercept != nil && c.intercept(now, s, m) {
		return
	}
	switch m.typ {
	case mPing:
		c.reply(now, s, &msg{typ: mPong, reqID: m.reqID, addr: s.addr})
	case mFindNode:
		c.reply(now, s, &msg{typ: mNodes, reqID: m.reqID, contacts: c.rt.closest(contactScratch(), m.key, c.cfg.K, s.peer)})
	case mFindValue:
		out := msg{typ: mValue, reqID: m.reqID, contacts: c.rt.closest(contactScratch(), m.key, c.cfg.K, s.peer)}
		size := 0
		for _, sr := range c.store.get(m.key, now) {
			if len(out.records) == maxRecordsPerMessage || size+len(sr.enc) > maxValueMessageBytes {
				break
			}
			if !sr.servable(now) {
				continue // verified when stored; its time window is checked again
			}
			out.records = append(out.records, sr.enc)
			size += len(sr.enc)
		}
		c.reply(now, s, &out)
	case mStore:
		if c.reach.client { // reach.go: a client stores nothing for others
			c.reply(now, s, &msg{typ: mStoreAck, reqID: m.reqID, n: storeFull})
			return
		}
		res := c.store.put(now, m.key, m.records[0], s.addr.Addr())
		if res.status != storeOK {
			c.st.RecordsRejected++
		} else if res.changed {
			c.markPushed(m.key)
		}
		c.reply(now, s, &msg{typ: mStoreAck, reqID: m.reqID, n: int(res.status)})
	case mNearest:
		c.reply(now, s, &msg{typ: mKeys, reqID: m.reqID, keys: c.store.nearestKeys(m.key, m.n, now),
			contacts: c.rt.closest(contactScratch(), m.key, c.cfg.K, s.peer)})
	case mRange:
		keys, more := c.store.rangeKeys(m.key, m.key2, m.n, now)
		c.reply(now, s, &msg{typ: mKeys, reqID: m.reqID, keys: keys, more: more,
			contacts: c.rt.closest(contactScratch(), midpoint(m.key, m.key2), c.cfg.K, s.peer)})
	case mLeave:
		c.rt.remove(s.peer)
		c.dirty = true
		c.sess.remove(s)
		var gone []*request
		for _, r := range c.pending {
			if r.hasID && r.peer == s.peer {
				gone = append(gone, r)
			}
		}
		slices.SortFunc(gone, func(a, b *request) int { return cmpU64(a.id, b.id) })
		for _, r := range gone {
			delete(c.pending, r.id)
			c.requestFailed(now, r, false)
		}
	case mDialReq, mDial, mDialAck:
		c.onReachMsg(now, s, m) // reach.go
	case mPong, mNodes, mValue, mStoreAck, mKeys:
		c.notePong(now, m) // reach.go
		req := c.pending[m.reqID]
		if req == nil || req.expect != m.typ || (req.hasID && req.peer != s.peer) || (!req.hasID && req.addr != s.addr) {
			return
		}
		delete(c.pending, req.id)
		if req.kind == reqReplicate && req.sr != nil {
			req.sr.addPushed(binary.BigEndian.Uint64(s.peer[:8]))
			// The owner pushing its own record: a republish whose STOREs
			// were lost is confirmed by the replica that now has it.
			if o := c.owned[req.sr.rec.Key()]; o != nil && o.rec.Seq == req.sr.rec.Seq && bytes.Equal(o.rec.PublicKey, req.sr.rec.PublicKey) {
				o.confirmed = max(o.confirmed, o.rec.Seq)
			}
		}
		if !req.resent && req.tries == 0 {
			c.rttSample(s.peer, now-req.sentAt)
		}
		if !req.resent {
			sample := now - req.sentAt
			if c.srtt == 0 {
				c.srtt = sample
			} else {
				c.srtt += (sample - c.srtt) / 8
			}
		}
		if req.op != nil {
			c.opResponse(now, req, s.peer, m)
		}
	}
}

// requestFailed handles a request that timed out (or whose peer left).
func (c *Core) requestFailed(now int64, req *request, timedOut bool) {
	if timedOut {
		// A peer that sent nothing since the request may have lost our session
		// (or died): the next request starts a fresh handshake.
		if s := c.sessionFor(req.peer, req.hasID, req.addr); s != nil && s.lastRecv < req.sentAt {
			c.sess.remove(s)
		}
		if req.hasID {
			if req.kind == reqPing {
				if c.rt.remove(req.peer) {
					c.dirty = true
				}
			} else if c.rt.failed(req.peer, c.cfg.MaxFails) {
				c.dirty = true
			}
		}
	}
	if req.kind == reqReplicate && timedOut {
		c.dirty = true // the replica did not acknowledge: try it again
		c.armReplicate(now)
	}
	if req.op != nil {
		c.opFailure(now, req, timedOut)
	}
}

// ---- timers ----

// HandleTimer runs every timer due at or before now.
func (c *Core) HandleTimer(now time.Time) {
	if c.left {
		return
	}
	ns := now.UnixNano()
	c.touch(ns)
	for len(c.timers) > 0 && c.timers[0].at <= ns {
		t := c.timers.pop()
		switch t.kind {
		case tRequest:
			if req := c.pending[t.id]; req != nil && !c.onRequestTimer(ns, req) {
				delete(c.pending, t.id)
				c.requestFailed(ns, req, true)
			}
		case tOpDeadline:
			if op := c.ops[OpID(t.id)]; op != nil {
				op.deadlineHit = true
				c.finishLookup(ns, op)
			}
		case tSoft:
			if req := c.pending[t.id]; req != nil {
				c.onSoftTimeout(ns, req)
			}
		case tGrace:
			if op := c.ops[OpID(t.id)]; op != nil && !op.storing && c.quorumMet(op) {
				c.finishLookup(ns, op)
			}
		case tReplicate:
			if t.at == c.replAt {
				c.replAt = 0
				if c.dirty {
					c.replicate(ns)
				}
			}
		case tReach, tKeepalive:
			c.reachTimer(ns, t) // reach.go
		case tTick:
			if t.at == c.tickAt {
				c.maintain(ns)
				c.tickAt = ns + c.cfg.TickInterval.Nanoseconds()
				c.timers.push(timer{at: c.tickAt, kind: tTick})
			}
		}
	}
}

// maintain is the periodic housekeeping: expiry, session ageing, republish,
// bucket refresh and re-replication.
func (c *Core) maintain(now int64) {
	c.store.expire(now)
	idle := c.cfg.SessionIdle.Nanoseconds()
	for s := c.sess.lruHead; s != nil && now-s.lastUsed > idle; s = c.sess.lruHead {
		c.sess.remove(s)
	}
	// Owners republish (re-signed, higher Seq) at half their records' lifetime.
	var due []identity.Key
	for k, o := range c.owned {
		if o.republishAt <= now {
			due = append(due, k)
		}
	}
	slices.SortFunc(due, compareKeys)
	for _, k := range due {
		c.republish(now, k)
	}
	// A node whose join got no answer but that knows contacts (they reached
	// it, or handshakes completed) retries its self-lookup every tick.
	if !c.joined && c.rt.size > 0 && !c.joinRunning() {
		c.startInternalLookup(now, opJoin, c.id)
	}
	// A node that joined while its cloud was a node or two (its seed) would
	// learn of the nodes that came later only from their requests, which
	// never reach it behind NAT, or from a bucket refresh much later: while
	// its table holds fewer than Alpha contacts it looks itself up again
	// every tick.
	if c.joined && c.rt.size > 0 && c.rt.size < c.cfg.Alpha && len(c.ops) < c.cfg.MaxOps/2 {
		c.startInternalLookup(now, opRefresh, c.id)
	}
	// Refresh buckets that saw no lookup for RefreshInterval, and check the
	// liveness of each bucket's least recently seen contact once it has been
	// silent that long (one ping per bucket per tick).
	if c.rt.size > 0 {
		refresh := c.cfg.RefreshInterval.Nanoseconds()
		for i := range c.rt.buckets {
			b := &c.rt.buckets[i]
			if len(b.live) > 0 && !b.live[0].pinging && now-b.live[0].lastSeen > refresh &&
				len(c.pending) < c.cfg.MaxPending/2 {
				head := &b.live[0]
				head.pinging = true
				m := msg{typ: mPing}
				if c.sendRequest(now, contact{ID: head.id, Addr: head.addr}, true, &m, nil, -1, reqPing, mPong) != nil {
					head.pinging = false
				}
			}
		}
		for i := range c.rt.buckets {
			if len(c.ops) >= c.cfg.MaxOps/2 {
				break
			}
			if now-c.rt.buckets[i].lastLookup > refresh {
				c.startInternalLookup(now, opRefresh, randomIDInBucket(c.id, i, c.rng.Uint64))
			}
		}
	}
	if c.dirty {
		c.replicate(now)
	}
}

// joinRunning reports whether a join (API or internal) is in progress.
func (c *Core) joinRunning() bool {
	for _, op := range c.ops {
		if op.kind == opJoin {
			return true
		}
	}
	return false
}

// ---- API ----

func (c *Core) newOp(now int64, kind opKind, target identity.Key, o SearchOptions) (*operation, error) {
	c.touch(now)
	c.nextOp++
	op := &operation{id: c.nextOp, kind: kind, target: target}
	if c.left {
		return op, ErrLeft
	}
	if len(c.ops) >= c.cfg.MaxOps {
		return op, ErrBusy
	}
	op.deadline = now + c.cfg.SearchTimeout.Nanoseconds()
	if !o.Deadline.IsZero() {
		op.deadline = o.Deadline.UnixNano()
	}
	op.maxHops = c.cfg.MaxHops
	if o.MaxHops > 0 {
		op.maxHops = o.MaxHops
	}
	c.ops[op.id] = op
	c.timers.push(timer{at: op.deadline, kind: tOpDeadline, id: uint64(op.id)})
	return op, nil
}

func (c *Core) fail(op *operation, err error) OpID {
	c.done = append(c.done, Completion{Op: op.id, Err: err})
	return op.id
}

// Join bootstraps from seed addresses, then looks up the node's own ID. It
// completes when that lookup ends; Err is ErrAlone if nobody answered.
func (c *Core) Join(now time.Time, seeds []netip.AddrPort) OpID {
	ns := now.UnixNano()
	op, err := c.newOp(ns, opJoin, c.id, SearchOptions{})
	if err != nil {
		return c.fail(op, err)
	}
	for _, a := range seeds {
		if !a.IsValid() || a.Port() == 0 || c.cfg.CanReach != nil && !c.cfg.CanReach(a) {
			continue
		}
		op.addSeed(a)
	}
	c.startLookup(ns, op)
	return op.id
}

// Resolve finds the records stored under key (see Completion.Records). A name
// whose newest record is a withdrawal completes with ErrWithdrawn.
func (c *Core) Resolve(now time.Time, key identity.Key, o SearchOptions) OpID {
	ns := now.UnixNano()
	op, err := c.newOp(ns, opResolve, key, o)
	if err != nil {
		return c.fail(op, err)
	}
	for _, sr := range c.store.get(key, ns) {
		if sr.servable(ns) {
			op.addRecord(sr.rec)
		}
	}
	c.startLookup(ns, op)
	return op.id
}

// Nearest finds up to n registered keys closest (XOR distance) to key.
func (c *Core) Nearest(now time.Time, key identity.Key, n int, o SearchOptions) OpID {
	ns := now.UnixNano()
	op, err := c.newOp(ns, opNearest, key, o)
	if err != nil {
		return c.fail(op, err)
	}
	op.n = min(max(n, 1), maxKeysPerMessage)
	op.mergeKeys(c.store.nearestKeys(key, op.n, ns), -1)
	c.startLookup(ns, op)
	return op.id
}

// Range finds registered keys in [lo, hi] (at most Config.MaxRangeKeys).
func (c *Core) Range(now time.Time, lo, hi identity.Key, o SearchOptions) OpID {
	ns := now.UnixNano()
	if compareKeys(lo, hi) > 0 {
		lo, hi = hi, lo
	}
	op, err := c.newOp(ns, opRange, midpoint(lo, hi), o)
	if err != nil {
		return c.fail(op, err)
	}
	op.lo, op.hi, op.n = lo, hi, c.cfg.MaxRangeKeys
	keys, _ := c.store.rangeKeys(lo, hi, op.n, ns)
	op.mergeKeys(keys, -1)
	c.startLookup(ns, op)
	return op.id
}

// Publish signs a copy of tmpl with the node's identity (Seq, Issued and
// Expires are set here), stores it on the Replication closest nodes and
// republishes it before expiry until Unpublish. Completion.Records holds the
// signed record; Completion.Stored the number of nodes that acknowledged it.
func (c *Core) Publish(now time.Time, tmpl *records.Record) OpID {
	ns := now.UnixNano()
	rec := tmpl.Clone()
	if rec.Name.Secured {
		rec.Name.Authority = c.ident.Authority()
	}
	key := rec.Name.Key()
	op, err := c.newOp(ns, opPublish, key, SearchOptions{})
	if err != nil {
		return c.fail(op, err)
	}
	if err := c.signOwn(ns, rec, false); err != nil {
		c.dropOp(op)
		return c.fail(op, err)
	}
	c.owned[key] = &ownedRecord{rec: rec, republishAt: ns + c.cfg.RecordLifetime.Nanoseconds()/2}
	c.beginStore(ns, op, rec)
	return op.id
}

// Unpublish stops republishing name and publishes a signed withdrawal that
// replaces the live record on the replicas (Resolve then reports ErrWithdrawn).
func (c *Core) Unpublish(now time.Time, name identity.Name) OpID {
	ns := now.UnixNano()
	if name.Secured {
		name.Authority = c.ident.Authority()
	}
	key := name.Key()
	op, err := c.newOp(ns, opUnpublish, key, SearchOptions{})
	if err != nil {
		return c.fail(op, err)
	}
	o := c.owned[key]
	if o == nil {
		c.dropOp(op)
		return c.fail(op, fmt.Errorf("%s: %w", name, ErrNotOwned))
	}
	delete(c.owned, key)
	tomb := &records.Record{Name: o.rec.Name, Seq: o.rec.Seq}
	if err := c.signOwn(ns, tomb, true); err != nil {
		c.dropOp(op)
		return c.fail(op, err)
	}
	c.beginStore(ns, op, tomb)
	return op.id
}

// Store replicates a record signed elsewhere on the closest nodes (no republish).
func (c *Core) Store(now time.Time, rec *records.Record) OpID {
	ns := now.UnixNano()
	op, err := c.newOp(ns, opStore, rec.Key(), SearchOptions{})
	if err != nil {
		return c.fail(op, err)
	}
	if err := records.Verify(rec, unixTime(ns)); err != nil {
		c.dropOp(op)
		return c.fail(op, fmt.Errorf("%w: %w", ErrBadRecord, err))
	}
	c.beginStore(ns, op, rec)
	return op.id
}

// Cancel abandons an operation; no Completion is reported for it.
func (c *Core) Cancel(op OpID) {
	if o := c.ops[op]; o != nil {
		c.dropOp(o)
	}
}

// Leave tells the peers the node is going, hands its stored records to the
// closest peers it has sessions with, and stops the core: operations in
// progress complete with ErrLeft and later calls are refused.
func (c *Core) Leave(now time.Time) {
	if c.left {
		return
	}
	ns := now.UnixNano()
	handed := 0
	for _, k := range c.store.sortedKeys() {
		targets := c.rt.closest(nil, k, c.cfg.Replication, c.id)
		for _, sr := range c.store.get(k, ns) {
			for _, t := range targets {
				s := c.sess.byPeer[t.ID]
				if s == nil || s.state != sessEstablished || handed >= maxLeaveHandoffs {
					continue
				}
				m := msg{typ: mStore, reqID: c.rng.Uint64(), key: k, records: [][]byte{sr.enc}}
				c.reply(ns, s, &m)
				handed++
			}
		}
	}
	for _, s := range c.sess.sorted() {
		if s.state == sessEstablished {
			c.reply(ns, s, &msg{typ: mLeave})
		}
	}
	ids := make([]OpID, 0, len(c.ops))
	for id, op := range c.ops {
		if !op.internal {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		c.done = append(c.done, Completion{Op: id, Err: ErrLeft})
	}
	clear(c.ops)
	clear(c.pending)
	c.timers = c.timers[:0]
	c.left = true
}

// maxLeaveHandoffs bounds the STOREs sent while leaving.
const maxLeaveHandoffs = 1024

// signOwn sets Seq, Issued and Expires of a record this node publishes and signs it.
func (c *Core) signOwn(now int64, rec *records.Record, withdrawn bool) error {
	prev := rec.Seq
	if o := c.owned[rec.Name.Key()]; o != nil {
		prev = max(prev, o.rec.Seq)
	}
	for _, sr := range c.store.get(rec.Name.Key(), now) {
		if sr.rec.PublicKey.Equal(c.ident.PublicKey()) {
			prev = max(prev, sr.rec.Seq)
		}
	}
	rec.Seq = max(prev+1, uint64(now/int64(time.Millisecond)))
	rec.Issued = unixTime(now).Truncate(time.Second)
	rec.Expires = rec.Issued.Add(c.cfg.RecordLifetime.Truncate(time.Second))
	rec.Withdrawn = withdrawn
	if err := records.Sign(rec, c.ident); err != nil {
		return fmt.Errorf("%w: sign: %w", ErrBadRecord, err)
	}
	if err := records.Verify(rec, unixTime(now)); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRecord, err)
	}
	return nil
}

func (c *Core) republish(now int64, key identity.Key) {
	o := c.owned[key]
	rec := o.rec.Clone()
	if err := c.signOwn(now, rec, false); err != nil {
		delete(c.owned, key)
		return
	}
	o.rec = rec
	o.republishAt = now + c.cfg.RecordLifetime.Nanoseconds()/2
	op, err := c.newOp(now, opPublish, key, SearchOptions{})
	if err != nil {
		o.republishAt = now + c.cfg.TickInterval.Nanoseconds() // try again next tick
		return
	}
	op.internal = true
	c.beginStore(now, op, rec)
}

// beginStore stores rec locally when it is ours (or we are alone), then looks
// up the key's closest nodes to store it on.
func (c *Core) beginStore(now int64, op *operation, rec *records.Record) {
	enc, err := records.Encode(rec)
	if err != nil {
		c.dropOp(op)
		c.fail(op, fmt.Errorf("%w: encode: %w", ErrBadRecord, err))
		return
	}
	if len(enc) > 0xffff {
		c.dropOp(op)
		c.fail(op, fmt.Errorf("%w: record of %d bytes", ErrBadRecord, len(enc)))
		return
	}
	op.rec, op.enc = rec, enc
	if op.kind != opStore || c.rt.size == 0 {
		c.store.putRecord(now, rec.Key(), rec, enc, netip.Addr{})
	}
	c.startLookup(now, op)
}

// replicate hands stored records to members of their replica sets (as this
// node sees them) that have not acknowledged them yet. A node keeps pushing
// its own records even when it is not one of their replicas. A record's
// pushed list holds the replicas that acknowledged it (or, for a record
// received from its publisher, presumably got it from the publisher, which
// pushes until they acknowledge); STOREs that go unacknowledged are retried
// with backoff (armReplicate).
func (c *Core) replicate(now int64) {
	c.dirty = false
	sent := 0
	for _, k := range c.store.sortedKeys() {
		// The owner of a record hands it on too, replica or not: its first
		// publish may have reached only the few peers there were (the first
		// node of a cloud publishes to the first joiner), and a holder that is
		// not among the key's closest once the cloud grew passes nothing on.
		_, own := c.owned[k]
		if !own && c.rt.countCloser(k, c.id, c.cfg.Replication) >= c.cfg.Replication {
			continue // not one of the key's replicas any more
		}
		targets := c.rt.closest(nil, k, c.cfg.Replication, c.id)
		for _, sr := range c.store.get(k, now) {
			// Forget acknowledgements of nodes no longer in the set: one that
			// comes back is pushed to again.
			sr.pushed = slices.DeleteFunc(sr.pushed, func(p uint64) bool {
				return !slices.ContainsFunc(targets, func(t contact) bool { return binary.BigEndian.Uint64(t.ID[:8]) == p })
			})
			for _, t := range targets {
				p := binary.BigEndian.Uint64(t.ID[:8])
				if slices.Contains(sr.pushed, p) {
					continue
				}
				if sent >= maxReplicatePerTick {
					c.dirty = true
					c.armReplicate(now)
					return
				}
				m := msg{typ: mStore, key: k, records: [][]byte{sr.enc}}
				if c.sendRequest(now, t, true, &m, nil, -1, reqReplicate, mStoreAck) != nil {
					c.dirty = true
					c.armReplicate(now)
					return
				}
				if req := c.pending[m.reqID]; req != nil {
					req.sr = sr
				}
				sent++
			}
		}
	}
	if sent == 0 {
		c.replRetry = 0 // every replica acknowledged: the next retry starts short
	}
}

// armReplicate schedules a replication pass for STOREs that were not
// acknowledged: first 2*RequestTimeout from now (past the lifetime of the
// STOREs in flight), doubling on every retry up to TickInterval, reset once
// a pass finds every replica acknowledged.
func (c *Core) armReplicate(now int64) {
	if c.replAt > now {
		return
	}
	if c.replRetry == 0 {
		c.replRetry = requestLifetimeFactor * c.cfg.RequestTimeout.Nanoseconds()
	}
	c.replAt = now + c.replRetry
	c.timers.push(timer{at: c.replAt, kind: tReplicate})
	c.replRetry = min(2*c.replRetry, c.cfg.TickInterval.Nanoseconds())
}

// replicateSoonDelay is how long after a routing-table change a replication
// pass runs: long enough to take in the other contacts a join brings at
// once (one pass, not one per contact), short next to the tick.
const replicateSoonDelay = int64(500 * time.Millisecond)

// replicateSoon schedules a replication pass replicateSoonDelay from now,
// unless one is due sooner.
func (c *Core) replicateSoon(now int64) {
	at := now + replicateSoonDelay
	if c.replAt > now && c.replAt <= at {
		return
	}
	c.replAt = at
	c.timers.push(timer{at: at, kind: tReplicate})
}

// maxReplicatePerTick bounds the maintenance STOREs of one tick.
const maxReplicatePerTick = 256

// markPushed records that the current replica set of key presumably holds
// what was just stored: a replica that receives a record from its
// publisher leaves the other replicas to the publisher, which pushes to
// each until it acknowledges (markAcked, replicate).
func (c *Core) markPushed(key identity.Key) {
	targets := c.rt.closest(nil, key, c.cfg.Replication, c.id)
	for _, sr := range c.store.get(key, 0) {
		sr.pushed = sr.pushed[:0]
		for _, t := range targets {
			sr.pushed = append(sr.pushed, binary.BigEndian.Uint64(t.ID[:8]))
		}
	}
}

// markAcked records, on the stored copy of the record enc, which nodes
// acknowledged its STORE, and reports whether a member of the key's replica
// set (as this node sees it) has not.
func (c *Core) markAcked(key identity.Key, enc []byte, acked []uint64) bool {
	missing := false
	for _, sr := range c.store.get(key, 0) {
		if !bytes.Equal(sr.enc, enc) {
			continue
		}
		sr.pushed = sr.pushed[:0]
		for _, p := range acked {
			sr.addPushed(p)
		}
		for _, t := range c.rt.closest(nil, key, c.cfg.Replication, c.id) {
			if !slices.Contains(sr.pushed, binary.BigEndian.Uint64(t.ID[:8])) {
				missing = true
			}
		}
	}
	return missing
}

// midpoint returns floor((a+b)/2) of two 256-bit big-endian integers.
func midpoint(a, b identity.Key) identity.Key {
	var sum [33]byte
	carry := 0
	for i := 31; i >= 0; i-- {
		v := int(a[i]) + int(b[i]) + carry
		sum[i+1] = byte(v)
		carry = v >> 8
	}
	sum[0] = byte(carry)
	var out identity.Key
	for i := 0; i < 32; i++ {
		out[i] = sum[i]<<7 | sum[i+1]>>1
	}
	return out
}

// Published returns the current signed record this node publishes for name
// (its Seq changes at each republish), or nil if it does not publish it.
func (c *Core) Published(name identity.Name) *records.Record {
	if name.Secured {
		name.Authority = c.ident.Authority()
	}
	if o := c.owned[name.Key()]; o != nil {
		return o.rec
	}
	return nil
}

// Replicas reports, for a name this node publishes, how many nodes of its
// replica set (the Replication closest to its key in this node's routing
// table) acknowledged the current record, and how many that set has. want is
// 0 for a name the node does not publish (and for a node alone).
func (c *Core) Replicas(name identity.Name) (held, want int) {
	if name.Secured {
		name.Authority = c.ident.Authority()
	}
	k := name.Key()
	o := c.owned[k]
	if o == nil {
		return 0, 0
	}
	targets := c.rt.closest(nil, k, c.cfg.Replication, c.id)
	for _, sr := range c.store.get(k, 0) {
		if sr.rec.Seq != o.rec.Seq || !bytes.Equal(sr.rec.PublicKey, o.rec.PublicKey) {
			continue
		}
		for _, t := range targets {
			if slices.Contains(sr.pushed, binary.BigEndian.Uint64(t.ID[:8])) {
				held++
			}
		}
	}
	return held, len(targets)
}

// Confirmed returns the Seq of the newest record of name, a name this node
// publishes, whose publish or republish the replica set acknowledged (its
// store phase ended with at least one STORE_ACK), or 0. Published changes
// as soon as a republish starts; a lookup started before its STOREs land
// rightly returns the previous record, still valid, so a check of
// freshness compares with Confirmed.
func (c *Core) Confirmed(name identity.Name) uint64 {
	if name.Secured {
		name.Authority = c.ident.Authority()
	}
	if o := c.owned[name.Key()]; o != nil {
		return o.confirmed
	}
	return 0
}

// ForEachRecord calls fn for every record the node holds (for others and its
// own), in key order, until fn returns false. fn must not modify the record.
func (c *Core) ForEachRecord(fn func(*records.Record) bool) {
	for _, k := range c.store.sortedKeys() {
		for _, sr := range c.store.m[k].recs {
			if !fn(sr.rec) {
				return
			}
		}
	}
}

package overlay

import (
	"net/netip"
	"time"
)

// Defaults of RateLimits fields left at zero; docs/protocol.md gives the
// reason for each value.
const (
	DefaultRequestRate    = 500 // requests per second per source
	DefaultRequestBurst   = 2000
	DefaultStoreRate      = 50 // STOREs per second per source
	DefaultStoreBurst     = 1024
	DefaultHandshakeRate  = 20 // HELLOs per second per source
	DefaultHandshakeBurst = 128
	DefaultMaxRateSources = 4096
)

// RateLimits configures the per-source token buckets of a core. A source is
// an IPv4 address or an IPv6 /64 (what one host or one customer line
// usually gets). A rate is in events per second; the burst is the bucket's
// depth, the number of events a quiet source may send at once. Zero values
// select the defaults; a negative rate turns that limit off.
type RateLimits struct {
	// RequestRate and RequestBurst limit the requests (PING, FIND_NODE,
	// FIND_VALUE, STORE, NEAREST, RANGE) a node answers for one source;
	// requests over the limit are dropped unanswered (Stats.RateLimited).
	RequestRate  float64
	RequestBurst int
	// StoreRate and StoreBurst limit, more tightly, the STOREs verified for
	// one source; a STORE over the limit is refused unverified with the
	// status "full" (Stats.StoresRateLimited), so a busy but honest
	// replicator sees a refusal, not a timeout that would evict us.
	StoreRate  float64
	StoreBurst int
	// HandshakeRate and HandshakeBurst limit the HELLOs (one certificate
	// verification and one X25519 each) handled for one source; HELLOs over
	// the limit are dropped (Stats.HandshakesRateLimited).
	HandshakeRate  float64
	HandshakeBurst int
	// MaxSources bounds the sources tracked; the least recently active one
	// is forgotten when a new source arrives at a full table.
	MaxSources int
}

func (l *RateLimits) applyDefaults() {
	rate := func(r *float64, b *int, dr float64, db int) {
		if *r == 0 {
			*r = dr
		}
		if *b <= 0 {
			*b = db
		}
	}
	rate(&l.RequestRate, &l.RequestBurst, DefaultRequestRate, DefaultRequestBurst)
	rate(&l.StoreRate, &l.StoreBurst, DefaultStoreRate, DefaultStoreBurst)
	rate(&l.HandshakeRate, &l.HandshakeBurst, DefaultHandshakeRate, DefaultHandshakeBurst)
	if l.MaxSources <= 0 {
		l.MaxSources = DefaultMaxRateSources
	}
}

// Limiter kinds: one bucket of each per source.
const (
	limitRequest = iota
	limitStore
	limitHandshake
	numLimits
)

// rateSource is the state of one source: for each kind, the GCRA
// "theoretical arrival time" (ns): the bucket is empty until then, and an
// event is allowed while tat - burst*interval <= now. One int64 per kind
// makes the limiter exact and deterministic (no floating-point refill).
type rateSource struct {
	key        netip.Prefix
	tat        [numLimits]int64
	prev, next *rateSource // LRU list, least recently active first
}

// rateLimiter holds per-source buckets in a bounded table. It reads time
// only from its callers.
type rateLimiter struct {
	interval [numLimits]int64 // ns per token; 0 = unlimited
	depth    [numLimits]int64 // burst * interval
	max      int
	m        map[netip.Prefix]*rateSource
	head     *rateSource // least recently active
	tail     *rateSource
	evicted  uint64
}

func newRateLimiter(l RateLimits) rateLimiter {
	l.applyDefaults()
	rl := rateLimiter{max: l.MaxSources, m: make(map[netip.Prefix]*rateSource)}
	set := func(kind int, rate float64, burst int) {
		if rate < 0 {
			return
		}
		rl.interval[kind] = max(1, int64(float64(time.Second)/rate))
		rl.depth[kind] = int64(burst) * rl.interval[kind]
	}
	set(limitRequest, l.RequestRate, l.RequestBurst)
	set(limitStore, l.StoreRate, l.StoreBurst)
	set(limitHandshake, l.HandshakeRate, l.HandshakeBurst)
	return rl
}

// sourceKey maps an address to its rate-limiting source: the address
// itself for IPv4 (and IPv4-mapped IPv6), its /64 for IPv6.
func sourceKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.WithZone("").Prefix(64)
	return p
}

// allow takes one token of the given kind from the source of a, at now. It
// reports false, taking nothing, when the bucket is empty.
func (rl *rateLimiter) allow(now int64, a netip.Addr, kind int) bool {
	iv := rl.interval[kind]
	if iv == 0 {
		return true
	}
	s := rl.source(now, sourceKey(a))
	tat := max(s.tat[kind], now)
	if tat-now+iv > rl.depth[kind] {
		return false
	}
	s.tat[kind] = tat + iv
	return true
}

// source returns the entry of key, creating it (and evicting the least
// recently active entry of a full table) if needed, and marks it active.
func (rl *rateLimiter) source(now int64, key netip.Prefix) *rateSource {
	s := rl.m[key]
	if s == nil {
		if len(rl.m) >= rl.max {
			old := rl.head
			rl.unlink(old)
			delete(rl.m, old.key)
			rl.evicted++
		}
		s = &rateSource{key: key}
		// A new source starts with full buckets.
		for k := range s.tat {
			s.tat[k] = now
		}
		rl.m[key] = s
	} else {
		rl.unlink(s)
	}
	// Append at the tail (most recently active).
	s.prev, s.next = rl.tail, nil
	if rl.tail != nil {
		rl.tail.next = s
	} else {
		rl.head = s
	}
	rl.tail = s
	return s
}

func (rl *rateLimiter) unlink(s *rateSource) {
	if s.prev != nil {
		s.prev.next = s.next
	} else {
		rl.head = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	} else {
		rl.tail = s.prev
	}
	s.prev, s.next = nil, nil
}

// admit applies the per-source limits to an authenticated message before it
// is handled. It reports false when the message must go no further: a
// request over the request limit is dropped unanswered; a STORE over the
// store limit is refused ("full") without verifying its record. Responses
// to this node's own requests and LEAVE are not limited.
func (c *Core) admit(now int64, s *session, m *msg) bool {
	switch m.typ {
	case mPing, mFindNode, mFindValue, mStore, mNearest, mRange:
	default:
		return true
	}
	a := s.addr.Addr()
	if !c.rl.allow(now, a, limitRequest) {
		c.st.RateLimited++
		return false
	}
	if m.typ == mStore && !c.rl.allow(now, a, limitStore) {
		c.st.StoresRateLimited++
		c.st.RecordsRejected++
		c.reply(now, s, &msg{typ: mStoreAck, reqID: m.reqID, n: int(storeFull)})
		return false
	}
	return true
}

// admitHello applies the handshake limit to a HELLO from a (spoofable) address.
func (c *Core) admitHello(now int64, from netip.AddrPort) bool {
	if c.rl.allow(now, from.Addr(), limitHandshake) {
		return true
	}
	c.st.HandshakesRateLimited++
	return false
}

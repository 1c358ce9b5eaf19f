package overlay

import (
	"encoding/binary"
	"net/netip"

	"github.com/peername/peername/identity"
)

// rtContact is a routing-table entry: a node we have exchanged authenticated
// messages with.
type rtContact struct {
	id       identity.Key
	addr     netip.AddrPort
	lastSeen int64
	fails    uint8
	pinging  bool
	rtt      rttEst // round trips to it (retransmission timeouts)
}

// bucket holds the contacts sharing a given prefix length with our ID, least
// recently seen first, and a replacement cache of the same size, most recent last.
type bucket struct {
	live       []rtContact
	repl       []rtContact
	lastLookup int64
}

// routingTable is a Kademlia table with one bucket per common prefix length.
// Buckets are allocated only up to the deepest prefix seen, so a node in a
// network of n nodes holds about K*log2(n/K) contacts.
type routingTable struct {
	self    identity.Key
	k       int
	buckets []bucket
	size    int
	repl    int
	// prefixCap is Defence.PrefixCap: contacts per network prefix per bucket.
	prefixCap int
	// prefixRefused counts contacts turned away by prefixCap.
	prefixRefused uint64
}

// bucketFor returns the bucket id belongs in. With create, missing buckets are
// allocated, counting as refreshed at now (a bucket is only worth a refresh
// lookup once it has gone RefreshInterval without one); without, it returns
// nil for a bucket that does not exist.
func (rt *routingTable) bucketFor(id identity.Key, create bool, now int64) *bucket {
	i := commonPrefixLen(rt.self, id)
	if i >= 256 || !create && i >= len(rt.buckets) {
		return nil
	}
	for len(rt.buckets) <= i {
		rt.buckets = append(rt.buckets, bucket{lastLookup: now})
	}
	return &rt.buckets[i]
}

func findContact(cs []rtContact, id identity.Key) int {
	p := binary.BigEndian.Uint64(id[:8]) // compare a word before the whole key
	for i := range cs {
		if binary.BigEndian.Uint64(cs[i].id[:8]) == p && cs[i].id == id {
			return i
		}
	}
	return -1
}

// seenResult tells the core what seen did.
type seenResult struct {
	added bool       // a new live contact (the neighbourhood changed)
	ping  *rtContact // the bucket is full: check this least-recently-seen contact
}

// seen records an authenticated message from id at addr.
func (rt *routingTable) seen(id identity.Key, addr netip.AddrPort, now int64, pingAge int64) seenResult {
	b := rt.bucketFor(id, true, now)
	if b == nil {
		return seenResult{}
	}
	if i := findContact(b.live, id); i >= 0 {
		c := b.live[i]
		c.addr, c.lastSeen, c.fails, c.pinging = addr, now, 0, false
		copy(b.live[i:], b.live[i+1:])
		b.live[len(b.live)-1] = c
		return seenResult{}
	}
	if prefixFull(b.live, addr.Addr(), rt.prefixCap) {
		// As many nodes of this prefix as a bucket may hold are in it already;
		// the newcomer is not even a replacement.
		rt.prefixRefused++
		return seenResult{}
	}
	if len(b.live) < rt.k {
		b.live = append(b.live, rtContact{id: id, addr: addr, lastSeen: now})
		rt.size++
		if i := findContact(b.repl, id); i >= 0 {
			b.repl = append(b.repl[:i], b.repl[i+1:]...)
			rt.repl--
		}
		return seenResult{added: true}
	}
	// Full bucket: remember the newcomer as a replacement.
	if i := findContact(b.repl, id); i >= 0 {
		b.repl = append(b.repl[:i], b.repl[i+1:]...)
		rt.repl--
	}
	if len(b.repl) >= rt.k {
		copy(b.repl, b.repl[1:])
		b.repl = b.repl[:len(b.repl)-1]
		rt.repl--
	}
	b.repl = append(b.repl, rtContact{id: id, addr: addr, lastSeen: now})
	rt.repl++
	head := &b.live[0]
	if !head.pinging && now-head.lastSeen > pingAge {
		head.pinging = true
		c := *head
		return seenResult{ping: &c}
	}
	return seenResult{}
}

// failed records a request to id that got no answer; it evicts the contact
// (promoting the freshest replacement) once fails reaches maxFails. It
// reports whether the contact was evicted.
func (rt *routingTable) failed(id identity.Key, maxFails int) bool {
	b := rt.bucketFor(id, false, 0)
	if b == nil {
		return false
	}
	i := findContact(b.live, id)
	if i < 0 {
		if j := findContact(b.repl, id); j >= 0 {
			b.repl = append(b.repl[:j], b.repl[j+1:]...)
			rt.repl--
		}
		return false
	}
	b.live[i].fails++
	b.live[i].pinging = false
	if int(b.live[i].fails) < maxFails {
		return false
	}
	rt.removeAt(b, i)
	return true
}

// entry returns id's live entry, or nil.
func (rt *routingTable) entry(id identity.Key) *rtContact {
	b := rt.bucketFor(id, false, 0)
	if b == nil {
		return nil
	}
	if i := findContact(b.live, id); i >= 0 {
		return &b.live[i]
	}
	return nil
}

// remove drops id (it left, or failed a liveness check).
func (rt *routingTable) remove(id identity.Key) bool {
	b := rt.bucketFor(id, false, 0)
	if b == nil {
		return false
	}
	if j := findContact(b.repl, id); j >= 0 {
		b.repl = append(b.repl[:j], b.repl[j+1:]...)
		rt.repl--
	}
	i := findContact(b.live, id)
	if i < 0 {
		return false
	}
	rt.removeAt(b, i)
	return true
}

func (rt *routingTable) removeAt(b *bucket, i int) {
	b.live = append(b.live[:i], b.live[i+1:]...)
	rt.size--
	// The freshest replacement whose prefix still has room is promoted.
	n := len(b.repl)
	for n > 0 && prefixFull(b.live, b.repl[n-1].addr.Addr(), rt.prefixCap) {
		n--
	}
	if n > 0 {
		c := b.repl[n-1]
		b.repl = append(b.repl[:n-1], b.repl[n:]...)
		rt.repl--
		c.fails, c.pinging = 0, false
		// The replacement goes to the head: it is the least recently confirmed.
		b.live = append(b.live, rtContact{})
		copy(b.live[1:], b.live)
		b.live[0] = c
		rt.size++
	}
}

func (rt *routingTable) contains(id identity.Key) bool {
	i := commonPrefixLen(rt.self, id)
	if i >= len(rt.buckets) {
		return false
	}
	return findContact(rt.buckets[i].live, id) >= 0
}

// closest appends to dst the n live contacts closest to target (closest first),
// skipping skip. With j the prefix length target shares with our ID, every
// contact of bucket j is closer to target than any other contact, those of
// buckets deeper than j come next, then buckets j-1, j-2, ... 0 in that order;
// so the scan stops as soon as n contacts are collected at a bucket boundary.
func (rt *routingTable) closest(dst []contact, target identity.Key, n int, skip identity.Key) []contact {
	base := len(dst)
	j := min(commonPrefixLen(rt.self, target), len(rt.buckets))
	if j < len(rt.buckets) {
		dst = rt.insertBucket(dst, base, j, target, n, skip)
		if len(dst)-base < n {
			for bi := j + 1; bi < len(rt.buckets); bi++ {
				dst = rt.insertBucket(dst, base, bi, target, n, skip)
			}
		}
	}
	for bi := j - 1; bi >= 0 && len(dst)-base < n; bi-- {
		dst = rt.insertBucket(dst, base, bi, target, n, skip)
	}
	return dst
}

// insertBucket merges bucket bi's contacts into the sorted window dst[base:] of at most n.
func (rt *routingTable) insertBucket(dst []contact, base, bi int, target identity.Key, n int, skip identity.Key) []contact {
	for ci := range rt.buckets[bi].live {
		c := &rt.buckets[bi].live[ci]
		cur := dst[base:]
		if len(cur) == n && !closer(c.id, cur[n-1].ID, target) {
			continue
		}
		if binary.BigEndian.Uint64(c.id[:8]) == binary.BigEndian.Uint64(skip[:8]) && c.id == skip {
			continue
		}
		pos := len(cur)
		for pos > 0 && closer(c.id, cur[pos-1].ID, target) {
			pos--
		}
		if len(cur) < n {
			dst = append(dst, contact{})
			cur = dst[base:]
		}
		copy(cur[pos+1:], cur[pos:len(cur)-1])
		cur[pos] = contact{ID: c.id, Addr: c.addr}
	}
	return dst
}

// countCloser returns how many live contacts are closer to target than id.
func (rt *routingTable) countCloser(target, id identity.Key, limit int) int {
	n := 0
	for bi := range rt.buckets {
		for ci := range rt.buckets[bi].live {
			if closer(rt.buckets[bi].live[ci].id, id, target) {
				n++
				if n >= limit {
					return n
				}
			}
		}
	}
	return n
}

// randomIDInBucket returns an ID sharing exactly i prefix bits with self.
func randomIDInBucket(self identity.Key, i int, rnd func() uint64) identity.Key {
	var id identity.Key
	for j := 0; j < 32; j += 8 {
		v := rnd()
		for b := 0; b < 8; b++ {
			id[j+b] = byte(v >> (8 * b))
		}
	}
	// keep the first i bits of self, flip bit i, random after
	for bit := 0; bit <= i && bit < 256; bit++ {
		byteI, mask := bit/8, byte(0x80>>(bit%8))
		want := self[byteI] & mask
		if bit == i {
			want ^= mask
		}
		id[byteI] = id[byteI]&^mask | want
	}
	return id
}

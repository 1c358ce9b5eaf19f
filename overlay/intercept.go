package overlay

import (
	"time"

	"github.com/peername/peername/identity"
)

// RequestKind names the requests a Config.Intercept hook sees.
type RequestKind uint8

// The requests an Intercept hook sees (PING, LEAVE and answers are not shown).
const (
	FindNodeRequest RequestKind = iota + 1
	FindValueRequest
	StoreRequest
	NearestRequest
	RangeRequest
)

// Request is one authenticated request as an Intercept hook sees it, after
// decryption and before the core handles it. The hook may answer it itself
// (Reply), drop it (Drop) or leave it to the core (neither). A Request and
// the slices it holds are valid only during the call.
type Request struct {
	Kind RequestKind
	// Key is the requested key (FIND_NODE, FIND_VALUE, STORE, NEAREST) or
	// the lower bound of a RANGE.
	Key identity.Key
	// From is the requesting peer's node ID.
	From identity.Key
	// Record is the encoding of the record a STORE offers.
	Record []byte
	// Time is the time of the event that carried the request.
	Time time.Time

	c       *Core
	now     int64
	s       *session
	m       *msg
	handled bool
}

// Closest returns up to n routing-table contacts closest to Key, other than
// the requester: what the core's own answer would list.
func (r *Request) Closest(n int) []Contact {
	cs := r.c.rt.closest(contactScratch(), r.Key, n, r.From)
	out := make([]Contact, len(cs))
	for i, ct := range cs {
		out[i] = Contact{ID: ct.ID, Addr: ct.Addr}
	}
	putContactScratch(cs)
	return out
}

// Stored returns the encodings of the unexpired records the core holds for Key.
func (r *Request) Stored() [][]byte {
	var out [][]byte
	for _, sr := range r.c.store.get(r.Key, r.now) {
		out = append(out, sr.enc)
	}
	return out
}

// Reply answers a FIND_NODE (NODES with contacts; records are ignored) or a
// FIND_VALUE (VALUE with records and contacts) instead of the core. It does
// nothing for other kinds of request.
func (r *Request) Reply(recs [][]byte, contacts []Contact) {
	var typ byte
	switch r.Kind {
	case FindNodeRequest:
		typ, recs = mNodes, nil
	case FindValueRequest:
		typ = mValue
	default:
		return
	}
	cs := contactScratch()
	for _, ct := range contacts[:min(len(contacts), maxContactsPerMessage)] {
		cs = append(cs, contact{ID: ct.ID, Addr: ct.Addr})
	}
	r.handled = true
	r.c.reply(r.now, r.s, &msg{typ: typ, reqID: r.m.reqID, records: recs, contacts: cs})
}

// Drop makes the core ignore the request: no answer, nothing stored.
func (r *Request) Drop() { r.handled = true }

// intercept shows m to the Intercept hook and reports whether the hook
// handled it.
func (c *Core) intercept(now int64, s *session, m *msg) bool {
	var kind RequestKind
	switch m.typ {
	case mFindNode:
		kind = FindNodeRequest
	case mFindValue:
		kind = FindValueRequest
	case mStore:
		kind = StoreRequest
	case mNearest:
		kind = NearestRequest
	case mRange:
		kind = RangeRequest
	default:
		return false
	}
	r := Request{Kind: kind, Key: m.key, From: s.peer, Time: unixTime(now), c: c, now: now, s: s, m: m}
	if kind == StoreRequest {
		r.Record = m.records[0]
	}
	c.cfg.Intercept(&r)
	return r.handled
}

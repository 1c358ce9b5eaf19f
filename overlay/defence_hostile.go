package overlay

import (
	"bytes"
	"net/netip"
	"slices"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/records"
)

// HostileKind names a way a malicious core answers requests. Hostile cores
// exist for the simulator's attack experiments (overlay/sim, `peername sim
// -attack`): they speak the protocol (handshakes, sessions, authenticated
// messages are the real ones) and lie only where the protocol lets a node
// lie, in the contents of its answers.
type HostileKind uint8

// Hostile behaviours. HostileFlood and HostileChurn are driven from outside
// the core (many publishes, fresh identities); the core answers honestly.
const (
	HostileNone    HostileKind = iota
	HostileForge               // VALUE answers carry forged records (bad signature, another key)
	HostileStale               // VALUE answers carry the oldest validly signed record the colluders kept
	HostileEclipse             // NODES/VALUE answers list only colluders, and no record
	HostileDrop                // requests other than PING go unanswered
	HostileFlood               // store floods (driven by the simulator)
	HostileChurn               // identity churn (driven by the simulator)
)

var hostileNames = []string{"none", "forge", "stale", "eclipse", "drop", "flood", "churn"}

// String returns the kind's flag name.
func (k HostileKind) String() string {
	if int(k) < len(hostileNames) {
		return hostileNames[k]
	}
	return "unknown"
}

// ParseHostileKind is the inverse of String.
func ParseHostileKind(s string) (HostileKind, bool) {
	i := slices.Index(hostileNames, s)
	return HostileKind(max(i, 0)), i >= 0
}

// Hostility is the shared state of a set of colluding hostile cores: one
// value is given (Config.Hostile) to every core of the set. It is not safe
// for concurrent use; the simulator drives every core from one goroutine.
type Hostility struct {
	Kind HostileKind
	// Colluders lists every colluding node; eclipse answers name the ones
	// closest to the requested key.
	Colluders []Contact
	// NameOf returns the name stored under a key, if the adversary knows it
	// (the simulator's adversary is told, so forging needs no guessing).
	NameOf func(identity.Key) (identity.Name, bool)

	kept map[identity.Key]keptRecord // stale: the oldest record any colluder saw
	// Forged, Stale and Eclipsed count the lying answers sent.
	Forged, Stale, Eclipsed, Dropped uint64
}

type keptRecord struct {
	seq uint64
	enc []byte
}

// hostileAnswer lets a hostile core handle a request its own way. It returns
// true if the request was handled (answered or dropped).
func (c *Core) hostileAnswer(now int64, s *session, m *msg) bool {
	h := c.cfg.Hostile
	switch h.Kind {
	case HostileDrop:
		if m.typ == mFindNode || m.typ == mFindValue || m.typ == mStore || m.typ == mNearest || m.typ == mRange {
			h.Dropped++
			return true
		}
	case HostileEclipse:
		if m.typ == mFindNode || m.typ == mFindValue {
			var typ byte = mNodes
			if m.typ == mFindValue {
				typ = mValue
			}
			h.Eclipsed++
			c.reply(now, s, &msg{typ: typ, reqID: m.reqID, contacts: h.closestColluders(m.key, c.cfg.K, s.peer)})
			return true
		}
	case HostileStale:
		switch m.typ {
		case mStore:
			if r, err := records.Decode(bytes.Clone(m.records[0])); err == nil && records.Verify(r, unixTime(now)) == nil && r.Key() == m.key {
				if h.kept == nil {
					h.kept = make(map[identity.Key]keptRecord)
				}
				if k, ok := h.kept[m.key]; !ok || r.Seq < k.seq {
					h.kept[m.key] = keptRecord{seq: r.Seq, enc: bytes.Clone(m.records[0])}
				}
			}
			return false // stored as usual too: the node looks honest
		case mFindValue:
			k, ok := h.kept[m.key]
			if !ok {
				return false
			}
			h.Stale++
			c.reply(now, s, &msg{typ: mValue, reqID: m.reqID, records: [][]byte{k.enc},
				contacts: c.rt.closest(contactScratch(), m.key, c.cfg.K, s.peer)})
			return true
		}
	case HostileForge:
		if m.typ == mFindValue {
			forged := c.forge(now, m.key)
			if len(forged) == 0 {
				return false
			}
			h.Forged++
			c.reply(now, s, &msg{typ: mValue, reqID: m.reqID, records: forged,
				contacts: c.rt.closest(contactScratch(), m.key, c.cfg.K, s.peer)})
			return true
		}
	}
	return false
}

// closestColluders returns up to n colluders closest to key, other than not.
func (h *Hostility) closestColluders(key identity.Key, n int, not identity.Key) []contact {
	out := make([]contact, 0, n+1)
	for _, ct := range h.Colluders {
		if ct.ID == not {
			continue
		}
		pos := len(out)
		for pos > 0 && closer(ct.ID, out[pos-1].ID, key) {
			pos--
		}
		if pos >= n {
			continue
		}
		out = slices.Insert(out, pos, contact{ID: ct.ID, Addr: ct.Addr})
		if len(out) > n {
			out = out[:n]
		}
	}
	return out
}

// forge builds records for key that a careless resolver would accept: the
// name's record re-signed by this node's key (valid signature, wrong key),
// a copy of a stored genuine record pointing at this node with its old
// signature (bad signature), and a validly signed record of another name.
// Every forged record claims a far higher Seq than the genuine one.
func (c *Core) forge(now int64, key identity.Key) [][]byte {
	var out [][]byte
	t := unixTime(now).Truncate(time.Second).UTC()
	ep := []netip.Addr{netip.AddrFrom16([16]byte{0xfd, 0x66, 0x6f, 0x72, 0x67, 0x65})}
	if name, ok := c.nameOf(key); ok {
		r := &records.Record{Name: name, Endpoints: ep, Seq: 1 << 60, Issued: t, Expires: t.Add(time.Hour),
			PublicKey: c.ident.PublicKey()}
		if in, err := records.SigningInput(r); err == nil {
			r.Signature = c.ident.Sign(in)
			if enc, err := records.Encode(r); err == nil {
				out = append(out, enc)
			}
		}
	}
	if stored := c.store.get(key, now); len(stored) > 0 {
		r := cloneRecord(stored[0].rec)
		r.Endpoints, r.Seq = ep, r.Seq+1<<40
		if enc, err := records.Encode(r); err == nil {
			out = append(out, enc)
		}
	}
	other, err := identity.NewSecuredName("forged", c.ident.PublicKey())
	if err == nil {
		r := &records.Record{Name: other, Endpoints: ep, Seq: 1 << 60, Issued: t, Expires: t.Add(time.Hour)}
		if records.Sign(r, c.ident) == nil {
			if enc, err := records.Encode(r); err == nil {
				out = append(out, enc)
			}
		}
	}
	return out
}

func (c *Core) nameOf(key identity.Key) (identity.Name, bool) {
	if c.cfg.Hostile.NameOf == nil {
		return identity.Name{}, false
	}
	return c.cfg.Hostile.NameOf(key)
}

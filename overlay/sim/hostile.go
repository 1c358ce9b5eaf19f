package sim

import (
	"bytes"
	"net/netip"
	"slices"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/overlay"
	"github.com/peername/peername/records"
)

// HostileKind names a way a hostile node misbehaves. Hostile nodes speak the
// protocol (their handshakes, sessions and authenticated messages are a real
// core's) and lie only where the protocol lets a node lie: in the contents of
// their answers, which they rewrite through the core's one hook,
// overlay.Config.Intercept. Flood and churn are driven from outside the core
// (many publishes, fresh identities); such a core answers honestly.
type HostileKind uint8

// Hostile behaviours.
const (
	HostileNone    HostileKind = iota
	HostileForge               // VALUE answers carry forged records (bad signature, another key)
	HostileStale               // VALUE answers carry the oldest validly signed record the colluders kept
	HostileEclipse             // NODES/VALUE answers list only colluders, and no record
	HostileDrop                // requests other than PING go unanswered
	HostileFlood               // store floods (hostileCore publishes junk)
	HostileChurn               // identity churn (hostileCore takes fresh identities)
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

// hostility is the shared state of a set of colluding hostile nodes. It is
// not safe for concurrent use; the simulator drives every core from one
// goroutine.
type hostility struct {
	kind HostileKind
	k    int // contacts per answer (the cores' K)
	// colluders lists every colluding node; eclipse answers name the ones
	// closest to the requested key.
	colluders []overlay.Contact
	// nameOf returns the name stored under a key, if the adversary knows it
	// (the simulator's adversary is told, so forging needs no guessing).
	nameOf func(identity.Key) (identity.Name, bool)

	kept map[identity.Key]keptRecord // stale: the oldest record any colluder saw
	// Lying answers sent.
	forged, stale, eclipsed, dropped uint64
}

type keptRecord struct {
	seq uint64
	enc []byte
}

// intercept returns the Config.Intercept hook of the hostile node whose
// identity is id.
func (h *hostility) intercept(id *identity.Identity) func(*overlay.Request) {
	return func(q *overlay.Request) {
		switch h.kind {
		case HostileDrop:
			h.dropped++
			q.Drop()
		case HostileEclipse:
			if q.Kind == overlay.FindNodeRequest || q.Kind == overlay.FindValueRequest {
				h.eclipsed++
				q.Reply(nil, h.closestColluders(q.Key, h.k, q.From))
			}
		case HostileStale:
			switch q.Kind {
			case overlay.StoreRequest:
				h.keep(q)
				// stored as usual too: the node looks honest
			case overlay.FindValueRequest:
				if k, ok := h.kept[q.Key]; ok {
					h.stale++
					q.Reply([][]byte{k.enc}, q.Closest(h.k))
				}
			}
		case HostileForge:
			if q.Kind == overlay.FindValueRequest {
				if forged := h.forge(q, id); len(forged) > 0 {
					h.forged++
					q.Reply(forged, q.Closest(h.k))
				}
			}
		}
	}
}

// keep remembers the oldest validly signed record a STORE offered for its key.
func (h *hostility) keep(q *overlay.Request) {
	r, err := records.Decode(bytes.Clone(q.Record))
	if err != nil || records.Verify(r, q.Time) != nil || r.Key() != q.Key {
		return
	}
	if h.kept == nil {
		h.kept = make(map[identity.Key]keptRecord)
	}
	if k, ok := h.kept[q.Key]; !ok || r.Seq < k.seq {
		h.kept[q.Key] = keptRecord{seq: r.Seq, enc: bytes.Clone(q.Record)}
	}
}

// closestColluders returns up to n colluders closest to key, other than not.
func (h *hostility) closestColluders(key identity.Key, n int, not identity.Key) []overlay.Contact {
	out := make([]overlay.Contact, 0, n+1)
	for _, ct := range h.colluders {
		if ct.ID == not {
			continue
		}
		pos := len(out)
		for pos > 0 && identity.Closer(ct.ID, out[pos-1].ID, key) {
			pos--
		}
		if pos >= n {
			continue
		}
		out = slices.Insert(out, pos, overlay.Contact{ID: ct.ID, Addr: ct.Addr})
		if len(out) > n {
			out = out[:n]
		}
	}
	return out
}

// forge builds records for the requested key that a careless resolver would
// accept: the name's record re-signed by the hostile node's key (valid
// signature, wrong key), a copy of a stored genuine record pointing at this
// node with its old signature (bad signature), and a validly signed record
// of another name. Every forged record claims a far higher Seq than the
// genuine one.
func (h *hostility) forge(q *overlay.Request, id *identity.Identity) [][]byte {
	var out [][]byte
	t := q.Time.Truncate(time.Second).UTC()
	ep := []netip.Addr{netip.AddrFrom16([16]byte{0xfd, 0x66, 0x6f, 0x72, 0x67, 0x65})}
	if name, ok := h.nameOf(q.Key); ok {
		r := &records.Record{Name: name, Endpoints: ep, Seq: 1 << 60, Issued: t, Expires: t.Add(time.Hour),
			PublicKey: id.PublicKey()}
		if in, err := records.SigningInput(r); err == nil {
			r.Signature = id.Sign(in)
			if enc, err := records.Encode(r); err == nil {
				out = append(out, enc)
			}
		}
	}
	if stored := q.Stored(); len(stored) > 0 {
		if r, err := records.Decode(bytes.Clone(stored[0])); err == nil {
			r.Endpoints, r.Seq = ep, r.Seq+1<<40 // the genuine signature no longer matches
			if enc, err := records.Encode(r); err == nil {
				out = append(out, enc)
			}
		}
	}
	other, err := identity.NewSecuredName("forged", id.PublicKey())
	if err == nil {
		r := &records.Record{Name: other, Endpoints: ep, Seq: 1 << 60, Issued: t, Expires: t.Add(time.Hour)}
		if records.Sign(r, id) == nil {
			if enc, err := records.Encode(r); err == nil {
				out = append(out, enc)
			}
		}
	}
	return out
}

package overlay

// What a driver needs from the core to keep a node's state across restarts
// (overlay/state and node.Config.StateDir in overlay/node): the records to save and
// restore, the highest sequence numbers the node signed, publishing above a
// remembered floor, and the routing table's contacts.

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/records"
)

// Contact is a routing-table entry: a node's ID, the address it was last
// heard from, and when.
type Contact struct {
	ID       identity.Key
	Addr     netip.AddrPort
	LastSeen time.Time
}

// Contacts returns up to limit live routing-table contacts, most recently
// heard from first (ties by ID, so the order is deterministic).
func (c *Core) Contacts(limit int) []Contact {
	var out []Contact
	for i := range c.rt.buckets {
		for _, x := range c.rt.buckets[i].live {
			out = append(out, Contact{ID: x.id, Addr: x.addr, LastSeen: unixTime(x.lastSeen)})
		}
	}
	slices.SortFunc(out, func(a, b Contact) int {
		if n := b.LastSeen.Compare(a.LastSeen); n != 0 {
			return n
		}
		return compareKeys(a.ID, b.ID)
	})
	if limit >= 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// PublishAbove is Publish with a sequence floor: the record it signs has a
// Seq above floor (and above tmpl.Seq), whatever the clock says. A driver
// that restarts passes the highest Seq it ever signed for the name, so the
// overlay never sees a lower one, which it would refuse as a replay.
func (c *Core) PublishAbove(now time.Time, tmpl *records.Record, floor uint64) OpID {
	t := *tmpl
	t.Seq = max(t.Seq, floor)
	// signOwn signs max(tmpl.Seq+1, previous+1, now in ms); the floor enters
	// as tmpl.Seq.
	return c.Publish(now, &t)
}

// OwnSeq returns the highest Seq of a record for name signed by this node
// that the core holds: the one it publishes, or a withdrawal or older
// record in its store. Zero if none.
func (c *Core) OwnSeq(name identity.Name) uint64 {
	if name.Secured {
		name.Authority = c.ident.Authority()
	}
	key := name.Key()
	var seq uint64
	if o := c.owned[key]; o != nil {
		seq = o.rec.Seq
	}
	if sl := c.store.m[key]; sl != nil {
		for _, sr := range sl.recs {
			if bytes.Equal(sr.rec.PublicKey, c.ident.PublicKey()) {
				seq = max(seq, sr.rec.Seq)
			}
		}
	}
	return seq
}

// OwnedRecords returns the signed records this node publishes (see
// Published), in key order.
func (c *Core) OwnedRecords() []*records.Record {
	keys := make([]identity.Key, 0, len(c.owned))
	for k := range c.owned {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareKeys)
	out := make([]*records.Record, len(keys))
	for i, k := range keys {
		out[i] = c.owned[k].rec
	}
	return out
}

// ForEachStored calls fn for every unexpired record held at now that this
// node did not sign, with its canonical encoding, in key order, until fn
// returns false. fn must not modify either.
func (c *Core) ForEachStored(now time.Time, fn func(rec *records.Record, enc []byte) bool) {
	ns := now.UnixNano()
	for _, k := range c.store.sortedKeys() {
		for _, sr := range c.store.m[k].recs {
			if sr.expires <= ns || bytes.Equal(sr.rec.PublicKey, c.ident.PublicKey()) {
				continue
			}
			if !fn(sr.rec, sr.enc) {
				return
			}
		}
	}
}

// RestoreRecord puts a record held before a restart back in the store,
// without publishing it: it is verified at now and must win over what the
// store holds for its name, like any STORE, and counts against the store's
// bounds but no source's quota. The normal re-replication hands it to the
// key's replicas. enc is its canonical encoding, kept without a copy.
func (c *Core) RestoreRecord(now time.Time, rec *records.Record, enc []byte) error {
	if rec == nil {
		return fmt.Errorf("overlay: restore: %w: nil record", ErrBadRecord)
	}
	ns := now.UnixNano()
	c.touch(ns)
	res := c.store.putRecord(ns, rec.Key(), rec, enc, netip.Addr{})
	if res.status != storeOK {
		return fmt.Errorf("overlay: restore %s: %w: %w", rec.Name, ErrBadRecord, res.err)
	}
	if res.changed {
		c.dirty = true
	}
	return nil
}

package sim

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/overlay"
	"github.com/peername/peername/records"
)

// fakeCore is a deliberately simple overlay used to test the simulator's
// workload and checks independently of the real core: nodes learn peers from
// their seeds, a publish pushes the record to every known peer, and a resolve
// asks a few random peers. forge makes it return records with a broken
// signature, as a buggy or hostile core would.
type fakeCore struct {
	id     *identity.Identity
	idx    int
	rng    *rand.Rand
	peers  []netip.AddrPort
	store  map[identity.Key]*records.Record
	seq    uint64
	nextOp overlay.OpID
	ops    []*fakeOp
	sends  []overlay.Send
	done   []overlay.Completion
	forge  bool
}

type fakeOp struct {
	id       overlay.OpID
	resolve  bool
	deadline time.Time
	waiting  int
}

const fakeMaxPeers = 64

func newFakeCore(i int, cfg overlay.Config, forge bool) *fakeCore {
	return &fakeCore{
		id:    cfg.Identity,
		idx:   i,
		rng:   rand.New(rand.NewPCG(cfg.Seed, 1)),
		store: map[identity.Key]*records.Record{},
		forge: forge,
	}
}

func (f *fakeCore) ID() identity.Key { return f.id.NodeID() }

func (f *fakeCore) op(resolve bool, deadline time.Time, waiting int) *fakeOp {
	f.nextOp++
	o := &fakeOp{id: f.nextOp, resolve: resolve, deadline: deadline, waiting: waiting}
	f.ops = append(f.ops, o)
	return o
}

func (f *fakeCore) finish(o *fakeOp, c overlay.Completion) {
	c.Op = o.id
	f.done = append(f.done, c)
	f.ops = slices.DeleteFunc(f.ops, func(x *fakeOp) bool { return x == o })
}

func (f *fakeCore) find(id overlay.OpID) *fakeOp {
	for _, o := range f.ops {
		if o.id == id {
			return o
		}
	}
	return nil
}

func (f *fakeCore) addPeer(a netip.AddrPort) {
	if !slices.Contains(f.peers, a) && len(f.peers) < fakeMaxPeers {
		f.peers = append(f.peers, a)
	}
}

func (f *fakeCore) send(to netip.AddrPort, b []byte) {
	f.sends = append(f.sends, overlay.Send{To: to, Data: b})
}

func (f *fakeCore) Join(now time.Time, seeds []netip.AddrPort) overlay.OpID {
	o := f.op(false, now.Add(2*time.Second), len(seeds))
	if len(seeds) == 0 {
		f.finish(o, overlay.Completion{Err: overlay.ErrAlone})
		return o.id
	}
	for _, s := range seeds {
		f.addPeer(s)
		f.send(s, binary.BigEndian.AppendUint64([]byte{'H'}, uint64(o.id)))
	}
	return o.id
}

func (f *fakeCore) Publish(now time.Time, tmpl *records.Record) overlay.OpID {
	o := f.op(false, time.Time{}, 0)
	r := *tmpl
	f.seq++
	r.Seq = f.seq
	r.Issued = now.Truncate(time.Second)
	r.Expires = r.Issued.Add(time.Hour)
	if err := records.Sign(&r, f.id); err != nil {
		f.finish(o, overlay.Completion{Err: err})
		return o.id
	}
	b, err := records.Encode(&r)
	if err != nil {
		f.finish(o, overlay.Completion{Err: err})
		return o.id
	}
	f.store[r.Key()] = &r
	for _, p := range f.peers {
		f.send(p, append([]byte{'S'}, b...))
	}
	f.finish(o, overlay.Completion{Records: []*records.Record{&r}, Stored: len(f.peers)})
	return o.id
}

func (f *fakeCore) answer(o *fakeOp, r *records.Record, hops int) {
	if f.forge {
		bad := *r
		bad.Signature = slices.Clone(r.Signature)
		bad.Signature[0] ^= 1
		r = &bad
	}
	f.finish(o, overlay.Completion{Records: []*records.Record{r}, Path: overlay.Path{Hops: hops}})
}

func (f *fakeCore) Resolve(now time.Time, key identity.Key, o overlay.SearchOptions) overlay.OpID {
	ask := min(4, len(f.peers))
	op := f.op(true, o.Deadline, ask)
	if r, ok := f.store[key]; ok {
		f.answer(op, r, 0)
		return op.id
	}
	if ask == 0 {
		f.finish(op, overlay.Completion{Err: overlay.ErrAlone})
		return op.id
	}
	for _, k := range f.rng.Perm(len(f.peers))[:ask] {
		q := binary.BigEndian.AppendUint64([]byte{'Q'}, uint64(op.id))
		f.send(f.peers[k], append(q, key[:]...))
	}
	return op.id
}

func (f *fakeCore) HandleDatagram(now time.Time, from netip.AddrPort, data []byte) {
	if len(data) == 0 {
		return
	}
	body := data[1:]
	switch data[0] {
	case 'H': // join request: answer with our peers
		if len(body) != 8 {
			return
		}
		reply := append([]byte{'h'}, body...)
		for _, p := range f.peers {
			reply = binary.BigEndian.AppendUint32(reply, uint32(IndexOf(p)))
		}
		f.addPeer(from)
		f.send(from, reply)
	case 'h':
		if len(body) < 8 {
			return
		}
		for b := body[8:]; len(b) >= 4; b = b[4:] {
			if a := AddrOf(int(binary.BigEndian.Uint32(b))); a != AddrOf(f.idx) {
				f.addPeer(a)
			}
		}
		if o := f.find(overlay.OpID(binary.BigEndian.Uint64(body))); o != nil && !o.resolve {
			f.finish(o, overlay.Completion{})
		}
	case 'S':
		r, err := records.Decode(body)
		if err != nil || records.Verify(r, now) != nil {
			return
		}
		if old, ok := f.store[r.Key()]; !ok || records.Newer(r, old) {
			f.store[r.Key()] = r
		}
	case 'Q':
		if len(body) != 40 {
			return
		}
		reply := append([]byte{'A'}, body[:8]...)
		if r, ok := f.store[identity.Key(body[8:])]; ok {
			if b, err := records.Encode(r); err == nil {
				reply = append(reply, b...)
			}
		}
		f.send(from, reply)
	case 'A':
		if len(body) < 8 {
			return
		}
		o := f.find(overlay.OpID(binary.BigEndian.Uint64(body)))
		if o == nil || !o.resolve {
			return
		}
		if r, err := records.Decode(body[8:]); err == nil && records.Verify(r, now) == nil {
			f.answer(o, r, 1)
			return
		}
		if o.waiting--; o.waiting <= 0 {
			f.finish(o, overlay.Completion{Err: overlay.ErrNotFound})
		}
	}
}

func (f *fakeCore) HandleTimer(now time.Time) {
	for _, o := range slices.Clone(f.ops) {
		if !o.deadline.IsZero() && !now.Before(o.deadline) {
			err := overlay.ErrTimeout
			if !o.resolve {
				err = overlay.ErrAlone
			}
			f.finish(o, overlay.Completion{Err: err})
		}
	}
}

func (f *fakeCore) NextTimer() time.Time {
	var t time.Time
	for _, o := range f.ops {
		if !o.deadline.IsZero() && (t.IsZero() || o.deadline.Before(t)) {
			t = o.deadline
		}
	}
	return t
}

func (f *fakeCore) Outbox() ([]overlay.Send, []overlay.Completion) {
	s, d := f.sends, f.done
	f.sends, f.done = nil, nil
	return s, d
}

func (f *fakeCore) Stats() overlay.Stats {
	return overlay.Stats{
		ID:               f.ID(),
		RoutingTableSize: len(f.peers),
		RoutingTableMax:  fakeMaxPeers,
		RecordsStored:    len(f.store),
		MaxRecords:       1 << 20,
		PendingRequests:  len(f.ops),
		MaxPending:       1 << 20,
	}
}

func (f *fakeCore) ForEachRecord(fn func(*records.Record) bool) {
	keys := make([]identity.Key, 0, len(f.store))
	for k := range f.store {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b identity.Key) int { return slices.Compare(a[:], b[:]) })
	for _, k := range keys {
		if !fn(f.store[k]) {
			return
		}
	}
}

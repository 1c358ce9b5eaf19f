package peername

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/records"
)

// fakeNet is an in-memory overlay: one shared record store and a set of
// bound addresses, so two nodes on one address conflict like sockets do.
type fakeNet struct {
	mu      sync.Mutex
	store   map[identity.Key][]*records.Record
	bound   map[netip.AddrPort]bool
	started int
	closed  int
	peers   int         // routing table size every node reports; 0 = alone
	events  chan string // "publish NAME", "unpublish NAME", "start", "close"
}

func newFakeNet() *fakeNet {
	return &fakeNet{
		peers:  1,
		store:  map[identity.Key][]*records.Record{},
		bound:  map[netip.AddrPort]bool{},
		events: make(chan string, 100),
	}
}

func (f *fakeNet) registry() *nodeRegistry {
	return &nodeRegistry{newNode: f.newNode, nodes: map[string]*sharedNode{}}
}

func (f *fakeNet) newNode(cfg nodeConfig) (overlayNode, error) {
	return &fakeNode{net: f, cfg: cfg}, nil
}

// latest returns the newest stored record of name, or nil.
func (f *fakeNet) latest(name identity.Name) *records.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	var best *records.Record
	for _, r := range f.store[name.Key()] {
		if best == nil || records.Newer(r, best) {
			best = r
		}
	}
	return best
}

type fakeNode struct {
	net *fakeNet
	cfg nodeConfig

	mu      sync.Mutex
	seq     uint64
	running bool
}

func (n *fakeNode) Prepare(context.Context) error { return nil }

func (n *fakeNode) Start(ctx context.Context) error {
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	for _, a := range n.cfg.Listen {
		if n.net.bound[a] {
			return fmt.Errorf("listen %s: address already in use", a)
		}
	}
	for _, a := range n.cfg.Listen {
		n.net.bound[a] = true
	}
	n.net.started++
	n.running = true
	n.net.events <- "start"
	return nil
}

func (n *fakeNode) Close() error {
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	for _, a := range n.cfg.Listen {
		delete(n.net.bound, a)
	}
	n.net.closed++
	n.running = false
	n.net.events <- "close"
	return nil
}

func (n *fakeNode) sign(tmpl *records.Record, withdrawn bool) (*records.Record, error) {
	n.mu.Lock()
	n.seq++
	seq := n.seq
	n.mu.Unlock()
	now := time.Now().UTC().Truncate(time.Second)
	r := *tmpl
	r.Seq, r.Issued, r.Expires, r.Withdrawn = seq, now, now.Add(n.cfg.RecordLifetime), withdrawn
	if withdrawn {
		r.Endpoints, r.Services, r.TXT = nil, nil, nil
	}
	if err := records.Sign(&r, n.cfg.Identity); err != nil {
		return nil, err
	}
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	k := r.Key()
	kept := n.net.store[k][:0]
	for _, o := range n.net.store[k] {
		if !bytes.Equal(o.PublicKey, r.PublicKey) {
			kept = append(kept, o)
		}
	}
	n.net.store[k] = append(kept, &r)
	return &r, nil
}

func (n *fakeNode) Publish(ctx context.Context, tmpl *records.Record) (*records.Record, error) {
	r, err := n.sign(tmpl, false)
	if err != nil {
		return nil, err
	}
	n.net.mu.Lock()
	alone := n.net.peers == 0
	n.net.mu.Unlock()
	if alone {
		n.net.events <- "publish-local " + tmpl.Name.String()
		return nil, fmt.Errorf("fake publish: %w", errOnlyLocal)
	}
	n.net.events <- "publish " + tmpl.Name.String()
	return r, nil
}

func (n *fakeNode) Unpublish(ctx context.Context, name identity.Name) error {
	_, err := n.sign(&records.Record{Name: name}, true)
	if err == nil {
		n.net.events <- "unpublish " + name.String()
	}
	return err
}

func (n *fakeNode) Search(ctx context.Context, key identity.Key) ([]*records.Record, error) {
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	return append([]*records.Record(nil), n.net.store[key]...), nil
}

func (n *fakeNode) Ready() bool {
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	return n.running
}

func (n *fakeNode) Addrs() []netip.AddrPort { return n.cfg.Listen }

func (n *fakeNode) Stats() nodeStats {
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	return nodeStats{RoutingTableSize: n.net.peers, RecordsStored: len(n.net.store)}
}

// Replicas: the fake network is one shared store, so a stored name is held
// by the whole (pretend) replica set, the routing table's size.
func (n *fakeNode) Replicas(name identity.Name) (held, want int) {
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	if len(n.net.store[name.Key()]) > 0 {
		return n.net.peers, n.net.peers
	}
	return 0, n.net.peers
}

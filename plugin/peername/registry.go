package peername

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/overlay"
	"github.com/peername/peername/records"
)

// overlayNode is what the plugin needs from an overlay node. The real one
// is an *node.Node (see backend.go); tests use an in-memory fake.
type overlayNode interface {
	// Prepare does the node's CPU and disk work before Start (opening the
	// state, solving the identity puzzle); Start does it itself if needed.
	Prepare(ctx context.Context) error
	Start(ctx context.Context) error
	Close() error
	// Publish signs and stores tmpl and keeps republishing it. An error
	// wrapping errOnlyLocal means the record is stored on this node only,
	// for want of peers, and will be republished.
	Publish(ctx context.Context, tmpl *records.Record) (*records.Record, error)
	Unpublish(ctx context.Context, name identity.Name) error
	// Search returns the records stored under key; an empty result or an
	// error wrapping resolver.ErrNotFound means none.
	Search(ctx context.Context, key identity.Key) ([]*records.Record, error)
	Ready() bool
	Addrs() []netip.AddrPort
	Stats() nodeStats
	// Replicas reports how many nodes of its replica set acknowledged the
	// current record of name, a name this node publishes, and how many the
	// set has (0, 0 if it does not publish it).
	Replicas(name identity.Name) (held, want int)
}

// errOnlyLocal: a publish reached no peer (the node is alone) but the
// record is stored and republished by this node.
var errOnlyLocal = errors.New("stored on this node only: no peer reachable yet")

// nodeStats is the part of the overlay's statistics the plugin exports.
type nodeStats struct {
	RoutingTableSize int
	RecordsStored    int
	// Dropped holds the node's cumulative counts of what its defences and
	// limits turned away, by the reason label of dropped_total.
	Dropped map[string]uint64
	// JoinTries and Joined: see node.NetStats.
	JoinTries int
	Joined    bool
	// Retransmits counts requests resent after their retransmission
	// timeout, HandshakesResent the HELLOs resent, RequestTimeouts the
	// requests failed with every resend unanswered (cumulative).
	Retransmits, HandshakesResent, RequestTimeouts uint64
	// Client, Reachability and External: see overlay.ReachInfo.
	Client       bool
	Reachability overlay.Reachability
	External     netip.AddrPort
}

// bootstrapSpec is one `bootstrap` argument: a literal address, a host
// name and port resolved when the node joins, or a DNS SRV domain.
type bootstrapSpec struct {
	Addr      netip.AddrPort
	Host      string
	Port      uint16
	SRVDomain string
}

func (b bootstrapSpec) String() string {
	switch {
	case b.SRVDomain != "":
		return "dns:" + b.SRVDomain
	case b.Host != "":
		return fmt.Sprintf("%s:%d", b.Host, b.Port)
	default:
		return b.Addr.String()
	}
}

// nodeConfig is everything needed to create an overlay node.
type nodeConfig struct {
	Identity       *identity.Identity
	Listen         []netip.AddrPort
	Bootstrap      []bootstrapSpec
	Cloud          string
	RecordLifetime time.Duration
	// StateDir is where the node keeps its state across restarts; empty
	// means none.
	StateDir string
	// LinkLocal enables link-local discovery on LinkLocalIface (empty:
	// the kernel's choice): the node answers probes and probes for seeds.
	LinkLocal      bool
	LinkLocalIface string
	// PuzzleBits is the cloud's identity puzzle difficulty (0: none).
	PuzzleBits int
	// PrefixCap is overlay.Defence.PrefixCap (0: off).
	PrefixCap int
	// Mode is the node's role (overlay.Config.Mode).
	Mode overlay.Mode
}

// sameSettings reports whether c and o configure a node the same way
// beyond its key (settings a reload cannot change on a running node).
func (c nodeConfig) sameSettings(o nodeConfig) bool {
	return slices.Equal(c.Bootstrap, o.Bootstrap) && c.RecordLifetime == o.RecordLifetime &&
		c.StateDir == o.StateDir && c.LinkLocal == o.LinkLocal && c.LinkLocalIface == o.LinkLocalIface &&
		c.PuzzleBits == o.PuzzleBits && c.PrefixCap == o.PrefixCap && c.Mode == o.Mode
}

// key identifies a node in the process-wide registry: the same identity,
// cloud and listen addresses mean the same node, which survives a reload.
func (c nodeConfig) key() string {
	addrs := make([]string, len(c.Listen))
	for i, a := range c.Listen {
		addrs[i] = a.String()
	}
	slices.Sort(addrs)
	return c.Identity.NodeID().String() + "|" + c.Cloud + "|" + strings.Join(addrs, ",")
}

// startTimeout bounds how long OnStartup waits for a node to bind and join.
const startTimeout = 10 * time.Second

// sharedNode is an overlay node shared by every plugin instance configured
// with the same key: CoreDNS starts the new instance of a reloaded Corefile
// before it stops the old one, and both must use the one socket.
type sharedNode struct {
	reg  *nodeRegistry
	key  string
	cfg  nodeConfig
	node overlayNode
	id   *identity.Identity
	refs int // guarded by reg.mu

	mu     sync.Mutex
	claims map[identity.Name]int // instances publishing each name

	rtOnce sync.Once
	rt     *runtimeSet // names registered by UPDATE (update_state.go)

	stop chan struct{}
	done chan struct{}
}

// nodeRegistry holds the process's shared nodes.
type nodeRegistry struct {
	newNode func(nodeConfig) (overlayNode, error)

	mu    sync.Mutex
	nodes map[string]*sharedNode
	// reloading lists the instances started since a reload began (nil
	// when none is under way): if the reload fails, CoreDNS never shuts
	// them down, so the registry does.
	reloading *[]*instance
}

// beginReload marks the start of a Corefile reload (OnRestart of the
// running instances).
func (r *nodeRegistry) beginReload() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reloading == nil {
		r.reloading = new([]*instance)
	}
}

// started records an instance that started; during a reload it belongs to
// the new configuration.
func (r *nodeRegistry) started(inst *instance) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reloading != nil {
		*r.reloading = append(*r.reloading, inst)
	}
}

// endReload ends a reload. When it failed, the instances the new
// configuration started are shut down: their names claims and node
// references would otherwise keep the node and its names forever.
func (r *nodeRegistry) endReload(failed bool) error {
	r.mu.Lock()
	insts := r.reloading
	r.reloading = nil
	r.mu.Unlock()
	if !failed || insts == nil {
		return nil
	}
	var errs []error
	for _, inst := range *insts {
		errs = append(errs, inst.shutdown())
	}
	return errors.Join(errs...)
}

// nodes is the process-wide registry used by the plugin.
var nodes = &nodeRegistry{newNode: newOverlayNode, nodes: make(map[string]*sharedNode)}

// acquire returns the running node for cfg, creating and starting it if
// no instance holds it yet. Each acquire must be paired with a release.
func (r *nodeRegistry) acquire(ctx context.Context, cfg nodeConfig) (*sharedNode, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := cfg.key()
	if s, ok := r.nodes[k]; ok {
		s.refs++
		if !s.cfg.sameSettings(cfg) {
			log.Warningf("overlay node on %v keeps running with its bootstrap, lifetime, state, linklocal, puzzle and prefix_cap settings; changes to them take effect after a restart", cfg.Listen)
		}
		return s, nil
	}
	n, err := r.newNode(cfg)
	if err != nil {
		return nil, fmt.Errorf("create overlay node: %w", err)
	}
	// The identity puzzle is CPU work whose length varies with the key
	// (2^PuzzleBits hashes on average, several times that for some keys)
	// and with the machine's load: Prepare solves it (or reads the solution
	// an earlier start kept in the state directory) before, and outside,
	// the deadline for binding and joining.
	if err := n.Prepare(ctx); err != nil {
		return nil, fmt.Errorf("overlay node on %v: %w", cfg.Listen, err)
	}
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if err := n.Start(sctx); err != nil {
		return nil, fmt.Errorf("start overlay node on %v: %w", cfg.Listen, err)
	}
	s := &sharedNode{
		reg: r, key: k, cfg: cfg, node: n, id: cfg.Identity, refs: 1,
		claims: make(map[identity.Name]int),
		stop:   make(chan struct{}), done: make(chan struct{}),
	}
	r.nodes[k] = s
	go s.exportStats()
	return s, nil
}

// release drops one reference; the last one withdraws any names still
// published and closes the node.
func (s *sharedNode) release(ctx context.Context) error {
	r := s.reg
	r.mu.Lock()
	s.refs--
	last := s.refs == 0
	if last {
		delete(r.nodes, s.key)
	}
	r.mu.Unlock()
	if !last {
		return nil
	}
	s.mu.Lock()
	var names []identity.Name
	for n := range s.claims {
		names = append(names, n)
	}
	s.claims = map[identity.Name]int{}
	s.mu.Unlock()
	s.stopLeases()
	var errs []error
	for _, n := range names {
		if err := s.node.Unpublish(ctx, n); err != nil {
			errs = append(errs, fmt.Errorf("unpublish %s: %w", n, err))
		}
	}
	close(s.stop)
	<-s.done
	if err := s.node.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close overlay node: %w", err))
	}
	return errors.Join(errs...)
}

// claim records that one more instance publishes name.
func (s *sharedNode) claim(name identity.Name) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.claims[name]++
}

// unclaim drops one instance's claim on name and reports whether nobody
// publishes it any more.
func (s *sharedNode) unclaim(name identity.Name) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.claims[name]--
	if s.claims[name] <= 0 {
		delete(s.claims, name)
		return true
	}
	return false
}

// statsInterval is how often a node's gauges are refreshed.
const statsInterval = 5 * time.Second

// addDropped adds to dropped_total what the node's cumulative counts grew by
// since last, and remembers them in last. Every reason's series exists from
// the first refresh, at 0 if nothing was dropped.
func addDropped(label string, last, now map[string]uint64) {
	for reason, n := range now {
		l := last[reason]
		addDelta(droppedCount.WithLabelValues(label, reason), &l, n)
		last[reason] = l
	}
}

// addDelta adds to c what the cumulative count now grew by since *last.
func addDelta(c prometheus.Counter, last *uint64, now uint64) {
	if now > *last {
		c.Add(float64(now - *last))
	}
	*last = now
}

// exportReplicas sets own_replicas for every name the node publishes, and
// drops the series of names it no longer does. exported holds the names
// with a series.
func (s *sharedNode) exportReplicas(label string, exported map[string]bool) {
	s.mu.Lock()
	names := make([]identity.Name, 0, len(s.claims))
	for n := range s.claims {
		names = append(names, n)
	}
	s.mu.Unlock()
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		held, want := s.node.Replicas(n)
		if want == 0 && held == 0 {
			continue
		}
		l := n.String()
		seen[l] = true
		ownReplicas.WithLabelValues(label, l).Set(float64(held))
	}
	for l := range exported {
		if !seen[l] {
			ownReplicas.DeleteLabelValues(label, l)
			delete(exported, l)
		}
	}
	for l := range seen {
		exported[l] = true
	}
}

// exportStats keeps the node's gauges current until the node stops.
func (s *sharedNode) exportStats() {
	defer close(s.done)
	label := s.id.NodeID().String()[:16]
	defer routingTableSize.DeleteLabelValues(label)
	defer recordsStored.DeleteLabelValues(label)
	defer joinTries.DeleteLabelValues(label)
	defer joinedGauge.DeleteLabelValues(label)
	defer modeGauge.DeletePartialMatch(prometheus.Labels{"node": label})
	defer reachGauge.DeletePartialMatch(prometheus.Labels{"node": label})
	defer droppedCount.DeletePartialMatch(prometheus.Labels{"node": label})
	defer retransmitCount.DeletePartialMatch(prometheus.Labels{"node": label})
	defer requestTimeoutCount.DeleteLabelValues(label)
	defer ownReplicas.DeletePartialMatch(prometheus.Labels{"node": label})
	var lastRetx, lastHS, lastTO uint64
	exported := map[string]bool{}
	t := time.NewTicker(statsInterval)
	defer t.Stop()
	last := map[string]uint64{}
	var lastReach *nodeStats
	for {
		st := s.node.Stats()
		exportReach(label, st)
		if lastReach == nil || st.Client != lastReach.Client || st.Reachability != lastReach.Reachability || st.External != lastReach.External {
			if lastReach != nil || st.Client || st.Reachability != overlay.ReachUnknown {
				log.Infof("overlay node %s: %s, reachability %s, external address %s", label, modeName(st.Client), st.Reachability, addrOrNone(st.External))
			}
			lastReach = &st
		}
		routingTableSize.WithLabelValues(label).Set(float64(st.RoutingTableSize))
		recordsStored.WithLabelValues(label).Set(float64(st.RecordsStored))
		joinTries.WithLabelValues(label).Set(float64(st.JoinTries))
		joined := 0.0
		if st.Joined {
			joined = 1
		}
		joinedGauge.WithLabelValues(label).Set(joined)
		addDropped(label, last, st.Dropped)
		addDelta(retransmitCount.WithLabelValues(label, "request"), &lastRetx, st.Retransmits)
		addDelta(retransmitCount.WithLabelValues(label, "handshake"), &lastHS, st.HandshakesResent)
		addDelta(requestTimeoutCount.WithLabelValues(label), &lastTO, st.RequestTimeouts)
		s.exportReplicas(label, exported)
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

func modeName(client bool) string {
	if client {
		return "client"
	}
	return "server"
}

func addrOrNone(a netip.AddrPort) string {
	if !a.IsValid() {
		return "none agreed"
	}
	return a.String()
}

// exportReach sets the mode and reachability gauges: one series per value,
// 1 for the current one.
func exportReach(label string, st nodeStats) {
	for _, m := range []string{"server", "client"} {
		v := 0.0
		if m == modeName(st.Client) {
			v = 1
		}
		modeGauge.WithLabelValues(label, m).Set(v)
	}
	for _, r := range []overlay.Reachability{overlay.ReachUnknown, overlay.ReachPublic, overlay.ReachUnreachable} {
		v := 0.0
		if r == st.Reachability {
			v = 1
		}
		reachGauge.WithLabelValues(label, r.String()).Set(v)
	}
}

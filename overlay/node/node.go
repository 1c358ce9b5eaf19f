package node

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peername/peername/overlay"
	"github.com/peername/peername/overlay/bootstrap"
	"github.com/peername/peername/overlay/state"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/records"
)

// Config configures a Node. Zero values select defaults.
type Config struct {
	// Identity is the node's key pair. Required.
	Identity *identity.Identity
	// Listen are the UDP addresses to bind, e.g. 0.0.0.0:3540 and [::]:3540;
	// port 0 picks an ephemeral port. Empty means 0.0.0.0:DefaultPort and
	// [::]:DefaultPort (the IPv6 socket is skipped if the host has no IPv6).
	// Datagrams to IPv4 peers leave through the first IPv4 socket, to IPv6
	// peers through the first IPv6 socket.
	Listen []netip.AddrPort
	// Bootstrap providers are asked for seeds, in order, when the node starts
	// and whenever it finds itself alone.
	Bootstrap []bootstrap.Provider
	// Cloud overrides Core.Cloud when set.
	Cloud string
	// Core holds the protocol tunables passed to NewCore. Identity and Cloud
	// are filled in from above; Seed is always drawn from crypto/rand.
	// Core.PuzzleBits zero selects DefaultPuzzleBits (a negative value: no
	// identity puzzle); every node of a cloud should use the same value.
	// A zero Core.Defence selects DefaultDefence: a node on a real network
	// runs with quorum reads, disjoint lookup paths and the prefix cap.
	Core overlay.Config
	// Logger receives the driver's logs; nil means slog.Default().
	Logger *slog.Logger

	// MaxDatagram is the largest datagram sent (default DefaultMaxDatagram);
	// larger messages are fragmented.
	MaxDatagram int
	// LeaveTimeout bounds the graceful leave in Close (default 1 s).
	LeaveTimeout time.Duration
	// JoinBackoff is how long a node whose join got no answer waits before
	// it tries again (default DefaultJoinBackoff); each further failure
	// doubles the wait, up to RejoinInterval, and every wait is jittered
	// (between half and all of it) so that nodes that failed together do not
	// come back together.
	JoinBackoff time.Duration
	// RejoinInterval caps the wait between join attempts, and is how often
	// a joined node checks that its routing table still works (default
	// 30 s). A node with seed providers keeps trying to join, through every
	// seed its providers name and every contact its table holds, for as long
	// as no join got an answer or its table is empty.
	RejoinInterval time.Duration
	// InboxMaxWait: a received datagram that waited longer than this for
	// the event loop is dropped unread (NetStats.InboxStale; default
	// DefaultInboxMaxWait, negative: never). A loop that far behind is
	// overloaded (a seed under a crowd of joiners): whoever sent it has
	// mostly given up (the core's request timeout is 1 s), and working
	// through a backlog of such datagrams in order would make every answer
	// too late; dropping them answers the fresh ones in time.
	InboxMaxWait time.Duration
	// BootstrapTimeout bounds one round of seed lookups (default 10 s).
	BootstrapTimeout time.Duration
	// LinkLocal, when set, makes the node answer link-local discovery probes
	// (see bootstrap.LinkLocal), so nodes on its LAN can find it without seeds.
	LinkLocal *bootstrap.LinkLocalConfig
	// StateDir, when set, is the directory of the node's state database
	// (see the state package): its own names' sequence floors, the records
	// it stores for others and a routing-table snapshot survive a restart
	// there. Start fails if another process holds the directory or the
	// database is damaged or of a newer format.
	StateDir string
	// StateSaveInterval is how often the stored records and the routing
	// table are saved (default DefaultStateSaveInterval); own sequence
	// numbers are saved at once, whatever this says.
	StateSaveInterval time.Duration
}

// Defaults of the driver's own tunables.
const (
	DefaultLeaveTimeout     = time.Second
	DefaultRejoinInterval   = 30 * time.Second
	DefaultJoinBackoff      = time.Second
	DefaultInboxMaxWait     = 300 * time.Millisecond
	DefaultBootstrapTimeout = 10 * time.Second
	// inboxSize is the queue of received datagrams between the socket readers
	// and the event loop. The readers never wait on it: when the loop falls
	// behind, datagrams are dropped (and counted) rather than left to
	// overflow the kernel's buffer unseen; the core's timeouts recover.
	inboxSize = 2048
	// socketBufSize is the receive buffer asked of the kernel (capped by
	// net.core.rmem_max), so bursts of answers to parallel lookups fit.
	socketBufSize = 1 << 20
	// maxReadBatch is how many queued datagrams the loop handles before it
	// looks at API calls and timers again.
	maxReadBatch = 64
	readBufSize  = 64 << 10
)

// Why a ready node is alone (NetStats.AloneReason).
const (
	AloneNoSeedsConfigured = "no seeds configured"
	AloneNoSeedsFound      = "bootstrap providers found no seed"
	AloneNoSeedAnswered    = "no seed answered"
)

// Errors of the driver.
var (
	ErrClosed     = errors.New("overlay: node closed")
	ErrNotStarted = errors.New("overlay: node not started")
	ErrStarted    = errors.New("overlay: node already started")
	ErrNoSocket   = errors.New("overlay: no socket could be bound")
)

// Node runs one overlay node on UDP sockets: reader goroutines feed received
// datagrams to a single event-loop goroutine that owns the Core, API calls
// are requests into that loop, and a real timer drives Core.HandleTimer.
// All methods are safe for concurrent use.
type Node struct {
	cfg           Config
	defaultListen bool // Listen was empty: an IPv6 socket is optional
	log           *slog.Logger
	core          *overlay.Core // owned by the loop goroutine once started
	id            identity.Key

	mu    sync.Mutex // guards state transitions and conns
	state atomic.Int32
	conns []*net.UDPConn
	disco []*bootstrap.Responder
	out4  *net.UDPConn
	out6  *net.UDPConn
	// probe4 and probe6 send dial-back probes (overlay.IsProbe) from a port
	// of their own; nothing is read from them. Nil: the out socket does.
	probe4, probe6 *net.UDPConn
	// hostAddrs lists the host's interface addresses (tests substitute
	// it); addrPoll is how often watchAddrs asks; addrChanges counts the
	// changes it saw.
	hostAddrs   func() []netip.Addr
	addrPoll    time.Duration
	addrChanges atomic.Uint64
	addrs       []netip.AddrPort

	inbox  chan inDatagram
	calls  chan *nodeCall
	stop   chan struct{} // closed to stop the loop and the readers
	done   chan struct{} // closed when the loop has returned
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // readers, rejoin and discovery goroutines
	once   sync.Once

	// Loop-owned state.
	waiting   map[overlay.OpID]*nodeCall // operations started and not completed
	frag      *fragmenter
	reasm     *reassembler
	base      time.Time // wall and monotonic reading the loop's clock counts from
	lastNow   time.Time
	rejoinAt  time.Time
	rejoining bool
	backoff   time.Duration // wait before the next join attempt while not joined
	tries     int           // join attempts since the node last had a working table
	triedAt   time.Time     // when the first of those began (zero: none since the last join)
	working   bool          // the routing table worked at the last check
	rng       *mrand.Rand

	// Shared with callers.
	ps *persister // nil without StateDir; set before the loop starts

	ready      atomic.Bool
	aloneNoted atomic.Bool // a search failed for want of peers, and the log said so
	statsMu    sync.Mutex
	snap       overlay.Stats // core stats when the loop is not running
	nst        NetStats      // driver counters
}

const (
	stateNew int32 = iota
	stateRunning
	stateClosed
)

type inDatagram struct {
	from netip.AddrPort
	data []byte
	at   time.Time // when it was read (monotonic)
}

// nodeCall is a request into the event loop: either an operation to start
// (start) whose Completion is delivered on reply, or a function to run (fn).
type nodeCall struct {
	start func(now time.Time) overlay.OpID
	fn    func(now time.Time)
	reply chan overlay.Completion // buffered, 1
	done  chan struct{}           // closed after fn ran
	join  *joinInfo
	check func() error // run by the loop before start; an error completes the call
	own   bool         // signs a record of the node's own (Publish, Unpublish)

	op      overlay.OpID // set by the loop
	started bool
}

type joinInfo struct {
	configured bool // bootstrap providers were configured
	seeds      int  // seed addresses found
}

// NetStats are the driver's own counters and its view of bootstrapping.
type NetStats struct {
	Ready bool
	// AloneReason says why a ready node has nobody to talk to:
	// AloneNoSeedsConfigured, AloneNoSeedsFound or AloneNoSeedAnswered; empty
	// once the routing table holds a peer.
	AloneReason string
	Seeds       int // seed addresses found by the last bootstrap
	Joins       int // join attempts (first one included)
	// Joined says the node's routing table works: a join (or the core's own
	// self-lookup) got an answer and the table holds a peer.
	Joined bool
	// JoinTries is how many join attempts the current (or, once Joined, the
	// last) join took; JoinTook the time from its first attempt until it
	// joined (0 while not joined).
	JoinTries int
	JoinTook  time.Duration
	// NextJoin is when the next join attempt is due (zero when joined).
	NextJoin time.Time

	DatagramsIn, DatagramsOut uint64
	BytesIn, BytesOut         uint64
	SendErrors                uint64 // write errors, or no socket for the peer's address family
	MessagesFragmented        uint64 // outgoing messages split into fragments
	MessagesTooLarge          uint64 // outgoing messages over the fragmentation limit (dropped)
	FramesRejected            uint64 // incoming datagrams refused by the framing layer
	InboxDrops                uint64 // datagrams dropped because the inbox was full (the event loop fell behind)
	InboxStale                uint64 // datagrams dropped for waiting longer than InboxMaxWait
	Reassembly                ReassemblyStats
}

// New validates cfg and creates a node; Start brings it up.
func New(cfg Config) (*Node, error) {
	if cfg.Identity == nil {
		return nil, fmt.Errorf("overlay: new node: %w", overlay.ErrNoIdentity)
	}
	if cfg.Cloud != "" {
		cfg.Core.Cloud = cfg.Cloud
	}
	cfg.Core.Identity = cfg.Identity
	var seed [12]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("overlay: new node: seed: %w", err)
	}
	cfg.Core.Seed = binary.BigEndian.Uint64(seed[:8])
	// The core asks, on the loop goroutine, whether the node has a socket
	// for a contact's address family; the sockets exist by then.
	var n *Node
	userReach := cfg.Core.CanReach
	cfg.Core.CanReach = func(ap netip.AddrPort) bool {
		return n.canReach(ap) && (userReach == nil || userReach(ap))
	}
	// The core is built by Start, once the identity puzzle is solved (which
	// takes a while and can be cancelled); the config is checked now.
	if cfg.Core.PuzzleBits == 0 {
		cfg.Core.PuzzleBits = overlay.DefaultPuzzleBits
	}
	if cfg.Core.Defence == (overlay.Defence{}) {
		cfg.Core.Defence = overlay.DefaultDefence(cfg.Core.K)
	}
	checked := cfg.Core
	if err := checked.ApplyDefaults(); err != nil {
		return nil, fmt.Errorf("overlay: new node: %w", err)
	}
	if cfg.LeaveTimeout <= 0 {
		cfg.LeaveTimeout = DefaultLeaveTimeout
	}
	if cfg.RejoinInterval <= 0 {
		cfg.RejoinInterval = DefaultRejoinInterval
	}
	if cfg.JoinBackoff <= 0 {
		cfg.JoinBackoff = min(DefaultJoinBackoff, cfg.RejoinInterval)
	}
	if cfg.InboxMaxWait == 0 {
		cfg.InboxMaxWait = DefaultInboxMaxWait
	}
	if cfg.BootstrapTimeout <= 0 {
		cfg.BootstrapTimeout = DefaultBootstrapTimeout
	}
	defaultListen := len(cfg.Listen) == 0
	if defaultListen {
		cfg.Listen = []netip.AddrPort{
			netip.AddrPortFrom(netip.IPv4Unspecified(), bootstrap.DefaultPort),
			netip.AddrPortFrom(netip.IPv6Unspecified(), bootstrap.DefaultPort),
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	id := cfg.Identity.NodeID()
	n = &Node{
		cfg:     cfg,
		log:     log.With("node", id.String()[:12]),
		id:      id,
		inbox:   make(chan inDatagram, inboxSize),
		calls:   make(chan *nodeCall),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		frag:    newFragmenter(cfg.MaxDatagram, defaultMaxMessage, binary.BigEndian.Uint32(seed[8:])),
		reasm:   newReassembler(reasmConfig{}),
		snap:    overlay.Stats{ID: id, MaxSessions: checked.MaxSessions, MaxRecords: checked.MaxRecords, MaxRecordBytes: checked.MaxRecordBytes, MaxPending: checked.MaxPending, MaxOps: checked.MaxOps},
		waiting: make(map[overlay.OpID]*nodeCall),
		rng:     mrand.New(mrand.NewPCG(binary.BigEndian.Uint64(seed[:8]), uint64(seed[8])<<32|uint64(seed[9]))),

		defaultListen: defaultListen,
		hostAddrs:     hostAddrs,
		addrPoll:      addrPollInterval,
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	return n, nil
}

// canReach reports whether the node has a socket to send to ap (on the
// loop goroutine, or after bind).
func (n *Node) canReach(ap netip.AddrPort) bool {
	if ap.Addr().Unmap().Is4() {
		return n.out4 != nil
	}
	return n.out6 != nil
}

// ID returns the node's overlay ID.
func (n *Node) ID() identity.Key { return n.id }

// Addrs returns the addresses the node's sockets are bound to (nil before
// Start).
func (n *Node) Addrs() []netip.AddrPort {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]netip.AddrPort(nil), n.addrs...)
}

// Ready reports whether the node has joined the overlay, or knows it is
// alone (no seeds configured, or none of them answered); NetStats says which.
func (n *Node) Ready() bool { return n.ready.Load() }

// Start prepares the node if Prepare was not called (the identity puzzle:
// ~0.2 s at the default Config.Core.PuzzleBits unless a solution is known),
// binds the sockets,
// starts the event loop, asks the bootstrap providers for seeds and joins
// through them. It returns once the join
// completed (possibly alone: see NetStats.AloneReason) or failed; if ctx ends
// first, the node is stopped and ctx's error returned.
func (n *Node) Start(ctx context.Context) error {
	switch n.state.Load() {
	case stateRunning:
		return ErrStarted
	case stateClosed:
		return ErrClosed
	}
	if err := n.Prepare(ctx); err != nil {
		return err
	}
	if err := n.bind(); err != nil {
		if n.ps != nil {
			n.ps.db.Close()
			n.mu.Lock()
			n.ps = nil
			n.mu.Unlock()
		}
		return err
	}
	if err := n.restoreRecords(ctx); err != nil {
		n.shutdown(false)
		return err
	}
	seeds, join, err := n.bootstrap(ctx)
	if err != nil && ctx.Err() == nil {
		n.log.Warn("bootstrap incomplete", "seeds", len(seeds), "err", err)
	}
	if ctx.Err() != nil {
		n.shutdown(false)
		return fmt.Errorf("overlay: start: bootstrap: %w", context.Cause(ctx))
	}
	c, err := n.do(ctx, func(now time.Time) overlay.OpID { return n.beginJoin(now, seeds) }, join)
	if err != nil {
		n.shutdown(false)
		return fmt.Errorf("overlay: start: join: %w", err)
	}
	switch {
	case c.Err == nil:
		// joined logged it
	case errors.Is(c.Err, overlay.ErrAlone):
		ns := n.NetStats()
		if ns.AloneReason == AloneNoSeedAnswered {
			n.log.Info("started alone", "reason", ns.AloneReason, "addrs", n.Addrs(), "retry_in", time.Until(ns.NextJoin).Round(time.Millisecond))
		} else {
			n.log.Info("started alone", "reason", ns.AloneReason, "addrs", n.Addrs())
		}
	default:
		n.shutdown(false)
		return fmt.Errorf("overlay: start: join: %w", c.Err)
	}
	n.resumePublishing()
	return nil
}

// Prepare does what Start must do before it touches the network: it opens
// the state directory, if any, and solves the identity puzzle, unless
// Config.Core.PuzzleNonce or the solution saved in the state directory by an
// earlier start already solves it (the nonce is a function of the key, so a
// restart need not search again). The puzzle is CPU work whose length varies
// with the key and the machine's load: a caller that gives Start a deadline
// for binding and joining calls Prepare first, without one. Prepare looks at
// ctx every few thousand hashes; on error the node is closed. Calling it
// again, or after Start, does nothing.
func (n *Node) Prepare(ctx context.Context) error {
	switch n.state.Load() {
	case stateRunning:
		return nil
	case stateClosed:
		return ErrClosed
	}
	if n.ps == nil {
		if err := n.openState(ctx); err != nil {
			return err
		}
	}
	if n.core == nil {
		if err := n.newCore(ctx); err != nil {
			n.shutdown(false)
			return err
		}
	}
	return nil
}

// newCore solves the identity puzzle (see Prepare) and builds the core.
func (n *Node) newCore(ctx context.Context) error {
	cfg := n.cfg.Core
	began := time.Now()
	var saved state.Puzzle
	if n.ps != nil && cfg.PuzzleBits > 0 {
		if p, ok, err := n.ps.db.Puzzle(); err == nil && ok && p.Bits == cfg.PuzzleBits {
			saved = p
			if cfg.PuzzleNonce == 0 {
				cfg.PuzzleNonce = p.Nonce
			}
			n.ps.mu.Lock()
			n.ps.st.PuzzleRestored = cfg.PuzzleNonce == p.Nonce
			n.ps.mu.Unlock()
		}
	}
	nonce, solved, err := overlay.PuzzleSolution(ctx, n.cfg.Identity.PublicKey(), cfg.PuzzleNonce, cfg.PuzzleBits)
	if err != nil {
		return fmt.Errorf("overlay: start: %w", err)
	}
	if solved && n.ps != nil {
		n.ps.mu.Lock()
		n.ps.st.PuzzleRestored = false
		n.ps.mu.Unlock()
	}
	if solved {
		n.log.Debug("identity puzzle solved", "bits", cfg.PuzzleBits, "nonce", nonce, "took", time.Since(began))
	}
	if n.ps != nil && cfg.PuzzleBits > 0 && saved != (state.Puzzle{Bits: cfg.PuzzleBits, Nonce: nonce}) {
		if err := n.ps.db.PutPuzzle(state.Puzzle{Bits: cfg.PuzzleBits, Nonce: nonce}); err != nil {
			n.log.Warn("cannot save the identity puzzle's solution; the next start solves it again", "err", err)
		}
	}
	cfg.PuzzleNonce = nonce
	core, err := overlay.NewCore(cfg)
	if err != nil {
		return fmt.Errorf("overlay: start: %w", err)
	}
	n.core = core
	return nil
}

// bind opens the sockets and starts the loop and the readers.
func (n *Node) bind() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch n.state.Load() {
	case stateRunning:
		return ErrStarted
	case stateClosed:
		return ErrClosed
	}
	var conns []*net.UDPConn
	fail := func(err error) error {
		for _, c := range conns {
			c.Close()
		}
		return err
	}
	for _, ap := range n.cfg.Listen {
		ap = unmapAddrPort(ap)
		network := "udp6"
		if ap.Addr().Is4() {
			network = "udp4"
		}
		c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(ap))
		if err != nil {
			if n.defaultListen && network == "udp6" {
				n.log.Info("no IPv6 socket", "err", err)
				continue
			}
			return fail(fmt.Errorf("overlay: listen %s: %w", ap, err))
		}
		if err := c.SetReadBuffer(socketBufSize); err != nil {
			n.log.Debug("socket receive buffer", "err", err)
		}
		conns = append(conns, c)
	}
	if len(conns) == 0 {
		return ErrNoSocket
	}
	n.conns = conns
	for _, c := range conns {
		la := unmapAddrPort(c.LocalAddr().(*net.UDPAddr).AddrPort())
		n.addrs = append(n.addrs, la)
		if la.Addr().Is4() && n.out4 == nil {
			n.out4 = c
		} else if la.Addr().Is6() && n.out6 == nil {
			n.out6 = c
		}
	}
	n.probe4, n.probe6 = n.probeSocket(n.out4), n.probeSocket(n.out6)
	n.listenLinkLocal()
	local := localAddrs(n.addrs, n.hostAddrs)
	n.core.SetLocalAddrs(local) // before the loop owns the core
	n.state.Store(stateRunning)
	n.base = time.Now()
	go n.loop()
	if slices.ContainsFunc(n.addrs, func(a netip.AddrPort) bool { return a.Addr().IsUnspecified() }) {
		n.wg.Go(func() { n.watchAddrs(local) })
	}
	for _, c := range conns {
		n.wg.Add(1)
		go n.read(c)
	}
	for _, r := range n.disco {
		n.wg.Go(r.Serve)
	}
	return nil
}

// probeSocket opens the socket that sends dial-back probes for out: its
// address on another (ephemeral) port. A node that cannot open one sends
// probes from out, which only makes them count for less (overlay.IsProbe).
func (n *Node) probeSocket(out *net.UDPConn) *net.UDPConn {
	if out == nil {
		return nil
	}
	la := out.LocalAddr().(*net.UDPAddr)
	network := "udp6"
	if la.IP.To4() != nil {
		network = "udp4"
	}
	c, err := net.ListenUDP(network, &net.UDPAddr{IP: la.IP, Zone: la.Zone})
	if err != nil {
		n.log.Info("no socket of its own for dial-back probes; they go out from the overlay port", "err", err)
		return nil
	}
	return c
}

// listenLinkLocal joins the discovery groups (best effort: a group that
// cannot be joined is logged and skipped). Called with n.mu held.
func (n *Node) listenLinkLocal() {
	ll := n.cfg.LinkLocal
	if ll == nil {
		return
	}
	groups := ll.Groups
	if len(groups) == 0 {
		groups = []netip.AddrPort{bootstrap.DefaultLinkLocalGroup4, bootstrap.DefaultLinkLocalGroup6}
	}
	for _, g := range groups {
		reply := n.out6
		if g.Addr().Is4() {
			reply = n.out4
		}
		if reply == nil {
			continue // no overlay socket of that family to answer from
		}
		r, err := bootstrap.ListenResponder(g, ll.Interface, n.cfg.Core.Cloud, reply)
		if err != nil {
			n.log.Warn("link-local discovery unavailable", "group", g, "err", err)
			continue
		}
		n.disco = append(n.disco, r)
	}
}

// bootstrap gathers seeds, drops the node's own addresses and those it
// cannot reach, and says why the node would be alone.
func (n *Node) bootstrap(ctx context.Context) ([]netip.AddrPort, *joinInfo, error) {
	info := &joinInfo{configured: len(n.cfg.Bootstrap) > 0}
	if !info.configured {
		return nil, info, nil
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.BootstrapTimeout)
	defer cancel()
	stop := context.AfterFunc(n.ctx, cancel) // Close ends a lookup in progress
	defer stop()
	found, err := bootstrap.Gather(ctx, n.cfg.Bootstrap)
	n.mu.Lock()
	own, have4, have6 := n.addrs, n.out4 != nil, n.out6 != nil
	n.mu.Unlock()
	seeds := found[:0:0]
	for _, s := range found {
		if isOwnAddr(s, own) || (s.Addr().Is4() && !have4) || (s.Addr().Is6() && !have6) {
			continue
		}
		seeds = append(seeds, s)
	}
	info.seeds = len(seeds)
	return seeds, info, err
}

// isOwnAddr reports whether a seed is one of the node's own sockets: the
// same address and port, or, for a socket bound to the unspecified address,
// the same port on any address of this host.
func isOwnAddr(s netip.AddrPort, own []netip.AddrPort) bool {
	var local []netip.Addr
	for _, o := range own {
		if s == o {
			return true
		}
		if s.Port() != o.Port() || !o.Addr().IsUnspecified() || s.Addr().Is4() != o.Addr().Is4() {
			continue
		}
		if s.Addr().IsLoopback() {
			return true
		}
		if local == nil {
			local = hostAddrs()
		}
		if slices.Contains(local, s.Addr().WithZone("")) {
			return true
		}
	}
	return false
}

// localAddrs expands the bound addresses into the addresses peers may see
// this node at when no NAT is in between: an unspecified address stands for
// every interface address of its family, with the socket's port.
func localAddrs(bound []netip.AddrPort, hostAddrs func() []netip.Addr) []netip.AddrPort {
	var out []netip.AddrPort
	var host []netip.Addr
	for _, b := range bound {
		if !b.Addr().IsUnspecified() {
			out = append(out, b)
			continue
		}
		if host == nil {
			host = hostAddrs()
		}
		for _, a := range host {
			if a.Is4() == b.Addr().Is4() && !a.IsLinkLocalUnicast() {
				out = append(out, netip.AddrPortFrom(a, b.Port()))
			}
		}
	}
	return out
}

// addrPollInterval is how often a node bound to an unspecified address
// looks at the host's interface addresses (a new DHCP lease, a VPN coming
// up, a laptop changing networks).
const addrPollInterval = 30 * time.Second

// watchAddrs runs while the node does, when it is bound to an unspecified
// address: when the host's addresses change it tells the core its new local
// addresses and has it check its reachability again soon (a changed network
// may put it behind NAT or take it out).
func (n *Node) watchAddrs(last []netip.AddrPort) {
	t := time.NewTicker(n.addrPoll)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		now := localAddrs(n.Addrs(), n.hostAddrs)
		if slices.Equal(now, last) {
			continue
		}
		n.log.Info("interface addresses changed: checking reachability again", "addrs", now, "before", last)
		last = now
		if err := n.exec(n.ctx, func(at time.Time) {
			n.core.SetLocalAddrs(now)
			n.core.CheckReachability(at)
		}); err != nil {
			return
		}
		n.addrChanges.Add(1)
	}
}

// Reach returns the node's mode and reachability (overlay.Core.Reach).
func (n *Node) Reach() overlay.ReachInfo {
	var r overlay.ReachInfo
	if n.state.Load() == stateRunning {
		if err := n.exec(context.Background(), func(time.Time) { r = n.core.Reach() }); err == nil {
			return r
		}
	}
	r.Mode = n.cfg.Core.Mode
	return r
}

// hostAddrs lists the addresses of this host's interfaces.
func hostAddrs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}

// read feeds datagrams from one socket to the loop until the socket closes.
func (n *Node) read(c *net.UDPConn) {
	defer n.wg.Done()
	buf := make([]byte, readBufSize)
	failures := 0
	for {
		nr, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Transient errors are retried at once; a socket that keeps
			// failing is retried with a growing pause instead of a busy loop.
			failures++
			n.log.Debug("udp read", "err", err, "consecutive", failures)
			if failures > 3 {
				t := time.NewTimer(min(time.Duration(failures)*10*time.Millisecond, time.Second))
				select {
				case <-t.C:
				case <-n.stop:
					t.Stop()
					return
				}
			}
			continue
		}
		failures = 0
		d := inDatagram{from: unmapAddrPort(from), data: append([]byte(nil), buf[:nr]...), at: time.Now()}
		select {
		case n.inbox <- d:
		case <-n.stop:
			return
		default:
			n.statsMu.Lock()
			n.nst.InboxDrops++
			n.statsMu.Unlock()
		}
	}
}

// now returns the time given to the core: wall-clock time advanced by the
// monotonic clock, so it never goes backwards when the wall clock is set
// back (the core requires that); a forward step of the wall clock by more
// than a second is followed, since records carry wall-clock times.
func (n *Node) now() time.Time {
	t := n.base.Add(time.Since(n.base)).Round(0)
	if wall := time.Now(); wall.Round(0).After(t.Add(time.Second)) {
		n.base = wall
		t = wall.Round(0)
	}
	if t.Before(n.lastNow) {
		t = n.lastNow
	}
	n.lastNow = t
	return t
}

// loop is the only goroutine that touches the core, the fragmenter and the
// reassembler.
func (n *Node) loop() {
	defer close(n.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		n.flush()
		n.arm(timer)
		select {
		case <-n.stop:
			st := n.core.Stats()
			n.statsMu.Lock()
			n.snap = st
			n.statsMu.Unlock()
			return
		case d := <-n.inbox:
			now := n.now()
			n.receive(now, d)
		drain:
			for range maxReadBatch - 1 {
				select {
				case d = <-n.inbox:
					n.receive(now, d)
				default:
					break drain
				}
			}
		case c := <-n.calls:
			now := n.now()
			if c.fn != nil {
				c.fn(now)
				close(c.done)
				continue
			}
			if c.check != nil {
				if err := c.check(); err != nil {
					c.reply <- overlay.Completion{Err: err}
					continue
				}
			}
			c.op, c.started = c.start(now), true
			n.waiting[c.op] = c
			if c.own {
				n.ownSigned(nil)
			}
		case <-timer.C:
			now := n.now()
			if next := n.core.NextTimer(); !next.IsZero() && !now.Before(next) {
				n.core.HandleTimer(now)
				n.ownSigned(nil) // republishing signs
			}
			n.reasm.expire(now)
			n.maybeRejoin(now)
			n.maybeSave(now)
		}
	}
}

// arm sets the timer to the earliest of the core's timer, the reassembler's
// next expiry and the next rejoin check.
func (n *Node) arm(t *time.Timer) {
	next := n.core.NextTimer()
	var saveAt time.Time
	if n.ps != nil {
		saveAt = n.ps.saveAt
	}
	for _, at := range []time.Time{n.reasm.nextExpiry(), n.rejoinAt, saveAt} {
		if !at.IsZero() && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	if next.IsZero() {
		t.Stop()
		return
	}
	t.Reset(max(next.Sub(n.now()), 0))
}

// receive reassembles a datagram and hands complete messages to the core.
func (n *Node) receive(now time.Time, d inDatagram) {
	if mw := n.cfg.InboxMaxWait; mw > 0 && !d.at.IsZero() && time.Since(d.at) > mw {
		n.statsMu.Lock()
		n.nst.InboxStale++
		n.statsMu.Unlock()
		return
	}
	msg, err := n.reasm.add(now, d.from, d.data)
	n.statsMu.Lock()
	n.nst.DatagramsIn++
	n.nst.BytesIn += uint64(len(d.data))
	if err != nil {
		n.nst.FramesRejected++
	}
	n.nst.Reassembly = n.reasm.stats
	n.statsMu.Unlock()
	if err != nil {
		n.log.Debug("datagram refused", "from", d.from, "err", err)
		return
	}
	if msg != nil {
		n.core.HandleDatagram(now, d.from, msg)
	}
}

// flush sends what the core queued and delivers its completions. With a
// StateDir, the sequence numbers of the node's own records are made durable
// first; while they cannot be, nothing is sent.
func (n *Node) flush() {
	sends, done := n.core.Outbox()
	if n.syncOwn() {
		for _, s := range sends {
			n.send(s)
		}
	} else if len(sends) > 0 {
		n.heldSends(len(sends))
	}
	for _, c := range done {
		call := n.waiting[c.Op]
		if call == nil {
			continue
		}
		delete(n.waiting, c.Op)
		if perr := n.persistErr(); call.own && perr != nil {
			c.Err = errors.Join(perr, c.Err) // the operation's own error is moot
		}
		if call.join != nil {
			n.joined(c, call.join)
		}
		if call.reply != nil {
			call.reply <- c
		}
	}
}

// send frames one message and writes it on the socket of the peer's family.
func (n *Node) send(s overlay.Send) {
	to := unmapAddrPort(s.To)
	conn := n.out6
	if to.Addr().Is4() {
		conn = n.out4
	}
	if overlay.IsProbe(s.Data) {
		if p := n.probe6; to.Addr().Is6() && p != nil {
			conn = p
		} else if p := n.probe4; to.Addr().Is4() && p != nil {
			conn = p
		}
	}
	ds, err := n.frag.split(s.Data)
	var sent, bytes, errs uint64
	switch {
	case err != nil:
		n.log.Warn("message not sent", "to", to, "bytes", len(s.Data), "err", err)
	case conn == nil:
		errs++
		n.log.Debug("no socket for address family", "to", to)
	default:
		for _, d := range ds {
			if _, werr := conn.WriteToUDPAddrPort(d, to); werr != nil {
				errs++
				n.log.Debug("udp write", "to", to, "err", werr)
				continue
			}
			sent++
			bytes += uint64(len(d))
		}
	}
	n.statsMu.Lock()
	n.nst.DatagramsOut += sent
	n.nst.BytesOut += bytes
	n.nst.SendErrors += errs
	if err != nil {
		n.nst.MessagesTooLarge++
	} else if len(ds) > 1 {
		n.nst.MessagesFragmented++
	}
	n.statsMu.Unlock()
}

// joined records the outcome of a join (on the loop goroutine).
func (n *Node) joined(c overlay.Completion, info *joinInfo) {
	n.rejoining = false
	now := n.lastNow
	n.tries++
	reason := ""
	if c.Err != nil && !errors.Is(c.Err, overlay.ErrAlone) {
		n.log.Warn("join failed", "err", c.Err, "tries", n.tries)
	} else if c.Err != nil {
		switch {
		case !info.configured:
			reason = AloneNoSeedsConfigured
		case info.seeds == 0:
			reason = AloneNoSeedsFound
		default:
			reason = AloneNoSeedAnswered
		}
	}
	n.statsMu.Lock()
	if c.Err == nil || reason != "" {
		n.nst.AloneReason = reason
		n.nst.Seeds = info.seeds
	}
	n.nst.Joins++
	n.statsMu.Unlock()
	if !n.checkJoined(now, "join", c.Path.Hops) && len(n.cfg.Bootstrap) > 0 {
		n.scheduleRetry(now)
	}
	n.ready.Store(true)
}

// beginJoin starts a join attempt through seeds (on the loop goroutine),
// noting when the first attempt of a join began.
func (n *Node) beginJoin(now time.Time, seeds []netip.AddrPort) overlay.OpID {
	if n.triedAt.IsZero() {
		n.triedAt = now
	}
	return n.core.Join(now, seeds)
}

// tableWorks reports whether the routing table is of use: some join or
// self-lookup got an answer, and the table holds a peer.
func (n *Node) tableWorks() bool {
	st := n.core.Stats()
	return st.Joined && st.RoutingTableSize > 0
}

// checkJoined notes a change between a working and a broken routing table:
// the first check that finds it working logs that the node joined, and
// after how many tries; one that finds it broken again starts the join
// backoff over. It reports whether the table works.
func (n *Node) checkJoined(now time.Time, via string, hops int) bool {
	works := n.tableWorks()
	switch {
	case works && !n.working:
		var took time.Duration
		if !n.triedAt.IsZero() {
			took = now.Sub(n.triedAt)
		}
		n.triedAt = time.Time{}
		n.log.Info("joined", "via", via, "tries", max(n.tries, 1), "after", took.Round(time.Millisecond),
			"peers", n.core.Stats().RoutingTableSize, "addrs", n.Addrs(), "hops", hops)
		n.statsMu.Lock()
		n.nst.Joined, n.nst.JoinTries, n.nst.JoinTook, n.nst.NextJoin = true, max(n.tries, 1), took, time.Time{}
		n.nst.AloneReason = ""
		n.statsMu.Unlock()
		n.aloneNoted.Store(false)
		n.tries, n.backoff = 0, 0
		if len(n.cfg.Bootstrap) > 0 {
			n.rejoinAt = now.Add(n.cfg.RejoinInterval)
		}
	case !works && n.working:
		n.log.Info("routing table no longer works; joining again", "peers", n.core.Stats().RoutingTableSize)
		n.statsMu.Lock()
		n.nst.Joined, n.nst.JoinTook = false, 0
		n.statsMu.Unlock()
		n.tries, n.backoff = 0, 0
	}
	n.working = works
	return works
}

// scheduleRetry sets the next join attempt: JoinBackoff after the first
// failure, doubling up to RejoinInterval, each wait drawn between half and
// all of its nominal value.
func (n *Node) scheduleRetry(now time.Time) {
	if n.backoff == 0 {
		n.backoff = n.cfg.JoinBackoff
	} else {
		n.backoff = min(2*n.backoff, n.cfg.RejoinInterval)
	}
	wait := n.backoff/2 + time.Duration(n.rng.Int64N(int64(n.backoff/2)+1))
	n.rejoinAt = now.Add(wait)
	n.statsMu.Lock()
	n.nst.JoinTries = n.tries
	n.nst.NextJoin = n.rejoinAt
	n.statsMu.Unlock()
	n.log.Debug("join got no answer; retrying", "tries", n.tries, "in", wait.Round(time.Millisecond))
}

// maybeRejoin, when a check is due, starts a new bootstrap round and join
// if the node has seed providers and its routing table does not work (on
// the loop goroutine). Stale entries do not hold a node back: contacts that
// never answered a lookup do not make a working table.
func (n *Node) maybeRejoin(now time.Time) {
	if n.rejoinAt.IsZero() || now.Before(n.rejoinAt) {
		return
	}
	n.rejoinAt = now.Add(n.cfg.RejoinInterval)
	if n.rejoining {
		return
	}
	if n.checkJoined(now, "self-lookup", 0) {
		return
	}
	n.rejoining = true
	n.wg.Add(1)
	go n.rejoin()
}

// rejoin asks the providers for seeds again and joins through them.
func (n *Node) rejoin() {
	defer n.wg.Done()
	seeds, info, err := n.bootstrap(n.ctx)
	if err != nil {
		n.log.Debug("rejoin bootstrap", "seeds", len(seeds), "err", err)
	}
	c := &nodeCall{start: func(now time.Time) overlay.OpID { return n.beginJoin(now, seeds) }, join: info}
	select {
	case n.calls <- c:
	case <-n.stop:
	}
}

// do runs an operation in the loop and waits for its completion; if ctx
// ends first the operation is cancelled in the core.
func (n *Node) do(ctx context.Context, start func(now time.Time) overlay.OpID, join *joinInfo) (overlay.Completion, error) {
	return n.doCall(ctx, &nodeCall{start: start, join: join})
}

// doCall is do for a call with more than a start function.
func (n *Node) doCall(ctx context.Context, c *nodeCall) (overlay.Completion, error) {
	switch n.state.Load() {
	case stateNew:
		return overlay.Completion{}, ErrNotStarted
	case stateClosed:
		return overlay.Completion{}, ErrClosed
	}
	c.reply = make(chan overlay.Completion, 1)
	select {
	case n.calls <- c:
	case <-ctx.Done():
		return overlay.Completion{}, context.Cause(ctx)
	case <-n.done:
		return overlay.Completion{}, ErrClosed
	}
	select {
	case comp := <-c.reply:
		return comp, nil
	case <-ctx.Done():
		// Cancel in the core before returning, so the operation's state is
		// gone when the caller looks again.
		_ = n.exec(context.Background(), func(time.Time) {
			if c.started && n.waiting[c.op] == c {
				delete(n.waiting, c.op)
				n.core.Cancel(c.op)
			}
		})
		return overlay.Completion{}, context.Cause(ctx)
	case <-n.done:
		return overlay.Completion{}, ErrClosed
	}
}

// exec runs fn on the loop goroutine and waits for it, at most until ctx ends.
func (n *Node) exec(ctx context.Context, fn func(now time.Time)) error {
	c := &nodeCall{fn: fn, done: make(chan struct{})}
	select {
	case n.calls <- c:
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-n.done:
		return ErrClosed
	}
	select {
	case <-c.done:
		return nil
	case <-n.done:
		return ErrClosed
	}
}

// searchOptions turns ctx's deadline into the core's search deadline.
func searchOptions(ctx context.Context) overlay.SearchOptions {
	d, _ := ctx.Deadline()
	return overlay.SearchOptions{Deadline: d}
}

// Publish signs tmpl with the node's identity, stores it on the closest nodes
// and keeps republishing it until Unpublish or Close. It returns the signed
// record.
func (n *Node) Publish(ctx context.Context, tmpl *records.Record) (*records.Record, error) {
	if tmpl == nil {
		return nil, fmt.Errorf("overlay: publish: %w: nil record", overlay.ErrBadRecord)
	}
	tmpl = tmpl.Clone()
	c, err := n.doCall(ctx, &nodeCall{
		check: func() error { return n.checkOwn(tmpl.Name) },
		start: func(now time.Time) overlay.OpID { return n.core.PublishAbove(now, tmpl, n.floor(tmpl.Name)) },
		own:   true,
	})
	if err == nil {
		err = c.Err
	}
	if err != nil {
		return nil, fmt.Errorf("overlay: publish %s: %w", tmpl.Name, err)
	}
	if len(c.Records) == 0 {
		return nil, fmt.Errorf("overlay: publish %s: core returned no record", tmpl.Name)
	}
	return c.Records[0], nil
}

// Unpublish stops republishing name and replaces its record on the overlay
// with a signed withdrawal.
func (n *Node) Unpublish(ctx context.Context, name identity.Name) error {
	c, err := n.doCall(ctx, &nodeCall{
		start: func(now time.Time) overlay.OpID {
			n.ownSigned(&name)
			return n.core.Unpublish(now, name)
		},
		own: true,
	})
	if err == nil {
		err = c.Err
	}
	if err != nil {
		return fmt.Errorf("overlay: unpublish %s: %w", name, err)
	}
	return nil
}

// Store replicates a record signed elsewhere on the nodes closest to its key.
func (n *Node) Store(ctx context.Context, rec *records.Record) error {
	if rec == nil {
		return fmt.Errorf("overlay: store: %w: nil record", overlay.ErrBadRecord)
	}
	rec = rec.Clone()
	c, err := n.do(ctx, func(now time.Time) overlay.OpID { return n.core.Store(now, rec) }, nil)
	if err == nil {
		err = c.Err
	}
	if err != nil {
		return fmt.Errorf("overlay: store %s: %w", rec.Name, err)
	}
	return nil
}

// Resolve returns the verified records stored under key, newest first. The
// search ends at ctx's deadline (or the core's default search timeout).
func (n *Node) Resolve(ctx context.Context, key identity.Key) ([]*records.Record, overlay.Path, error) {
	o := searchOptions(ctx)
	c, err := n.do(ctx, func(now time.Time) overlay.OpID { return n.core.Resolve(now, key, o) }, nil)
	if err == nil {
		err = c.Err
	}
	if err != nil {
		n.noteAlone(err)
		return nil, c.Path, fmt.Errorf("overlay: resolve %s: %w", key, err)
	}
	return c.Records, c.Path, nil
}

// noteAlone logs, once per spell of loneliness, that searches fail because
// the node has no peer, and what it does about it.
func (n *Node) noteAlone(err error) {
	if !errors.Is(err, overlay.ErrAlone) || n.aloneNoted.Swap(true) {
		return
	}
	ns := n.NetStats()
	if ns.AloneReason == AloneNoSeedsConfigured || ns.AloneReason == AloneNoSeedsFound {
		n.log.Info("searches fail: alone", "reason", ns.AloneReason)
		return
	}
	n.log.Warn("searches fail: alone, no peer answered yet; still joining", "tries", ns.JoinTries,
		"next_try_in", time.Until(ns.NextJoin).Round(time.Millisecond))
}

// Nearest returns up to count registered keys closest to key.
func (n *Node) Nearest(ctx context.Context, key identity.Key, count int) ([]identity.Key, overlay.Path, error) {
	o := searchOptions(ctx)
	c, err := n.do(ctx, func(now time.Time) overlay.OpID { return n.core.Nearest(now, key, count, o) }, nil)
	if err == nil {
		err = c.Err
	}
	if err != nil {
		return nil, c.Path, fmt.Errorf("overlay: nearest %s: %w", key, err)
	}
	return c.Keys, c.Path, nil
}

// Range returns registered keys between min and max (inclusive).
func (n *Node) Range(ctx context.Context, min, max identity.Key) ([]identity.Key, overlay.Path, error) {
	o := searchOptions(ctx)
	c, err := n.do(ctx, func(now time.Time) overlay.OpID { return n.core.Range(now, min, max, o) }, nil)
	if err == nil {
		err = c.Err
	}
	if err != nil {
		return nil, c.Path, fmt.Errorf("overlay: range %s..%s: %w", min, max, err)
	}
	return c.Keys, c.Path, nil
}

// Stats returns the core's statistics (a snapshot taken when the node
// stopped, or before it started, if the loop is not running).
func (n *Node) Stats() overlay.Stats {
	if n.state.Load() == stateRunning {
		var st overlay.Stats
		if err := n.exec(context.Background(), func(time.Time) { st = n.core.Stats() }); err == nil {
			return st
		}
	}
	n.statsMu.Lock()
	defer n.statsMu.Unlock()
	return n.snap
}

// Replicas reports how many of its replica set hold the current record of
// name, a name this node publishes, and how many the set has
// (overlay.Core.Replicas); 0, 0 for a name it does not publish or a node
// that is not running.
func (n *Node) Replicas(name identity.Name) (held, want int) {
	if n.state.Load() != stateRunning {
		return 0, 0
	}
	_ = n.exec(context.Background(), func(time.Time) { held, want = n.core.Replicas(name) })
	return held, want
}

// NetStats returns the driver's counters and bootstrap state.
func (n *Node) NetStats() NetStats {
	alone := n.Stats().RoutingTableSize == 0
	n.statsMu.Lock()
	defer n.statsMu.Unlock()
	s := n.nst
	s.Ready = n.ready.Load()
	if !alone {
		s.AloneReason = ""
	}
	return s
}

// Close leaves the overlay gracefully (tells the neighbours, hands stored
// records over; bounded by Config.LeaveTimeout), then stops the loop and
// the readers and closes the sockets. It is idempotent.
func (n *Node) Close() error {
	n.shutdown(true)
	return nil
}

// kill stops the node abruptly, without telling anyone: a crash, for tests.
func (n *Node) kill() { n.shutdown(false) }

func (n *Node) shutdown(graceful bool) {
	n.once.Do(func() {
		n.mu.Lock()
		prev := n.state.Swap(stateClosed)
		n.mu.Unlock()
		n.cancel()
		if prev != stateRunning {
			n.closeState(false)
			return
		}
		if graceful {
			ctx, cancel := context.WithTimeout(context.Background(), n.cfg.LeaveTimeout)
			err := n.exec(ctx, func(now time.Time) { n.core.Leave(now) })
			cancel()
			if err != nil {
				n.log.Warn("graceful leave", "err", err)
			}
		}
		// One more turn of the loop flushes what Leave queued; then stop.
		close(n.stop)
		<-n.done
		if graceful {
			sends, _ := n.core.Outbox()
			for _, s := range sends {
				n.send(s)
			}
		}
		n.mu.Lock()
		for _, c := range n.conns {
			c.Close()
		}
		for _, c := range []*net.UDPConn{n.probe4, n.probe6} {
			if c != nil {
				c.Close()
			}
		}
		for _, r := range n.disco {
			r.Close()
		}
		n.mu.Unlock()
		n.wg.Wait()
		n.closeState(graceful)
		n.ready.Store(false)
		n.log.Debug("stopped", "graceful", graceful)
	})
}

func unmapAddrPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

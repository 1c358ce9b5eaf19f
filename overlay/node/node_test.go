package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/peername/peername/internal/testutil"
	"github.com/peername/peername/overlay"
	"github.com/peername/peername/overlay/bootstrap"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/records"
)

// nodeIdentity returns a deterministic identity for the i-th test node.
func nodeIdentity(i int) *identity.Identity {
	var seed [32]byte
	copy(seed[:], "udp-driver-test")
	binary.BigEndian.PutUint64(seed[24:], uint64(i))
	return identity.FromSeed(seed)
}

// testLogger discards logs unless PEERNAME_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("PEERNAME_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// udpTestConfig is a node on listen with timers short enough for loopback tests.
func udpTestConfig(i int, listen ...string) Config {
	cfg := Config{
		Identity: nodeIdentity(i),
		Cloud:    "udp-test",
		Logger:   testLogger(),
		Core: overlay.Config{
			K:           8,
			Replication: 5,
			// Generous for loopback: -race and a busy 2-core machine slow
			// handshakes down by an order of magnitude.
			RequestTimeout: time.Second,
			SearchTimeout:  5 * time.Second,
			TickInterval:   time.Second,
			ValueGrace:     50 * time.Millisecond,
			RecordLifetime: 10 * time.Minute,
			// Tens of nodes start in parallel: a small puzzle keeps their
			// CPU for the handshakes (TestNodeStartSolvesPuzzle tests the default).
			PuzzleBits: 8,
		},
		LeaveTimeout:   time.Second,
		RejoinInterval: 500 * time.Millisecond,
	}
	for _, l := range listen {
		cfg.Listen = append(cfg.Listen, netip.MustParseAddrPort(l))
	}
	return cfg
}

// startNode starts a node and closes it when the test ends.
func startNode(t testing.TB, cfg Config) *Node {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// seedsOf is a static bootstrap pointing at the nodes' addresses.
func seedsOf(nodes ...*Node) bootstrap.Static {
	var s bootstrap.Static
	for _, n := range nodes {
		for _, a := range n.Addrs() {
			s.Addrs = append(s.Addrs, a.String())
		}
	}
	return s
}

// testRecordTemplate is what node i publishes under classifier.
func testRecordTemplate(t testing.TB, i int, classifier string, payload []byte) *records.Record {
	t.Helper()
	name, err := identity.NewSecuredName(classifier, nodeIdentity(i).PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return &records.Record{
		Name:      name,
		Endpoints: []netip.Addr{netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})},
		TXT:       []string{fmt.Sprintf("node=%d", i)},
		Payload:   payload,
	}
}

// nodeGoroutines lists the goroutines running a Node's code.
func nodeGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "node.(*Node)") {
			out = append(out, g)
		}
	}
	return out
}

// waitNoNodeGoroutines gives goroutines that already signalled their end
// (a reader's deferred wg.Done runs just before it returns) a moment to
// exit (up to 5 s on a loaded machine), and returns those still there.
func waitNoNodeGoroutines(t *testing.T) []string {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for {
		gs := nodeGoroutines()
		if len(gs) == 0 || ctx.Err() != nil {
			return gs
		}
		waitTick(ctx, time.Millisecond)
	}
}

// TestNodeLifecycle is not parallel: it checks that no goroutine of any Node
// survives Close.
func TestNodeLifecycle(t *testing.T) {
	n, err := New(udpTestConfig(1, "127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, _, err := n.Resolve(ctx, identity.Key{}); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("Resolve before Start: %v, want ErrNotStarted", err)
	}
	if n.Ready() || n.Addrs() != nil {
		t.Fatal("ready or bound before Start")
	}
	if err := n.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := n.Start(ctx); !errors.Is(err, ErrStarted) {
		t.Fatalf("second Start: %v, want ErrStarted", err)
	}
	if !n.Ready() {
		t.Fatal("a node with no seeds is not ready after Start")
	}
	addrs := n.Addrs()
	if len(addrs) != 1 || !addrs[0].Addr().Is4() || addrs[0].Port() == 0 {
		t.Fatalf("Addrs = %v, want one bound IPv4 address", addrs)
	}
	if ns := n.NetStats(); !ns.Ready || ns.AloneReason != AloneNoSeedsConfigured || ns.Joins != 1 {
		t.Fatalf("NetStats = %+v, want ready, alone with %q", ns, AloneNoSeedsConfigured)
	}
	if st := n.Stats(); st.ID != n.ID() || st.ID != nodeIdentity(1).NodeID() {
		t.Fatalf("Stats.ID = %s, want %s", st.ID, n.ID())
	}
	if len(nodeGoroutines()) == 0 {
		t.Fatal("no node goroutine found while running: the leak check below would prove nothing")
	}
	for range 2 {
		if err := n.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	if gs := waitNoNodeGoroutines(t); len(gs) != 0 {
		t.Fatalf("goroutines left after Close:\n%s", strings.Join(gs, "\n\n"))
	}
	if n.Ready() {
		t.Fatal("ready after Close")
	}
	if _, _, err := n.Resolve(ctx, identity.Key{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Resolve after Close: %v, want ErrClosed", err)
	}
	if err := n.Start(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close: %v, want ErrClosed", err)
	}
	if st := n.Stats(); st.ID != n.ID() {
		t.Fatal("Stats after Close lost the snapshot")
	}
	// The port is free again.
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addrs[0]))
	if err != nil {
		t.Fatalf("port still bound after Close: %v", err)
	}
	c.Close()

	// Close before Start, and a node whose Start failed, leave nothing behind.
	idle, err := New(udpTestConfig(2, "127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Start(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close: %v, want ErrClosed", err)
	}
	busy, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	clash, err := New(udpTestConfig(3, "127.0.0.1:0", busy.LocalAddr().String()))
	if err != nil {
		t.Fatal(err)
	}
	if err := clash.Start(ctx); err == nil {
		t.Fatal("Start on a port in use succeeded")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	quit, err := New(udpTestConfig(4, "127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	quit.cfg.Bootstrap = []bootstrap.Provider{bootstrap.Static{Addrs: []string{"127.0.0.1:9"}}}
	if err := quit.Start(cancelled); !errors.Is(err, context.Canceled) {
		t.Fatalf("Start with a cancelled context: %v, want context.Canceled", err)
	}
	if gs := waitNoNodeGoroutines(t); len(gs) != 0 {
		t.Fatalf("goroutines left after failed starts:\n%s", strings.Join(gs, "\n\n"))
	}
}

func TestNodeAloneReasons(t *testing.T) {
	t.Parallel()
	// A UDP port with nobody behind it.
	dead, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.LocalAddr().String()
	dead.Close()
	tests := []struct {
		name      string
		bootstrap []bootstrap.Provider
		want      string
	}{
		{"no providers", nil, AloneNoSeedsConfigured},
		{"providers find nothing", []bootstrap.Provider{bootstrap.Static{Addrs: []string{"127.0.0.1:0"}}}, AloneNoSeedsFound},
		{"only itself", nil, AloneNoSeedsFound}, // filled in below
		{"seed does not answer", []bootstrap.Provider{bootstrap.Static{Addrs: []string{deadAddr}}}, AloneNoSeedAnswered},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := udpTestConfig(10+i, "127.0.0.1:0")
			cfg.Bootstrap = tt.bootstrap
			if tt.name == "only itself" {
				// Reserve a port, then have the node bind it and list it as its seed.
				c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				if err != nil {
					t.Fatal(err)
				}
				self := c.LocalAddr().String()
				c.Close()
				cfg.Listen = []netip.AddrPort{netip.MustParseAddrPort(self)}
				cfg.Bootstrap = []bootstrap.Provider{bootstrap.Static{Addrs: []string{self}}}
			}
			n := startNode(t, cfg)
			ns := n.NetStats()
			if !n.Ready() || !ns.Ready || ns.AloneReason != tt.want {
				t.Fatalf("Ready = %v, NetStats = %+v; want ready and alone because %q", n.Ready(), ns, tt.want)
			}
		})
	}
}

func TestNodeJoinsAndRejoins(t *testing.T) {
	t.Parallel()
	// b starts before its seed a exists, so it is alone; once a is up, b's
	// rejoin timer finds it.
	port, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	aAddr := port.LocalAddr().String()
	port.Close()
	cfgB := udpTestConfig(21, "127.0.0.1:0")
	cfgB.Bootstrap = []bootstrap.Provider{bootstrap.Static{Addrs: []string{aAddr}}}

	b := startNode(t, cfgB)
	if got := b.NetStats().AloneReason; got != AloneNoSeedAnswered {
		t.Fatalf("b alone because %q, want %q", got, AloneNoSeedAnswered)
	}
	a := startNode(t, udpTestConfig(20, aAddr))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for b.NetStats().Joins < 2 || b.Stats().RoutingTableSize == 0 || a.Stats().RoutingTableSize == 0 {
		if ctx.Err() != nil {
			t.Fatalf("b never rejoined through a: NetStats %+v", b.NetStats())
		}
		waitTick(ctx, 20*time.Millisecond)
	}
	ns := b.NetStats()
	if ns.AloneReason != "" || ns.Joins < 2 {
		t.Fatalf("after rejoin NetStats = %+v, want not alone and at least 2 joins", ns)
	}
	// A third node joins through a at Start.
	cfgC := udpTestConfig(22, "127.0.0.1:0")
	cfgC.Bootstrap = []bootstrap.Provider{seedsOf(a)}
	c := startNode(t, cfgC)
	if ns := c.NetStats(); ns.AloneReason != "" || ns.Seeds != 1 || c.Stats().RoutingTableSize == 0 {
		t.Fatalf("c after joining through a: NetStats %+v", ns)
	}
}

// waitTick waits d or until ctx ends, for polling a condition that no event
// announces (another node's routing table).
func waitTick(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func TestNodeSendsEachFamilyOnItsSocket(t *testing.T) {
	t.Parallel()
	peer4, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer4.Close()
	peer6, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer peer6.Close()
	cfg := udpTestConfig(30, "127.0.0.1:0", "[::1]:0")
	cfg.Bootstrap = []bootstrap.Provider{bootstrap.Static{Addrs: []string{peer4.LocalAddr().String(), peer6.LocalAddr().String()}}}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	started := make(chan error, 1)
	go func() { started <- n.Start(t.Context()) }()

	tests := []struct {
		name string
		peer *net.UDPConn
	}{
		{"IPv4", peer4},
		{"IPv6", peer6},
	}
	for _, tt := range tests {
		buf := make([]byte, 2048)
		tt.peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		nr, from, err := tt.peer.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("%s peer got nothing: %v", tt.name, err)
		}
		from = unmapAddrPort(from)
		var want netip.AddrPort
		for _, a := range n.Addrs() {
			if a.Addr().Is4() == from.Addr().Is4() {
				want = a
			}
		}
		if from != want {
			t.Fatalf("%s peer got a datagram from %s, want the node's %s socket %s", tt.name, from, tt.name, want)
		}
		if nr < 2 || buf[0] != frameWhole {
			t.Fatalf("%s peer got a %d-byte datagram starting %#x, want a whole-message frame", tt.name, nr, buf[0])
		}
	}
	if err := <-started; err != nil {
		t.Fatalf("Start: %v", err)
	}
	if got := n.NetStats().AloneReason; got != AloneNoSeedAnswered {
		t.Fatalf("alone because %q, want %q (the fake peers never answer)", got, AloneNoSeedAnswered)
	}
}

func TestNodeRefusesBadFrames(t *testing.T) {
	t.Parallel()
	n := startNode(t, udpTestConfig(40, "127.0.0.1:0"))
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(n.Addrs()[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	bad := [][]byte{
		{0x42, 1, 2, 3},
		{frameWhole},
		append(fragHeader(1, 5, 2, 100), 1),
		append(fragHeader(1, 0, 2, 1<<30), 1),
	}
	for _, d := range bad {
		if _, err := c.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for n.NetStats().FramesRejected < uint64(len(bad)) {
		if ctx.Err() != nil {
			t.Fatalf("FramesRejected = %d, want %d", n.NetStats().FramesRejected, len(bad))
		}
		waitTick(ctx, 5*time.Millisecond)
	}
	if ns := n.NetStats(); ns.DatagramsIn != uint64(len(bad)) {
		t.Fatalf("DatagramsIn = %d, want %d", ns.DatagramsIn, len(bad))
	}
	// A whole frame carrying garbage reaches the core, which drops it.
	if _, err := c.Write([]byte{frameWhole, 0xde, 0xad}); err != nil {
		t.Fatal(err)
	}
	for n.Stats().DroppedMalformed == 0 {
		if ctx.Err() != nil {
			t.Fatal("the core never saw the garbage message")
		}
		waitTick(ctx, 5*time.Millisecond)
	}
}

func TestNodeCancelledCallCancelsTheCoreOperation(t *testing.T) {
	t.Parallel()
	a := startNode(t, udpTestConfig(50, "127.0.0.1:0"))
	cfg := udpTestConfig(51, "127.0.0.1:0")
	cfg.Core.RequestTimeout = 5 * time.Second // the dead peer keeps the search waiting
	cfg.Core.SkipJoinRefresh = true           // no background lookups: ActiveOps counts ours
	cfg.Core.TickInterval = time.Hour         // no bucket refresh either
	cfg.Bootstrap = []bootstrap.Provider{seedsOf(a)}
	b := startNode(t, cfg)
	a.kill()
	if n := b.Stats().ActiveOps; n != 0 {
		t.Fatalf("ActiveOps = %d before the call, want 0", n)
	}

	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, _, err := b.Resolve(ctx, identity.Key{1})
		errc <- err
	}()
	// Wait until the search is running in the core, then cancel it.
	deadline, stop := context.WithTimeout(t.Context(), 5*time.Second)
	defer stop()
	for b.Stats().ActiveOps == 0 {
		if deadline.Err() != nil {
			t.Fatal("the resolve never started")
		}
		waitTick(deadline, time.Millisecond)
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Resolve = %v, want context.Canceled", err)
		}
	case <-deadline.Done():
		t.Fatal("Resolve did not return after its context was cancelled")
	}
	if st := b.Stats(); st.ActiveOps != 0 {
		t.Fatalf("ActiveOps = %d after the call was cancelled, want 0", st.ActiveOps)
	}
}

func TestNodeCloseFailsWaitingCalls(t *testing.T) {
	t.Parallel()
	a := startNode(t, udpTestConfig(60, "127.0.0.1:0"))
	cfg := udpTestConfig(61, "127.0.0.1:0")
	cfg.Core.RequestTimeout = 5 * time.Second
	cfg.Bootstrap = []bootstrap.Provider{seedsOf(a)}
	b := startNode(t, cfg)
	a.kill()
	errc := make(chan error, 1)
	go func() {
		_, _, err := b.Resolve(t.Context(), identity.Key{2})
		errc <- err
	}()
	deadline, stop := context.WithTimeout(t.Context(), 5*time.Second)
	defer stop()
	for b.Stats().ActiveOps == 0 {
		if deadline.Err() != nil {
			t.Fatal("the resolve never started")
		}
		waitTick(deadline, time.Millisecond)
	}
	b.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, overlay.ErrLeft) && !errors.Is(err, ErrClosed) {
			t.Fatalf("Resolve during Close = %v, want ErrLeft or ErrClosed", err)
		}
	case <-deadline.Done():
		t.Fatal("a call waiting during Close never returned")
	}
}

func TestNodeBootstrapsFromDNSSRV(t *testing.T) {
	t.Parallel()
	a := startNode(t, udpTestConfig(70, "127.0.0.1:0"))
	td := testutil.NewDNS(t,
		fmt.Sprintf("_peername._udp.boot.test. 60 IN SRV 10 10 %d a.boot.test.", a.Addrs()[0].Port()),
		"a.boot.test. 60 IN A 127.0.0.1",
	)
	cfg := udpTestConfig(71, "127.0.0.1:0")
	cfg.Bootstrap = []bootstrap.Provider{bootstrap.DNSSRV{Domain: "boot.test", Resolver: td.Resolver}}
	b := startNode(t, cfg)
	if ns := b.NetStats(); ns.Seeds != 1 || ns.AloneReason != "" {
		t.Fatalf("NetStats after an SRV bootstrap = %+v, want 1 seed and joined", ns)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	rec, err := a.Publish(ctx, testRecordTemplate(t, 70, "srv-seed", nil))
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if err := checkResolve(ctx, b, rec); err != nil {
		t.Fatalf("b resolving a's name: %v", err)
	}
}

func TestNodeCloseTellsPeers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		graceful bool
	}{
		{"Close leaves gracefully", true},
		{"kill says nothing", false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := startNode(t, udpTestConfig(80+2*i, "127.0.0.1:0"))
			cfg := udpTestConfig(81+2*i, "127.0.0.1:0")
			cfg.Bootstrap = []bootstrap.Provider{seedsOf(a)}
			b := startNode(t, cfg)
			if a.Stats().RoutingTableSize != 1 {
				t.Fatalf("a's table holds %d contacts after b joined, want 1", a.Stats().RoutingTableSize)
			}
			if tt.graceful {
				b.Close()
			} else {
				b.kill()
			}
			// a hears b's LEAVE within milliseconds; a silent failure is only
			// noticed by a later timeout.
			ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
			defer cancel()
			for a.Stats().RoutingTableSize != 0 && ctx.Err() == nil {
				waitTick(ctx, 5*time.Millisecond)
			}
			if left := a.Stats().RoutingTableSize == 0; left != tt.graceful {
				t.Fatalf("a dropped b from its table: %v, want %v", left, tt.graceful)
			}
		})
	}
}

func TestIsOwnAddr(t *testing.T) {
	t.Parallel()
	var hostV4 netip.Addr
	for _, a := range hostAddrs() {
		if a.Is4() && !a.IsLoopback() {
			hostV4 = a
			break
		}
	}
	own := []netip.AddrPort{
		netip.MustParseAddrPort("0.0.0.0:3540"),
		netip.MustParseAddrPort("[::1]:4000"),
	}
	tests := []struct {
		seed string
		want bool
	}{
		{"127.0.0.1:3540", true},
		{"127.0.0.2:3540", true},
		{"[::1]:4000", true},
		{"127.0.0.1:3541", false},
		{"[::1]:3540", false}, // the wildcard socket is IPv4 only
		{"192.0.2.1:3540", false},
		{"[2001:db8::1]:4000", false},
	}
	if hostV4.IsValid() {
		tests = append(tests, struct {
			seed string
			want bool
		}{netip.AddrPortFrom(hostV4, 3540).String(), true})
	}
	for _, tt := range tests {
		if got := isOwnAddr(netip.MustParseAddrPort(tt.seed), own); got != tt.want {
			t.Errorf("isOwnAddr(%s) = %v, want %v", tt.seed, got, tt.want)
		}
	}
}

// Two nodes on loopback: the second joins through the first, the first
// publishes a name, the second resolves it.
func ExampleNode() {
	ctx := context.Background()
	start := func(seed byte, boot ...bootstrap.Provider) *Node {
		n, err := New(Config{
			Identity:  identity.FromSeed([32]byte{seed}),
			Listen:    []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
			Bootstrap: boot,
			Cloud:     "example",
			Logger:    slog.New(slog.DiscardHandler),
		})
		if err != nil {
			panic(err)
		}
		if err := n.Start(ctx); err != nil {
			panic(err)
		}
		return n
	}
	alice := start(1)
	defer alice.Close()
	fmt.Println("alice:", alice.NetStats().AloneReason)
	bob := start(2, bootstrap.Static{Addrs: []string{alice.Addrs()[0].String()}})
	defer bob.Close()
	fmt.Println("bob ready:", bob.Ready(), "alone:", bob.NetStats().AloneReason != "")

	name, _ := identity.NewSecuredName("laptop", identity.FromSeed([32]byte{1}).PublicKey())
	if _, err := alice.Publish(ctx, &records.Record{Name: name, Endpoints: []netip.Addr{netip.MustParseAddr("192.0.2.10")}}); err != nil {
		panic(err)
	}
	recs, _, err := bob.Resolve(ctx, name.Key())
	if err != nil {
		panic(err)
	}
	fmt.Println(recs[0].Name.Classifier, recs[0].Endpoints[0])
	// Output:
	// alice: no seeds configured
	// bob ready: true alone: false
	// laptop 192.0.2.10
}

// hangingBootstrap blocks until its context ends.
type hangingBootstrap struct{ called chan struct{} }

func (h hangingBootstrap) Seeds(ctx context.Context) ([]netip.AddrPort, error) {
	close(h.called)
	<-ctx.Done()
	return nil, context.Cause(ctx)
}

func TestNodeCloseDuringStart(t *testing.T) {
	t.Parallel()
	cfg := udpTestConfig(90, "127.0.0.1:0")
	hb := hangingBootstrap{called: make(chan struct{})}
	cfg.Bootstrap = []bootstrap.Provider{hb}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() { started <- n.Start(t.Context()) }()
	<-hb.called
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	select {
	case err := <-started:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Start interrupted by Close = %v, want ErrClosed", err)
		}
	case <-ctx.Done():
		t.Fatal("Close did not end a Start waiting on its bootstrap provider")
	}
}

// TestNodeJoinsOnceSeedComesUp: a node whose only seed is down at first
// starts alone and keeps trying, with a backoff that starts at JoinBackoff
// and doubles up to RejoinInterval; once the seed comes up it joins by
// itself at its next try, long before RejoinInterval, without a restart,
// and NetStats (and the log) say after how many tries.
func TestNodeJoinsOnceSeedComesUp(t *testing.T) {
	t.Parallel()
	port, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	aAddr := port.LocalAddr().String()
	port.Close()
	cfgB := udpTestConfig(31, "127.0.0.1:0")
	cfgB.Core.RequestTimeout = 200 * time.Millisecond
	cfgB.Bootstrap = []bootstrap.Provider{bootstrap.Static{Addrs: []string{aAddr}}}
	cfgB.JoinBackoff = 100 * time.Millisecond
	cfgB.RejoinInterval = 20 * time.Second // the cap; an old-style fixed retry would wait this long
	b := startNode(t, cfgB)
	ns := b.NetStats()
	if ns.AloneReason != AloneNoSeedAnswered || ns.Joined || ns.NextJoin.IsZero() {
		t.Fatalf("b after a start with its seed down: NetStats %+v, want alone (%q) with a next try", ns, AloneNoSeedAnswered)
	}
	// It keeps trying while the seed is down: 100 ms, 200 ms, 400 ms (each
	// jittered to between half and all of it), plus two 200 ms request
	// timeouts per try.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for b.NetStats().Joins < 3 {
		if ctx.Err() != nil {
			t.Fatalf("b did not retry its join: NetStats %+v", b.NetStats())
		}
		waitTick(ctx, 20*time.Millisecond)
	}
	up := time.Now()
	a := startNode(t, udpTestConfig(30, aAddr))
	// The next try comes at most one backoff (by now at most 1.6 s) after
	// the seed came up, and a join takes a round trip or two.
	const bound = 4 * time.Second
	for !b.NetStats().Joined {
		if time.Since(up) > bound {
			t.Fatalf("b not joined %v after its seed came up: NetStats %+v", bound, b.NetStats())
		}
		waitTick(ctx, 20*time.Millisecond)
	}
	ns = b.NetStats()
	t.Logf("b joined %v after its seed came up, after %d tries (%v)", time.Since(up).Round(time.Millisecond), ns.JoinTries, ns.JoinTook.Round(time.Millisecond))
	if ns.AloneReason != "" || ns.JoinTries < 3 || ns.JoinTook <= 0 || !ns.NextJoin.IsZero() || b.Stats().RoutingTableSize == 0 {
		t.Fatalf("b after joining: NetStats %+v", ns)
	}
	if a.Stats().RoutingTableSize == 0 {
		t.Fatal("a does not know b")
	}
}

package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/peername/peername/overlay"
	"github.com/peername/peername/overlay/bootstrap"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/records"
)

// startCluster starts count nodes on listen (one address per node, port 0);
// node 0 is alone, every other node bootstraps from node 0 and from the node
// started just before it.
func startCluster(t testing.TB, first, count int, listen string, mod func(*Config)) []*Node {
	t.Helper()
	nodes := make([]*Node, 0, count)
	for i := range count {
		cfg := udpTestConfig(first+i, listen)
		if i > 0 {
			cfg.Bootstrap = []bootstrap.Provider{seedsOf(nodes[0], nodes[i-1])}
		}
		if mod != nil {
			mod(&cfg)
		}
		n := startNode(t, cfg)
		if i > 0 && n.NetStats().AloneReason != "" {
			t.Fatalf("node %d did not join: %+v", i, n.NetStats())
		}
		nodes = append(nodes, n)
	}
	return nodes
}

// published is a record a test node published, with the node's index.
type published struct {
	owner int
	rec   *records.Record
}

// resolveAll resolves every record from every node in from (the nodes in
// parallel, each one name after the other) and reports each failure.
func resolveAll(t *testing.T, ctx context.Context, nodes []*Node, from []int, recs []published) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(from)*len(recs))
	for _, i := range from {
		wg.Go(func() {
			for _, p := range recs {
				if err := checkResolve(ctx, nodes[i], p.rec); err != nil {
					errs <- fmt.Errorf("node %d resolving %s (owner %d): %w", i, p.rec.Name, p.owner, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// checkResolve resolves want's key on n and checks that the answer is want
// (or a newer republication of it) and verifies.
func checkResolve(ctx context.Context, n *Node, want *records.Record) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	got, path, err := n.Resolve(ctx, want.Key())
	if err != nil {
		return fmt.Errorf("%w (path: %d hops, %d asked, %d timeouts)", err, path.Hops, path.Asked, path.Timeouts)
	}
	if len(got) == 0 {
		return fmt.Errorf("no record (path %+v)", path)
	}
	return checkRecord(got[0], want)
}

// checkRecord checks that r, a resolved record, is want (or a newer
// republication of it) and verifies.
func checkRecord(r, want *records.Record) error {
	if err := records.Verify(r, time.Now()); err != nil {
		return fmt.Errorf("returned a record that does not verify: %w", err)
	}
	switch {
	case r.Name != want.Name:
		return fmt.Errorf("returned name %s", r.Name)
	case r.Seq < want.Seq:
		return fmt.Errorf("returned seq %d, older than the published %d", r.Seq, want.Seq)
	case !bytes.Equal(r.PublicKey, want.PublicKey) || !bytes.Equal(r.Payload, want.Payload) ||
		len(r.Endpoints) != 1 || r.Endpoints[0] != want.Endpoints[0]:
		return fmt.Errorf("returned a record with other contents")
	}
	return nil
}

// holders lists the nodes whose store holds a record under key.
func holders(t *testing.T, nodes []*Node, alive []int, key identity.Key) []int {
	t.Helper()
	var out []int
	for _, i := range alive {
		held := false
		err := nodes[i].exec(t.Context(), func(time.Time) {
			nodes[i].core.ForEachRecord(func(r *records.Record) bool {
				held = held || r.Key() == key
				return !held
			})
		})
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		if held {
			out = append(out, i)
		}
	}
	return out
}

func TestUDPOverlayChurn(t *testing.T) {
	t.Parallel()
	const count = 21
	nodes := startCluster(t, 100, count, "127.0.0.1:0", nil)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	// Every even node publishes one name; a third of them will be killed.
	var recs []published
	for i := 0; i < count; i += 2 {
		rec, err := nodes[i].Publish(ctx, testRecordTemplate(t, 100+i, fmt.Sprintf("host-%d", i), nil))
		if err != nil {
			t.Fatalf("node %d Publish: %v", i, err)
		}
		if err := records.Verify(rec, time.Now()); err != nil || rec.Name.Authority != nodeIdentity(100+i).Authority() {
			t.Fatalf("node %d Publish returned a record that does not verify or is not its own: %v", i, err)
		}
		recs = append(recs, published{owner: i, rec: rec})
	}
	var all []int
	for i := range count {
		all = append(all, i)
	}
	resolveAll(t, ctx, nodes, all, recs)
	if t.Failed() {
		logNodeStats(t, nodes)
		t.FailNow()
	}

	// Kill a third of the nodes without a word: nodes 2, 5, 8, ...
	var alive, dead []int
	for i := range count {
		if i%3 == 2 {
			nodes[i].kill()
			dead = append(dead, i)
		} else {
			alive = append(alive, i)
		}
	}
	var replicated []published
	for _, p := range recs {
		if len(holders(t, nodes, alive, p.rec.Key())) > 0 {
			replicated = append(replicated, p)
		}
	}
	t.Logf("killed %v; %d of %d names still have a live replica", dead, len(replicated), len(recs))
	if len(replicated) == 0 {
		t.Fatal("no record survived on a live node: replication does not work")
	}
	killedOwners := 0
	for _, p := range replicated {
		if p.owner%3 == 2 {
			killedOwners++
		}
	}
	if killedOwners == 0 {
		t.Fatal("no name of a killed owner survived: the test proves nothing about replicas")
	}
	resolveAll(t, ctx, nodes, alive, replicated)
	if t.Failed() {
		logNodeStats(t, nodes)
	}
}

// logNodeStats logs what each node's driver and core counted, to tell lost
// datagrams from refused ones when a test fails.
func logNodeStats(t *testing.T, nodes []*Node) {
	for i, n := range nodes {
		st, ns := n.Stats(), n.NetStats()
		t.Logf("node %d: table %d, sessions %d (%d half-open), handshakes %d/%d, dropped auth %d malformed %d, records %d; udp in %d out %d, send errors %d, inbox drops %d, frames rejected %d, reassembly %+v",
			i, st.RoutingTableSize, st.Sessions, st.HalfOpenSessions, st.HandshakesCompleted, st.HandshakesStarted,
			st.DroppedAuth, st.DroppedMalformed, st.RecordsStored, ns.DatagramsIn, ns.DatagramsOut, ns.SendErrors, ns.InboxDrops, ns.FramesRejected, ns.Reassembly)
	}
}

func TestUDPOverlayLargePayload(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		first       int
		maxDatagram int
	}{
		{"default datagrams", 200, 0},
		// Small datagrams fragment handshakes and requests too.
		{"300-byte datagrams", 210, 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			nodes := startCluster(t, tt.first, 6, "127.0.0.1:0", func(c *Config) { c.MaxDatagram = tt.maxDatagram })
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			payload := make([]byte, records.MaxPayload)
			r := rand.New(rand.NewPCG(4, uint64(tt.first)))
			for i := range payload {
				payload[i] = byte(r.Uint32())
			}
			rec, err := nodes[1].Publish(ctx, testRecordTemplate(t, tt.first+1, "big", payload))
			if err != nil {
				t.Fatalf("Publish of a 4 KiB payload: %v", err)
			}
			resolveAll(t, ctx, nodes, []int{0, 2, 3, 4, 5}, []published{{owner: 1, rec: rec}})
			var fragmented, reassembled uint64
			for _, n := range nodes {
				ns := n.NetStats()
				fragmented += ns.MessagesFragmented
				reassembled += ns.Reassembly.Completed
				if ns.MessagesTooLarge != 0 {
					t.Errorf("a node dropped %d messages as too large", ns.MessagesTooLarge)
				}
			}
			if fragmented == 0 || reassembled == 0 {
				t.Fatalf("fragmented %d messages, reassembled %d: the 4 KiB record did not cross the network in fragments", fragmented, reassembled)
			}
			if t.Failed() {
				logNodeStats(t, nodes)
			}
		})
	}
}

func TestUDPOverlayIPv6(t *testing.T) {
	t.Parallel()
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	c.Close()
	nodes := startCluster(t, 300, 6, "[::1]:0", nil)
	for i, n := range nodes {
		if a := n.Addrs(); len(a) != 1 || !a[0].Addr().Is6() {
			t.Fatalf("node %d bound %v, want [::1]", i, a)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	rec, err := nodes[2].Publish(ctx, testRecordTemplate(t, 302, "six", nil))
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	resolveAll(t, ctx, nodes, []int{0, 1, 3, 4, 5}, []published{{owner: 2, rec: rec}})
	if err := nodes[2].Unpublish(ctx, rec.Name); err != nil {
		t.Fatalf("Unpublish: %v", err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	defer rcancel()
	if _, _, err := nodes[4].Resolve(rctx, rec.Key()); !errors.Is(err, overlay.ErrNotFound) {
		t.Fatalf("Resolve after Unpublish: %v, want ErrNotFound (withdrawn)", err)
	}
}

// BenchmarkNodeResolve measures one Resolve over loopback UDP between eight
// nodes, from a node that does not store the record itself, for a record
// without payload and one with a 4 KiB payload (fragmented answers).
func BenchmarkNodeResolve(b *testing.B) {
	nodes := startCluster(b, 400, 8, "127.0.0.1:0", func(c *Config) { c.Core.Replication = 2 })
	for _, size := range []int{0, records.MaxPayload} {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			ctx := b.Context()
			rec, err := nodes[1].Publish(ctx, testRecordTemplate(b, 401, fmt.Sprintf("bench-%d", size), make([]byte, size)))
			if err != nil {
				b.Fatal(err)
			}
			var from *Node
			for _, n := range nodes[2:] {
				held := false
				n.exec(ctx, func(time.Time) {
					n.core.ForEachRecord(func(r *records.Record) bool { held = held || r.Key() == rec.Key(); return !held })
				})
				if !held {
					from = n
					break
				}
			}
			if from == nil {
				b.Fatal("every node stores the record; cannot measure a remote resolve")
			}
			hops := 0
			for b.Loop() {
				got, path, err := from.Resolve(ctx, rec.Key())
				if err != nil || len(got) == 0 || len(got[0].Payload) != size {
					b.Fatalf("Resolve: %d records, %v", len(got), err)
				}
				hops += path.Hops
			}
			b.ReportMetric(float64(hops)/float64(b.N), "hops/op")
		})
	}
}

// BenchmarkNodePublish measures a Publish (sign, find the closest nodes,
// store on them) over loopback UDP between eight nodes.
func BenchmarkNodePublish(b *testing.B) {
	nodes := startCluster(b, 450, 8, "127.0.0.1:0", nil)
	ctx := b.Context()
	tmpl := testRecordTemplate(b, 451, "bench-publish", nil)
	for b.Loop() {
		if _, err := nodes[1].Publish(ctx, tmpl); err != nil {
			b.Fatal(err)
		}
	}
}

func TestUDPOverlayDualStack(t *testing.T) {
	t.Parallel()
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	c.Close()
	// hub listens on both families; v4 and v6 nodes reach each other only
	// through it.
	// The single-family nodes learn contacts they have no socket for; the
	// driver's overlay.Config.CanReach keeps the core from asking them.
	conf := udpTestConfig
	hub := startNode(t, conf(500, "127.0.0.1:0", "[::1]:0"))
	var v4s, v6s []*Node
	for i := range 3 {
		cfg := conf(510+i, "127.0.0.1:0")
		cfg.Bootstrap = []bootstrap.Provider{seedsOf(hub)}
		v4s = append(v4s, startNode(t, cfg))
		cfg = conf(520+i, "[::1]:0")
		cfg.Bootstrap = []bootstrap.Provider{seedsOf(hub)}
		v6s = append(v6s, startNode(t, cfg))
	}
	for _, n := range append(append([]*Node{}, v4s...), v6s...) {
		if ns := n.NetStats(); ns.Seeds != 1 || ns.AloneReason != "" {
			t.Fatalf("node did not join through the seed of its own family: %+v", ns)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	r4, err := v4s[0].Publish(ctx, testRecordTemplate(t, 510, "four", nil))
	if err != nil {
		t.Fatalf("Publish on an IPv4 node: %v", err)
	}
	r6, err := v6s[0].Publish(ctx, testRecordTemplate(t, 520, "six", nil))
	if err != nil {
		t.Fatalf("Publish on an IPv6 node: %v", err)
	}
	all := append(append([]*Node{hub}, v4s...), v6s...)
	resolveAll(t, ctx, all, []int{0, 1, 2, 3, 4, 5, 6}, []published{{owner: 1, rec: r4}, {owner: 2, rec: r6}})
	for i, n := range all {
		if ns := n.NetStats(); ns.SendErrors != 0 {
			t.Errorf("node %d had %d send errors: it tried to reach an address family it has no socket for", i, ns.SendErrors)
		}
	}
	if t.Failed() {
		logNodeStats(t, all)
	}
}

func TestUDPOverlaySearches(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 700, 6, "127.0.0.1:0", nil)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var keys []identity.Key
	for i := 1; i <= 3; i++ {
		rec, err := nodes[i].Publish(ctx, testRecordTemplate(t, 700+i, fmt.Sprintf("search-%d", i), nil))
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
		keys = append(keys, rec.Key())
	}
	// A record signed by someone who runs no node, stored through node 4.
	stranger := nodeIdentity(799)
	name, err := identity.NewSecuredName("stranger", stranger.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	rec := &records.Record{Name: name, Seq: 1, Issued: now, Expires: now.Add(time.Hour),
		Endpoints: []netip.Addr{netip.MustParseAddr("192.0.2.99")}}
	if err := records.Sign(rec, stranger); err != nil {
		t.Fatal(err)
	}
	if err := nodes[4].Store(ctx, rec); err != nil {
		t.Fatalf("Store: %v", err)
	}
	keys = append(keys, rec.Key())
	resolveAll(t, ctx, nodes, []int{0, 5}, []published{{owner: -1, rec: rec}})

	var lo, hi identity.Key
	for i := range hi {
		hi[i] = 0xff
	}
	got, _, err := nodes[5].Range(ctx, lo, hi)
	if err != nil {
		t.Fatalf("Range over the whole key space: %v", err)
	}
	if !sameKeys(got, keys) {
		t.Fatalf("Range = %v, want the %d registered keys %v", got, len(keys), keys)
	}
	target := keys[0]
	near, _, err := nodes[0].Nearest(ctx, target, 2)
	if err != nil {
		t.Fatalf("Nearest: %v", err)
	}
	want := slices.Clone(keys)
	slices.SortFunc(want, func(a, b identity.Key) int {
		ka, kb := xorKey(a, target), xorKey(b, target)
		return bytes.Compare(ka[:], kb[:])
	})
	if !slices.Equal(near, want[:2]) {
		t.Fatalf("Nearest(%s, 2) = %v, want %v", target, near, want[:2])
	}
}

func xorKey(a, b identity.Key) identity.Key {
	for i := range a {
		a[i] ^= b[i]
	}
	return a
}

func sameKeys(a, b []identity.Key) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, cmpKey)
	slices.SortFunc(b, cmpKey)
	return slices.Equal(a, b)
}

func cmpKey(a, b identity.Key) int { return bytes.Compare(a[:], b[:]) }

package overlay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"net/netip"
	"testing"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/records"
)

// inject makes from send a raw STORE of enc under key to every other live node.
func injectStore(n *testNet, from *testNode, key identity.Key, enc []byte) {
	for _, tn := range n.nodes {
		if tn == from || tn.down {
			continue
		}
		m := msg{typ: mStore, key: key, records: [][]byte{enc}}
		if err := from.core.sendRequest(n.now.UnixNano(), contact{ID: tn.core.ID(), Addr: tn.addr}, true, &m, nil, -1, reqReplicate, mStoreAck); err != nil {
			n.t.Fatalf("inject: %v", err)
		}
	}
	n.collect(from)
	n.runFor(5 * time.Second)
}

func rejected(n *testNet) uint64 {
	var sum uint64
	for _, tn := range n.nodes {
		sum += tn.core.Stats().RecordsRejected
	}
	return sum
}

func TestForgedAndReplayedRecordsRefused(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	n.build(8, nil)
	pub, evil, reader := n.nodes[1], n.nodes[6], n.nodes[7]
	tmpl := securedTemplate(t, pub, "dave")
	old := n.wait(pub, pub.core.Publish(n.now, tmpl), time.Minute).Records[0]
	n.runFor(2 * time.Second)
	cur := n.wait(pub, pub.core.Publish(n.now, tmpl), time.Minute).Records[0]
	if cur.Seq <= old.Seq {
		t.Fatalf("second publish seq %d <= %d", cur.Seq, old.Seq)
	}
	oldEnc, err := records.Encode(old)
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		enc  func() []byte
	}{
		{"replayed older record", func() []byte { return oldEnc }},
		{"tampered endpoint", func() []byte {
			r := *cur
			r.Endpoints = []netip.Addr{netip.MustParseAddr("192.0.2.66")}
			b, err := records.Encode(&r)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}},
		{"signed by another key for the owner's name", func() []byte {
			r := &records.Record{Name: cur.Name, Seq: cur.Seq + 10, Issued: cur.Issued, Expires: cur.Expires,
				Endpoints: []netip.Addr{netip.MustParseAddr("192.0.2.66")}}
			if err := records.Sign(r, evil.ident); err != nil {
				t.Fatal(err)
			}
			r.Name.Authority = cur.Name.Authority // claim the owner's name
			b, err := records.Encode(r)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}},
		{"garbage", func() []byte { return []byte("not a record at all") }},
	}
	for _, tc := range cases {
		before := rejected(n)
		injectStore(n, evil, cur.Key(), tc.enc())
		if after := rejected(n); after < before+uint64(len(n.nodes)-1) {
			t.Errorf("%s: %d stores rejected, want %d", tc.name, after-before, len(n.nodes)-1)
		}
		got := n.wait(reader, reader.core.Resolve(n.now, cur.Key(), SearchOptions{}), time.Minute)
		if got.Err != nil || len(got.Records) != 1 || got.Records[0].Seq != cur.Seq ||
			!bytes.Equal(got.Records[0].Signature, cur.Signature) {
			t.Fatalf("%s: resolve err=%v records=%v", tc.name, got.Err, got.Records)
		}
	}
	for _, tn := range n.nodes {
		tn.core.ForEachRecord(func(r *records.Record) bool {
			if err := records.Verify(r, n.now); err != nil {
				t.Errorf("%s holds a record failing Verify: %v", tn, err)
			}
			return true
		})
	}

	// A node that answers with a forged record is not believed. evil's honest code
	// would not send it (it verifies what it returns), so the test rewrites evil's
	// VALUE answer into one carrying the forged record, sealed with evil's real session.
	forged := *cur
	forged.Seq = cur.Seq + 100
	forgedEnc, _ := records.Encode(&forged)
	for _, tn := range n.nodes {
		delete(tn.core.store.m, cur.Key())
	}
	delete(pub.core.owned, cur.Key())
	rewritten := 0
	n.drop = func(from, to netip.AddrPort, data []byte) bool {
		if from != evil.addr || to != reader.addr || data[1] != ptData {
			return false
		}
		for _, req := range reader.core.pending {
			if req.peer == evil.core.ID() && req.expect == mValue {
				s := evil.core.sess.byPeer[reader.core.ID()]
				fake := s.seal(evil.core.hk.tag, appendMsg(nil, &msg{typ: mValue, reqID: req.id, records: [][]byte{forgedEnc}}))
				n.inq = append(n.inq, pkt{at: n.now.Add(n.latency), from: from, to: to, data: fake})
				rewritten++
				return true
			}
		}
		return false
	}
	before := rejected(n)
	got := n.wait(reader, reader.core.Resolve(n.now, cur.Key(), SearchOptions{}), time.Minute)
	n.drop = nil
	if rewritten == 0 {
		t.Fatal("evil was never asked")
	}
	if !errors.Is(got.Err, ErrNotFound) || len(got.Records) != 0 {
		t.Fatalf("forged answer: err=%v records=%d", got.Err, len(got.Records))
	}
	if rejected(n) < before+uint64(rewritten) {
		t.Errorf("forged answers: %d rejected, want %d", rejected(n)-before, rewritten)
	}
}

func TestSpoofedAndReplayedDatagramsRejected(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	n.build(3, nil)
	a, b, c := n.nodes[0], n.nodes[1], n.nodes[2]
	var captured []byte
	var hello []byte
	n.tap = func(from, to netip.AddrPort, data []byte) {
		if from == a.addr && to == b.addr && data[1] == ptData && captured == nil {
			captured = bytes.Clone(data)
		}
		if from == a.addr && data[1] == ptHello && hello == nil {
			hello = bytes.Clone(data)
		}
	}
	n.wait(a, a.core.Resolve(n.now, b.core.ID(), SearchOptions{}), time.Minute)
	if captured == nil {
		t.Fatal("no DATA captured")
	}
	flipped := bytes.Clone(captured)
	flipped[len(flipped)-20] ^= 1
	cases := []struct {
		name string
		from netip.AddrPort
		data []byte
	}{
		{"replayed", a.addr, captured},
		{"from another address", c.addr, captured},
		{"bit flipped", a.addr, flipped},
	}
	for _, tc := range cases {
		before := b.core.Stats().DroppedAuth
		b.core.HandleDatagram(n.now, tc.from, tc.data)
		sends, _ := b.core.Outbox()
		if got := b.core.Stats().DroppedAuth; got != before+1 {
			t.Errorf("%s: DroppedAuth %d -> %d", tc.name, before, got)
		}
		if len(sends) != 0 {
			t.Errorf("%s: %d datagrams sent in answer", tc.name, len(sends))
		}
	}

	// c replays a's certificate from its own address: b answers (no larger than
	// the HELLO), but c cannot use the session and b never records a at c's address.
	fresh := n.add(nil)
	hl := parseHello(mustHello(t, a), ptHello)
	spoof := bytes.Clone(mustHello(t, a))
	_ = hl
	fresh.core.HandleDatagram(n.now, c.addr, spoof)
	sends, _ := fresh.core.Outbox()
	if len(sends) != 1 || len(sends[0].Data) > len(spoof) || sends[0].To != c.addr {
		t.Fatalf("answer to a HELLO: %d sends", len(sends))
	}
	if fresh.core.rt.contains(a.core.ID()) {
		t.Error("unconfirmed HELLO put the claimed ID in the routing table")
	}
	// A certificate whose signature does not cover the X25519 key is refused.
	bad := bytes.Clone(spoof)
	bad[headerLen+4+32] ^= 0xff // x25519 public key
	before := fresh.core.Stats().DroppedAuth
	fresh.core.HandleDatagram(n.now, c.addr, bad)
	if sends, _ := fresh.core.Outbox(); len(sends) != 0 || fresh.core.Stats().DroppedAuth != before+1 {
		t.Errorf("bad certificate: %d sends", len(sends))
	}

	// An impostor answering at an address where we expect another ID is refused.
	x := n.add(nil)
	before = x.core.Stats().DroppedAuth
	x.core.transmit(n.now.UnixNano(), a.core.ID(), true, c.addr, appendMsg(nil, &msg{typ: mPing, reqID: 1}))
	n.collect(x)
	n.runFor(time.Second)
	if x.core.Stats().DroppedAuth != before+1 || x.core.rt.contains(c.core.ID()) || x.core.rt.contains(a.core.ID()) {
		t.Errorf("impostor accepted: dropped=%d", x.core.Stats().DroppedAuth-before)
	}
	_ = hello
}

// mustHello returns a HELLO as tn would send it to a new peer.
func mustHello(t *testing.T, tn *testNode) []byte {
	t.Helper()
	var pkt []byte
	pkt = appendHeader(pkt, ptHello, tn.core.hk.tag)
	pkt = binary.BigEndian.AppendUint32(pkt, 77)
	pkt = append(pkt, tn.core.hk.cert[:]...)
	pkt = append(pkt, make([]byte, nonceLen+helloPad)...)
	if _, err := decodeHeader(pkt); err != nil {
		t.Fatal(err)
	}
	return pkt
}

func TestNoAmplification(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	sizes := map[byte][]int{}
	n.tap = func(_, _ netip.AddrPort, data []byte) { sizes[data[1]] = append(sizes[data[1]], len(data)) }
	n.build(6, nil)
	for _, l := range sizes[ptHelloAck] {
		if l > helloLen {
			t.Errorf("HELLO_ACK of %d bytes > HELLO of %d", l, helloLen)
		}
	}
	if len(sizes[ptHello]) == 0 || len(sizes[ptHelloAck]) == 0 {
		t.Fatal("no handshakes seen")
	}
	// DATA with an unknown session index from a spoofed source: the only answer is a
	// NO_SESSION hint, smaller than the packet.
	tn := n.nodes[2]
	pkt := appendHeader(nil, ptData, tn.core.hk.tag)
	pkt = append(pkt, make([]byte, 4+8+tagLen+1)...)
	tn.core.HandleDatagram(n.now, netip.MustParseAddrPort("192.0.2.1:53"), pkt)
	sends, _ := tn.core.Outbox()
	if len(sends) != 1 || len(sends[0].Data) >= len(pkt) {
		t.Fatalf("answer to unknown session: %d sends", len(sends))
	}
}

func TestBoundsHeld(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	mod := func(c *Config) {
		c.MaxSessions = 8
		c.MaxRecords = 6
		c.MaxPerSource = 3
		c.K = 4
		c.Replication = 4
	}
	n.build(24, mod)
	check := func(when string) {
		for _, tn := range n.nodes {
			st := tn.core.Stats()
			if st.Sessions-st.HalfOpenSessions > st.MaxSessions || st.HalfOpenSessions > st.MaxHalfOpen ||
				st.RecordsStored > st.MaxRecords || st.MaxSourceRecords > 3 ||
				st.PendingRequests > st.MaxPending || st.ActiveOps > st.MaxOps ||
				st.RoutingTableSize > st.RoutingTableMax || st.ReplacementCacheSize > st.RoutingTableMax {
				t.Fatalf("%s %s: bounds exceeded: %+v", when, tn, st)
			}
			listed, last := 0, int64(0)
			for s := tn.core.sess.lruHead; s != nil; s = s.lruNext {
				if s.lastUsed < last {
					t.Fatalf("%s %s: LRU list out of order", when, tn)
				}
				listed, last = listed+1, s.lastUsed
			}
			if listed != st.Sessions {
				t.Fatalf("%s %s: LRU list has %d sessions, table %d", when, tn, listed, st.Sessions)
			}
		}
	}
	check("after join")
	var keys []identity.Key
	for i, tn := range n.nodes {
		for j := 0; j < 3; j++ {
			tmpl := securedTemplate(t, tn, "h"+string(rune('a'+j)))
			c := n.wait(tn, tn.core.Publish(n.now, tmpl), time.Minute)
			if c.Err != nil && !errors.Is(c.Err, ErrNotStored) {
				t.Fatalf("publish %d/%d: %v", i, j, c.Err)
			}
			keys = append(keys, c.Records[0].Key())
		}
		check("publishing")
	}
	ok := 0
	for i, k := range keys {
		tn := n.nodes[(i*7)%len(n.nodes)]
		if c := n.wait(tn, tn.core.Resolve(n.now, k, SearchOptions{}), time.Minute); c.Err == nil {
			ok++
		}
	}
	check("after resolves")
	// Stores over capacity are refused rather than stored: with 72 records,
	// 4 replicas each and 6 slots per node, not every name can be held.
	if ok == 0 || ok == len(keys) && n.nodes[0].core.Stats().RecordsStored < 6 {
		t.Errorf("%d of %d names resolvable", ok, len(keys))
	}
}

func TestDeterministic(t *testing.T) {
	t.Parallel()
	run := func() (uint64, Stats) {
		n := newTestNet(t)
		n.drop = func(from, to netip.AddrPort, data []byte) bool {
			h := fnv.New32a()
			h.Write(data)
			return h.Sum32()%20 == 0 // 5% loss, decided by content
		}
		n.build(10, nil)
		pub := n.nodes[3]
		c := n.wait(pub, pub.core.Publish(n.now, securedTemplate(t, pub, "det")), time.Minute)
		for _, tn := range n.nodes {
			n.wait(tn, tn.core.Resolve(n.now, c.Records[0].Key(), SearchOptions{}), time.Minute)
		}
		n.runFor(20 * time.Minute)
		return n.trace, n.nodes[5].core.Stats()
	}
	t1, s1 := run()
	t2, s2 := run()
	if t1 != t2 || s1 != s2 {
		t.Fatalf("two runs with the same seeds differ: trace %x vs %x", t1, t2)
	}
}

func TestLossyResolve(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	n.build(30, nil)
	var keys []identity.Key
	for i := 0; i < 10; i++ {
		tn := n.nodes[i*3]
		keys = append(keys, n.wait(tn, tn.core.Publish(n.now, securedTemplate(t, tn, "lossy")), time.Minute).Records[0].Key())
	}
	loss := uint32(0)
	n.drop = func(_, _ netip.AddrPort, data []byte) bool {
		loss++
		h := fnv.New32a()
		h.Write(data)
		return (h.Sum32()+loss)%10 == 0 // 10% loss
	}
	fails := 0
	for i, k := range keys {
		for j := 0; j < 5; j++ {
			tn := n.nodes[(i*11+j*5)%len(n.nodes)]
			if c := n.wait(tn, tn.core.Resolve(n.now, k, SearchOptions{}), time.Minute); c.Err != nil {
				fails++
			}
		}
	}
	if fails > 0 {
		t.Errorf("%d of %d resolves failed with 10%% loss", fails, 5*len(keys))
	}
}

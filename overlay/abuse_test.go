package overlay

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/records"
)

// signedFor signs a record of name by id, issued at issued.
func signedFor(t testing.TB, id *identity.Identity, name identity.Name, seq uint64, issued time.Time) (*records.Record, []byte) {
	t.Helper()
	r := &records.Record{Name: name, Seq: seq, Issued: issued, Expires: issued.Add(time.Hour),
		Endpoints: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}
	if err := records.Sign(r, id); err != nil {
		t.Fatal(err)
	}
	enc, err := records.Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	return r, enc
}

func securedName(t testing.TB, id *identity.Identity, classifier string) identity.Name {
	t.Helper()
	n, err := identity.NewSecuredName(classifier, id.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func srcAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}) }

// countBy counts the stored records by publisher key and by source.
func countBy(st *recordStore) (byPub map[string]int, bySrc map[netip.Addr]int) {
	byPub, bySrc = map[string]int{}, map[netip.Addr]int{}
	for _, sl := range st.m {
		for _, s := range sl.recs {
			byPub[string(s.rec.PublicKey)]++
			bySrc[s.source]++
		}
	}
	return byPub, bySrc
}

// A flood from one publisher key, from one source address, or on one
// unsecured name stays within its bound, and the honest records stored
// before (and after) it are kept.
func TestStoreBoundsUnderFlood(t *testing.T) {
	t.Parallel()
	now := epoch
	honestSrc := netip.MustParseAddr("203.0.113.5")
	printer, err := identity.NewUnsecuredName("printer")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		cfg  Config
		// honest stores before the flood; flood; honest stores after it.
		flood func(t *testing.T, st *recordStore) (accepted int)
		check func(t *testing.T, st *recordStore, accepted int)
	}{
		{
			name: "one key, many names, many addresses",
			cfg:  Config{MaxRecords: 1000, MaxRecordBytes: 1 << 20, MaxPerSource: 1000, MaxPublishers: 8, MaxPerPublisher: 10},
			flood: func(t *testing.T, st *recordStore) int {
				evil, ok := testIdentity(900), 0
				for i := range 200 {
					r, enc := signedFor(t, evil, securedName(t, evil, fmt.Sprintf("f%d", i)), 1, now)
					if st.put(now.UnixNano(), r.Key(), enc, srcAddr(i)).status == storeOK {
						ok++
					}
				}
				// At its quota, the key may still update a name it holds.
				r, enc := signedFor(t, evil, securedName(t, evil, "f0"), 2, now)
				if res := st.put(now.UnixNano(), r.Key(), enc, srcAddr(999)); res.status != storeOK {
					t.Errorf("update of a held name at quota: %v", res.err)
				}
				return ok
			},
			check: func(t *testing.T, st *recordStore, accepted int) {
				byPub, _ := countBy(st)
				if accepted != 10 || byPub[string(testIdentity(900).PublicKey())] != 10 {
					t.Errorf("flooding key: %d accepted, %d held, want 10", accepted, byPub[string(testIdentity(900).PublicKey())])
				}
			},
		},
		{
			name: "one address, many keys",
			cfg:  Config{MaxRecords: 1000, MaxRecordBytes: 1 << 20, MaxPerSource: 10, MaxPublishers: 8, MaxPerPublisher: 1000},
			flood: func(t *testing.T, st *recordStore) int {
				ok := 0
				for i := range 200 {
					id := testIdentity(1000 + i)
					r, enc := signedFor(t, id, securedName(t, id, "x"), 1, now)
					if st.put(now.UnixNano(), r.Key(), enc, srcAddr(1)).status == storeOK {
						ok++
					}
				}
				return ok
			},
			check: func(t *testing.T, st *recordStore, accepted int) {
				_, bySrc := countBy(st)
				if accepted != 10 || bySrc[srcAddr(1)] != 10 {
					t.Errorf("flooding address: %d accepted, %d held, want 10", accepted, bySrc[srcAddr(1)])
				}
			},
		},
		{
			name: "one unsecured name, many keys, one address",
			cfg:  Config{MaxRecords: 1000, MaxRecordBytes: 1 << 20, MaxPerSource: 1000, MaxPublishers: 8, MaxPerPublisher: 1000},
			flood: func(t *testing.T, st *recordStore) int {
				ok := 0
				for i := range 200 {
					id := testIdentity(2000 + i)
					// Each flooding record is issued later than every honest one.
					r, enc := signedFor(t, id, printer, 1, now.Add(time.Duration(i+1)*time.Second))
					if st.put(now.Add(200*time.Second).UnixNano(), r.Key(), enc, srcAddr(2)).status == storeOK {
						ok++
					}
				}
				return ok
			},
			check: func(t *testing.T, st *recordStore, _ int) {
				sl := st.m[printer.Key()]
				flood := sl.fromSource(srcAddr(2))
				if len(sl.recs) != 8 || flood != 4 {
					t.Errorf("printer: %d publishers, %d from the flooding address; want 8 and 4", len(sl.recs), flood)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := tc.cfg
			stv := newRecordStore(&cfg)
			st := &stv
			// Honest records stored before the flood: 6 publishers of the
			// unsecured name (one per address) and 5 secured names of one key.
			var honest []identity.Key
			for i := range 6 {
				id := testIdentity(100 + i)
				r, enc := signedFor(t, id, printer, 1, now)
				if res := st.put(now.UnixNano(), r.Key(), enc, netip.AddrFrom4([4]byte{203, 0, 113, byte(10 + i)})); res.status != storeOK {
					t.Fatalf("honest printer %d: %v", i, res.err)
				}
			}
			hid := testIdentity(200)
			for i := range 5 {
				r, enc := signedFor(t, hid, securedName(t, hid, fmt.Sprintf("h%d", i)), 1, now)
				if res := st.put(now.UnixNano(), r.Key(), enc, honestSrc); res.status != storeOK {
					t.Fatalf("honest %d: %v", i, res.err)
				}
				honest = append(honest, r.Key())
			}
			accepted := tc.flood(t, st)
			tc.check(t, st, accepted)
			for _, k := range honest {
				if len(st.m[k].recs) != 1 {
					t.Errorf("honest record %s lost", k)
				}
			}
			// Honest publishers keep at least half of the unsecured name's slots.
			if n := len(st.m[printer.Key()].recs) - st.m[printer.Key()].fromSource(srcAddr(2)); n < 4 {
				t.Errorf("printer: %d honest publishers left, want >= 4", n)
			}
			// A new honest record is still accepted after the flood.
			r, enc := signedFor(t, hid, securedName(t, hid, "after"), 1, now)
			if res := st.put(now.UnixNano(), r.Key(), enc, honestSrc); res.status != storeOK {
				t.Errorf("honest store after the flood: %v", res.err)
			}
			// Accounting matches the contents.
			byPub, bySrc := countBy(st)
			total := 0
			for _, n := range byPub {
				total += n
			}
			if total != st.count || total > cfg.MaxRecords {
				t.Errorf("count %d, held %d", st.count, total)
			}
			for a, n := range bySrc {
				if st.perSource[a] != n || n > cfg.MaxPerSource {
					t.Errorf("source %s: accounted %d, held %d", a, st.perSource[a], n)
				}
			}
			for k, n := range byPub {
				if st.perPub[k] != n || n > cfg.MaxPerPublisher {
					t.Errorf("publisher: accounted %d, held %d", st.perPub[k], n)
				}
			}
		})
	}
}

// floodNet builds a small network whose nodes use the given rate limits.
func floodNet(t *testing.T, l RateLimits) *testNet {
	n := newTestNet(t)
	n.build(4, func(c *Config) { c.RateLimits = l })
	return n
}

// A peer sending requests faster than its limit gets only its burst
// answered; another peer is served meanwhile.
func TestRequestFloodRateLimited(t *testing.T) {
	t.Parallel()
	const flood = 500
	cases := []struct {
		name     string
		limits   RateLimits
		answered int // of the flood
	}{
		{"limited", RateLimits{RequestRate: 10, RequestBurst: 50}, 50},
		{"off", RateLimits{RequestRate: -1, StoreRate: -1, HandshakeRate: -1}, flood},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := floodNet(t, tc.limits)
			n.runFor(10 * time.Second) // buckets refill after the joins
			victim, evil, honest := n.nodes[1], n.nodes[2], n.nodes[3]
			answers := 0
			n.tap = func(from, to netip.AddrPort, data []byte) {
				if from == victim.addr && to == evil.addr && data[1] == ptData {
					answers++
				}
			}
			before := victim.core.Stats()
			for i := range flood {
				body := appendMsg(nil, &msg{typ: mFindNode, reqID: uint64(i + 1), key: identity.Key{byte(i)}})
				evil.core.transmit(n.now.UnixNano(), victim.core.ID(), true, victim.addr, body)
			}
			n.collect(evil)
			n.runFor(100 * time.Millisecond)
			after := victim.core.Stats()
			if got := after.RateLimited - before.RateLimited; got != uint64(flood-tc.answered) {
				t.Errorf("RateLimited +%d, want %d", got, flood-tc.answered)
			}
			if answers < tc.answered || answers > tc.answered+5 {
				t.Errorf("%d answers to the flood, want %d", answers, tc.answered)
			}
			// The honest peer still gets answers from the victim.
			c := n.wait(honest, honest.core.Resolve(n.now, victim.core.ID(), SearchOptions{}), time.Minute)
			if c.Path.Timeouts != 0 || victim.core.Stats().RateLimited != after.RateLimited {
				t.Errorf("honest peer: %d timeouts, %d more requests limited", c.Path.Timeouts,
					victim.core.Stats().RateLimited-after.RateLimited)
			}
		})
	}
}

// A peer flooding STOREs of valid records gets only its store burst
// verified and stored; the rest are refused "full" (answered, not dropped).
func TestStoreFloodRateLimited(t *testing.T) {
	t.Parallel()
	const flood = 100
	cases := []struct {
		name   string
		limits RateLimits
		stored int
	}{
		{"limited", RateLimits{StoreRate: 1, StoreBurst: 10}, 10},
		{"off", RateLimits{StoreRate: -1}, flood},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := floodNet(t, tc.limits)
			n.runFor(20 * time.Second)
			victim, evil := n.nodes[1], n.nodes[2]
			acks := map[int]int{}
			before := victim.core.Stats()
			held := victim.core.store.perSource[evil.addr.Addr()]
			for i := range flood {
				r, enc := signedFor(t, evil.ident, securedName(t, evil.ident, fmt.Sprintf("s%d", i)), 1, n.now)
				body := appendMsg(nil, &msg{typ: mStore, reqID: uint64(i + 1), key: r.Key(), records: [][]byte{enc}})
				evil.core.transmit(n.now.UnixNano(), victim.core.ID(), true, victim.addr, body)
			}
			n.tap = func(from, to netip.AddrPort, data []byte) {
				if from == victim.addr && to == evil.addr && data[1] == ptData {
					acks[len(data)]++
				}
			}
			n.collect(evil)
			n.runFor(100 * time.Millisecond)
			after := victim.core.Stats()
			if got := victim.core.store.perSource[evil.addr.Addr()] - held; got != tc.stored {
				t.Errorf("%d records stored for the flooding peer, want %d", got, tc.stored)
			}
			if got := after.StoresRateLimited - before.StoresRateLimited; got != uint64(flood-tc.stored) {
				t.Errorf("StoresRateLimited +%d, want %d", got, flood-tc.stored)
			}
			total := 0
			for _, c := range acks {
				total += c
			}
			if total < flood {
				t.Errorf("%d answers to %d STOREs", total, flood)
			}
		})
	}
}

// hostileHello returns a valid HELLO of id with the given sender index.
func helloOf(t *testing.T, tn *testNode, idx uint32) []byte {
	pkt := mustHello(t, tn)
	binary.BigEndian.PutUint32(pkt[headerLen:], idx)
	return pkt
}

// A flood of HELLOs (each a certificate check and an X25519) from one
// address, or one IPv6 /64, is answered only up to the handshake burst;
// other sources are still answered.
func TestHelloFloodRateLimited(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		flood     func(i int) netip.AddrPort
		other     netip.AddrPort
		burst     int
		wantAcked int
	}{
		{"one IPv4 address, many ports", func(i int) netip.AddrPort {
			return netip.AddrPortFrom(netip.MustParseAddr("192.0.2.44"), uint16(1000+i))
		}, netip.MustParseAddrPort("192.0.2.45:1000"), 16, 16},
		{"one IPv6 /64, many addresses", func(i int) netip.AddrPort {
			return netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i), 14: byte(i >> 8)}), 3540)
		}, netip.MustParseAddrPort("[2001:db8:0:1::1]:3540"), 16, 16},
		{"off", func(i int) netip.AddrPort {
			return netip.AddrPortFrom(netip.MustParseAddr("192.0.2.44"), uint16(1000+i))
		}, netip.MustParseAddrPort("192.0.2.45:1000"), -1, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := newTestNet(t)
			l := RateLimits{HandshakeRate: 1, HandshakeBurst: tc.burst}
			if tc.burst < 0 {
				l = RateLimits{HandshakeRate: -1}
			}
			victim := n.add(func(c *Config) { c.RateLimits = l })
			peer := n.add(nil)
			acked := 0
			for i := range 200 {
				victim.core.HandleDatagram(n.now, tc.flood(i), helloOf(t, peer, uint32(i+1)))
				sends, _ := victim.core.Outbox()
				acked += len(sends)
			}
			if acked != tc.wantAcked {
				t.Errorf("%d HELLOs answered, want %d", acked, tc.wantAcked)
			}
			if got := victim.core.Stats().HandshakesRateLimited; got != uint64(200-tc.wantAcked) {
				t.Errorf("HandshakesRateLimited %d, want %d", got, 200-tc.wantAcked)
			}
			victim.core.HandleDatagram(n.now, tc.other, helloOf(t, peer, 9999))
			if sends, _ := victim.core.Outbox(); len(sends) != 1 {
				t.Errorf("another source's HELLO: %d answers", len(sends))
			}
		})
	}
}

// No unauthenticated datagram, of any packet type, draws more bytes in
// answer than it carries, and answers go only to the datagram's source.
func TestNoAmplificationAnyPacketType(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	var captured, capturedAck []byte
	n.build(3, nil)
	victim, peer := n.nodes[1], n.nodes[2]
	n.tap = func(from, to netip.AddrPort, data []byte) {
		if from == peer.addr && to == victim.addr && data[1] == ptData && captured == nil {
			captured = bytes.Clone(data)
		}
		if from == victim.addr && data[1] == ptHelloAck && capturedAck == nil {
			capturedAck = bytes.Clone(data)
		}
	}
	stranger := n.add(nil) // never joined: its HELLOs are fresh handshakes
	n.wait(peer, peer.core.Resolve(n.now, stranger.core.ID(), SearchOptions{}), time.Minute)
	stranger.core.Join(n.now, []netip.AddrPort{victim.addr})
	n.runFor(2 * time.Second)
	if captured == nil || capturedAck == nil {
		t.Fatal("no DATA or HELLO_ACK captured")
	}
	tag := victim.core.hk.tag
	spoofed := netip.MustParseAddrPort("203.0.113.9:4444")
	knownIdx := binary.BigEndian.Uint32(captured[headerLen:])
	mk := func(typ byte, size int, fill func(b []byte)) []byte {
		b := appendHeader(nil, typ, tag)
		b = append(b, make([]byte, size-headerLen)...)
		if fill != nil {
			fill(b)
		}
		return b
	}
	badCert := helloOf(t, stranger, 5)
	badCert[headerLen+4+40] ^= 1
	wrongCloud := helloOf(t, stranger, 6)
	wrongCloud[2] ^= 0xff
	cases := []struct {
		name  string
		from  netip.AddrPort
		data  []byte
		reply bool // an answer (no larger) is expected
	}{
		{"HELLO", spoofed, helloOf(t, stranger, 1), true},
		{"HELLO repeated", spoofed, helloOf(t, stranger, 1), true},
		{"HELLO bad certificate", spoofed, badCert, false},
		{"HELLO of another cloud", spoofed, wrongCloud, false},
		{"HELLO short", spoofed, helloOf(t, stranger, 2)[:helloLen-1], false},
		{"HELLO_ACK unsolicited", spoofed, mk(ptHelloAck, helloAckLn, nil), false},
		{"HELLO_ACK replayed", spoofed, capturedAck, false},
		{"DATA unknown index", spoofed, mk(ptData, dataPrefix+tagLen+1, func(b []byte) { b[headerLen] = 0xee }), true},
		{"DATA unknown index, large", spoofed, mk(ptData, 1200, func(b []byte) { b[headerLen] = 0xee }), true},
		{"DATA known index, spoofed source", spoofed, mk(ptData, 200, func(b []byte) {
			binary.BigEndian.PutUint32(b[headerLen:], knownIdx)
		}), false},
		{"DATA replayed from its own source", peer.addr, captured, false},
		{"NO_SESSION", spoofed, mk(ptNoSession, noSessLen, nil), false},
		{"NO_SESSION for a live session, spoofed", spoofed, mk(ptNoSession, noSessLen, func(b []byte) {
			binary.BigEndian.PutUint32(b[headerLen:], knownIdx)
		}), false},
		{"unknown type", spoofed, mk(9, 178, nil), false},
		{"bad version", spoofed, func() []byte { b := helloOf(t, stranger, 3); b[0] = 2; return b }(), false},
		{"short header", spoofed, []byte{1, 1, 0}, false},
		{"empty", spoofed, nil, false},
	}
	for _, tc := range cases {
		// Not parallel: the cases share the victim core.
		victim.core.HandleDatagram(n.now, tc.from, tc.data)
		sends, _ := victim.core.Outbox()
		out := 0
		for _, s := range sends {
			out += len(s.Data)
			if s.To != tc.from {
				t.Errorf("%s: answer sent to %s, not the source %s", tc.name, s.To, tc.from)
			}
		}
		if out > len(tc.data) {
			t.Errorf("%s: %d bytes in, %d bytes out", tc.name, len(tc.data), out)
		}
		if (len(sends) > 0) != tc.reply {
			t.Errorf("%s: %d answers, want reply=%v", tc.name, len(sends), tc.reply)
		}
	}
	// A sustained spoofed flood of every kind, from one address: bytes out never
	// exceed bytes in, and once the handshake bucket is empty HELLOs get nothing.
	in, out := 0, 0
	for i := range 2000 {
		var d []byte
		switch i % 3 {
		case 0:
			d = helloOf(t, stranger, uint32(100+i))
		case 1:
			d = mk(ptData, dataPrefix+tagLen+1, func(b []byte) { binary.BigEndian.PutUint32(b[headerLen:], uint32(i)|1<<31) })
		case 2:
			d = mk(ptNoSession, noSessLen, nil)
		}
		in += len(d)
		victim.core.HandleDatagram(n.now, spoofed, d)
		sends, _ := victim.core.Outbox()
		for _, s := range sends {
			out += len(s.Data)
		}
	}
	if out > in {
		t.Errorf("flood: %d bytes in, %d bytes out", in, out)
	}
	if got := victim.core.Stats().HandshakesRateLimited; got == 0 {
		t.Errorf("flood of %d HELLOs from one address: none rate-limited", 2000/3)
	}
	t.Logf("spoofed flood: %d bytes in, %d bytes out (%.2f)", in, out, float64(out)/float64(in))
}

package overlay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/peername/peername/identity"
)

func sampleContacts(n int) []contact {
	cs := make([]contact, n)
	for i := range cs {
		cs[i].ID[0], cs[i].ID[31] = byte(i), byte(255-i)
		if i%2 == 0 {
			cs[i].Addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}), uint16(3540+i))
		} else {
			cs[i].Addr = netip.AddrPortFrom(netip.MustParseAddr("2001:db8::1"), uint16(3540+i))
		}
	}
	return cs
}

// sampleMsgs has one message of every type.
func sampleMsgs() []msg {
	k1 := identity.Key{1, 2, 3}
	k2 := identity.Key{9, 9, 9}
	return []msg{
		{typ: mPing, reqID: 1},
		{typ: mPong, reqID: 2, addr: netip.MustParseAddrPort("[2001:db8::7]:9")},
		{typ: mFindNode, reqID: 3, key: k1},
		{typ: mNodes, reqID: 4, contacts: sampleContacts(16)},
		{typ: mNodes, reqID: 5},
		{typ: mFindValue, reqID: 6, key: k2},
		{typ: mValue, reqID: 7, records: [][]byte{[]byte("rec-one"), bytes.Repeat([]byte{7}, 300)}, contacts: sampleContacts(3)},
		{typ: mStore, reqID: 8, key: k1, records: [][]byte{[]byte("a record")}},
		{typ: mStoreAck, reqID: 9, n: storeStale},
		{typ: mNearest, reqID: 10, key: k2, n: 5},
		{typ: mRange, reqID: 11, key: k1, key2: k2, n: 64},
		{typ: mKeys, reqID: 12, keys: []identity.Key{k1, k2}, more: true, contacts: sampleContacts(2)},
		{typ: mLeave},
		{typ: mMode, reqID: 13, n: modeFlagClient},
		{typ: mMode, reqID: 14},
		{typ: mDialReq, reqID: 15, key: k2},
		{typ: mDial, reqID: 16, addr: netip.MustParseAddrPort("192.0.2.9:4000"), key: k1},
		{typ: mDialAck, reqID: 17, n: dialDispatched, addr: netip.MustParseAddrPort("192.0.2.9:4000"), addr2: netip.MustParseAddrPort("[2001:db8::9]:53")},
		{typ: mDialAck, reqID: 18, n: dialNoDialer, addr: netip.MustParseAddrPort("192.0.2.9:4000")},
	}
}

func TestMessageRoundTrip(t *testing.T) {
	t.Parallel()
	for _, m := range sampleMsgs() {
		t.Run(fmt.Sprintf("%#x", m.typ), func(t *testing.T) {
			t.Parallel()
			enc := appendMsg(nil, &m)
			got, err := decodeMsg(enc)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if re := appendMsg(nil, &got); !bytes.Equal(re, enc) {
				t.Fatalf("re-encoding differs:\n%x\n%x", re, enc)
			}
			// Every truncation and every extension is rejected.
			for i := 0; i < len(enc); i++ {
				if _, err := decodeMsg(enc[:i]); !errors.Is(err, ErrMalformed) {
					t.Fatalf("truncated to %d: err=%v", i, err)
				}
			}
			if _, err := decodeMsg(append(bytes.Clone(enc), 0)); !errors.Is(err, ErrMalformed) {
				t.Fatalf("trailing byte accepted: %v", err)
			}
		})
	}
}

func TestMessageRejects(t *testing.T) {
	t.Parallel()
	k := identity.Key{5}
	ping := appendMsg(nil, &msg{typ: mPing, reqID: 1})
	nodes := appendMsg(nil, &msg{typ: mNodes, reqID: 1, contacts: sampleContacts(1)})
	cases := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"unknown type", append([]byte{0x7f}, ping[1:]...)},
		{"range min > max", appendMsg(nil, &msg{typ: mRange, reqID: 1, key: identity.Key{2}, key2: identity.Key{1}, n: 1})},
		{"nearest count 0", appendMsg(nil, &msg{typ: mNearest, reqID: 1, key: k, n: 0})},
		{"store empty record", append(appendMsg(nil, &msg{typ: mFindNode, reqID: 1, key: k})[:1+8+32:1+8+32], 0, 0)},
		{"ack status out of range", appendMsg(nil, &msg{typ: mStoreAck, reqID: 1, n: 9})},
		{"unknown mode flag", appendMsg(nil, &msg{typ: mMode, reqID: 1, n: 2})},
		{"dial status out of range", appendMsg(nil, &msg{typ: mDialAck, reqID: 1, n: dialMaxStatus + 1, addr: netip.MustParseAddrPort("192.0.2.9:4000")})},
		{"bad address family", func() []byte { b := bytes.Clone(nodes); b[1+8+1+32] = 5; return b }()},
		{"port zero", func() []byte { b := bytes.Clone(nodes); b[len(b)-1], b[len(b)-2] = 0, 0; return b }()},
		{"too many contacts", func() []byte { b := bytes.Clone(nodes); b[1+8] = maxContactsPerMessage + 1; return b }()},
		{"more flag 2", func() []byte {
			b := appendMsg(nil, &msg{typ: mKeys, reqID: 1})
			b[len(b)-2] = 2
			return b
		}()},
		{"mapped v4 address", appendMsg(nil, &msg{typ: mPong, reqID: 1, addr: netip.MustParseAddrPort("[::ffff:192.0.2.1]:5")})},
	}
	for _, tc := range cases {
		if tc.name == "store empty record" {
			tc.b[0] = mStore
		}
		if _, err := decodeMsg(tc.b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err=%v, want ErrMalformed", tc.name, err)
		}
	}
}

func TestHeaderRejects(t *testing.T) {
	t.Parallel()
	var tag cloudTag
	hello := appendHeader(nil, ptHello, tag)
	hello = append(hello, make([]byte, helloLen-headerLen)...)
	if _, err := decodeHeader(hello); err != nil {
		t.Fatalf("valid hello: %v", err)
	}
	badPad := bytes.Clone(hello)
	badPad[len(badPad)-1] = 1
	v2 := bytes.Clone(hello)
	v2[0] = 2
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"short", hello[:5], ErrMalformed},
		{"version", v2, ErrVersion},
		{"hello padding", badPad, ErrMalformed},
		{"hello length", hello[:len(hello)-1], ErrMalformed},
		{"ack length", append(appendHeader(nil, ptHelloAck, tag), 1), ErrMalformed},
		{"data too short", append(appendHeader(nil, ptData, tag), make([]byte, 12+tagLen)...), ErrMalformed},
		{"no-session length", append(appendHeader(nil, ptNoSession, tag), 1, 2, 3), ErrMalformed},
		{"type", append(appendHeader(nil, 9, tag), 1), ErrMalformed},
	}
	for _, tc := range cases {
		if _, err := decodeHeader(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: err=%v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestHelloLayout pins the handshake sizes of docs/protocol.md and checks
// that both packets carry the certificate, puzzle nonce included, where the
// parser reads it.
func TestHelloLayout(t *testing.T) {
	t.Parallel()
	if certLen != 136 || helloLen != 186 || helloAckLn != 186 || helloAckLn-tagLen != 170 {
		t.Fatalf("cert %d, HELLO %d, HELLO_ACK %d bytes; docs/protocol.md says 136, 186, 186", certLen, helloLen, helloAckLn)
	}
	n := newTestNet(t)
	var hellos, acks [][]byte
	n.tap = func(_, _ netip.AddrPort, data []byte) {
		switch data[1] {
		case ptHello:
			hellos = append(hellos, data)
		case ptHelloAck:
			acks = append(acks, data)
		}
	}
	n.build(2, nil)
	certs := map[[certLen]byte]bool{n.nodes[0].core.hk.cert: true, n.nodes[1].core.hk.cert: true}
	if len(hellos) == 0 || len(acks) == 0 {
		t.Fatal("no handshake seen")
	}
	for typ, pkts := range map[byte][][]byte{ptHello: hellos, ptHelloAck: acks} {
		for _, p := range pkts {
			if _, err := decodeHeader(p); err != nil {
				t.Fatal(err)
			}
			hl := parseHello(p, typ)
			if !certs[[certLen]byte(hl.cert())] {
				t.Errorf("type %d: parsed certificate is no node's", typ)
			}
			if !checkPuzzle(hl.edPub[:], hl.puzzle, testPuzzleBits) {
				t.Errorf("type %d: parsed puzzle nonce %d does not solve the sender's puzzle", typ, hl.puzzle)
			}
		}
	}
}

func TestKeyArithmetic(t *testing.T) {
	t.Parallel()
	var a, b identity.Key
	a[31], b[31] = 2, 5
	if m := midpoint(a, b); m[31] != 3 {
		t.Errorf("midpoint(2,5)=%d", m[31])
	}
	for i := range a {
		a[i], b[i] = 0xff, 0xff
	}
	if m := midpoint(a, b); m != a {
		t.Errorf("midpoint(max,max)=%s", m)
	}
	self := identity.Key{0x80}
	for _, i := range []int{0, 1, 7, 8, 100, 255} {
		n := uint64(0)
		id := randomIDInBucket(self, i, func() uint64 { n++; return n * 0x9e3779b97f4a7c15 })
		if got := commonPrefixLen(self, id); got != i {
			t.Errorf("randomIDInBucket(%d) has prefix %d", i, got)
		}
	}
}

// TestWriteFuzzCorpus regenerates the checked-in seed corpus (PEERNAME_WRITE_CORPUS=1).
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("PEERNAME_WRITE_CORPUS") == "" {
		t.Skip("set PEERNAME_WRITE_CORPUS=1 to rewrite testdata/fuzz seeds")
	}
	write := func(target, name string, b []byte) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, m := range sampleMsgs() {
		write("FuzzDecodeMsg", fmt.Sprintf("seed-%02d", i), appendMsg(nil, &m))
	}
	n := newTestNet(t)
	seen := map[byte]int{}
	n.tap = func(_, _ netip.AddrPort, data []byte) {
		if seen[data[1]] < 3 {
			write("FuzzDecodePacket", fmt.Sprintf("type%d-%d", data[1], seen[data[1]]), data)
			write("FuzzCoreDatagram", fmt.Sprintf("type%d-%d", data[1], seen[data[1]]), data)
			seen[data[1]]++
		}
	}
	n.build(3, nil)
	tn := n.nodes[2]
	dropSessions(tn) // a Resolve over new sessions: HELLOs with early requests
	n.wait(tn, tn.core.Resolve(n.now, identity.Key{1}, SearchOptions{}), time.Minute)
	pkt := appendHeader(nil, ptData, tn.core.hk.tag)
	pkt = append(pkt, make([]byte, 4+8+tagLen+1)...)
	tn.core.HandleDatagram(n.now, netip.MustParseAddrPort("192.0.2.1:53"), pkt)
	n.collect(tn)
}

// TestClosestMatchesBruteForce checks the bucket-ordered scan against sorting everything.
func TestClosestMatchesBruteForce(t *testing.T) {
	t.Parallel()
	self := identity.Key{0x5a, 0xa5}
	rt := routingTable{self: self, k: 8}
	var all []identity.Key
	x := uint64(1)
	next := func() uint64 { x = x*6364136223846793005 + 1442695040888963407; return x }
	for i := 0; i < 400; i++ {
		var id identity.Key
		for j := 0; j < 32; j += 8 {
			binary.BigEndian.PutUint64(id[j:], next())
		}
		if i%3 == 0 { // deep contacts near self
			copy(id[:2], self[:2])
		}
		if r := rt.seen(id, netip.MustParseAddrPort("192.0.2.1:1"), 1, 1<<62); r.added {
			all = append(all, id)
		}
	}
	for trial := 0; trial < 200; trial++ {
		var target identity.Key
		for j := 0; j < 32; j += 8 {
			binary.BigEndian.PutUint64(target[j:], next())
		}
		if trial%4 == 0 {
			copy(target[:1+trial%3], self[:1+trial%3])
		}
		if trial == 7 {
			target = self
		}
		for _, n := range []int{1, 5, 16, 32} {
			skip := all[trial%len(all)]
			got := rt.closest(nil, target, n, skip)
			want := slices.Clone(all)
			want = slices.DeleteFunc(want, func(k identity.Key) bool { return k == skip })
			slices.SortFunc(want, func(a, b identity.Key) int {
				if closer(a, b, target) {
					return -1
				}
				return 1
			})
			want = want[:min(n, len(want))]
			if len(got) != len(want) {
				t.Fatalf("trial %d n %d: got %d contacts, want %d", trial, n, len(got), len(want))
			}
			for i := range want {
				if got[i].ID != want[i] {
					t.Fatalf("trial %d n %d: position %d differs", trial, n, i)
				}
			}
		}
	}
}

func TestTimerHeapOrder(t *testing.T) {
	t.Parallel()
	var h timerHeap
	x := uint64(7)
	var want []timer
	for i := 0; i < 500; i++ {
		x = x*6364136223846793005 + 1442695040888963407
		tm := timer{at: int64(x >> 54), kind: uint8(x>>20) % 5, id: x >> 40}
		h.push(tm)
		want = append(want, tm)
	}
	slices.SortFunc(want, func(a, b timer) int {
		if a.less(b) {
			return -1
		}
		if b.less(a) {
			return 1
		}
		return 0
	})
	for i, w := range want {
		if got := h.pop(); got != w {
			t.Fatalf("pop %d: got %+v, want %+v", i, got, w)
		}
	}
	if len(h) != 0 {
		t.Fatalf("%d timers left", len(h))
	}
}

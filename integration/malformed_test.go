package integration

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// malformedSeed makes the random packets reproducible; a failure names it.
const malformedSeed = 20261125

// malformedPackets returns hostile DNS messages: hand-made edge cases, every
// truncation of a valid query, and seeded random bytes (some with a valid
// header so they get past the first check).
func malformedPackets(t testing.TB, qname string) [][]byte {
	t.Helper()
	valid := new(dns.Msg)
	valid.SetQuestion(qname, dns.TypeA)
	valid.SetEdns0(4096, true)
	wire, err := valid.Pack()
	if err != nil {
		t.Fatal(err)
	}
	hdr := func(id, flags, qd, an, ns, ar uint16) []byte {
		b := make([]byte, 12)
		for i, v := range []uint16{id, flags, qd, an, ns, ar} {
			binary.BigEndian.PutUint16(b[2*i:], v)
		}
		return b
	}
	pkts := [][]byte{
		{},                         // empty
		{0x12},                     // one byte
		hdr(1, 0, 0, 0, 0, 0),      // no question
		hdr(2, 0, 65535, 0, 0, 0),  // claims 65535 questions, has none
		hdr(3, 0x8000, 1, 0, 0, 0), // a response (QR set)
		hdr(4, 0x7800, 1, 0, 0, 0), // opcode 15
		hdr(5, 0x2800, 1, 0, 0, 0), // UPDATE
		hdr(6, 0, 1, 65535, 65535, 65535),
		append(hdr(7, 0, 1, 0, 0, 0), 0xc0, 0x0c, 0, 1, 0, 1),            // compression pointer to itself
		append(hdr(8, 0, 1, 0, 0, 0), 0x40, 'a', 0, 0, 1, 0, 1),          // reserved label type
		append(hdr(9, 0, 1, 0, 0, 0), 63, 'a', 'b'),                      // label runs past the end
		append(hdr(10, 0, 1, 0, 0, 1), append(wire[12:], 0xff, 0xff)...), // OPT claimed, garbage instead
		append(hdr(11, 0, 2, 0, 0, 0), wire[12:]...),                     // two questions claimed, one there
	}
	for n := 0; n < len(wire); n++ {
		pkts = append(pkts, wire[:n])
	}
	rng := rand.New(rand.NewPCG(malformedSeed, 0))
	for range 400 {
		b := make([]byte, rng.IntN(600))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if len(b) >= 12 && rng.IntN(2) == 0 {
			// A plausible header (query, one question) over random bytes.
			copy(b, hdr(uint16(rng.Uint32()), 0x0100, 1, 0, 0, uint16(rng.IntN(2))))
		}
		pkts = append(pkts, b)
	}
	// Valid queries with one random byte flipped.
	for range 200 {
		b := append([]byte(nil), wire...)
		b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
		pkts = append(pkts, b)
	}
	return pkts
}

// TestMalformedPackets throws malformed DNS messages and random bytes at a
// server over UDP and TCP; it must stay up and answer correctly afterwards.
func TestMalformedPackets(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	id, key := newKey(t, dir, "solo.key")
	want := []netip.Addr{netip.MustParseAddr("192.0.2.77")}
	srv := startServer(t, nodeSpec{Label: "solo", Cloud: "it-malformed", KeyFile: key, Publish: []string{"solo 192.0.2.77"}, TTL: 2, Timeout: "2s"})
	if err := srv.waitReady(ctx); err != nil {
		t.Fatal(err)
	}
	name := securedName(t, id, "solo")
	check := func(when string) {
		t.Helper()
		if !srv.alive() {
			t.Fatalf("%s: the server died (%v)", when, srv.exitState)
		}
		for _, network := range []string{"udp", "tcp"} {
			wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
			err := eventually(wctx, func(ctx context.Context) error { return resolvesTo(ctx, network, srv, name, want) })
			wcancel()
			if err != nil {
				t.Fatalf("%s: %v", when, err)
			}
		}
	}
	check("before")
	pkts := malformedPackets(t, name)

	floodUDP(t, srv.dnsAddr, pkts)
	check("after malformed UDP")
	floodTCP(ctx, t, srv.dnsAddr, pkts)
	check("after malformed TCP")
}

// floodUDP sends every packet to addr over UDP, reading whatever comes back
// so that the socket buffer never fills.
func floodUDP(t *testing.T, addr string, pkts [][]byte) {
	t.Helper()
	t.Logf("seed %d: %d packets", malformedSeed, len(pkts))
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	replies := make(chan int, 1)
	go func() {
		n := 0
		buf := make([]byte, 65535)
		for {
			if _, err := conn.Read(buf); err != nil {
				replies <- n
				return
			}
			n++
		}
	}()
	for i, p := range pkts {
		if _, err := conn.Write(p); err != nil {
			t.Fatalf("udp write %d: %v", i, err)
		}
	}
	// Collect replies for a second after the last packet, then stop.
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	t.Logf("udp: %d replies to %d packets", <-replies, len(pkts))
}

// floodTCP sends every packet over TCP: each on its own connection with a
// correct length prefix, then streams with lying length prefixes and with
// none at all.
func floodTCP(ctx context.Context, t *testing.T, addr string, pkts [][]byte) {
	t.Helper()
	for i, p := range pkts {
		framed := binary.BigEndian.AppendUint16(nil, uint16(len(p)))
		if err := tcpSend(ctx, addr, append(framed, p...)); err != nil {
			t.Fatalf("tcp packet %d: %v", i, err)
		}
	}
	rng := rand.New(rand.NewPCG(malformedSeed, 1))
	for i := range 50 {
		p := pkts[rng.IntN(len(pkts))]
		var b []byte
		switch i % 3 {
		case 0: // length says more than is sent
			b = binary.BigEndian.AppendUint16(nil, uint16(len(p)+1+rng.IntN(1000)))
			b = append(b, p...)
		case 1: // length says less than is sent
			b = binary.BigEndian.AppendUint16(nil, uint16(rng.IntN(len(p)+1)))
			b = append(b, p...)
		default: // no length at all
			b = p
		}
		if err := tcpSend(ctx, addr, b); err != nil {
			t.Fatalf("tcp stream %d: %v", i, err)
		}
	}
}

// tcpSend writes b on a new connection, half-closes it and drains the reply
// for at most a second (a server may keep a connection open while it waits
// for the rest of a message).
func tcpSend(ctx context.Context, addr string, b []byte) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	if _, err := c.Write(b); err != nil {
		return nil // the server may close on garbage before we finish
	}
	_ = c.(*net.TCPConn).CloseWrite()
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 4096)
	for {
		if _, err := c.Read(buf); err != nil {
			return nil
		}
	}
}

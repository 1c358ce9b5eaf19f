package overlay

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/peername/peername/identity"
)

// dropSessions makes tn forget every session, as after an idle timeout.
func dropSessions(tn *testNode) {
	for _, s := range tn.core.sess.sorted() {
		tn.core.sess.remove(s)
	}
}

// newSessionlessResolver builds three nodes, has node 1 (pub) publish
// name, and makes node 2 (r) forget its sessions.
func newSessionlessResolver(t *testing.T, name string) (*testNet, *testNode, *testNode, Completion) {
	t.Helper()
	n := newTestNet(t)
	n.build(3, nil)
	pub, r := n.nodes[1], n.nodes[2]
	c := n.wait(pub, pub.core.Publish(n.now, securedTemplate(t, pub, name)), time.Minute)
	if c.Err != nil {
		t.Fatalf("publish: %v", c.Err)
	}
	n.runFor(time.Second)
	dropSessions(r)
	return n, pub, r, c
}

// TestEarlyRequestOneRoundTrip: a Resolve that must handshake with every
// node it asks gets its answers one round trip after its HELLOs, not two:
// the request goes with the HELLO and is answered right after the
// HELLO_ACK. The responders then complete their side of the sessions.
func TestEarlyRequestOneRoundTrip(t *testing.T) {
	t.Parallel()
	n, pub, r, c := newSessionlessResolver(t, "early")
	var kinds []byte
	n.tap = func(from, _ netip.AddrPort, data []byte) {
		if from == r.addr {
			kinds = append(kinds, data[1])
		}
	}
	start := n.now
	got := n.wait(r, r.core.Resolve(n.now, c.Records[0].Key(), SearchOptions{}), time.Minute)
	if got.Err != nil || len(got.Records) != 1 || got.Records[0].Seq != c.Records[0].Seq {
		t.Fatalf("resolve: %v, %d records", got.Err, len(got.Records))
	}
	rtt := 2 * n.latency
	if el := n.now.Sub(start); el != rtt {
		t.Errorf("resolve over new sessions took %v, want one round trip (%v); sent %v", el, rtt, kinds)
	}
	if !bytes.Contains(kinds, []byte{ptHelloReq}) || bytes.Contains(kinds, []byte{ptHello}) {
		t.Errorf("packet types sent: %v, want HELLOs with requests only", kinds)
	}
	answered := n.nodes[0].core.Stats().EarlyAnswered + pub.core.Stats().EarlyAnswered
	if answered != 2 {
		t.Errorf("%d early requests answered, want 2", answered)
	}
	// The MODE message the resolver sends completes the responders' side.
	n.runFor(time.Second)
	for _, tn := range []*testNode{n.nodes[0], pub} {
		if len(tn.core.sess.halfOpen) != 0 || tn.core.sess.byPeer[r.core.ID()] == nil {
			t.Errorf("%s: %d half-open sessions, session to the resolver %v", tn, len(tn.core.sess.halfOpen), tn.core.sess.byPeer[r.core.ID()] != nil)
		}
	}
}

// earlyHello builds a HELLO of tn's with an early FIND_VALUE for key.
func earlyHello(tn *testNode, key [32]byte) []byte {
	s := &session{localIdx: 99, hs: &handshakeState{}}
	s.hs.early = appendMsg(nil, &msg{typ: mFindValue, reqID: 7, key: key})
	return tn.core.helloPacket(s)
}

// TestEarlyAnswerBudget: the answer to an early request from an unverified
// (perhaps spoofed) address is at most earlyAmplification times the HELLO,
// HELLO_ACK included, and the responder does not add the sender to its
// routing table before the sender proved its key.
func TestEarlyAnswerBudget(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	n.build(20, nil)
	pub := n.nodes[1]
	tmpl := securedTemplate(t, pub, "budget")
	for i := range 8 { // a record large enough that K contacts and it exceed the budget
		tmpl.Endpoints = append(tmpl.Endpoints, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)}))
		tmpl.TXT = append(tmpl.TXT, "padding for the budget test, padding for the budget test")
	}
	c := n.wait(pub, pub.core.Publish(n.now, tmpl), time.Minute)
	if c.Err != nil {
		t.Fatalf("publish: %v", c.Err)
	}
	n.runFor(time.Second)
	key := c.Records[0].Key()
	stranger := n.add(nil) // its certificate is valid; it never joined
	pkt := earlyHello(stranger, key)
	if _, err := decodeHeader(pkt); err != nil || len(pkt) != earlyHelloLen {
		t.Fatalf("early HELLO of %d bytes: %v", len(pkt), err)
	}
	spoofed := netip.MustParseAddrPort("192.0.2.7:53")
	pub.core.HandleDatagram(n.now, spoofed, pkt)
	sends, _ := pub.core.Outbox()
	sent, answers := 0, 0
	for _, x := range sends {
		if x.To == spoofed {
			sent += len(x.Data)
			if x.Data[1] == ptData {
				answers++
			}
		}
	}
	if answers != 1 || sent > earlyAmplification*len(pkt) || pub.core.Stats().EarlyAnswered != 1 {
		t.Fatalf("answered a %d-byte early HELLO with %d answers, %d bytes (budget %d)", len(pkt), answers, sent, earlyAmplification*len(pkt))
	}
	if pub.core.rt.contains(stranger.core.ID()) {
		t.Errorf("the sender of an early request entered the routing table before proving its key")
	}
}

// TestFitBudget: an answer over the budget loses its farthest contacts, never
// a record; one whose records alone do not fit is not sent.
func TestFitBudget(t *testing.T) {
	t.Parallel()
	c := &Core{}
	rec := bytes.Repeat([]byte{7}, 300)
	m := msg{typ: mValue, reqID: 1, records: [][]byte{rec}}
	for i := range 16 {
		m.contacts = append(m.contacts, contact{ID: [32]byte{byte(i)}, Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 1)})
	}
	full := appendMsg(nil, &m)
	for _, tc := range []struct {
		budget   int
		contacts int // -1: not sent
	}{
		{dataPrefix + len(full) + tagLen, 16},
		{dataPrefix + len(full) + tagLen - 1, 15},
		{600, 6},
		{dataPrefix + len(appendMsg(nil, &msg{typ: mValue, reqID: 1, records: m.records})) + tagLen, 0},
		{300, -1},
	} {
		c.replyBudget = tc.budget
		out := c.fitBudget(appendMsg(nil, &m), &m)
		if tc.contacts < 0 {
			if len(out) != 0 || c.st.EarlyTooLarge == 0 {
				t.Errorf("budget %d: sent %d bytes, want nothing", tc.budget, len(out))
			}
			continue
		}
		got, err := decodeMsg(out)
		if err != nil || len(got.records) != 1 || len(got.contacts) != tc.contacts || dataPrefix+len(out)+tagLen > tc.budget {
			t.Errorf("budget %d: %d bytes, %d records, %d contacts (want %d): %v", tc.budget, len(out), len(got.records), len(got.contacts), tc.contacts, err)
		}
	}
}

// TestEarlyRequestTampered: the HELLO_ACK covers the early request the
// responder saw, so an initiator whose request was altered on the way (a
// different key asked: an answer without the record would count as "not
// held") rejects the HELLO_ACK and the answer.
func TestEarlyRequestTampered(t *testing.T) {
	t.Parallel()
	n, pub, r, c := newSessionlessResolver(t, "tamper")
	r.core.Resolve(n.now, c.Records[0].Key(), SearchOptions{})
	sends, _ := r.core.Outbox()
	var hello []byte
	for _, x := range sends {
		if x.To == pub.addr && x.Data[1] == ptHelloReq {
			hello = bytes.Clone(x.Data)
		}
	}
	if hello == nil {
		t.Fatal("no early HELLO to the publisher")
	}
	hello[helloLen+2+1+8] ^= 0x80 // the first byte of the key asked
	before := r.core.Stats().DroppedAuth
	pub.core.HandleDatagram(n.now, r.addr, hello)
	answers, _ := pub.core.Outbox()
	if len(answers) < 2 {
		t.Fatalf("responder sent %d packets, want a HELLO_ACK and an answer", len(answers))
	}
	for _, x := range answers {
		r.core.HandleDatagram(n.now.Add(n.latency), pub.addr, x.Data)
	}
	if s := r.core.sess.byPeer[pub.core.ID()]; s == nil || s.state != sessInitSent || r.core.Stats().DroppedAuth < before+2 {
		t.Fatalf("initiator accepted a HELLO_ACK for an altered request (dropped %d)", r.core.Stats().DroppedAuth-before)
	}
}

// TestEarlyConfirmationRetransmitted: the DATA that completes the
// responder's side after an early request is retransmitted when lost, so
// the responder learns the initiator as it would have from a request that
// waited for the handshake.
func TestEarlyConfirmationRetransmitted(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	n.build(3, nil)
	r, resp := n.nodes[2], n.nodes[1]
	n.runFor(time.Second)
	dropSessions(r)
	resp.core.rt.remove(r.core.ID())
	for _, s := range resp.core.sess.sorted() {
		if s.peer == r.core.ID() {
			resp.core.sess.remove(s)
		}
	}
	lost := 0
	n.drop = func(from, _ netip.AddrPort, data []byte) bool {
		// The first DATA the resolver sends after its handshake with resp.
		if from == r.addr && data[1] == ptData && lost == 0 && r.core.sess.byPeer[resp.core.ID()] != nil &&
			r.core.sess.byPeer[resp.core.ID()].sendCtr == 1 && len(resp.core.sess.halfOpen) == 1 {
			lost++
			return true
		}
		return false
	}
	n.wait(r, r.core.Resolve(n.now, identity.Key{9}, SearchOptions{}), time.Minute)
	n.runFor(5 * time.Second)
	if lost != 1 {
		t.Fatalf("%d confirmations dropped, want 1", lost)
	}
	if len(resp.core.sess.halfOpen) != 0 || !resp.core.rt.contains(r.core.ID()) {
		t.Errorf("responder after a lost confirmation: %d half-open sessions, resolver in its table %v",
			len(resp.core.sess.halfOpen), resp.core.rt.contains(r.core.ID()))
	}
}

package overlay

import (
	"crypto/ed25519"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/records"
)

func BenchmarkEncodeNodes(b *testing.B) {
	m := msg{typ: mNodes, reqID: 42, contacts: sampleContacts(16)}
	buf := make([]byte, 0, 2048)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendMsg(buf[:0], &m)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkDecodeNodes(b *testing.B) {
	enc := appendMsg(nil, &msg{typ: mNodes, reqID: 42, contacts: sampleContacts(16)})
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeMsg(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// sessionPair returns two established cores with a session between them.
func sessionPair(b *testing.B) (*testNet, *testNode, *testNode) {
	n := newTestNet(b)
	x, y := n.add(nil), n.add(nil)
	op := y.core.Join(n.now, []netip.AddrPort{x.addr})
	n.wait(y, op, time.Minute)
	return n, x, y
}

// BenchmarkMessageAEAD is the per-message authentication cost of the scheme in
// use: seal on one side, replay check + open on the other, for a FIND_NODE.
func BenchmarkMessageAEAD(b *testing.B) {
	_, x, y := sessionPair(b)
	sx := x.core.sess.byPeer[y.core.ID()]
	sy := y.core.sess.byIdx[sx.remoteIdx]
	body := appendMsg(nil, &msg{typ: mFindNode, reqID: 7, key: identity.Key{1}})
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		pkt := sx.seal(x.core.hk.tag, body)
		if _, err := sy.open(pkt, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMessageEd25519 is the alternative: an Ed25519 signature made and
// verified on every message.
func BenchmarkMessageEd25519(b *testing.B) {
	id := testIdentity(3)
	pub := id.PublicKey()
	body := appendMsg(nil, &msg{typ: mFindNode, reqID: 7, key: identity.Key{1}})
	b.ReportAllocs()
	for b.Loop() {
		sig := id.Sign(body)
		if !ed25519.Verify(pub, body, sig) {
			b.Fatal("verify")
		}
	}
}

// BenchmarkHandshake is one full handshake, both sides: HELLO, HELLO_ACK and
// the confirming first DATA, with the certificate and static-DH memos warm
// (a re-handshake after an idle timeout): HKDF and AEAD only.
func BenchmarkHandshake(b *testing.B) { benchHandshake(b, memoWarm) }

// BenchmarkHandshakeSim is a first contact between two cores of one process
// (the simulator): 2 certificate verifications, 1 X25519 (the second end finds
// the shared secret in the memo).
func BenchmarkHandshakeSim(b *testing.B) { benchHandshake(b, memoPerIteration) }

// BenchmarkHandshakeCold is a first contact between two processes: 2
// certificate verifications and 2 X25519.
func BenchmarkHandshakeCold(b *testing.B) { benchHandshake(b, memoPerSide) }

const (
	memoWarm = iota
	memoPerIteration
	memoPerSide
)

func clearMemos() {
	verifiedCerts.mu.Lock()
	clear(verifiedCerts.m)
	verifiedCerts.mu.Unlock()
	sharedSecrets.mu.Lock()
	clear(sharedSecrets.m)
	sharedSecrets.mu.Unlock()
}

func benchHandshake(b *testing.B, memo int) {
	n, x, y := sessionPair(b)
	body := appendMsg(nil, &msg{typ: mPing, reqID: 1})
	now := n.now.UnixNano()
	b.ReportAllocs()
	for b.Loop() {
		if memo != memoWarm {
			clearMemos()
		}
		clear(x.core.sess.byIdx)
		clear(x.core.sess.byPeer)
		clear(y.core.sess.byIdx)
		clear(y.core.sess.byPeer)
		clear(y.core.sess.halfOpen)
		x.core.transmit(now, y.core.ID(), true, y.addr, body)
		hello, _ := x.core.Outbox()
		y.core.HandleDatagram(n.now, x.addr, hello[0].Data)
		ack, _ := y.core.Outbox()
		if memo == memoPerSide {
			clearMemos()
		}
		x.core.HandleDatagram(n.now, y.addr, ack[0].Data)
		data, _ := x.core.Outbox()
		y.core.HandleDatagram(n.now, x.addr, data[0].Data)
		y.core.Outbox()
		if y.core.sess.byPeer[x.core.ID()] == nil {
			b.Fatal("no session")
		}
	}
}

// BenchmarkLookup measures a whole Resolve in a 128-node in-memory network:
// CPU of every node involved per lookup, with hops and messages per lookup.
func BenchmarkLookup(b *testing.B) {
	n := newTestNet(b)
	n.build(128, nil)
	pub := n.nodes[7]
	tmpl := &records.Record{}
	name, _ := identity.NewSecuredName("bench", pub.ident.PublicKey())
	tmpl.Name = name
	key := n.wait(pub, pub.core.Publish(n.now, tmpl), time.Minute).Records[0].Key()
	n.runFor(time.Minute)
	var hops, msgs, asked int
	i := 0
	b.ResetTimer()
	for b.Loop() {
		tn := n.nodes[(i*37)%len(n.nodes)]
		i++
		before := tn.core.st.MsgsSent
		c := n.wait(tn, tn.core.Resolve(n.now, key, SearchOptions{}), time.Minute)
		if c.Err != nil {
			b.Fatal(c.Err)
		}
		hops += c.Path.Hops
		asked += c.Path.Asked
		msgs += int(tn.core.st.MsgsSent - before)
	}
	b.ReportMetric(float64(hops)/float64(i), "hops/op")
	b.ReportMetric(float64(asked)/float64(i), "asked/op")
	b.ReportMetric(float64(msgs)/float64(i), "sent/op")
}

// BenchmarkNodeMemory reports the heap held per node in a joined 256-node
// network (routing table, sessions, stored records), each node publishing one name.
func BenchmarkNodeMemory(b *testing.B) {
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		n := newTestNet(b)
		n.build(256, nil)
		for _, tn := range n.nodes {
			name, _ := identity.NewSecuredName("mem", tn.ident.PublicKey())
			n.wait(tn, tn.core.Publish(n.now, &records.Record{Name: name, Endpoints: []netip.Addr{tn.addr.Addr()}}), time.Minute)
		}
		n.runFor(time.Minute)
		n.inq = nil
		runtime.GC()
		runtime.ReadMemStats(&after)
		var sessions, table int
		for _, tn := range n.nodes {
			st := tn.core.Stats()
			sessions += st.Sessions
			table += st.RoutingTableSize
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(len(n.nodes)), "heapB/node")
		b.ReportMetric(float64(sessions)/float64(len(n.nodes)), "sessions/node")
		b.ReportMetric(float64(table)/float64(len(n.nodes)), "contacts/node")
		if path := os.Getenv("PEERNAME_HEAP_PROFILE"); path != "" {
			if f, err := os.Create(path); err == nil {
				_ = pprof.WriteHeapProfile(f)
				f.Close()
			}
		}
		runtime.KeepAlive(n)
	}
}

// BenchmarkLookupStep is one step of an iterative lookup: a NODES answer with
// 16 contacts arrives for a request in flight (merged into the candidates in
// distance order) and the next requests go out (to peers without sessions:
// HELLOs carrying the requests, early.go).
func BenchmarkLookupStep(b *testing.B) {
	n := newTestNet(b)
	x := n.add(nil)
	now := n.now.UnixNano()
	var target identity.Key
	contacts := sampleContacts(16)
	peer := identity.Key{0xee}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		target[0], target[1] = byte(i), byte(i>>8)
		op := &operation{id: OpID(i + 1), kind: opResolve, target: target, deadline: now + int64(time.Minute), maxHops: 16}
		x.core.ops[op.id] = op
		op.foundRef, op.keysRef = -1, -1
		op.addCandidate(contact{ID: peer, Addr: contacts[0].Addr}, 1, -1, x.core.id, nil, 0)
		op.all[0].state = cInflight
		op.inflight = 1
		req := &request{id: 1, peer: peer, hasID: true, op: op, cand: 0, kind: reqLookup, expect: mNodes}
		x.core.opResponse(now, req, peer, &msg{typ: mNodes, reqID: 1, contacts: contacts})
		if op.inflight != x.core.cfg.Alpha {
			b.Fatalf("%d requests in flight after the step", op.inflight)
		}
		// reset what the step created
		delete(x.core.ops, op.id)
		clear(x.core.pending)
		x.core.timers = x.core.timers[:0]
		clear(x.core.sess.byIdx)
		clear(x.core.sess.byPeer)
		x.core.sess.lruHead, x.core.sess.lruTail = nil, nil
		x.core.Outbox()
	}
}

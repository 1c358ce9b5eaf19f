package overlay

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// FuzzDecodeMsg: the inner message decoder never panics and accepts only
// canonical encodings (decode then encode gives the input back).
func FuzzDecodeMsg(f *testing.F) {
	for _, m := range sampleMsgs() {
		f.Add(appendMsg(nil, &m))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMsg(b)
		m2, err2 := decodeMsgInto(b, make([]contact, 0, maxContactsPerMessage))
		if (err == nil) != (err2 == nil) {
			t.Fatalf("decodeMsg and decodeMsgInto disagree: %v vs %v", err, err2)
		}
		if err != nil {
			return
		}
		if re2 := appendMsg(nil, &m2); !bytes.Equal(re2, b) {
			t.Fatalf("decodeMsgInto result differs")
		}
		if re := appendMsg(nil, &m); !bytes.Equal(re, b) {
			t.Fatalf("non-canonical input accepted:\n in %x\nout %x", b, re)
		}
	})
}

// FuzzDecodePacket: the datagram header decoder and the handshake parser never
// panic, and whatever decodeHeader accepts has the exact length of its type.
func FuzzDecodePacket(f *testing.F) {
	var tag cloudTag
	f.Add(append(appendHeader(nil, ptHello, tag), make([]byte, helloLen-headerLen)...))
	f.Add(append(appendHeader(nil, ptHelloAck, tag), make([]byte, helloAckLn-headerLen)...))
	f.Add(append(appendHeader(nil, ptNoSession, tag), 1, 2, 3, 4))
	f.Add(append(appendHeader(nil, ptProbe, tag), make([]byte, probeLen-headerLen)...))
	f.Add(appendEarlyHello(append(appendHeader(nil, ptHello, tag), make([]byte, helloLen-headerLen)...), []byte{mFindValue}))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHeader(b)
		if err != nil {
			return
		}
		switch h.typ {
		case ptHello, ptHelloAck, ptHelloReq:
			hl := parseHello(b, h.typ)
			if h.typ == ptHello && len(b) != helloLen || h.typ == ptHelloAck && len(b) != helloAckLn ||
				h.typ == ptHelloReq && len(b) != earlyHelloLen {
				t.Fatalf("accepted hello of %d bytes", len(b))
			}
			_ = hl.cert()
			if e := earlyRequest(b); h.typ == ptHelloReq && (len(e) == 0 || len(e) > earlyMax) || h.typ != ptHelloReq && e != nil {
				t.Fatalf("early request of %d bytes in a type %d hello", len(e), h.typ)
			}
		case ptData:
			if len(b) < dataPrefix+tagLen+1 {
				t.Fatalf("accepted data of %d bytes", len(b))
			}
		}
	})
}

var (
	fuzzCoreOnce sync.Once
	fuzzCoreMu   sync.Mutex
	fuzzCore     *Core
)

// FuzzCoreDatagram feeds arbitrary datagrams to a live core: it must never panic,
// never answer with more bytes than it received from an unauthenticated source,
// and keep its bounds.
func FuzzCoreDatagram(f *testing.F) {
	f.Add([]byte{1, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzCoreMu.Lock()
		defer fuzzCoreMu.Unlock()
		fuzzCoreOnce.Do(func() {
			c, err := NewCore(Config{Identity: testIdentity(1), Seed: 1, PuzzleBits: testPuzzleBits})
			if err != nil {
				panic(err)
			}
			fuzzCore = c
		})
		c := fuzzCore
		// Use the core's real cloud tag so that fuzzing reaches past the header.
		in := bytes.Clone(b)
		if len(in) >= headerLen {
			copy(in[2:headerLen], c.hk.tag[:])
		}
		c.HandleDatagram(epoch, netip.MustParseAddrPort("192.0.2.9:4000"), in)
		sends, _ := c.Outbox()
		// An early request may be answered (earlyAmplification), the rest
		// never with a larger datagram.
		total := 0
		for _, s := range sends {
			total += len(s.Data)
			if len(s.Data) > len(in) && (len(in) < 2 || in[1] != ptHelloReq) {
				t.Fatalf("answered %d bytes with %d", len(in), len(s.Data))
			}
		}
		if total > earlyAmplification*len(in) {
			t.Fatalf("answered %d bytes with %d in all", len(in), total)
		}
		c.HandleTimer(epoch.Add(time.Hour))
		c.Outbox()
		if st := c.Stats(); st.Sessions > st.MaxSessions || st.PendingRequests > st.MaxPending {
			t.Fatalf("bounds: %+v", st)
		}
	})
}

// TestFuzzCorpusHellosValid: the checked-in HELLO seeds of FuzzCoreDatagram
// are still packets the fuzzed core accepts (a layout change must regenerate
// them: PEERNAME_WRITE_CORPUS=1 go test -run TestWriteFuzzCorpus), so the
// fuzzer starts from inside the handshake, not from its length check.
func TestFuzzCorpusHellosValid(t *testing.T) {
	t.Parallel()
	c, err := NewCore(Config{Identity: testIdentity(1), Seed: 1, PuzzleBits: testPuzzleBits})
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzCoreDatagram", "type1-*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no HELLO seeds: %v", err)
	}
	acked := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		body, ok := strings.CutPrefix(string(raw), "go test fuzz v1\n[]byte(")
		body, ok2 := strings.CutSuffix(strings.TrimSpace(body), ")")
		if !ok || !ok2 {
			t.Fatalf("%s: not a []byte seed", f)
		}
		s, err := strconv.Unquote(body)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		in := []byte(s)
		if _, err := decodeHeader(in); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		copy(in[2:headerLen], c.hk.tag[:])
		c.HandleDatagram(epoch, netip.MustParseAddrPort("192.0.2.9:4000"), in)
		sends, _ := c.Outbox()
		if len(sends) == 1 && sends[0].Data[1] == ptHelloAck {
			acked++
		}
	}
	if st := c.Stats(); acked == 0 || st.DroppedPuzzle != 0 {
		t.Fatalf("%d of %d HELLO seeds answered, %d refused for their puzzle", acked, len(files), st.DroppedPuzzle)
	}
}

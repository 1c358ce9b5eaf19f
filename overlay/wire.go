package overlay

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/peername/peername/identity"
)

// Wire format (all integers big-endian; docs/protocol.md has the tables).
//
// Every datagram starts with a 10-byte header: version (1), packet type (1) and
// the cloud tag (8 bytes: the first 8 bytes of SHA-256("peername-cloud-v1\x00"||cloud)).
const (
	wireVersion = 1
	headerLen   = 10
	cloudTagLen = 8

	ptHello     = 1 // handshake initiation
	ptHelloAck  = 2 // handshake response
	ptData      = 3 // AEAD-protected message
	ptNoSession = 4 // "I have no session with that index" hint
	ptHelloReq  = 6 // handshake initiation carrying a lookup request (earlyRequest)

	nonceLen   = 16
	tagLen     = 16
	certLen    = 32 + 32 + 64 + puzzleNonceLen // ed25519 pub, x25519 pub, signature, puzzle nonce
	helloLen   = headerLen + 4 + certLen + nonceLen + helloPad
	helloPad   = 20
	helloAckLn = headerLen + 4 + 4 + certLen + nonceLen + tagLen
	dataPrefix = headerLen + 4 + 8
	// earlyHelloLen is the fixed length of a HELLO carrying an early
	// request: the HELLO, a 2-byte length, the request, zero padding. The
	// padding buys the answer's budget (earlyBudget): the responder sends
	// back at most earlyAmplification times what it received before the
	// initiator proved its address, so the HELLO is padded to make room for
	// a whole FIND_VALUE answer of K contacts and a record.
	earlyHelloLen = 420
	earlyMax      = earlyHelloLen - helloLen - 2
	noSessLen     = headerLen + 4
)

// The initiation is padded so that it is exactly as long as the response: a
// spoofed initiation cannot make a node send more bytes than it received.
var _ = [1]struct{}{}[helloLen-helloAckLn]

// Message types carried inside DATA packets.
const (
	mPing      = 0x10
	mPong      = 0x11
	mFindNode  = 0x12
	mNodes     = 0x13
	mFindValue = 0x14
	mValue     = 0x15
	mStore     = 0x16
	mStoreAck  = 0x17
	mNearest   = 0x18
	mRange     = 0x19
	mKeys      = 0x1a
	mLeave     = 0x1b
)

// Store acknowledgement statuses.
const (
	storeOK       = 0
	storeInvalid  = 1 // failed decoding or records.Verify, or key mismatch
	storeStale    = 2 // an equal or newer record is held
	storeFull     = 3 // a bound was hit
	storeMaxValue = storeFull
)

type cloudTag [cloudTagLen]byte

func cloudHash(cloud string) [32]byte {
	h := sha256.New()
	h.Write([]byte("peername-cloud-v1\x00"))
	h.Write([]byte(cloud))
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// header is the decoded fixed header of a datagram.
type header struct {
	typ   byte
	cloud cloudTag
}

func appendHeader(b []byte, typ byte, ct cloudTag) []byte {
	b = append(b, wireVersion, typ)
	return append(b, ct[:]...)
}

// decodeHeader validates a datagram's header and its length for its type.
func decodeHeader(b []byte) (header, error) {
	var h header
	if len(b) < headerLen {
		return h, fmt.Errorf("datagram of %d bytes: %w", len(b), ErrMalformed)
	}
	if b[0] != wireVersion {
		return h, fmt.Errorf("version %d: %w", b[0], ErrVersion)
	}
	h.typ = b[1]
	copy(h.cloud[:], b[2:headerLen])
	switch h.typ {
	case ptHello:
		if len(b) != helloLen {
			return h, fmt.Errorf("hello of %d bytes: %w", len(b), ErrMalformed)
		}
		for _, x := range b[helloLen-helloPad:] {
			if x != 0 {
				return h, fmt.Errorf("hello padding not zero: %w", ErrMalformed)
			}
		}
	case ptHelloReq:
		if len(b) != earlyHelloLen {
			return h, fmt.Errorf("hello with request of %d bytes: %w", len(b), ErrMalformed)
		}
		n := int(binary.BigEndian.Uint16(b[helloLen:]))
		if n == 0 || n > earlyMax {
			return h, fmt.Errorf("early request of %d bytes: %w", n, ErrMalformed)
		}
		for _, x := range b[helloLen-helloPad : helloLen] {
			if x != 0 {
				return h, fmt.Errorf("hello padding not zero: %w", ErrMalformed)
			}
		}
		for _, x := range b[helloLen+2+n:] {
			if x != 0 {
				return h, fmt.Errorf("early request padding not zero: %w", ErrMalformed)
			}
		}
	case ptHelloAck:
		if len(b) != helloAckLn {
			return h, fmt.Errorf("hello-ack of %d bytes: %w", len(b), ErrMalformed)
		}
	case ptData:
		if len(b) < dataPrefix+tagLen+1 {
			return h, fmt.Errorf("data of %d bytes: %w", len(b), ErrMalformed)
		}
	case ptNoSession:
		if len(b) != noSessLen {
			return h, fmt.Errorf("no-session of %d bytes: %w", len(b), ErrMalformed)
		}
	case ptProbe:
		if len(b) != probeLen {
			return h, fmt.Errorf("probe of %d bytes: %w", len(b), ErrMalformed)
		}
	default:
		return h, fmt.Errorf("packet type %d: %w", h.typ, ErrMalformed)
	}
	return h, nil
}

// hello is a decoded handshake initiation or response.
type hello struct {
	senderIdx uint32
	recvIdx   uint32 // response only
	edPub     [32]byte
	xPub      [32]byte
	sig       [64]byte
	puzzle    uint64 // the certificate's identity puzzle nonce (puzzle.go)
	nonce     [nonceLen]byte
	tag       [tagLen]byte // response only
}

func (h *hello) cert() []byte {
	b := make([]byte, 0, certLen)
	b = append(b, h.edPub[:]...)
	b = append(b, h.xPub[:]...)
	b = append(b, h.sig[:]...)
	return binary.BigEndian.AppendUint64(b, h.puzzle)
}

// earlyRequest returns the request carried by a HELLO that decodeHeader
// accepted as ptHelloReq (a sub-slice of b), or nil for any other HELLO.
func earlyRequest(b []byte) []byte {
	if b[1] != ptHelloReq {
		return nil
	}
	n := int(binary.BigEndian.Uint16(b[helloLen:]))
	return b[helloLen+2 : helloLen+2+n]
}

// appendEarlyHello appends to hello (a ptHello packet) the early request
// body and the padding, and makes it a ptHelloReq packet.
func appendEarlyHello(hello, body []byte) []byte {
	pkt := make([]byte, 0, earlyHelloLen)
	pkt = append(pkt, hello...)
	pkt[1] = ptHelloReq
	pkt = binary.BigEndian.AppendUint16(pkt, uint16(len(body)))
	pkt = append(pkt, body...)
	return append(pkt, make([]byte, earlyHelloLen-len(pkt))...)
}

// parseHello decodes a datagram whose header decodeHeader accepted as
// ptHello, ptHelloReq (its HELLO part) or ptHelloAck.
func parseHello(b []byte, typ byte) hello {
	var h hello
	p := headerLen
	h.senderIdx = binary.BigEndian.Uint32(b[p:])
	p += 4
	if typ == ptHelloAck {
		h.recvIdx = binary.BigEndian.Uint32(b[p:])
		p += 4
	}
	p += copy(h.edPub[:], b[p:])
	p += copy(h.xPub[:], b[p:])
	p += copy(h.sig[:], b[p:])
	h.puzzle = binary.BigEndian.Uint64(b[p:])
	p += puzzleNonceLen
	p += copy(h.nonce[:], b[p:])
	if typ == ptHelloAck {
		copy(h.tag[:], b[p:])
	}
	return h
}

// contact is a node reference as carried in NODES, VALUE and KEYS messages.
type contact struct {
	ID   identity.Key
	Addr netip.AddrPort
}

// msg is a decoded inner message. Which fields are set depends on typ.
type msg struct {
	typ      byte
	reqID    uint64
	key      identity.Key // FIND_NODE target, FIND_VALUE/NEAREST key, RANGE min, STORE key
	key2     identity.Key // RANGE max
	n        int          // NEAREST count, RANGE limit, STORE_ACK status
	more     bool         // KEYS: the responder had more keys than it sent
	addr     netip.AddrPort
	addr2    netip.AddrPort // DIAL_ACK: the dialer's address
	contacts []contact
	records  [][]byte // VALUE records, STORE record (one)
	keys     []identity.Key
}

func appendAddr(b []byte, a netip.AddrPort) []byte {
	ip := a.Addr()
	if ip.Is4() {
		b = append(b, 4)
		v := ip.As4()
		b = append(b, v[:]...)
	} else {
		b = append(b, 6)
		v := ip.As16()
		b = append(b, v[:]...)
	}
	return binary.BigEndian.AppendUint16(b, a.Port())
}

// validWireAddr reports whether a can be put in a contact: a unicast address
// with a port, no zone, IPv4 not mapped into IPv6.
func validWireAddr(a netip.AddrPort) bool {
	ip := a.Addr()
	return ip.IsValid() && a.Port() != 0 && ip.Zone() == "" && !ip.Is4In6() &&
		!ip.IsUnspecified() && !ip.IsMulticast()
}

// appendMsg encodes m. It does not check bounds: callers build messages within them.
func appendMsg(b []byte, m *msg) []byte {
	b = append(b, m.typ)
	if m.typ == mLeave {
		return b
	}
	b = binary.BigEndian.AppendUint64(b, m.reqID)
	switch m.typ {
	case mPing:
	case mPong:
		b = appendAddr(b, m.addr)
	case mFindNode, mFindValue:
		b = append(b, m.key[:]...)
	case mNearest:
		b = append(b, m.key[:]...)
		b = append(b, byte(m.n))
	case mRange:
		b = append(b, m.key[:]...)
		b = append(b, m.key2[:]...)
		b = append(b, byte(m.n))
	case mStore:
		b = append(b, m.key[:]...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(m.records[0])))
		b = append(b, m.records[0]...)
	case mStoreAck:
		b = append(b, byte(m.n))
	case mMode:
		b = append(b, byte(m.n))
	case mDialReq:
		b = append(b, m.key[:]...)
	case mDial:
		b = appendAddr(b, m.addr)
		b = append(b, m.key[:]...)
	case mDialAck:
		b = append(b, byte(m.n))
		b = appendAddr(b, m.addr)
		if m.n == dialDispatched {
			b = appendAddr(b, m.addr2)
		}
	case mNodes:
		b = appendContacts(b, m.contacts)
	case mValue:
		b = append(b, byte(len(m.records)))
		for _, r := range m.records {
			b = binary.BigEndian.AppendUint16(b, uint16(len(r)))
			b = append(b, r...)
		}
		b = appendContacts(b, m.contacts)
	case mKeys:
		b = append(b, byte(len(m.keys)))
		for _, k := range m.keys {
			b = append(b, k[:]...)
		}
		if m.more {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
		b = appendContacts(b, m.contacts)
	}
	return b
}

func appendContacts(b []byte, cs []contact) []byte {
	b = append(b, byte(len(cs)))
	for i := range cs {
		b = append(b, cs[i].ID[:]...)
		b = appendAddr(b, cs[i].Addr)
	}
	return b
}

// reader is a bounds-checked cursor; the first failure sticks.
type reader struct {
	b    []byte
	err  error
	cbuf []contact // optional storage for decoded contacts
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("truncated or invalid %s: %w", what, ErrMalformed)
	}
}

func (r *reader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.fail(what)
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8(what string) byte {
	v := r.take(1, what)
	if v == nil {
		return 0
	}
	return v[0]
}

func (r *reader) u16(what string) uint16 {
	v := r.take(2, what)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint16(v)
}

func (r *reader) u64(what string) uint64 {
	v := r.take(8, what)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func (r *reader) key(what string) identity.Key {
	var k identity.Key
	if v := r.take(32, what); v != nil {
		copy(k[:], v)
	}
	return k
}

func (r *reader) addr(what string) netip.AddrPort {
	var ip netip.Addr
	switch r.u8(what) {
	case 4:
		if v := r.take(4, what); v != nil {
			ip = netip.AddrFrom4([4]byte(v))
		}
	case 6:
		if v := r.take(16, what); v != nil {
			ip = netip.AddrFrom16([16]byte(v))
		}
	default:
		r.fail(what + " family")
		return netip.AddrPort{}
	}
	a := netip.AddrPortFrom(ip, r.u16(what))
	if r.err == nil && !validWireAddr(a) {
		r.fail(what)
	}
	return a
}

func (r *reader) contacts() []contact {
	n := int(r.u8("contact count"))
	if n > maxContactsPerMessage {
		r.fail("contact count")
		return nil
	}
	if n == 0 || r.err != nil {
		return nil
	}
	var cs []contact
	if cap(r.cbuf) >= n {
		cs = r.cbuf[:n]
	} else {
		cs = make([]contact, n)
	}
	for i := range cs {
		cs[i].ID = r.key("contact id")
		cs[i].Addr = r.addr("contact address")
	}
	return cs
}

// decodeMsg strictly decodes a DATA plaintext: every field in range, no
// trailing bytes. Record bytes are returned as sub-slices of b (not decoded).
func decodeMsg(b []byte) (msg, error) { return decodeMsgInto(b, nil) }

// decodeMsgInto is decodeMsg decoding contacts into cbuf when it is large
// enough (the caller must not keep m.contacts past cbuf's reuse).
func decodeMsgInto(b []byte, cbuf []contact) (msg, error) {
	r := reader{b: b, cbuf: cbuf}
	var m msg
	m.typ = r.u8("message type")
	if m.typ == mLeave {
		if len(r.b) != 0 {
			return m, fmt.Errorf("trailing bytes after leave: %w", ErrMalformed)
		}
		return m, r.err
	}
	m.reqID = r.u64("request id")
	switch m.typ {
	case mPing:
	case mPong:
		m.addr = r.addr("observed address")
	case mFindNode, mFindValue:
		m.key = r.key("target")
	case mNearest:
		m.key = r.key("target")
		m.n = int(r.u8("count"))
		if m.n == 0 || m.n > maxKeysPerMessage {
			r.fail("count")
		}
	case mRange:
		m.key = r.key("range min")
		m.key2 = r.key("range max")
		m.n = int(r.u8("limit"))
		if m.n == 0 || m.n > maxKeysPerMessage || compareKeys(m.key, m.key2) > 0 {
			r.fail("range")
		}
	case mStore:
		m.key = r.key("store key")
		n := int(r.u16("record length"))
		if n == 0 {
			r.fail("record length")
		}
		if rec := r.take(n, "record"); rec != nil {
			m.records = [][]byte{rec}
		}
	case mStoreAck:
		m.n = int(r.u8("status"))
		if m.n > storeMaxValue {
			r.fail("status")
		}
	case mMode:
		m.n = int(r.u8("mode flags"))
		if m.n&^modeFlagClient != 0 {
			r.fail("mode flags")
		}
	case mDialReq:
		m.key = r.key("dial token")
	case mDial:
		m.addr = r.addr("dial address")
		m.key = r.key("dial token")
	case mDialAck:
		m.n = int(r.u8("dial status"))
		if m.n > dialMaxStatus {
			r.fail("dial status")
		}
		m.addr = r.addr("observed address")
		if m.n == dialDispatched {
			m.addr2 = r.addr("dialer address")
		}
	case mNodes:
		m.contacts = r.contacts()
	case mValue:
		n := int(r.u8("record count"))
		if n > maxRecordsPerMessage {
			r.fail("record count")
		}
		for i := 0; i < n && r.err == nil; i++ {
			l := int(r.u16("record length"))
			if l == 0 {
				r.fail("record length")
			}
			if rec := r.take(l, "record"); rec != nil {
				m.records = append(m.records, rec)
			}
		}
		m.contacts = r.contacts()
	case mKeys:
		n := int(r.u8("key count"))
		if n > maxKeysPerMessage {
			r.fail("key count")
		}
		if n > 0 && r.err == nil {
			m.keys = make([]identity.Key, 0, n)
			for i := 0; i < n && r.err == nil; i++ {
				m.keys = append(m.keys, r.key("key"))
			}
		}
		switch r.u8("more flag") {
		case 0:
		case 1:
			m.more = true
		default:
			r.fail("more flag")
		}
		m.contacts = r.contacts()
	default:
		return m, fmt.Errorf("message type %#x: %w", m.typ, ErrMalformed)
	}
	if r.err != nil {
		return msg{}, r.err
	}
	if len(r.b) != 0 {
		return msg{}, fmt.Errorf("%d trailing bytes: %w", len(r.b), ErrMalformed)
	}
	return m, nil
}

// compareKeys orders keys as 256-bit big-endian unsigned integers.
func compareKeys(a, b identity.Key) int {
	for i := range a {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// closer reports whether a is strictly closer to t than b in XOR distance.
func closer(a, b, t identity.Key) bool { return identity.Closer(a, b, t) }

// commonPrefixLen returns the number of leading bits a and b share (256 if equal).
func commonPrefixLen(a, b identity.Key) int {
	for i := range a {
		if x := a[i] ^ b[i]; x != 0 {
			n := 0
			for x&0x80 == 0 {
				x <<= 1
				n++
			}
			return i*8 + n
		}
	}
	return 256
}

package overlay

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/peername/peername/identity"
)

// Sessions.
//
// Each node derives a static X25519 key from its Ed25519 identity (HKDF over the
// private seed) and signs it once, bound to the cloud: its certificate is
// (ed25519 pub, x25519 pub, signature, puzzle nonce). The puzzle nonce
// (puzzle.go) is not signed: it is bound to the ed25519 key by its hash, so
// whoever swaps it for another valid one gains nothing, and an invalid one
// only makes the certificate fail. A handshake is one round trip:
//
//	HELLO     i -> r: sender index, certificate, 16-byte nonce, zero padding
//	HELLO_ACK r -> i: sender index, receiver index, certificate, nonce, confirmation tag
//
// Both sides verify the other's certificate (so the peer's node ID is
// NodeIDOf(its ed25519 key), and its puzzle meets the receiver's
// PuzzleBits), compute X25519(static, static) and derive two
// ChaCha20-Poly1305 keys, one per direction, with HKDF-SHA256 salted with the
// full cloud hash over both IDs, both nonces and both indices. The responder
// proves key possession with the tag; the initiator with its first DATA. Every
// DATA packet carries the receiver's session index and a counter that is the
// AEAD nonce and is checked against a 64-entry replay window. A session is
// bound to the address the handshake ran with: packets from elsewhere are dropped
// and replies always go to that address, so nobody can redirect answers.

const (
	sessInitSent    = 1 // initiator: HELLO sent, waiting for HELLO_ACK
	sessHalfOpen    = 2 // responder: HELLO_ACK sent, waiting for the first DATA
	sessEstablished = 3
)

type session struct {
	localIdx  uint32
	remoteIdx uint32
	state     uint8
	hasPeer   bool // peer ID known (always, except for an initiation to a bare seed address)
	peer      identity.Key
	addr      netip.AddrPort
	send      cipher.AEAD
	recv      cipher.AEAD
	sendCtr   uint64
	recvMax   uint64
	recvWin   uint64
	lastUsed  int64
	lastRecv  int64
	// peerClient: the peer said (MODE) it runs as a client (reach.go).
	peerClient bool
	hs         *handshakeState // nil once established
	lruPrev    *session        // least-recently-used order (sessionTable.lru*)
	lruNext    *session
}

// handshakeState is what a session needs only until it is established.
type handshakeState struct {
	nonce [nonceLen]byte // our nonce (initiator)
	queue [][]byte       // plaintexts waiting for the handshake (initiator)
	early []byte         // the request sent with the HELLO (initiator; early.go)
	ack   []byte         // the HELLO_ACK we sent (responder), resent on a duplicate HELLO
	hello []byte         // the HELLO it answers (responder)
}

// handshakeKeys holds a core's long-term handshake material.
type handshakeKeys struct {
	xPriv      *ecdh.PrivateKey
	cert       [certLen]byte
	cloudHash  [32]byte
	tag        cloudTag
	puzzleBits int    // the difficulty a peer's certificate must meet (<= 0: none)
	puzzleDrop uint64 // certificates refused for their puzzle (Stats.DroppedPuzzle)
}

func certMessage(cloudHash [32]byte, xPub []byte) []byte {
	b := make([]byte, 0, 32+32+32)
	b = append(b, "peername-overlay-cert-v1\x00"...)
	b = append(b, cloudHash[:]...)
	return append(b, xPub...)
}

// newHandshakeKeys builds the handshake material of a core whose cfg has
// had its defaults applied. It solves the identity puzzle unless
// cfg.PuzzleNonce already solves it (deterministic CPU work, no I/O).
func newHandshakeKeys(cfg *Config) (*handshakeKeys, error) {
	id := cfg.Identity
	hk := &handshakeKeys{cloudHash: cloudHash(cfg.Cloud), puzzleBits: cfg.PuzzleBits}
	copy(hk.tag[:], hk.cloudHash[:cloudTagLen])
	priv := id.PrivateKey()
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("identity private key of %d bytes: %w", len(priv), ErrNoIdentity)
	}
	seed, err := hkdf.Key(sha256.New, priv.Seed(), nil, "peername-overlay-x25519-v1", 32)
	if err != nil {
		return nil, fmt.Errorf("derive x25519 key: %w", err)
	}
	hk.xPriv, err = ecdh.X25519().NewPrivateKey(seed)
	if err != nil {
		return nil, fmt.Errorf("x25519 key: %w", err)
	}
	xPub := hk.xPriv.PublicKey().Bytes()
	sig := id.Sign(certMessage(hk.cloudHash, xPub))
	nonce, _, err := PuzzleSolution(context.Background(), id.PublicKey(), cfg.PuzzleNonce, cfg.PuzzleBits)
	if err != nil {
		return nil, err
	}
	copy(hk.cert[:32], id.PublicKey())
	copy(hk.cert[32:64], xPub)
	copy(hk.cert[64:128], sig)
	binary.BigEndian.PutUint64(hk.cert[128:], nonce)
	return hk, nil
}

// verifyCert checks a peer's certificate and returns its node ID. The
// puzzle, one hash, is checked first, so an unsolved certificate costs no
// signature verification; it is checked every time, outside the memo, since
// the difficulty is the receiver's.
func (hk *handshakeKeys) verifyCert(h *hello) (identity.Key, error) {
	if !checkPuzzle(h.edPub[:], h.puzzle, hk.puzzleBits) {
		hk.puzzleDrop++
		return identity.Key{}, fmt.Errorf("handshake certificate puzzle below %d bits: %w", hk.puzzleBits, ErrPuzzle)
	}
	digest := sha256.New()
	digest.Write(hk.cloudHash[:])
	digest.Write(h.edPub[:])
	digest.Write(h.xPub[:])
	digest.Write(h.sig[:])
	var memo [32]byte
	digest.Sum(memo[:0])
	if id, ok := verifiedCerts.get(memo); ok {
		return id, nil
	}
	if !ed25519.Verify(ed25519.PublicKey(h.edPub[:]), certMessage(hk.cloudHash, h.xPub[:]), h.sig[:]) {
		return identity.Key{}, fmt.Errorf("handshake certificate signature: %w", errAuth)
	}
	id := identity.NodeIDOf(ed25519.PublicKey(h.edPub[:]))
	verifiedCerts.put(memo, id)
	return id, nil
}

// certMemo remembers certificates that verified. A certificate is a constant of
// its node (cloud, keys and signature never change), so a process hosting many
// cores (the simulator, or one peer talking to many) verifies each one once
// instead of once per peer pair. Only exact (cloud, certificate) matches, by
// SHA-256, are remembered, and only successes: the result is the same as
// verifying, so it does not affect determinism. Bounded: cleared when full.
type certMemo struct {
	mu sync.Mutex
	m  map[[32]byte]identity.Key
}

const maxCertMemo = 1 << 18

var verifiedCerts certMemo

func (c *certMemo) get(k [32]byte) (identity.Key, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.m[k]
	return id, ok
}

func (c *certMemo) put(k [32]byte, id identity.Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCertMemo {
		c.m = make(map[[32]byte]identity.Key)
	}
	c.m[k] = id
}

var errAuth = fmt.Errorf("authentication failed: %w", ErrMalformed)

// deriveKeys computes the two direction keys of a session and returns
// (initiator->responder, responder->initiator) AEADs.
func (hk *handshakeKeys) deriveKeys(peerX []byte, initID, respID identity.Key, nonceI, nonceR []byte, idxI, idxR uint32) (cipher.AEAD, cipher.AEAD, error) {
	shared, err := hk.staticShared(peerX)
	if err != nil {
		return nil, nil, err
	}
	info := make([]byte, 0, 28+32+32+2*nonceLen+8)
	info = append(info, "peername-overlay-session-v1\x00"...)
	info = append(info, initID[:]...)
	info = append(info, respID[:]...)
	info = append(info, nonceI...)
	info = append(info, nonceR...)
	info = binary.BigEndian.AppendUint32(info, idxI)
	info = binary.BigEndian.AppendUint32(info, idxR)
	okm, err := hkdf.Key(sha256.New, shared, hk.cloudHash[:], string(info), 64)
	if err != nil {
		return nil, nil, fmt.Errorf("hkdf: %w", err)
	}
	i2r, err := chacha20poly1305.New(okm[:32])
	if err != nil {
		return nil, nil, fmt.Errorf("aead: %w", err)
	}
	r2i, err := chacha20poly1305.New(okm[32:])
	if err != nil {
		return nil, nil, fmt.Errorf("aead: %w", err)
	}
	return i2r, r2i, nil
}

// staticShared returns X25519(own static key, peer static key). The value is
// a constant of the pair and both ends compute the same one, so it is
// memoized process-wide under the (unordered) pair of public keys: a node
// re-handshaking with a peer after an idle timeout, or a simulator hosting
// both ends, computes it once. The memo is keyed by our own public key, which
// only this core's private key produces, so a core only ever gets back a value
// it would have computed itself. Bounded: cleared when full.
func (hk *handshakeKeys) staticShared(peerX []byte) ([]byte, error) {
	var k [64]byte
	own := hk.cert[32:64]
	if bytes.Compare(own, peerX) <= 0 {
		copy(k[:32], own)
		copy(k[32:], peerX)
	} else {
		copy(k[:32], peerX)
		copy(k[32:], own)
	}
	if v, ok := sharedSecrets.get(k); ok {
		return v[:], nil
	}
	pub, err := ecdh.X25519().NewPublicKey(peerX)
	if err != nil {
		return nil, fmt.Errorf("peer x25519 key: %w", errAuth)
	}
	shared, err := hk.xPriv.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("x25519: %w", errAuth)
	}
	sharedSecrets.put(k, [32]byte(shared))
	return shared, nil
}

type secretMemo struct {
	mu sync.Mutex
	m  map[[64]byte][32]byte
}

const maxSecretMemo = 1 << 20

var sharedSecrets secretMemo

func (c *secretMemo) get(k [64]byte) ([32]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[k]
	return v, ok
}

func (c *secretMemo) put(k [64]byte, v [32]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxSecretMemo {
		c.m = make(map[[64]byte][32]byte)
	}
	c.m[k] = v
}

func aeadNonce(ctr uint64) [chacha20poly1305.NonceSize]byte {
	var n [chacha20poly1305.NonceSize]byte
	binary.BigEndian.PutUint64(n[4:], ctr)
	return n
}

// replayCheck reports whether counter ctr may still be accepted.
func (s *session) replayCheck(ctr uint64) bool {
	if ctr == 0 {
		return false
	}
	if ctr > s.recvMax {
		return true
	}
	d := s.recvMax - ctr
	return d < 64 && s.recvWin&(1<<d) == 0
}

// replayAccept records ctr as received (after successful authentication).
func (s *session) replayAccept(ctr uint64) {
	if ctr > s.recvMax {
		shift := ctr - s.recvMax
		if shift >= 64 {
			s.recvWin = 0
		} else {
			s.recvWin <<= shift
		}
		s.recvWin |= 1
		s.recvMax = ctr
		return
	}
	s.recvWin |= 1 << (s.recvMax - ctr)
}

// seal encrypts one plaintext into a DATA packet.
func (s *session) seal(tag cloudTag, plain []byte) []byte {
	s.sendCtr++
	out := make([]byte, 0, dataPrefix+len(plain)+tagLen)
	out = appendHeader(out, ptData, tag)
	out = binary.BigEndian.AppendUint32(out, s.remoteIdx)
	out = binary.BigEndian.AppendUint64(out, s.sendCtr)
	n := aeadNonce(s.sendCtr)
	return s.send.Seal(out, n[:], plain, out[:dataPrefix])
}

// open authenticates and decrypts a DATA packet into buf's storage.
func (s *session) open(pkt []byte, buf []byte) ([]byte, error) {
	ctr := binary.BigEndian.Uint64(pkt[headerLen+4:])
	if !s.replayCheck(ctr) {
		return nil, fmt.Errorf("replayed counter %d: %w", ctr, errAuth)
	}
	n := aeadNonce(ctr)
	plain, err := s.recv.Open(buf[:0], n[:], pkt[dataPrefix:], pkt[:dataPrefix])
	if err != nil {
		return nil, fmt.Errorf("data packet: %w", errAuth)
	}
	s.replayAccept(ctr)
	return plain, nil
}

// sessionTable indexes sessions by our local index and by peer ID.
type sessionTable struct {
	byIdx    map[uint32]*session
	byPeer   map[identity.Key]*session // the session used to send to a peer
	halfOpen map[helloKey]*session     // responder sessions awaiting their first DATA
	max      int
	lruHead  *session // least recently used
	lruTail  *session // most recently used
}

// add inserts a new session as the most recently used.
func (t *sessionTable) add(s *session) {
	t.byIdx[s.localIdx] = s
	t.pushTail(s)
}

func (t *sessionTable) pushTail(s *session) {
	s.lruPrev, s.lruNext = t.lruTail, nil
	if t.lruTail != nil {
		t.lruTail.lruNext = s
	} else {
		t.lruHead = s
	}
	t.lruTail = s
}

func (t *sessionTable) unlink(s *session) {
	if s.lruPrev != nil {
		s.lruPrev.lruNext = s.lruNext
	} else if t.lruHead == s {
		t.lruHead = s.lruNext
	}
	if s.lruNext != nil {
		s.lruNext.lruPrev = s.lruPrev
	} else if t.lruTail == s {
		t.lruTail = s.lruPrev
	}
	s.lruPrev, s.lruNext = nil, nil
}

// touch marks s used at now.
func (t *sessionTable) touch(s *session, now int64) {
	s.lastUsed = now
	if t.lruTail != s {
		t.unlink(s)
		t.pushTail(s)
	}
}

// helloKey identifies the HELLO a half-open session answered.
type helloKey struct {
	addr netip.AddrPort
	idx  uint32
}

func (t *sessionTable) remove(s *session) {
	if t.byIdx[s.localIdx] != s {
		return
	}
	delete(t.byIdx, s.localIdx)
	t.unlink(s)
	if s.hasPeer && t.byPeer[s.peer] == s {
		delete(t.byPeer, s.peer)
	}
	if s.state == sessHalfOpen {
		t.confirm(s)
	}
}

// confirm takes s out of the half-open index.
func (t *sessionTable) confirm(s *session) {
	if k := (helloKey{s.addr, s.remoteIdx}); t.halfOpen[k] == s {
		delete(t.halfOpen, k)
	}
}

// sorted returns the sessions ordered by local index (deterministic iteration).
func (t *sessionTable) sorted() []*session {
	out := make([]*session, 0, len(t.byIdx))
	for _, s := range t.byIdx {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *session) int {
		switch {
		case a.localIdx < b.localIdx:
			return -1
		case a.localIdx > b.localIdx:
			return 1
		}
		return 0
	})
	return out
}

// victim picks the session to evict: the least recently used half-open one if
// half-open sessions exceed their share, else the least recently used overall.
func (t *sessionTable) victim(preferHalfOpen bool) *session {
	if !preferHalfOpen {
		for s := t.lruHead; s != nil; s = s.lruNext {
			if s.state != sessHalfOpen {
				return s
			}
		}
		return nil
	}
	var v *session
	for _, s := range t.halfOpen {
		if v == nil || s.lastUsed < v.lastUsed || (s.lastUsed == v.lastUsed && s.localIdx < v.localIdx) {
			v = s
		}
	}
	return v
}

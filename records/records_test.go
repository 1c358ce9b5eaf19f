package records

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/peername/peername/identity"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func seededID(b byte) *identity.Identity {
	var seed [32]byte
	for i := range seed {
		seed[i] = b + byte(i)
	}
	return identity.FromSeed(seed)
}

// sample returns a signed secured record with every field in use.
func sample(t testing.TB, id *identity.Identity) *Record {
	t.Helper()
	r := &Record{
		Name:      identity.Name{Classifier: "alice", Secured: true},
		Seq:       7,
		Issued:    t0,
		Expires:   t0.Add(time.Hour),
		Endpoints: []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")},
		Services:  []Service{{Service: "ssh", Proto: "tcp", Port: 22, Priority: 10, Weight: 5}},
		TXT:       []string{"v=1", ""},
		Payload:   []byte{1, 2, 3},
	}
	if err := Sign(r, id); err != nil {
		t.Fatal(err)
	}
	return r
}

// maximal returns a signed record with every field at its bound.
func maximal(t testing.TB, id *identity.Identity) *Record {
	t.Helper()
	r := &Record{
		Name:    identity.Name{Classifier: strings.Repeat("c", 63), Secured: true},
		Seq:     ^uint64(0),
		Issued:  t0,
		Expires: t0.Add(MaxLifetime),
		Payload: bytes.Repeat([]byte{0xAB}, MaxPayload),
	}
	for i := range MaxEndpoints {
		r.Endpoints = append(r.Endpoints, netip.AddrFrom16([16]byte{0x20, 0x01, 15: byte(i)}))
	}
	for range MaxServices {
		r.Services = append(r.Services, Service{Service: strings.Repeat("s", MaxServiceName), Proto: strings.Repeat("p", MaxServiceName), Port: 65535})
	}
	for range MaxTXT {
		r.TXT = append(r.TXT, strings.Repeat("t", MaxTXTTotal/MaxTXT))
	}
	if err := Sign(r, id); err != nil {
		t.Fatal(err)
	}
	return r
}

func mustEncode(t testing.TB, r *Record) []byte {
	t.Helper()
	b, err := Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	id := seededID(1)
	unsec := &Record{Name: identity.Name{Classifier: "printer"}, Seq: 1, Issued: t0, Expires: t0.Add(time.Minute)}
	if err := Sign(unsec, id); err != nil {
		t.Fatal(err)
	}
	withdrawn := &Record{Name: identity.Name{Classifier: "alice", Secured: true}, Seq: 9, Issued: t0, Expires: t0.Add(time.Minute), Withdrawn: true}
	if err := Sign(withdrawn, id); err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]*Record{"sample": sample(t, id), "maximal": maximal(t, id), "unsecured": unsec, "withdrawn": withdrawn} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := mustEncode(t, r)
			if len(b) > MaxEncodedSize {
				t.Fatalf("encoded %d bytes, over MaxEncodedSize %d", len(b), MaxEncodedSize)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, r) {
				t.Fatalf("decode(encode(r)) != r:\n got %+v\nwant %+v", got, r)
			}
			if err := Verify(got, t0); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			// The decoded record must not alias the input.
			for i := range b {
				b[i] = 0
			}
			if err := Verify(got, t0); err != nil {
				t.Fatalf("decoded record changed with its input: %v", err)
			}
		})
	}
	if got := len(mustEncode(t, maximal(t, id))); got != MaxEncodedSize {
		t.Errorf("maximal record encodes to %d bytes, MaxEncodedSize is %d", got, MaxEncodedSize)
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	a, b := seededID(1), seededID(2)
	type mod func(r *Record)
	resign := func(m mod) mod { // change a field, then sign again with a's key
		return func(r *Record) { m(r); _ = Sign(r, a) }
	}
	tests := []struct {
		name string
		mod  mod
		now  time.Time
		err  error
	}{
		{name: "valid", now: t0},
		{name: "valid just before expiry", now: t0.Add(time.Hour - time.Second)},
		{name: "valid within clock skew", now: t0.Add(-MaxClockSkew)},
		{name: "expired", now: t0.Add(time.Hour), err: ErrExpired},
		{name: "issued in the future", now: t0.Add(-MaxClockSkew - time.Second), err: ErrFutureIssued},
		{name: "forged: endpoint changed after signing", now: t0, err: ErrBadSignature,
			mod: func(r *Record) { r.Endpoints[0] = netip.MustParseAddr("198.51.100.66") }},
		{name: "forged: seq raised after signing", now: t0, err: ErrBadSignature,
			mod: func(r *Record) { r.Seq++ }},
		{name: "forged: expiry extended after signing", now: t0, err: ErrBadSignature,
			mod: func(r *Record) { r.Expires = r.Expires.Add(time.Hour) }},
		{name: "forged: signature bit flipped", now: t0, err: ErrBadSignature,
			mod: func(r *Record) { r.Signature = append([]byte(nil), r.Signature...); r.Signature[10] ^= 1 }},
		{name: "forged: withdrawn flag set after signing", now: t0, err: ErrBadSignature,
			mod: func(r *Record) {
				*r = Record{Name: r.Name, PublicKey: r.PublicKey, Seq: r.Seq, Issued: r.Issued, Expires: r.Expires, Withdrawn: true, Signature: r.Signature}
			}},
		{name: "truncated signature", now: t0, err: ErrBadSignature,
			mod: func(r *Record) { r.Signature = r.Signature[:63] }},
		{name: "key A claims key B's authority", now: t0, err: ErrAuthorityMismatch,
			mod: func(r *Record) {
				// Signed correctly by A, but over a name under B's authority.
				r.Name.Authority = b.Authority()
				in, _ := SigningInput(r)
				r.Signature = a.Sign(in)
			}},
		{name: "key B substituted with its own valid signature", now: t0, err: ErrAuthorityMismatch,
			mod: func(r *Record) {
				r.PublicKey = b.PublicKey()
				in, _ := SigningInput(r)
				r.Signature = b.Sign(in)
			}},
		{name: "too many endpoints", now: t0, err: ErrBounds, mod: resign(func(r *Record) {
			for i := range MaxEndpoints {
				r.Endpoints = append(r.Endpoints, netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}))
			}
		})},
		{name: "duplicate endpoint", now: t0, err: ErrBounds, mod: func(r *Record) { r.Endpoints[1] = r.Endpoints[0] }},
		{name: "IPv4-mapped endpoint", now: t0, err: ErrBounds, mod: func(r *Record) { r.Endpoints[0] = netip.MustParseAddr("::ffff:192.0.2.1") }},
		{name: "zoned endpoint", now: t0, err: ErrBounds, mod: func(r *Record) { r.Endpoints[1] = netip.MustParseAddr("fe80::1%eth0") }},
		{name: "payload over 4096", now: t0, err: ErrBounds, mod: func(r *Record) { r.Payload = make([]byte, MaxPayload+1) }},
		{name: "TXT string over 255", now: t0, err: ErrBounds, mod: func(r *Record) { r.TXT = []string{strings.Repeat("x", 256)} }},
		{name: "TXT total over bound", now: t0, err: ErrBounds, mod: func(r *Record) {
			r.TXT = []string{strings.Repeat("x", 255), strings.Repeat("x", 255), strings.Repeat("x", 255), strings.Repeat("x", 255), "xxxxx"}
		}},
		{name: "too many TXT", now: t0, err: ErrBounds, mod: func(r *Record) { r.TXT = make([]string, MaxTXT+1) }},
		{name: "too many services", now: t0, err: ErrBounds, mod: func(r *Record) { r.Services = make([]Service, MaxServices+1) }},
		{name: "bad service label", now: t0, err: ErrBounds, mod: func(r *Record) { r.Services[0].Service = "s_h" }},
		{name: "uppercase classifier", now: t0, err: ErrBounds, mod: func(r *Record) { r.Name.Classifier = "Alice" }},
		{name: "lifetime over bound", now: t0, err: ErrBounds, mod: resign(func(r *Record) { r.Expires = r.Issued.Add(MaxLifetime + time.Second) })},
		{name: "expires before issued", now: t0, err: ErrBounds, mod: func(r *Record) { r.Expires = r.Issued }},
		{name: "withdrawn with data", now: t0, err: ErrBounds, mod: func(r *Record) { r.Withdrawn = true }},
		{name: "short public key", now: t0, err: ErrBounds, mod: func(r *Record) { r.PublicKey = r.PublicKey[:31] }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := sample(t, a)
			if tc.mod != nil {
				tc.mod(r)
			}
			err := Verify(r, tc.now)
			if tc.err == nil {
				if err != nil {
					t.Fatalf("Verify = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("Verify = %v, want %v", err, tc.err)
			}
		})
	}
}

func TestSignRefusesOutOfBounds(t *testing.T) {
	t.Parallel()
	r := &Record{Name: identity.Name{Classifier: "x"}, Issued: t0, Expires: t0.Add(time.Hour), Payload: make([]byte, MaxPayload+1)}
	if err := Sign(r, seededID(1)); !errors.Is(err, ErrBounds) {
		t.Fatalf("Sign = %v, want ErrBounds", err)
	}
	if r.Signature != nil {
		t.Fatal("an out-of-bounds record was signed")
	}
}

func TestSignNormalizes(t *testing.T) {
	t.Parallel()
	r := &Record{
		Name:     identity.Name{Classifier: "MixedCase", Secured: true},
		Issued:   t0.Add(1500 * time.Millisecond).In(time.FixedZone("X", 3600)),
		Expires:  t0.Add(time.Hour),
		Services: []Service{{Service: "HTTP", Proto: "TCP", Port: 80}},
	}
	id := seededID(3)
	if err := Sign(r, id); err != nil {
		t.Fatal(err)
	}
	if r.Name.Classifier != "mixedcase" || r.Services[0].Service != "http" || r.Services[0].Proto != "tcp" {
		t.Fatalf("labels not lowercased: %+v", r)
	}
	if !r.Issued.Equal(t0.Add(time.Second)) || r.Issued.Location() != time.UTC {
		t.Fatalf("issued %v, want %v UTC", r.Issued, t0.Add(time.Second))
	}
	if r.Name.Authority != id.Authority() {
		t.Fatal("authority not set from the signing key")
	}
	if err := Verify(r, t0); err != nil {
		t.Fatal(err)
	}
}

func TestNewer(t *testing.T) {
	t.Parallel()
	id := seededID(1)
	mk := func(seq uint64, exp time.Duration) *Record {
		r := &Record{Name: identity.Name{Classifier: "n", Secured: true}, Seq: seq, Issued: t0, Expires: t0.Add(exp)}
		if err := Sign(r, id); err != nil {
			t.Fatal(err)
		}
		return r
	}
	old, cur := mk(1, time.Hour), mk(2, time.Hour)
	// A replay of the older sequence loses whichever side it is on.
	if !Newer(cur, old) || Newer(old, cur) {
		t.Fatal("higher sequence does not win")
	}
	// An older record with a later expiry still loses: seq decides first.
	if Newer(mk(1, 2*time.Hour), cur) {
		t.Fatal("a replayed record with a later expiry won")
	}
	// Equal sequence: later expiry wins, then signature bytes; antisymmetric.
	x, y := mk(3, time.Hour), mk(3, 2*time.Hour)
	if !Newer(y, x) || Newer(x, y) {
		t.Fatal("tie on seq not broken by expiry")
	}
	p := mk(4, time.Hour)
	q := *p
	q.Payload = []byte{1}
	_ = Sign(&q, id)
	if Newer(p, &q) == Newer(&q, p) {
		t.Fatal("tie on seq and expiry not broken deterministically")
	}
	if Newer(p, p) {
		t.Fatal("a record wins over itself")
	}
}

// TestDecodeRejects covers truncations and every non-canonical rewrite of a
// valid encoding.
func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	id := seededID(1)
	good := mustEncode(t, sample(t, id))
	for n := range len(good) {
		if _, err := Decode(good[:n]); err == nil {
			t.Fatalf("truncated to %d of %d bytes: decoded", n, len(good))
		} else if !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated to %d bytes: error %v, want ErrMalformed", n, err)
		}
	}
	edit := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	clsOff := 1 + 1 + identity.AuthorityLen
	epOff := clsOff + 1 + len("alice") + 32 + 24 // endpoint count
	tests := []struct {
		name string
		in   []byte
		err  error
	}{
		{"version 0", edit(func(b []byte) []byte { b[0] = 0; return b }), ErrVersion},
		{"version 2", edit(func(b []byte) []byte { b[0] = 2; return b }), ErrVersion},
		{"unknown flag", edit(func(b []byte) []byte { b[1] |= 0x80; return b }), ErrMalformed},
		{"trailing byte", append(append([]byte(nil), good...), 0), ErrMalformed},
		{"oversized", make([]byte, MaxEncodedSize+1), ErrBounds},
		{"uppercase classifier", edit(func(b []byte) []byte { b[clsOff+1] = 'A'; return b }), ErrBounds},
		{"classifier length 0", edit(func(b []byte) []byte { b[clsOff] = 0; return b }), ErrMalformed},
		{"endpoint count 11", edit(func(b []byte) []byte { b[epOff] = 11; return b }), ErrMalformed},
		{"address family 5", edit(func(b []byte) []byte { b[epOff+1] = 5; return b }), ErrMalformed},
		{"unsecured with authority", edit(func(b []byte) []byte { b[1] &^= flagSecured; return b }), ErrMalformed},
		{"IPv4 written as mapped IPv6", func() []byte {
			// Rewrite the IPv4 endpoint 192.0.2.1 as ::ffff:192.0.2.1.
			b := append([]byte(nil), good[:epOff+1]...)
			b = append(b, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1)
			return append(b, good[epOff+1+5:]...)
		}(), ErrBounds},
		{"negative time", edit(func(b []byte) []byte {
			binary.BigEndian.PutUint64(b[clsOff+1+5+32+8:], 1<<63)
			return b
		}), ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := Decode(tc.in); !errors.Is(err, tc.err) {
				t.Fatalf("Decode error = %v, want %v", err, tc.err)
			}
		})
	}
}

func TestDecodeAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	id := seededID(1)
	b := mustEncode(t, sample(t, id))
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := Decode(b); err != nil {
			t.Fatal(err)
		}
	})
	// One for the record with its slices' backing arrays, one for the copy
	// of the input that its strings and byte slices share.
	if allocs > 2 {
		t.Fatalf("Decode makes %.0f allocations, want at most 2", allocs)
	}
}

func TestVerifyAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	r := sample(t, seededID(1))
	allocs := testing.AllocsPerRun(20, func() {
		if err := Verify(r, t0); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Verify makes %.0f allocations, want 0", allocs)
	}
}

var sink any

func BenchmarkEncode(b *testing.B) {
	r := sample(b, seededID(1))
	b.ReportAllocs()
	for b.Loop() {
		out, err := Encode(r)
		if err != nil {
			b.Fatal(err)
		}
		sink = out
	}
}

func BenchmarkDecode(b *testing.B) {
	enc := mustEncode(b, sample(b, seededID(1)))
	b.ReportAllocs()
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		r, err := Decode(enc)
		if err != nil {
			b.Fatal(err)
		}
		sink = r
	}
}

func BenchmarkSign(b *testing.B) {
	id := seededID(1)
	r := sample(b, id)
	b.ReportAllocs()
	for b.Loop() {
		if err := Sign(r, id); err != nil {
			b.Fatal(err)
		}
	}
}

// benchRecord returns the "sample" or the "maximal" record.
func benchRecord(b *testing.B, size string) *Record {
	if size == "maximal" {
		return maximal(b, seededID(1))
	}
	return sample(b, seededID(1))
}

// BenchmarkVerify and BenchmarkVerifyBareEd25519 compare Verify with a bare
// ed25519.Verify of the same signing input: the ratio of their ns/op is the
// cost of our checks and encoding on top of the signature.
func BenchmarkVerify(b *testing.B) {
	for _, size := range []string{"sample", "maximal"} {
		b.Run(size, func(b *testing.B) {
			r := benchRecord(b, size)
			b.ReportAllocs()
			for b.Loop() {
				if err := Verify(r, t0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerifyBareEd25519(b *testing.B) {
	for _, size := range []string{"sample", "maximal"} {
		b.Run(size, func(b *testing.B) {
			r := benchRecord(b, size)
			in, err := SigningInput(r)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if !ed25519.Verify(r.PublicKey, in, r.Signature) {
					b.Fatal("bad signature")
				}
			}
		})
	}
}

// BenchmarkVerifyRatio alternates Verify and a bare ed25519.Verify of the
// same signing input in one loop, so machine noise hits both alike, and
// reports their time ratio (target: at most 1.2).
func BenchmarkVerifyRatio(b *testing.B) {
	for _, size := range []string{"sample", "maximal"} {
		b.Run(size, func(b *testing.B) {
			r := benchRecord(b, size)
			in, err := SigningInput(r)
			if err != nil {
				b.Fatal(err)
			}
			var ours, bare time.Duration
			for b.Loop() {
				t := time.Now()
				if err := Verify(r, t0); err != nil {
					b.Fatal(err)
				}
				t2 := time.Now()
				if !ed25519.Verify(r.PublicKey, in, r.Signature) {
					b.Fatal("bad signature")
				}
				ours += t2.Sub(t)
				bare += time.Since(t2)
			}
			b.ReportMetric(float64(ours)/float64(bare), "verify/bare")
		})
	}
}

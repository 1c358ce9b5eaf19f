// Package records defines peername's signed records: what a name resolves
// to, who published it, and for how long it holds. It fixes the canonical,
// versioned binary encoding that is signed, stored by the overlay and
// returned to resolvers, and the rules every node applies before it stores,
// returns or answers with a record (Verify) and when it must choose between
// two records for one name (Newer).
//
// The format is specified byte by byte, with test vectors, in README.md.
package records

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"net/netip"
	"slices"
	"time"

	"github.com/peername/peername/identity"
)

// Version is the encoding version this package writes and reads.
const Version = 1

// Bounds on a record's contents. Together they bound MaxEncodedSize.
const (
	MaxEndpoints   = 10   // PNRP's bound on addresses per registration
	MaxServices    = 8    // SRV entries per name
	MaxTXT         = 8    // TXT strings per name
	MaxTXTLen      = 255  // one DNS character-string
	MaxTXTTotal    = 1024 // all TXT strings together
	MaxPayload     = 4096 // PNRP's extended payload bound
	MaxServiceName = 62   // service or protocol label without its '_'
	// MaxLifetime bounds Expires-Issued, so a replayed record stops working
	// within a known time even if no node has seen a newer one.
	MaxLifetime = 7 * 24 * time.Hour
	// MaxClockSkew is how far in the future an issue time may be.
	MaxClockSkew = 5 * time.Minute
	// SignatureDomain is prepended to the encoded body to form the signing
	// input, so a record signature can never be replayed as another message.
	SignatureDomain = "peername-record-v1\x00"
)

// Errors returned by Decode, Encode, Sign and Verify; each is wrapped with
// details, test with errors.Is.
var (
	ErrMalformed         = errors.New("malformed record encoding")
	ErrVersion           = errors.New("unsupported record version")
	ErrBounds            = errors.New("record field out of bounds")
	ErrBadSignature      = errors.New("record signature does not verify")
	ErrAuthorityMismatch = errors.New("record key does not hash to the name's authority")
	ErrExpired           = errors.New("record expired")
	ErrFutureIssued      = errors.New("record issued in the future")
)

// Service is one SRV entry: the name offers _Service._Proto on Port.
type Service struct {
	Service  string // e.g. "ssh", without the leading '_'
	Proto    string // e.g. "tcp", without the leading '_'
	Port     uint16
	Priority uint16
	Weight   uint16
}

// Record binds a peer name to what it resolves to. Records are values: a
// published record is never modified; the owner publishes a new one with a
// higher Seq.
type Record struct {
	Name      identity.Name
	PublicKey ed25519.PublicKey // the publisher's key; for secured names it hashes to Name.Authority
	Seq       uint64            // higher wins; an older one is a replay
	Issued    time.Time         // whole seconds, UTC
	Expires   time.Time         // whole seconds, UTC; storers drop the record then
	Withdrawn bool              // the owner withdrew the name; carries no data
	Endpoints []netip.Addr      // IPv4/IPv6 addresses, no zones, at most MaxEndpoints
	Services  []Service
	TXT       []string
	Payload   []byte // opaque, at most MaxPayload bytes
	Signature []byte // Ed25519 over SignatureDomain || body
}

// Clone returns a deep copy of r, so the caller may change either without
// touching the other.
func (r *Record) Clone() *Record {
	out := *r
	out.PublicKey = slices.Clone(r.PublicKey)
	out.Endpoints = slices.Clone(r.Endpoints)
	out.Services = slices.Clone(r.Services)
	out.TXT = slices.Clone(r.TXT)
	out.Payload = slices.Clone(r.Payload)
	out.Signature = slices.Clone(r.Signature)
	return &out
}

// Key returns the overlay key the record is stored under.
func (r *Record) Key() identity.Key { return r.Name.Key() }

// Newer reports whether a wins over b, two records for the same name and
// publisher: the higher Seq wins; at equal Seq (an owner that signed twice)
// the later expiry, then the greater signature bytes, so every node picks the
// same winner. A record never wins over itself.
func Newer(a, b *Record) bool {
	if a.Seq != b.Seq {
		return a.Seq > b.Seq
	}
	if !a.Expires.Equal(b.Expires) {
		return a.Expires.After(b.Expires)
	}
	return bytes.Compare(a.Signature, b.Signature) > 0
}

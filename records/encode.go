package records

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"
	"unsafe"

	"github.com/peername/peername/identity"
)

// Flag bits of the flags byte; all other bits must be zero.
const (
	flagSecured   = 1 << 0
	flagWithdrawn = 1 << 1
	flagsKnown    = flagSecured | flagWithdrawn
)

const (
	fixedSize = 1 + 1 + identity.AuthorityLen + 1 + // version, flags, authority, classifier length
		ed25519.PublicKeySize + 8 + 8 + 8 + // key, seq, issued, expires
		1 + 1 + 1 + 2 + // endpoint, service, TXT counts, payload length
		ed25519.SignatureSize
	maxServiceSize = 1 + MaxServiceName + 1 + MaxServiceName + 6

	// MaxEncodedSize bounds the encoding of any valid record: every field at
	// its maximum. The overlay relies on it to bound what it stores per
	// record and what one message carries.
	MaxEncodedSize = fixedSize + 63 + MaxEndpoints*17 + MaxServices*maxServiceSize + MaxTXT + MaxTXTTotal + MaxPayload
)

// validate checks every rule that does not need a clock or the signature.
func validate(r *Record) error {
	n := r.Name
	if !n.Valid() {
		return fmt.Errorf("name %q: %w", n.Classifier, ErrBounds)
	}
	if len(r.PublicKey) != ed25519.PublicKeySize {
		return fmt.Errorf("public key of %d bytes: %w", len(r.PublicKey), ErrBounds)
	}
	if r.Issued.Nanosecond() != 0 || r.Expires.Nanosecond() != 0 {
		return fmt.Errorf("times must be whole seconds: %w", ErrBounds)
	}
	if !r.Expires.After(r.Issued) {
		return fmt.Errorf("expires %v not after issued %v: %w", r.Expires, r.Issued, ErrBounds)
	}
	if r.Expires.Sub(r.Issued) > MaxLifetime {
		return fmt.Errorf("lifetime %v over %v: %w", r.Expires.Sub(r.Issued), MaxLifetime, ErrBounds)
	}
	if r.Withdrawn && (len(r.Endpoints)+len(r.Services)+len(r.TXT)+len(r.Payload)) != 0 {
		return fmt.Errorf("a withdrawn record carries no data: %w", ErrBounds)
	}
	if len(r.Endpoints) > MaxEndpoints {
		return fmt.Errorf("%d endpoints, at most %d: %w", len(r.Endpoints), MaxEndpoints, ErrBounds)
	}
	for i, a := range r.Endpoints {
		if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
			return fmt.Errorf("endpoint %d %v: want a plain IPv4 or IPv6 address: %w", i, a, ErrBounds)
		}
		for _, b := range r.Endpoints[:i] {
			if a == b {
				return fmt.Errorf("endpoint %v listed twice: %w", a, ErrBounds)
			}
		}
	}
	if len(r.Services) > MaxServices {
		return fmt.Errorf("%d services, at most %d: %w", len(r.Services), MaxServices, ErrBounds)
	}
	for _, s := range r.Services {
		for _, l := range []string{s.Service, s.Proto} {
			c, err := identity.CheckServiceLabel(l)
			if err != nil || c != l {
				return fmt.Errorf("service label %q: want lowercase letters, digits, hyphens: %w", l, ErrBounds)
			}
		}
	}
	if len(r.TXT) > MaxTXT {
		return fmt.Errorf("%d TXT strings, at most %d: %w", len(r.TXT), MaxTXT, ErrBounds)
	}
	total := 0
	for _, t := range r.TXT {
		if len(t) > MaxTXTLen {
			return fmt.Errorf("TXT string of %d bytes, at most %d: %w", len(t), MaxTXTLen, ErrBounds)
		}
		total += len(t)
	}
	if total > MaxTXTTotal {
		return fmt.Errorf("TXT strings total %d bytes, at most %d: %w", total, MaxTXTTotal, ErrBounds)
	}
	if len(r.Payload) > MaxPayload {
		return fmt.Errorf("payload of %d bytes, at most %d: %w", len(r.Payload), MaxPayload, ErrBounds)
	}
	return nil
}

// bodySize returns the encoded size of r without its signature; r must be valid.
func bodySize(r *Record) int {
	n := fixedSize - ed25519.SignatureSize + len(r.Name.Classifier) + len(r.Payload)
	for _, a := range r.Endpoints {
		n += 1 + a.BitLen()/8
	}
	for _, s := range r.Services {
		n += 2 + len(s.Service) + len(s.Proto) + 6
	}
	for _, t := range r.TXT {
		n += 1 + len(t)
	}
	return n
}

// appendBody appends the canonical encoding of r without its signature; r
// must be valid.
func appendBody(b []byte, r *Record) []byte {
	var flags byte
	if r.Name.Secured {
		flags |= flagSecured
	}
	if r.Withdrawn {
		flags |= flagWithdrawn
	}
	b = append(b, Version, flags)
	b = append(b, r.Name.Authority[:]...)
	b = append(b, byte(len(r.Name.Classifier)))
	b = append(b, r.Name.Classifier...)
	b = append(b, r.PublicKey...)
	b = binary.BigEndian.AppendUint64(b, r.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Issued.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Expires.Unix()))
	b = append(b, byte(len(r.Endpoints)))
	for _, a := range r.Endpoints {
		if a.Is4() {
			v := a.As4()
			b = append(b, 4)
			b = append(b, v[:]...)
		} else {
			v := a.As16()
			b = append(b, 6)
			b = append(b, v[:]...)
		}
	}
	b = append(b, byte(len(r.Services)))
	for _, s := range r.Services {
		b = append(b, byte(len(s.Service)))
		b = append(b, s.Service...)
		b = append(b, byte(len(s.Proto)))
		b = append(b, s.Proto...)
		b = binary.BigEndian.AppendUint16(b, s.Port)
		b = binary.BigEndian.AppendUint16(b, s.Priority)
		b = binary.BigEndian.AppendUint16(b, s.Weight)
	}
	b = append(b, byte(len(r.TXT)))
	for _, t := range r.TXT {
		b = append(b, byte(len(t)))
		b = append(b, t...)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.Payload)))
	b = append(b, r.Payload...)
	return b
}

// Encode returns the canonical encoding of a signed record: its body followed
// by the 64-byte signature. It refuses a record that breaks a bound or is not
// in canonical form (times with fractions of a second, uppercase labels); it
// does not check the signature (Verify does).
func Encode(r *Record) ([]byte, error) {
	if err := validate(r); err != nil {
		return nil, err
	}
	if len(r.Signature) != ed25519.SignatureSize {
		return nil, fmt.Errorf("signature of %d bytes (unsigned record?): %w", len(r.Signature), ErrBounds)
	}
	b := make([]byte, 0, bodySize(r)+ed25519.SignatureSize)
	b = appendBody(b, r)
	return append(b, r.Signature...), nil
}

// SigningInput returns the bytes an Ed25519 signature of r covers:
// SignatureDomain followed by the encoded body.
func SigningInput(r *Record) ([]byte, error) {
	if err := validate(r); err != nil {
		return nil, err
	}
	b := make([]byte, 0, len(SignatureDomain)+bodySize(r))
	b = append(b, SignatureDomain...)
	return appendBody(b, r), nil
}

// Sign completes r as a record published by id: it lowercases the classifier
// and service labels, truncates the times to whole seconds in UTC, sets
// PublicKey (and, for a secured name, Name.Authority) from id, checks every
// bound, and signs.
func Sign(r *Record, id *identity.Identity) error {
	if r.Name.Secured {
		r.Name.Authority = id.Authority()
	}
	if name, err := normalizeName(r.Name); err == nil {
		r.Name = name
	}
	for i := range r.Services {
		if c, err := identity.CheckServiceLabel(r.Services[i].Service); err == nil {
			r.Services[i].Service = c
		}
		if c, err := identity.CheckServiceLabel(r.Services[i].Proto); err == nil {
			r.Services[i].Proto = c
		}
	}
	r.Issued = r.Issued.Truncate(time.Second).UTC()
	r.Expires = r.Expires.Truncate(time.Second).UTC()
	r.PublicKey = id.PublicKey()
	in, err := SigningInput(r)
	if err != nil {
		return fmt.Errorf("records: sign %s: %w", r.Name, err)
	}
	r.Signature = id.Sign(in)
	return nil
}

func normalizeName(n identity.Name) (identity.Name, error) {
	if n.Secured {
		return identity.Name{Classifier: lowerLDH(n.Classifier), Secured: true, Authority: n.Authority}, nil
	}
	return identity.NewUnsecuredName(n.Classifier)
}

func lowerLDH(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= 'A' && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// Verify checks everything a node must check before it stores, returns or
// answers with r: bounds, that the key hashes to the claimed authority
// (secured names), that r has not expired and was not issued more than
// MaxClockSkew after now, and the signature. Each failure wraps its own
// error (ErrBounds, ErrAuthorityMismatch, ErrExpired, ErrFutureIssued,
// ErrBadSignature). It does not decide whether r is the newest record for
// its name; see Newer.
func Verify(r *Record, now time.Time) error {
	if err := validate(r); err != nil {
		return err
	}
	if len(r.Signature) != ed25519.SignatureSize {
		return fmt.Errorf("signature of %d bytes: %w", len(r.Signature), ErrBadSignature)
	}
	if r.Name.Secured && identity.AuthorityOf(r.PublicKey) != r.Name.Authority {
		return fmt.Errorf("%s: %w", r.Name, ErrAuthorityMismatch)
	}
	if !now.Before(r.Expires) {
		return fmt.Errorf("%s expired at %v: %w", r.Name, r.Expires, ErrExpired)
	}
	if r.Issued.After(now.Add(MaxClockSkew)) {
		return fmt.Errorf("%s issued at %v: %w", r.Name, r.Issued, ErrFutureIssued)
	}
	var stack [len(SignatureDomain) + MaxEncodedSize]byte
	in := append(stack[:0], SignatureDomain...)
	in = appendBody(in, r)
	if !ed25519.Verify(r.PublicKey, in, r.Signature) {
		return fmt.Errorf("%s: %w", r.Name, ErrBadSignature)
	}
	return nil
}

// box holds a decoded record and the backing arrays of its slices, so Decode
// allocates once for the record and once for a private copy of the input
// that its strings and byte slices share.
type box struct {
	r   Record
	eps [MaxEndpoints]netip.Addr
	svc [MaxServices]Service
	txt [MaxTXT]string
}

// decoder reads big-endian fields from a byte slice, remembering the first
// error.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("offset %d: %s: %w", d.off, fmt.Sprintf(format, args...), ErrMalformed)
	}
}

func (d *decoder) take(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b)-d.off {
		d.fail("%s: need %d bytes, %d left (truncated)", what, n, len(d.b)-d.off)
		return nil
	}
	v := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return v
}

func (d *decoder) u8(what string) int {
	v := d.take(1, what)
	if v == nil {
		return 0
	}
	return int(v[0])
}

func (d *decoder) u16(what string) uint16 {
	v := d.take(2, what)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint16(v)
}

func (d *decoder) u64(what string) uint64 {
	v := d.take(8, what)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// str returns a string aliasing the decoder's private buffer, which nothing
// ever writes after Decode copies the input into it.
func (d *decoder) str(n int, what string) string {
	v := d.take(n, what)
	if len(v) == 0 {
		return ""
	}
	return unsafe.String(&v[0], len(v))
}

// Decode parses a record from its canonical encoding. It accepts exactly the
// byte strings Encode produces for a valid record: any other encoding of the
// same record (trailing bytes, unknown flags, uppercase labels, IPv4 written
// as IPv6, a non-zero authority on an unsecured name, ...) is refused with
// ErrMalformed, ErrVersion or ErrBounds. It does not verify the signature or
// the times against a clock: call Verify. The returned record does not alias
// b.
func Decode(b []byte) (*Record, error) {
	if len(b) > MaxEncodedSize {
		return nil, fmt.Errorf("records: %d bytes, at most %d: %w", len(b), MaxEncodedSize, ErrBounds)
	}
	if len(b) < fixedSize {
		return nil, fmt.Errorf("records: %d bytes, at least %d (truncated): %w", len(b), fixedSize, ErrMalformed)
	}
	if b[0] != Version {
		return nil, fmt.Errorf("records: version %d, want %d: %w", b[0], Version, ErrVersion)
	}
	x := &box{}
	r := &x.r
	d := decoder{b: append([]byte(nil), b...), off: 1}

	flags := d.u8("flags")
	if flags&^flagsKnown != 0 {
		d.fail("unknown flags %#02x", flags)
	}
	r.Name.Secured = flags&flagSecured != 0
	r.Withdrawn = flags&flagWithdrawn != 0
	copy(r.Name.Authority[:], d.take(identity.AuthorityLen, "authority"))
	if !r.Name.Secured && r.Name.Authority != (identity.Authority{}) {
		d.fail("unsecured name with a non-zero authority")
	}
	r.Name.Classifier = d.str(d.u8("classifier length"), "classifier")
	r.PublicKey = ed25519.PublicKey(d.take(ed25519.PublicKeySize, "public key"))
	r.Seq = d.u64("seq")
	issued, expires := d.u64("issued"), d.u64("expires")
	if int64(issued) < 0 || int64(expires) < 0 {
		d.fail("negative time")
	}
	r.Issued = time.Unix(int64(issued), 0).UTC()
	r.Expires = time.Unix(int64(expires), 0).UTC()

	if n := d.u8("endpoint count"); n > MaxEndpoints {
		d.fail("%d endpoints, at most %d", n, MaxEndpoints)
	} else if n > 0 {
		r.Endpoints = x.eps[:n:n]
		for i := range n {
			switch fam := d.u8("address family"); fam {
			case 4:
				if v := d.take(4, "IPv4 address"); v != nil {
					r.Endpoints[i] = netip.AddrFrom4([4]byte(v))
				}
			case 6:
				if v := d.take(16, "IPv6 address"); v != nil {
					r.Endpoints[i] = netip.AddrFrom16([16]byte(v))
				}
			default:
				d.fail("address family %d, want 4 or 6", fam)
			}
		}
	}
	if n := d.u8("service count"); n > MaxServices {
		d.fail("%d services, at most %d", n, MaxServices)
	} else if n > 0 {
		r.Services = x.svc[:n:n]
		for i := range n {
			s := &r.Services[i]
			s.Service = d.str(d.u8("service length"), "service")
			s.Proto = d.str(d.u8("proto length"), "proto")
			s.Port = d.u16("port")
			s.Priority = d.u16("priority")
			s.Weight = d.u16("weight")
		}
	}
	if n := d.u8("TXT count"); n > MaxTXT {
		d.fail("%d TXT strings, at most %d", n, MaxTXT)
	} else if n > 0 {
		r.TXT = x.txt[:n:n]
		for i := range n {
			r.TXT[i] = d.str(d.u8("TXT length"), "TXT")
		}
	}
	if n := int(d.u16("payload length")); n > MaxPayload {
		d.fail("payload of %d bytes, at most %d", n, MaxPayload)
	} else if n > 0 {
		r.Payload = d.take(n, "payload")
	}
	r.Signature = d.take(ed25519.SignatureSize, "signature")
	if d.err == nil && d.off != len(d.b) {
		d.fail("%d trailing bytes", len(d.b)-d.off)
	}
	if d.err != nil {
		return nil, fmt.Errorf("records: %w", d.err)
	}
	if err := validate(r); err != nil {
		return nil, fmt.Errorf("records: %w", err)
	}
	return r, nil
}

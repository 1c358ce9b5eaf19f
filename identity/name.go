package identity

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
)

// Errors returned when a name, label or authority is malformed. They are
// wrapped with the offending input; test for them with errors.Is.
var (
	ErrNotInZone     = errors.New("name is not in the zone")
	ErrLabelTooLong  = errors.New("DNS label longer than 63 octets")
	ErrBadClassifier = errors.New("classifier must be 1-63 letters, digits or hyphens, not starting or ending with a hyphen")
	ErrBadAuthority  = errors.New("authority must be 32 characters of lowercase base32 (a-z, 2-7), or 0 for an unsecured name")
	ErrBadName       = errors.New("malformed peer name")
)

// DefaultZone is the DNS zone peer names live under unless configured
// otherwise: the special-use .alt TLD of RFC 9476.
const DefaultZone = "peer.alt."

// AuthorityLen is the length in bytes of an authority; its DNS form has
// AuthorityLen*8/5 = 32 characters.
const AuthorityLen = 20

// unsecuredLabel is the authority label of unsecured names.
const unsecuredLabel = "0"

// Authority is the truncated hash of a public key that secured names carry:
// only the holder of a key hashing to it may publish under it. 160 bits make
// finding a second key for a given authority cost about 2^160 hashes.
type Authority [AuthorityLen]byte

var authorityEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// AuthorityOf returns the authority of a public key.
func AuthorityOf(pub ed25519.PublicKey) Authority {
	h := sha256.New()
	h.Write([]byte(authorityDomain))
	h.Write(pub)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	var a Authority
	copy(a[:], sum[:AuthorityLen])
	return a
}

// String returns the authority's DNS label: 32 lowercase base32 characters.
func (a Authority) String() string { return authorityEncoding.EncodeToString(a[:]) }

// ParseAuthority parses an authority's DNS label, case-insensitively.
func ParseAuthority(s string) (Authority, error) {
	var a Authority
	if len(s) != AuthorityLen*8/5 {
		return a, fmt.Errorf("authority %q: %w", s, ErrBadAuthority)
	}
	// 160 bits are exactly 32 base32 characters, so no padding bits exist and
	// each authority has exactly one lowercase encoding.
	n, err := authorityEncoding.Decode(a[:], []byte(strings.ToLower(s)))
	if err != nil || n != AuthorityLen {
		return Authority{}, fmt.Errorf("authority %q: %w", s, ErrBadAuthority)
	}
	return a, nil
}

// Name is a peer name: a classifier under an authority (secured) or under
// "0" (unsecured, publishable by anyone).
type Name struct {
	Classifier string    // one lowercase DNS label of letters, digits and hyphens
	Secured    bool      // whether Authority is meaningful
	Authority  Authority // zero for unsecured names
}

// NewSecuredName returns the secured name classifier.<authority of pub>.
func NewSecuredName(classifier string, pub ed25519.PublicKey) (Name, error) {
	c, err := checkClassifier(classifier)
	if err != nil {
		return Name{}, err
	}
	if len(pub) != ed25519.PublicKeySize {
		return Name{}, fmt.Errorf("public key of %d bytes: %w", len(pub), ErrBadName)
	}
	return Name{Classifier: c, Secured: true, Authority: AuthorityOf(pub)}, nil
}

// NewUnsecuredName returns the unsecured name classifier.0.
func NewUnsecuredName(classifier string) (Name, error) {
	c, err := checkClassifier(classifier)
	if err != nil {
		return Name{}, err
	}
	return Name{Classifier: c}, nil
}

// Valid reports whether n could have come from ParseName.
func (n Name) Valid() bool {
	c, err := checkClassifier(n.Classifier)
	return err == nil && c == n.Classifier && (n.Secured || n.Authority == Authority{})
}

// AuthorityLabel returns the DNS label of the name's authority: the base32
// authority, or "0" for an unsecured name.
func (n Name) AuthorityLabel() string {
	if !n.Secured {
		return unsecuredLabel
	}
	return n.Authority.String()
}

// String returns the name relative to its zone: "classifier.authority".
func (n Name) String() string { return n.Classifier + "." + n.AuthorityLabel() }

// DNS returns the fully qualified DNS name of n under zone (DefaultZone when
// zone is empty), with a trailing dot.
func (n Name) DNS(zone string) string {
	z := normalizeZone(zone)
	return n.String() + "." + z
}

// Key returns the overlay key n's records are stored under. It hashes the
// authority and the classifier under a domain-separation prefix, so a storing
// node learns neither from the key.
func (n Name) Key() Key {
	h := sha256.New()
	h.Write([]byte(nameKeyDomain))
	if n.Secured {
		h.Write([]byte{1})
	} else {
		h.Write([]byte{0})
	}
	h.Write(n.Authority[:])
	h.Write([]byte(n.Classifier))
	var k Key
	h.Sum(k[:0])
	return k
}

// ParseName parses the DNS form of a peer name, "<classifier>.<authority>.<zone>"
// or "<classifier>.0.<zone>", case-insensitively and with or without the
// trailing dot. An empty zone means DefaultZone.
func ParseName(dnsName, zone string) (Name, error) {
	labels, err := splitInZone(dnsName, zone)
	if err != nil {
		return Name{}, err
	}
	if len(labels) != 2 {
		return Name{}, fmt.Errorf("%q: want <classifier>.<authority> under the zone, got %d labels: %w", dnsName, len(labels), ErrBadName)
	}
	return nameFromLabels(labels[0], labels[1])
}

// ParseServiceName parses "_<service>._<proto>.<classifier>.<authority>.<zone>",
// the owner name of a service's SRV records. service and proto are returned
// lowercase without their leading underscores.
func ParseServiceName(dnsName, zone string) (service, proto string, n Name, err error) {
	labels, err := splitInZone(dnsName, zone)
	if err != nil {
		return "", "", Name{}, err
	}
	if len(labels) != 4 {
		return "", "", Name{}, fmt.Errorf("%q: want _service._proto.<classifier>.<authority> under the zone: %w", dnsName, ErrBadName)
	}
	if service, err = checkServiceLabel(labels[0]); err != nil {
		return "", "", Name{}, err
	}
	if proto, err = checkServiceLabel(labels[1]); err != nil {
		return "", "", Name{}, err
	}
	n, err = nameFromLabels(labels[2], labels[3])
	if err != nil {
		return "", "", Name{}, err
	}
	return service, proto, n, nil
}

// CheckServiceLabel validates a service or protocol label given without its
// leading underscore (as in records.Service) and returns it lowercased.
func CheckServiceLabel(s string) (string, error) {
	if len(s) > 62 {
		return "", fmt.Errorf("service label %.20q...: %w", s, ErrLabelTooLong)
	}
	c, err := checkClassifier(s)
	if err != nil {
		return "", fmt.Errorf("service label %q must be letters, digits or hyphens: %w", s, ErrBadName)
	}
	return c, nil
}

func checkServiceLabel(l string) (string, error) {
	if len(l) > 63 {
		return "", fmt.Errorf("label %.20q...: %w", l, ErrLabelTooLong)
	}
	if len(l) < 2 || l[0] != '_' {
		return "", fmt.Errorf("service label %q must be _ followed by letters, digits or hyphens: %w", l, ErrBadName)
	}
	c, err := checkClassifier(l[1:])
	if err != nil {
		return "", fmt.Errorf("service label %q must be _ followed by letters, digits or hyphens: %w", l, ErrBadName)
	}
	return c, nil
}

func nameFromLabels(classifier, authority string) (Name, error) {
	c, err := checkClassifier(classifier)
	if err != nil {
		return Name{}, err
	}
	if authority == unsecuredLabel {
		return Name{Classifier: c}, nil
	}
	if len(authority) > 63 {
		return Name{}, fmt.Errorf("authority label: %w", ErrLabelTooLong)
	}
	a, err := ParseAuthority(authority)
	if err != nil {
		return Name{}, err
	}
	return Name{Classifier: c, Secured: true, Authority: a}, nil
}

// checkClassifier validates a classifier label and returns it lowercased.
func checkClassifier(s string) (string, error) {
	if len(s) > 63 {
		return "", fmt.Errorf("classifier %.20q...: %w", s, ErrLabelTooLong)
	}
	if len(s) == 0 || s[0] == '-' || s[len(s)-1] == '-' {
		return "", fmt.Errorf("classifier %q: %w", s, ErrBadClassifier)
	}
	lower := true
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= '0' && ch <= '9', ch == '-':
		case ch >= 'A' && ch <= 'Z':
			lower = false
		default:
			return "", fmt.Errorf("classifier %q: %w", s, ErrBadClassifier)
		}
	}
	if lower {
		return s, nil
	}
	return strings.ToLower(s), nil
}

// normalizeZone returns zone lowercased with exactly one trailing dot.
func normalizeZone(zone string) string {
	if zone == "" || zone == "." {
		if zone == "." {
			return "."
		}
		return DefaultZone
	}
	z := strings.ToLower(zone)
	if !strings.HasSuffix(z, ".") {
		z += "."
	}
	return z
}

// splitInZone returns the labels of dnsName in front of zone.
func splitInZone(dnsName, zone string) ([]string, error) {
	z := normalizeZone(zone)
	name := strings.ToLower(dnsName)
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	if len(name) > 254 { // 253 octets of text plus the root dot
		return nil, fmt.Errorf("%.40q...: name longer than 253 octets: %w", dnsName, ErrBadName)
	}
	var rest string
	switch {
	case name == z:
		return nil, fmt.Errorf("%q is the zone apex, not a peer name: %w", dnsName, ErrBadName)
	case z == ".":
		rest = strings.TrimSuffix(name, ".")
	case strings.HasSuffix(name, "."+z):
		rest = strings.TrimSuffix(name, "."+z)
	default:
		return nil, fmt.Errorf("%q is not under %q: %w", dnsName, z, ErrNotInZone)
	}
	if rest == "" {
		return nil, fmt.Errorf("%q: %w", dnsName, ErrBadName)
	}
	labels := strings.Split(rest, ".")
	for _, l := range labels {
		if l == "" {
			return nil, fmt.Errorf("%q has an empty label: %w", dnsName, ErrBadName)
		}
		if len(l) > 63 {
			return nil, fmt.Errorf("%q: label %.20q...: %w", dnsName, l, ErrLabelTooLong)
		}
	}
	return labels, nil
}

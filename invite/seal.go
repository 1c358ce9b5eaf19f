package invite

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/records"
)

// NonceSize is the size of an invitation's single-use nonce.
const NonceSize = 16

// Versions and domains of the encrypted part.
const (
	plaintextVersion = 1
	payloadVersion   = 1

	invitationCardDomain = "peername-invitation-card-v1\x00"
	acceptanceCardDomain = "peername-acceptance-card-v1\x00"
	invitationAADDomain  = "peername-invitation-v1\x00"
	acceptanceAADDomain  = "peername-acceptance-v1\x00"

	payloadOverhead = 1 + chacha20poly1305.NonceSizeX + chacha20poly1305.Overhead
	// MaxPlaintext is the largest plaintext that fits a record's payload once
	// encrypted.
	MaxPlaintext = records.MaxPayload - payloadOverhead
)

// Errors of sealing, opening, offering and accepting; each is wrapped with
// details, test with errors.Is.
var (
	// ErrUnknown: nothing is published under the code (mistyped in a way the
	// check character cannot catch, never published, or expired and dropped).
	ErrUnknown = errors.New("no invitation under this code")
	// ErrExpired: the invitation was found but its time is over.
	ErrExpired = errors.New("invitation expired")
	// ErrUsed: the invitation was withdrawn or somebody already accepted it.
	ErrUsed = errors.New("invitation already used")
	// ErrForged: records are stored under the code's key but none is a valid
	// invitation for it (wrong signer, does not decrypt, bad inner
	// signature).
	ErrForged = errors.New("no valid invitation under this code")
	// ErrWithdrawn is what an Overlay's Resolve wraps when the newest record
	// under a key is a withdrawal it does not return.
	ErrWithdrawn = errors.New("withdrawn by its owner")
	// ErrMalformed: a plaintext that does not decode.
	ErrMalformed = errors.New("malformed invitation plaintext")
	// ErrTooLarge: what is offered does not fit one record's payload.
	ErrTooLarge = errors.New("invitation too large")
)

// Card is what one side tells the other inside the encrypted part: its
// secured name and what it offers there, signed by its own identity. The
// inviter's card is the invitation's content; the helper's card is its
// acceptance.
type Card struct {
	Name      identity.Name     // a secured name of Key
	Key       ed25519.PublicKey // the signer's identity
	Issued    time.Time         // whole seconds, UTC
	Expires   time.Time         // the invitation's end
	Endpoints []netip.Addr
	Services  []records.Service
	TXT       []string
	Payload   []byte // opaque application data (a session token, a fingerprint)
}

// Invitation is an opened invitation: the inviter's card and the nonce that
// makes it single-use.
type Invitation struct {
	Card
	Nonce [NonceSize]byte
}

// Acceptance is an opened acceptance: the helper's card, bound to the
// invitation's nonce.
type Acceptance struct {
	Card
	Nonce [NonceSize]byte
}

// cardRecord turns a card into the unsigned record whose canonical body is
// the card's encoding.
func cardRecord(c *Card) *records.Record {
	return &records.Record{
		Name: c.Name, PublicKey: c.Key, Issued: c.Issued, Expires: c.Expires,
		Endpoints: c.Endpoints, Services: c.Services, TXT: c.TXT, Payload: c.Payload,
	}
}

// cardSigningInput is what a card's signature covers: the domain, the code's
// authority (so a card cannot be moved to another code), the nonce and the
// card's record body.
func cardSigningInput(domain string, code identity.Authority, nonce [NonceSize]byte, body []byte) []byte {
	b := make([]byte, 0, len(domain)+len(code)+NonceSize+len(body))
	b = append(b, domain...)
	b = append(b, code[:]...)
	b = append(b, nonce[:]...)
	return append(b, body...)
}

// sealPlaintext normalises c for id, signs it and returns the plaintext:
// version ‖ nonce ‖ card record (body ‖ signature).
func sealPlaintext(domain string, code identity.Authority, nonce [NonceSize]byte, c *Card, id *identity.Identity) ([]byte, error) {
	name, err := identity.NewSecuredName(c.Name.Classifier, id.PublicKey())
	if err != nil {
		return nil, err
	}
	c.Name, c.Key = name, id.PublicKey()
	c.Issued = c.Issued.Truncate(time.Second).UTC()
	c.Expires = c.Expires.Truncate(time.Second).UTC()
	c.Services = slices.Clone(c.Services)
	for i := range c.Services {
		s := &c.Services[i]
		if s.Service, err = identity.CheckServiceLabel(s.Service); err != nil {
			return nil, err
		}
		if s.Proto, err = identity.CheckServiceLabel(s.Proto); err != nil {
			return nil, err
		}
	}
	r := cardRecord(c)
	in, err := records.SigningInput(r)
	if err != nil {
		return nil, err
	}
	body := in[len(records.SignatureDomain):]
	r.Signature = id.Sign(cardSigningInput(domain, code, nonce, body))
	enc, err := records.Encode(r)
	if err != nil {
		return nil, err
	}
	p := make([]byte, 0, 1+NonceSize+len(enc))
	p = append(p, plaintextVersion)
	p = append(p, nonce[:]...)
	p = append(p, enc...)
	if len(p) > MaxPlaintext {
		return nil, fmt.Errorf("%w: %d bytes of plaintext, at most %d fit a record", ErrTooLarge, len(p), MaxPlaintext)
	}
	return p, nil
}

// DecodePlaintext parses a plaintext (version ‖ nonce ‖ card record) without
// checking the card's signature. It never panics; whatever it accepts
// re-encodes to the same bytes (EncodePlaintext).
func DecodePlaintext(p []byte) (Card, [NonceSize]byte, []byte, error) {
	var nonce [NonceSize]byte
	if len(p) > MaxPlaintext {
		return Card{}, nonce, nil, fmt.Errorf("%w: %d bytes, at most %d", ErrMalformed, len(p), MaxPlaintext)
	}
	if len(p) < 1+NonceSize {
		return Card{}, nonce, nil, fmt.Errorf("%w: %d bytes (truncated)", ErrMalformed, len(p))
	}
	if p[0] != plaintextVersion {
		return Card{}, nonce, nil, fmt.Errorf("%w: version %d, want %d", ErrMalformed, p[0], plaintextVersion)
	}
	copy(nonce[:], p[1:1+NonceSize])
	r, err := records.Decode(p[1+NonceSize:])
	if err != nil {
		return Card{}, nonce, nil, fmt.Errorf("%w: card: %w", ErrMalformed, err)
	}
	if !r.Name.Secured || r.Withdrawn || r.Seq != 0 {
		return Card{}, nonce, nil, fmt.Errorf("%w: card must be a secured, not withdrawn, seq 0 record", ErrMalformed)
	}
	if identity.AuthorityOf(r.PublicKey) != r.Name.Authority {
		return Card{}, nonce, nil, fmt.Errorf("%w: card name %s is not a name of its key", ErrMalformed, r.Name)
	}
	c := Card{
		Name: r.Name, Key: r.PublicKey, Issued: r.Issued, Expires: r.Expires,
		Endpoints: r.Endpoints, Services: r.Services, TXT: r.TXT, Payload: r.Payload,
	}
	return c, nonce, r.Signature, nil
}

// EncodePlaintext is DecodePlaintext's inverse, for a card already signed.
func EncodePlaintext(c Card, nonce [NonceSize]byte, sig []byte) ([]byte, error) {
	r := cardRecord(&c)
	r.Signature = sig
	enc, err := records.Encode(r)
	if err != nil {
		return nil, err
	}
	return append(append([]byte{plaintextVersion}, nonce[:]...), enc...), nil
}

// openPlaintext decodes p and checks the card's signature.
func openPlaintext(domain string, code identity.Authority, p []byte) (Card, [NonceSize]byte, error) {
	c, nonce, sig, err := DecodePlaintext(p)
	if err != nil {
		return c, nonce, err
	}
	in, err := records.SigningInput(cardRecord(&c))
	if err != nil {
		return c, nonce, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if !ed25519.Verify(c.Key, cardSigningInput(domain, code, nonce, in[len(records.SignatureDomain):]), sig) {
		return c, nonce, fmt.Errorf("%w: the card's signature by %s does not verify", ErrForged, c.Name)
	}
	return c, nonce, nil
}

func aad(domain string, key identity.Key) []byte {
	return append([]byte(domain), key[:]...)
}

// encrypt returns version ‖ 24-byte nonce ‖ XChaCha20-Poly1305 ciphertext.
func encrypt(key [32]byte, ad, plaintext []byte, rnd io.Reader) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+aead.NonceSize(), payloadOverhead+len(plaintext))
	out[0] = payloadVersion
	if _, err := io.ReadFull(rnd, out[1:]); err != nil {
		return nil, fmt.Errorf("invite: nonce: %w", err)
	}
	return aead.Seal(out, out[1:], plaintext, ad), nil
}

func decrypt(key [32]byte, ad, payload []byte) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		return nil, err
	}
	if len(payload) < payloadOverhead || payload[0] != payloadVersion {
		return nil, fmt.Errorf("%w: payload is not a version %d ciphertext", ErrForged, payloadVersion)
	}
	p, err := aead.Open(nil, payload[1:1+aead.NonceSize()], payload[1+aead.NonceSize():], ad)
	if err != nil {
		return nil, fmt.Errorf("%w: payload does not decrypt with this code's key", ErrForged)
	}
	return p, nil
}

// seal builds the outer record at name: signed by the code's key, its payload
// the encrypted card.
func (k *Keys) seal(name identity.Name, cardDomain, aadDomain string, key [32]byte, c *Card, nonce [NonceSize]byte, id *identity.Identity, seq uint64, rnd io.Reader) (*records.Record, error) {
	p, err := sealPlaintext(cardDomain, k.Signer.Authority(), nonce, c, id)
	if err != nil {
		return nil, fmt.Errorf("invite: %w", err)
	}
	payload, err := encrypt(key, aad(aadDomain, name.Key()), p, rnd)
	if err != nil {
		return nil, err
	}
	rec := &records.Record{Name: name, Seq: seq, Issued: c.Issued, Expires: c.Expires, Payload: payload}
	if err := records.Sign(rec, k.Signer); err != nil {
		return nil, fmt.Errorf("invite: %w", err)
	}
	return rec, nil
}

// SealInvitation signs inv's card with the inviter's identity (filling in
// its key and authority) and returns the record to store: the invitation
// name, signed by the code's key, its payload the encrypted card. rnd gives
// the encryption nonce.
func (k *Keys) SealInvitation(inv *Invitation, inviter *identity.Identity, seq uint64, rnd io.Reader) (*records.Record, error) {
	return k.seal(k.Invitation, invitationCardDomain, invitationAADDomain, k.InvitationKey, &inv.Card, inv.Nonce, inviter, seq, rnd)
}

// SealAcceptance is SealInvitation for the helper's acceptance, published
// under the acceptance name.
func (k *Keys) SealAcceptance(acc *Acceptance, helper *identity.Identity, seq uint64, rnd io.Reader) (*records.Record, error) {
	return k.seal(k.Acceptance, acceptanceCardDomain, acceptanceAADDomain, k.AcceptanceKey, &acc.Card, acc.Nonce, helper, seq, rnd)
}

// open checks an outer record found at name and decrypts it.
func (k *Keys) open(rec *records.Record, name identity.Name, cardDomain, aadDomain string, key [32]byte, now time.Time) (Card, [NonceSize]byte, error) {
	var nonce [NonceSize]byte
	if rec.Name != name {
		return Card{}, nonce, fmt.Errorf("%w: record for %s, not %s", ErrForged, rec.Name, name)
	}
	if err := records.Verify(rec, now); err != nil {
		if errors.Is(err, records.ErrExpired) {
			return Card{}, nonce, fmt.Errorf("%w: %w", ErrExpired, err)
		}
		return Card{}, nonce, fmt.Errorf("%w: %w", ErrForged, err)
	}
	if rec.Withdrawn {
		return Card{}, nonce, fmt.Errorf("%w: the inviter withdrew it", ErrUsed)
	}
	p, err := decrypt(key, aad(aadDomain, name.Key()), rec.Payload)
	if err != nil {
		return Card{}, nonce, err
	}
	c, nonce, err := openPlaintext(cardDomain, k.Signer.Authority(), p)
	if err != nil {
		if errors.Is(err, ErrMalformed) {
			err = fmt.Errorf("%w: %w", ErrForged, err)
		}
		return c, nonce, err
	}
	if !now.Before(c.Expires) {
		return c, nonce, fmt.Errorf("%w at %s", ErrExpired, c.Expires.Format(time.RFC3339))
	}
	return c, nonce, nil
}

// OpenInvitation checks a record found under the invitation's key (its name,
// signature by the code's key, lifetime, not withdrawn), decrypts it and
// checks the inviter's signature on the card. Errors: ErrExpired, ErrUsed
// (withdrawn), ErrForged.
func (k *Keys) OpenInvitation(rec *records.Record, now time.Time) (*Invitation, error) {
	c, nonce, err := k.open(rec, k.Invitation, invitationCardDomain, invitationAADDomain, k.InvitationKey, now)
	if err != nil {
		return nil, err
	}
	return &Invitation{Card: c, Nonce: nonce}, nil
}

// OpenAcceptance is OpenInvitation for a record under the acceptance key.
func (k *Keys) OpenAcceptance(rec *records.Record, now time.Time) (*Acceptance, error) {
	c, nonce, err := k.open(rec, k.Acceptance, acceptanceCardDomain, acceptanceAADDomain, k.AcceptanceKey, now)
	if err != nil {
		return nil, err
	}
	return &Acceptance{Card: c, Nonce: nonce}, nil
}

// Withdrawal returns the signed withdrawal of name (the invitation or the
// acceptance) with sequence number seq, which must be above the withdrawn
// record's; storers keep it until expires.
func (k *Keys) Withdrawal(name identity.Name, seq uint64, now, expires time.Time) (*records.Record, error) {
	now = now.Truncate(time.Second)
	if !expires.After(now) {
		expires = now.Add(time.Minute)
	}
	rec := &records.Record{Name: name, Seq: seq, Issued: now, Expires: expires.Truncate(time.Second), Withdrawn: true}
	if err := records.Sign(rec, k.Signer); err != nil {
		return nil, fmt.Errorf("invite: %w", err)
	}
	return rec, nil
}

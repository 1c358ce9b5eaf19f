package invite

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/records"
)

// memOverlay is an Overlay in a map that, like a storing node, verifies what
// it is given and keeps per name and publisher the newest record.
type memOverlay struct {
	mu    sync.Mutex
	now   func() time.Time
	recs  map[identity.Key][]*records.Record
	bytes [][]byte // every encoding it was given: what a storer holds
	// hideWithdrawn makes Resolve report a withdrawal as ErrWithdrawn instead
	// of returning it, as the overlay's node does.
	hideWithdrawn bool
}

func newMem() *memOverlay {
	return &memOverlay{now: time.Now, recs: map[identity.Key][]*records.Record{}}
}

func (m *memOverlay) Store(_ context.Context, r *records.Record) error {
	if err := records.Verify(r, m.now()); err != nil {
		return err
	}
	enc, err := records.Encode(r)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.bytes = append(m.bytes, enc)
	k := r.Key()
	for i, o := range m.recs[k] {
		if o.Name == r.Name && o.PublicKey.Equal(r.PublicKey) {
			if records.Newer(r, o) {
				m.recs[k][i] = r
			}
			return nil
		}
	}
	m.recs[k] = append(m.recs[k], r)
	return nil
}

func (m *memOverlay) Resolve(_ context.Context, k identity.Key) ([]*records.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.hideWithdrawn {
		return append([]*records.Record(nil), m.recs[k]...), nil
	}
	var live []*records.Record
	withdrawn := false
	for _, r := range m.recs[k] {
		if r.Withdrawn {
			withdrawn = true
		} else {
			live = append(live, r)
		}
	}
	if len(live) == 0 && withdrawn {
		return nil, ErrWithdrawn
	}
	return live, nil
}

// put stores r without verifying it, as a hostile storer might return it.
func (m *memOverlay) put(r *records.Record) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs[r.Key()] = append(m.recs[r.Key()], r)
}

func newID(t testing.TB) *identity.Identity {
	t.Helper()
	id, err := identity.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func aliceCard() Card {
	return Card{
		Name:      identity.Name{Classifier: "Alice-Laptop"},
		Endpoints: []netip.Addr{netip.MustParseAddr("192.0.2.77"), netip.MustParseAddr("2001:db8::77")},
		Services:  []records.Service{{Service: "SSH", Proto: "tcp", Port: 2222}},
		TXT:       []string{"remote assistance for alice"},
		Payload:   []byte("session-token-5f1a9c3e"),
	}
}

func TestOfferAccept(t *testing.T) {
	t.Parallel()
	for _, hide := range []bool{false, true} {
		ov := newMem()
		ov.hideWithdrawn = hide
		testOfferAccept(t, ov)
	}
}

func testOfferAccept(t *testing.T, ov *memOverlay) {
	alice, bob := newID(t), newID(t)
	ctx := t.Context()
	p, err := Offer(ctx, ov, alice, aliceCard(), Options{Lifetime: time.Minute, Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	code, err := Parse(strings.ToLower(p.Code.String()))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var acc *Acceptance
	var waitErr error
	go func() { defer close(done); acc, waitErr = p.Wait(ctx) }()

	inv, err := Accept(ctx, ov, code, bob, Card{Name: identity.Name{Classifier: "bob"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := identity.NewSecuredName("alice-laptop", alice.PublicKey())
	if inv.Name != want || !inv.Key.Equal(alice.PublicKey()) {
		t.Fatalf("invitation from %s (%x), want %s", inv.Name, inv.Key, want)
	}
	if len(inv.Endpoints) != 2 || inv.Endpoints[0] != netip.MustParseAddr("192.0.2.77") ||
		len(inv.Services) != 1 || inv.Services[0] != (records.Service{Service: "ssh", Proto: "tcp", Port: 2222}) ||
		len(inv.TXT) != 1 || string(inv.Payload) != "session-token-5f1a9c3e" {
		t.Fatalf("invitation contents %+v", inv.Card)
	}
	<-done
	if waitErr != nil {
		t.Fatal(waitErr)
	}
	bobName, _ := identity.NewSecuredName("bob", bob.PublicKey())
	if acc.Name != bobName {
		t.Fatalf("accepted by %s, want %s", acc.Name, bobName)
	}
	// The inviter withdrew the invitation: a second accept is refused.
	if _, err := Accept(ctx, ov, code, newID(t), Card{Name: identity.Name{Classifier: "carol"}}, Options{}); !errors.Is(err, ErrUsed) {
		t.Fatalf("second accept: error %v, want ErrUsed", err)
	}
	// Also where the withdrawal is gone but the acceptance is still stored.
	ov.mu.Lock()
	delete(ov.recs, p.Keys.Invitation.Key())
	ov.mu.Unlock()
	if _, err := Accept(ctx, ov, code, newID(t), Card{Name: identity.Name{Classifier: "carol"}}, Options{}); !errors.Is(err, ErrUsed) {
		t.Fatalf("accept after the withdrawal was dropped: error %v, want ErrUsed", err)
	}
}

// Before the inviter has seen the acceptance, a second helper is refused by
// the acceptance already stored.
func TestSecondAcceptBeforeWithdrawal(t *testing.T) {
	t.Parallel()
	ov := newMem()
	p, err := Offer(t.Context(), ov, newID(t), aliceCard(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Accept(t.Context(), ov, p.Code, newID(t), Card{Name: identity.Name{Classifier: "bob"}}, Options{}); err != nil {
		t.Fatal(err)
	}
	_, err = Accept(t.Context(), ov, p.Code, newID(t), Card{Name: identity.Name{Classifier: "carol"}}, Options{})
	if !errors.Is(err, ErrUsed) || !strings.Contains(err.Error(), "bob.") {
		t.Fatalf("second accept: error %v, want ErrUsed naming bob", err)
	}
}

func TestWrongCode(t *testing.T) {
	t.Parallel()
	ov := newMem()
	p, err := Offer(t.Context(), ov, newID(t), aliceCard(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	other := CodeFromUint64(p.Code.Uint64() ^ 1) // a valid code, but not this one
	if _, err := Accept(t.Context(), ov, other, newID(t), Card{Name: identity.Name{Classifier: "bob"}}, Options{}); !errors.Is(err, ErrUnknown) {
		t.Fatalf("wrong code: error %v, want ErrUnknown", err)
	}
}

func TestTypoCaughtLocally(t *testing.T) {
	t.Parallel()
	c, _ := Generate(rand.Reader)
	s := []byte(c.String())
	s[0], s[1] = s[1], s[0]
	if s[0] == s[1] {
		s[0] = map[bool]byte{true: 'A', false: 'B'}[s[0] != 'A']
	}
	if _, err := Parse(string(s)); !errors.Is(err, ErrCodeCheck) {
		t.Fatalf("Parse(%s) error %v, want ErrCodeCheck", s, err)
	}
}

func TestExpired(t *testing.T) {
	t.Parallel()
	ov := newMem()
	clock := time.Now()
	p, err := Offer(t.Context(), ov, newID(t), aliceCard(), Options{Lifetime: time.Minute, Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	later := func() time.Time { return clock.Add(2 * time.Minute) }
	if _, err := Accept(t.Context(), ov, p.Code, newID(t), Card{Name: identity.Name{Classifier: "bob"}}, Options{Now: later}); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired: error %v, want ErrExpired", err)
	}
	p.opts.Now = later
	if _, err := p.Wait(t.Context()); !errors.Is(err, ErrExpired) {
		t.Fatalf("Wait after expiry: error %v, want ErrExpired", err)
	}
}

// A node without the code cannot publish at the invitation's key: a record
// it signs for the invitation name fails the authority check, and one that
// another key holder signs for its own name is not the invitation's name.
// Only the genuine invitation opens.
func TestForgedInvitationRefused(t *testing.T) {
	t.Parallel()
	ov := newMem()
	alice, mallory := newID(t), newID(t)
	p, err := Offer(t.Context(), ov, alice, aliceCard(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Mallory seals a card of her own with her key in place of the code's.
	fake := &Keys{Signer: mallory, Invitation: p.Keys.Invitation, InvitationKey: p.Keys.InvitationKey}
	inv := &Invitation{Card: Card{Name: identity.Name{Classifier: "mallory"}, Issued: time.Now(), Expires: time.Now().Add(time.Hour)}}
	forged, err := fake.seal(p.Keys.Invitation, invitationCardDomain, invitationAADDomain, p.Keys.InvitationKey, &inv.Card, inv.Nonce, mallory, p.Record.Seq+100, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// Signing puts her own authority in the name: another name, another key...
	if forged.Name == p.Keys.Invitation || forged.Key() == p.Keys.Invitation.Key() {
		t.Fatal("a key other than the code's signed a record for the invitation's name")
	}
	// ...so she can only hand it out at the invitation's key as a hostile
	// storer would, with its name rewritten: the signature no longer holds.
	rewritten := *forged
	rewritten.Name = p.Keys.Invitation
	ov.put(forged)
	ov.put(&rewritten)
	if err := ov.Store(t.Context(), &rewritten); err == nil {
		t.Fatal("a storing node accepted the forged record")
	}
	got, err := Find(t.Context(), ov, p.Keys, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !got.Key.Equal(alice.PublicKey()) {
		t.Fatalf("opened an invitation from %s", got.Name)
	}
	// Without the genuine one, the forgeries alone are ErrForged.
	ov2 := newMem()
	ov2.put(forged)
	ov2.put(&rewritten)
	if _, err := Find(t.Context(), ov2, p.Keys, time.Now()); !errors.Is(err, ErrForged) {
		t.Fatalf("forgeries only: error %v, want ErrForged", err)
	}
}

// A code holder other than the inviter may seal a card in the inviter's name
// only with the inviter's key: a card signature by another identity, or one
// moved from another code, does not verify.
func TestCardSignatureBinding(t *testing.T) {
	t.Parallel()
	alice := newID(t)
	k1, k2 := Derive(CodeFromUint64(1)), Derive(CodeFromUint64(2))
	now := time.Now()
	inv := &Invitation{Card: aliceCard()}
	inv.Issued, inv.Expires = now, now.Add(time.Hour)
	p, err := sealPlaintext(invitationCardDomain, k1.Signer.Authority(), inv.Nonce, &inv.Card, alice)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := openPlaintext(invitationCardDomain, k1.Signer.Authority(), p); err != nil {
		t.Fatal(err)
	}
	if _, _, err := openPlaintext(invitationCardDomain, k2.Signer.Authority(), p); !errors.Is(err, ErrForged) {
		t.Fatalf("card moved to another code: error %v, want ErrForged", err)
	}
	if _, _, err := openPlaintext(acceptanceCardDomain, k1.Signer.Authority(), p); !errors.Is(err, ErrForged) {
		t.Fatalf("invitation card read as an acceptance: error %v, want ErrForged", err)
	}
	// Swap in another key (and its authority): the signature is alice's.
	mallory := newID(t)
	c, nonce, sig, err := DecodePlaintext(p)
	if err != nil {
		t.Fatal(err)
	}
	c.Key = mallory.PublicKey()
	c.Name.Authority = mallory.Authority()
	q, err := EncodePlaintext(c, nonce, sig)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := openPlaintext(invitationCardDomain, k1.Signer.Authority(), q); !errors.Is(err, ErrForged) {
		t.Fatalf("card with another key: error %v, want ErrForged", err)
	}
}

// What a storer holds — every record encoding the overlay was given — holds
// none of the inviter's or helper's keys, authorities, names, addresses, TXT
// or payload.
func TestStorerLearnsNothing(t *testing.T) {
	t.Parallel()
	ov := newMem()
	alice, bob := newID(t), newID(t)
	card := aliceCard()
	p, err := Offer(t.Context(), ov, alice, card, Options{Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	bobCard := Card{Name: identity.Name{Classifier: "bob-desk"}, Endpoints: []netip.Addr{netip.MustParseAddr("198.51.100.99")}, Payload: []byte("bob-secret-fingerprint")}
	if _, err := Accept(t.Context(), ov, p.Code, bob, bobCard, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	secrets := map[string][]byte{
		"alice's key": alice.PublicKey(), "bob's key": bob.PublicKey(),
		"code": []byte(p.Code.Compact()),
	}
	for who, id := range map[string]*identity.Identity{"alice": alice, "bob": bob} {
		a := id.Authority()
		secrets[who+"'s authority"] = a[:]
		secrets[who+"'s authority label"] = []byte(a.String())
	}
	for _, s := range []string{"alice-laptop", "Alice-Laptop", "bob-desk", "remote assistance", "session-token", "bob-secret", "ssh"} {
		secrets[s] = []byte(s)
	}
	for _, c := range []Card{card, bobCard} {
		for _, a := range c.Endpoints {
			secrets[a.String()] = a.AsSlice()
		}
	}
	if len(ov.bytes) < 3 { // invitation, acceptance, withdrawal
		t.Fatalf("storer saw %d records, want at least 3", len(ov.bytes))
	}
	for i, b := range ov.bytes {
		for what, s := range secrets {
			if bytes.Contains(b, s) {
				t.Errorf("stored record %d contains %s", i, what)
			}
		}
	}
}

func TestTooLarge(t *testing.T) {
	t.Parallel()
	c := aliceCard()
	c.Payload = make([]byte, records.MaxPayload)
	if _, err := Offer(t.Context(), newMem(), newID(t), c, Options{}); !errors.Is(err, ErrTooLarge) && !errors.Is(err, records.ErrBounds) {
		t.Fatalf("4 KiB app payload: error %v, want ErrTooLarge", err)
	}
	c.Payload = make([]byte, 3500)
	if _, err := Offer(t.Context(), newMem(), newID(t), c, Options{}); err != nil {
		t.Fatalf("3,500-byte app payload: %v", err)
	}
}

// Cancelling Wait withdraws the invitation.
func TestCancelWithdraws(t *testing.T) {
	t.Parallel()
	ov := newMem()
	p, err := Offer(t.Context(), ov, newID(t), aliceCard(), Options{Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := p.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait: %v, want context.Canceled", err)
	}
	if _, err := Find(t.Context(), ov, p.Keys, time.Now()); !errors.Is(err, ErrUsed) {
		t.Fatalf("after cancel: error %v, want ErrUsed (withdrawn)", err)
	}
}

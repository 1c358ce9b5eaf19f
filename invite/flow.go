package invite

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/records"
)

// Overlay is what the invitation flow needs of an overlay node. The network
// driver satisfies it through a small adapter (cmd/peername); tests use a map.
type Overlay interface {
	// Store replicates a record signed elsewhere on the nodes closest to its
	// key.
	Store(ctx context.Context, rec *records.Record) error
	// Resolve returns the records stored under key. No records and a nil
	// error mean the nodes responsible answered that they hold none. An
	// overlay that hides withdrawals from its callers returns an error
	// wrapping ErrWithdrawn when the newest (verified) record under key is
	// one; it may instead return the withdrawal record itself. Any other
	// error means the lookup was inconclusive.
	Resolve(ctx context.Context, key identity.Key) ([]*records.Record, error)
}

// Defaults of the flow.
const (
	DefaultLifetime  = 30 * time.Minute // Easy Connect's
	MaxLifetime      = 24 * time.Hour
	DefaultRepublish = 5 * time.Minute
	DefaultPoll      = 2 * time.Second
)

// Options tune Offer and Accept. Zero values select defaults.
type Options struct {
	Lifetime  time.Duration    // how long the invitation is valid (Offer)
	Republish time.Duration    // how often the inviter stores it again
	Poll      time.Duration    // how often the inviter looks for an acceptance
	Now       func() time.Time // the clock; nil means time.Now
	Rand      io.Reader        // the code, nonces; nil means crypto/rand
}

func (o *Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

func (o *Options) rand() io.Reader {
	if o.Rand != nil {
		return o.Rand
	}
	return rand.Reader
}

// seqAt is the records' convention for a new sequence number: Unix time in
// milliseconds.
func seqAt(t time.Time) uint64 { return uint64(t.UnixMilli()) }

// Pending is an invitation on offer. Wait waits for the helper.
type Pending struct {
	Code       Code
	Keys       *Keys
	Invitation *Invitation // the inviter's card as the helper will see it
	Record     *records.Record

	ov   Overlay
	opts Options
}

// Offer draws a code, derives its keys, seals the inviter's card into an
// invitation valid for opts.Lifetime and stores it. card.Name needs only its
// classifier: it becomes a secured name of the inviter. Wait then watches for
// the acceptance.
func Offer(ctx context.Context, ov Overlay, inviter *identity.Identity, card Card, opts Options) (*Pending, error) {
	life := opts.Lifetime
	if life == 0 {
		life = DefaultLifetime
	}
	if life < 0 || life > MaxLifetime {
		return nil, fmt.Errorf("invite: lifetime %v: want up to %v", life, MaxLifetime)
	}
	code, err := Generate(opts.rand())
	if err != nil {
		return nil, err
	}
	keys := Derive(code)
	now := opts.now()
	inv := &Invitation{Card: card}
	inv.Issued, inv.Expires = now, now.Add(life)
	if _, err := io.ReadFull(opts.rand(), inv.Nonce[:]); err != nil {
		return nil, fmt.Errorf("invite: nonce: %w", err)
	}
	rec, err := keys.SealInvitation(inv, inviter, seqAt(now), opts.rand())
	if err != nil {
		return nil, err
	}
	if err := ov.Store(ctx, rec); err != nil {
		return nil, fmt.Errorf("invite: publish the invitation: %w", err)
	}
	return &Pending{Code: code, Keys: keys, Invitation: inv, Record: rec, ov: ov, opts: opts}, nil
}

// Wait stores the invitation again every Republish and looks for an
// acceptance every Poll, until a helper accepts (it returns the helper's
// acceptance), the invitation expires (ErrExpired) or ctx ends (its error).
// Whenever it returns before expiry it withdraws the invitation first, so the
// code cannot be used again.
func (p *Pending) Wait(ctx context.Context) (*Acceptance, error) {
	republish, poll := p.opts.Republish, p.opts.Poll
	if republish <= 0 {
		republish = DefaultRepublish
	}
	if poll <= 0 {
		poll = DefaultPoll
	}
	nextStore := p.opts.now().Add(republish)
	for {
		now := p.opts.now()
		if !now.Before(p.Invitation.Expires) {
			return nil, fmt.Errorf("invite: %w unused at %s", ErrExpired, p.Invitation.Expires.Format(time.RFC3339))
		}
		if acc := p.check(ctx, now); acc != nil {
			if err := p.Withdraw(context.WithoutCancel(ctx)); err != nil {
				return acc, err
			}
			return acc, nil
		}
		if !now.Before(nextStore) {
			// A failed store is retried at the next poll; the copies already
			// stored stay until expiry.
			if err := p.ov.Store(ctx, p.Record); err == nil {
				nextStore = now.Add(republish)
			}
		}
		select {
		case <-ctx.Done():
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			err := p.Withdraw(wctx)
			cancel()
			return nil, errors.Join(ctx.Err(), err)
		case <-time.After(poll):
		}
	}
}

// check returns a valid acceptance of this invitation, if one is stored.
func (p *Pending) check(ctx context.Context, now time.Time) *Acceptance {
	lctx, cancel := context.WithTimeout(ctx, max(p.opts.Poll, 5*time.Second))
	defer cancel()
	return findAcceptance(lctx, p.ov, p.Keys, now, &p.Invitation.Nonce)
}

// Withdraw replaces the invitation on the overlay by a signed withdrawal.
func (p *Pending) Withdraw(ctx context.Context) error {
	now := p.opts.now()
	w, err := p.Keys.Withdrawal(p.Keys.Invitation, max(p.Record.Seq+1, seqAt(now)), now, p.Invitation.Expires)
	if err != nil {
		return err
	}
	if err := p.ov.Store(ctx, w); err != nil {
		return fmt.Errorf("invite: withdraw the invitation: %w", err)
	}
	p.Record = w
	return nil
}

// Find looks the invitation of keys up and opens the newest valid record
// there. Errors: ErrUnknown (nothing stored), ErrExpired, ErrUsed (withdrawn),
// ErrForged (records there, none valid), or the overlay's error when the
// lookup was inconclusive.
func Find(ctx context.Context, ov Overlay, keys *Keys, now time.Time) (*Invitation, error) {
	recs, err := ov.Resolve(ctx, keys.Invitation.Key())
	if errors.Is(err, ErrWithdrawn) {
		return nil, fmt.Errorf("invite: %w: the inviter withdrew it", ErrUsed)
	}
	if err != nil {
		return nil, fmt.Errorf("invite: look the invitation up: %w", err)
	}
	if len(recs) == 0 {
		// A withdrawal may be gone where the acceptance is still stored.
		if a := findAcceptance(ctx, ov, keys, now, nil); a != nil {
			return nil, fmt.Errorf("invite: %w: %s accepted it", ErrUsed, a.Name)
		}
		return nil, fmt.Errorf("invite: %w", ErrUnknown)
	}
	// The newest record signed by the code's key decides: a withdrawal
	// beats the invitation it replaced.
	var newest *records.Record
	var errs []error
	for _, r := range recs {
		if r.Name != keys.Invitation {
			errs = append(errs, fmt.Errorf("%w: record for %s", ErrForged, r.Name))
			continue
		}
		if err := records.Verify(r, now); err != nil {
			if errors.Is(err, records.ErrExpired) {
				err = fmt.Errorf("%w: %w", ErrExpired, err)
			} else {
				err = fmt.Errorf("%w: %w", ErrForged, err)
			}
			errs = append(errs, err)
			continue
		}
		if newest == nil || records.Newer(r, newest) {
			newest = r
		}
	}
	if newest == nil {
		return nil, fmt.Errorf("invite: %w", firstOf(errs))
	}
	inv, err := keys.OpenInvitation(newest, now)
	if err != nil {
		return nil, fmt.Errorf("invite: %w", err)
	}
	return inv, nil
}

// findAcceptance looks up the acceptance of keys and returns a valid one
// (for nonce, unless nil), or nil if there is none or the lookup failed.
func findAcceptance(ctx context.Context, ov Overlay, keys *Keys, now time.Time, nonce *[NonceSize]byte) *Acceptance {
	recs, err := ov.Resolve(ctx, keys.Acceptance.Key())
	if err != nil {
		return nil
	}
	return openAcceptances(keys, recs, now, nonce)
}

func openAcceptances(keys *Keys, recs []*records.Record, now time.Time, nonce *[NonceSize]byte) *Acceptance {
	for _, r := range recs {
		if a, err := keys.OpenAcceptance(r, now); err == nil && (nonce == nil || a.Nonce == *nonce) {
			return a
		}
	}
	return nil
}

// firstOf prefers an ErrExpired among errs (an expired genuine invitation
// says more than a forgery beside it).
func firstOf(errs []error) error {
	for _, e := range errs {
		if errors.Is(e, ErrExpired) {
			return e
		}
	}
	return errors.Join(errs...)
}

// Accept finds and opens the invitation of code, refuses it if a helper has
// already accepted it, and stores the helper's acceptance (helper's card
// bound to the invitation's nonce), which tells the inviter to withdraw it.
// card.Name needs only its classifier. It returns the inviter's invitation.
func Accept(ctx context.Context, ov Overlay, code Code, helper *identity.Identity, card Card, opts Options) (*Invitation, error) {
	keys := Derive(code)
	now := opts.now()
	inv, err := Find(ctx, ov, keys, now)
	if err != nil {
		return nil, err
	}
	recs, err := ov.Resolve(ctx, keys.Acceptance.Key())
	if err != nil && !errors.Is(err, ErrWithdrawn) {
		return nil, fmt.Errorf("invite: look for an earlier acceptance: %w", err)
	}
	if a := openAcceptances(keys, recs, now, &inv.Nonce); a != nil {
		return nil, fmt.Errorf("invite: %w: %s accepted it already", ErrUsed, a.Name)
	}
	acc := &Acceptance{Card: card, Nonce: inv.Nonce}
	acc.Issued, acc.Expires = now, inv.Expires
	rec, err := keys.SealAcceptance(acc, helper, seqAt(now), opts.rand())
	if err != nil {
		return nil, err
	}
	if err := ov.Store(ctx, rec); err != nil {
		return nil, fmt.Errorf("invite: publish the acceptance: %w", err)
	}
	return inv, nil
}

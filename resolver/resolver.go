// Package resolver turns a DNS name in a peer-name zone into verified records
// found on the overlay: it parses the name (identity.ParseName or
// identity.ParseServiceName), derives the overlay key, searches the overlay,
// verifies every record it gets back again (signature, bounds, expiry) and
// keeps only records whose name is exactly the one asked for, so a storing
// node can neither forge a record nor answer with another authority's.
//
// Answers are cached: positive ones until the earlier of the records' expiry
// and the configured TTL, negative ones briefly, in a bounded LRU cache.
// Concurrent queries for one name share a single overlay search, the number
// of searches in flight is bounded, and every lookup honours the caller's
// context.
package resolver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/records"
)

// Errors returned by Resolve. Test for them with errors.Is.
var (
	// ErrNotFound means the name does not exist: it is malformed, nobody
	// published it, its owner withdrew it, or no record that came back
	// passed verification.
	ErrNotFound = errors.New("resolver: name not found")
	// ErrUnavailable means the overlay could not answer in time (search
	// timeout, caller deadline, too many searches in flight, search error).
	// The name may exist.
	ErrUnavailable = errors.New("resolver: overlay unavailable")
	// ErrOverloaded means the lookup was refused at once because too many
	// searches are already running or waiting; it wraps ErrUnavailable.
	ErrOverloaded = fmt.Errorf("%w: too many searches pending", ErrUnavailable)
)

// Searcher finds the records stored under an overlay key. It returns an
// empty slice, or an error wrapping ErrNotFound, when nothing is stored
// there. The records it returns are not trusted: the resolver verifies each
// one again. A *node.Node (overlay/node) is adapted to it by its Resolve method.
type Searcher interface {
	Search(ctx context.Context, key identity.Key) ([]*records.Record, error)
}

// SearcherFunc adapts a function to the Searcher interface.
type SearcherFunc func(ctx context.Context, key identity.Key) ([]*records.Record, error)

// Search calls f(ctx, key).
func (f SearcherFunc) Search(ctx context.Context, key identity.Key) ([]*records.Record, error) {
	return f(ctx, key)
}

// Outcome classifies one overlay search for metrics.
type Outcome string

// Outcomes reported to Config.ObserveSearch.
const (
	OutcomeFound    Outcome = "found"
	OutcomeNotFound Outcome = "notfound"
	OutcomeError    Outcome = "error"
)

// Defaults for zero Config fields.
const (
	DefaultTTL         = 30 * time.Second
	DefaultNegativeTTL = 5 * time.Second
	DefaultTimeout     = 2 * time.Second
	DefaultCacheSize   = 10000
	DefaultMaxInFlight = 128
	// DefaultPendingFactor: MaxPending defaults to this many times
	// MaxInFlight.
	DefaultPendingFactor = 4
)

// Config configures a Resolver. Only Searcher is required.
type Config struct {
	Searcher Searcher
	// TTL caps how long a positive answer is cached (and so the TTL of the
	// DNS records built from it).
	TTL time.Duration
	// NegativeTTL is how long "name not found" is cached.
	NegativeTTL time.Duration
	// Timeout bounds one overlay search, whatever the callers' deadlines.
	Timeout time.Duration
	// CacheSize bounds the number of cached answers, positive and negative.
	CacheSize int
	// MaxInFlight bounds the number of overlay searches running at once;
	// searches beyond it wait for a slot until their timeout.
	MaxInFlight int
	// MaxPending bounds the searches running or waiting for a slot (names
	// being looked up); a lookup of one more name fails at once with
	// ErrOverloaded, so a flood of random names costs neither unbounded
	// searches nor unbounded waiting goroutines. Lookups of a name already
	// being searched for always join that search.
	MaxPending int
	// Now returns the current time; time.Now when nil.
	Now func() time.Time
	// ObserveSearch, when set, is called after every overlay search with
	// its duration and outcome.
	ObserveSearch func(d time.Duration, o Outcome)
}

// Resolver resolves peer names through a Searcher. It is safe for
// concurrent use.
type Resolver struct {
	cfg   Config
	cache *cache
	sem   chan struct{}

	mu      sync.Mutex
	flights map[identity.Key]*flight
}

// flight is one overlay search shared by every lookup of its key.
type flight struct {
	done    chan struct{}
	ans     *Answer
	err     error
	waiters int
	cancel  context.CancelFunc
	// forgotten: Forget ran while the search was in flight, so what it
	// finds may predate a publish: its waiters get it, the cache does not.
	forgotten bool
}

// New returns a Resolver for cfg.
func New(cfg Config) (*Resolver, error) {
	if cfg.Searcher == nil {
		return nil, errors.New("resolver: Config.Searcher is nil")
	}
	if cfg.TTL < 0 || cfg.NegativeTTL < 0 || cfg.Timeout < 0 || cfg.CacheSize < 0 || cfg.MaxInFlight < 0 || cfg.MaxPending < 0 {
		return nil, errors.New("resolver: negative Config value")
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.NegativeTTL == 0 {
		cfg.NegativeTTL = DefaultNegativeTTL
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.MaxPending == 0 {
		cfg.MaxPending = DefaultPendingFactor * cfg.MaxInFlight
	}
	if cfg.MaxPending < cfg.MaxInFlight {
		return nil, errors.New("resolver: MaxPending below MaxInFlight")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Resolver{
		cfg:     cfg,
		cache:   newCache(cfg.CacheSize),
		sem:     make(chan struct{}, cfg.MaxInFlight),
		flights: make(map[identity.Key]*flight),
	}, nil
}

// Query is a parsed DNS question name.
type Query struct {
	Name identity.Name
	// Service and Proto are set (without their leading '_') when the
	// question was for "_svc._proto.<classifier>.<authority>.<zone>".
	Service, Proto string

	key identity.Key // Name.Key(), computed once by ParseQuery
}

// Key returns the overlay key of the query's name.
func (q Query) Key() identity.Key {
	if q.key == (identity.Key{}) {
		return q.Name.Key()
	}
	return q.key
}

// ParseQuery parses a DNS name in zone as a peer name or a service name
// under one. Errors wrap ErrNotFound and the identity error that explains
// why.
func ParseQuery(qname, zone string) (Query, error) {
	n, err := identity.ParseName(qname, zone)
	if err == nil {
		return Query{Name: n, key: n.Key()}, nil
	}
	svc, proto, sn, serr := identity.ParseServiceName(qname, zone)
	if serr == nil {
		return Query{Name: sn, Service: svc, Proto: proto, key: sn.Key()}, nil
	}
	return Query{}, fmt.Errorf("%w: %q: %w", ErrNotFound, qname, err)
}

// Answer is the verified result of a lookup. It is shared between callers
// and must not be modified.
type Answer struct {
	Query Query
	// Records are the live records of the name, one per publisher (secured
	// names have exactly one), most recently issued first.
	Records []*records.Record
	// Expires is when the answer stops being valid: the earlier of the
	// first record expiry and the end of the cache TTL.
	Expires time.Time
}

// TTL returns the number of seconds the answer remains valid at now,
// at least 1.
func (a *Answer) TTL(now time.Time) uint32 {
	s := a.Expires.Sub(now) / time.Second
	if s < 1 {
		return 1
	}
	return uint32(s)
}

// Addrs returns the distinct addresses of all records, in record order.
func (a *Answer) Addrs() []netip.Addr {
	var out []netip.Addr
	for _, r := range a.Records {
		for _, ip := range r.Endpoints {
			ip = ip.Unmap()
			if !slices.Contains(out, ip) {
				out = append(out, ip)
			}
		}
	}
	return out
}

// Services returns the distinct services of all records that match the
// query's service and protocol (all services when the query named none).
func (a *Answer) Services() []records.Service {
	var out []records.Service
	for _, r := range a.Records {
		for _, s := range r.Services {
			if a.Query.Service != "" && (s.Service != a.Query.Service || s.Proto != a.Query.Proto) {
				continue
			}
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// TXT returns the distinct TXT strings of all records.
func (a *Answer) TXT() []string {
	var out []string
	for _, r := range a.Records {
		for _, t := range r.TXT {
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}

// Resolve resolves qname, a name in zone. It returns an error wrapping
// ErrNotFound when the name does not exist (including a service name whose
// record lacks that service) and one wrapping ErrUnavailable when the
// overlay did not answer before ctx or the search timeout ended.
func (r *Resolver) Resolve(ctx context.Context, qname, zone string) (*Answer, error) {
	q, err := ParseQuery(qname, zone)
	if err != nil {
		return nil, err
	}
	return r.Lookup(ctx, q)
}

// Lookup resolves a parsed query; see Resolve.
func (r *Resolver) Lookup(ctx context.Context, q Query) (*Answer, error) {
	ans, err := r.lookupName(ctx, q.Name, q.Key())
	if err != nil {
		return nil, err
	}
	if q.Service == "" && q.Proto == "" {
		if ans.Query == q {
			return ans, nil
		}
		a := *ans
		a.Query = q
		return &a, nil
	}
	a := *ans
	a.Query = q
	if len(a.Services()) == 0 {
		return nil, fmt.Errorf("%w: %s has no service _%s._%s", ErrNotFound, q.Name, q.Service, q.Proto)
	}
	return &a, nil
}

// lookupName returns the answer for a name from the cache or from a
// (shared) overlay search.
func (r *Resolver) lookupName(ctx context.Context, name identity.Name, key identity.Key) (*Answer, error) {
	if ans, err, ok := r.cache.get(key, r.cfg.Now()); ok {
		return ans, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}

	r.mu.Lock()
	f, ok := r.flights[key]
	switch {
	case ok:
		f.waiters++
	case len(r.flights) >= r.cfg.MaxPending:
		r.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrOverloaded, name)
	default:
		// A search for the name may have ended between the cache check
		// above and taking the lock: its answer is cached by now.
		if ans, err, ok := r.cache.get(key, r.cfg.Now()); ok {
			r.mu.Unlock()
			return ans, err
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Timeout)
		f = &flight{done: make(chan struct{}), waiters: 1, cancel: cancel}
		r.flights[key] = f
		go r.run(sctx, f, key, name)
	}
	r.mu.Unlock()

	select {
	case <-f.done:
		return f.ans, f.err
	case <-ctx.Done():
		r.mu.Lock()
		f.waiters--
		if f.waiters == 0 {
			// Nobody waits for this search any more: stop it, and let
			// the next lookup of the name start a fresh one.
			f.cancel()
			if r.flights[key] == f {
				delete(r.flights, key)
			}
		}
		r.mu.Unlock()
		return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, name, ctx.Err())
	}
}

// run performs the overlay search of a flight, caches its result and
// releases the flight's waiters.
func (r *Resolver) run(ctx context.Context, f *flight, key identity.Key, name identity.Name) {
	ans, err := r.search(ctx, key, name)
	now := r.cfg.Now()
	r.mu.Lock()
	switch {
	case f.forgotten:
	case err == nil:
		r.cache.put(key, ans, nil, ans.Expires)
	case errors.Is(err, ErrNotFound):
		r.cache.put(key, nil, err, now.Add(r.cfg.NegativeTTL))
	}
	f.ans, f.err = ans, err
	if r.flights[key] == f {
		delete(r.flights, key)
	}
	close(f.done)
	r.mu.Unlock()
	f.cancel()
}

// search takes an in-flight slot, searches the overlay and verifies what
// comes back.
func (r *Resolver) search(ctx context.Context, key identity.Key, name identity.Name) (*Answer, error) {
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %s: waiting for a search slot: %w", ErrUnavailable, name, ctx.Err())
	}
	start := time.Now()
	recs, err := r.cfg.Searcher.Search(ctx, key)
	elapsed := time.Since(start)
	<-r.sem

	var ans *Answer
	switch {
	case errors.Is(err, ErrNotFound):
		err = fmt.Errorf("%w: %s: %w", ErrNotFound, name, err)
	case err != nil:
		err = fmt.Errorf("%w: %s: search: %w", ErrUnavailable, name, err)
	default:
		ans, err = r.verify(name, recs)
	}
	if r.cfg.ObserveSearch != nil {
		o := OutcomeFound
		switch {
		case errors.Is(err, ErrNotFound):
			o = OutcomeNotFound
		case err != nil:
			o = OutcomeError
		}
		r.cfg.ObserveSearch(elapsed, o)
	}
	return ans, err
}

// verify keeps the records that verify and carry exactly name, takes the
// newest per publisher and drops withdrawn ones.
func (r *Resolver) verify(name identity.Name, recs []*records.Record) (*Answer, error) {
	now := r.cfg.Now()
	var newest []*records.Record // one per publisher key
	refused := 0
	for _, rec := range recs {
		if rec == nil {
			continue
		}
		if err := records.Verify(rec, now); err != nil || rec.Name != name {
			refused++
			continue
		}
		i := slices.IndexFunc(newest, func(o *records.Record) bool { return bytes.Equal(o.PublicKey, rec.PublicKey) })
		switch {
		case i < 0:
			newest = append(newest, rec)
		case records.Newer(rec, newest[i]):
			newest[i] = rec
		}
	}
	live := slices.DeleteFunc(newest, func(rec *records.Record) bool { return rec.Withdrawn })
	if len(live) == 0 {
		return nil, fmt.Errorf("%w: %s: no live verified record (%d returned, %d refused)", ErrNotFound, name, len(recs), refused)
	}
	slices.SortFunc(live, func(a, b *records.Record) int {
		if c := b.Issued.Compare(a.Issued); c != 0 {
			return c
		}
		return bytes.Compare(a.PublicKey, b.PublicKey)
	})
	expires := now.Add(r.cfg.TTL)
	for _, rec := range live {
		if rec.Expires.Before(expires) {
			expires = rec.Expires
		}
	}
	return &Answer{Query: Query{Name: name, key: name.Key()}, Records: live, Expires: expires}, nil
}

// Forget drops any cached answer for name, so the next lookup searches the
// overlay. A node calls it after publishing or withdrawing one of its names.
//
// A search for the name already in flight may have asked before the
// publish landed: its answer is not cached, and later lookups start a new
// search instead of joining it.
func (r *Resolver) Forget(name identity.Name) {
	key := name.Key()
	r.mu.Lock()
	if f := r.flights[key]; f != nil {
		f.forgotten = true
		delete(r.flights, key)
	}
	r.cache.remove(key)
	r.mu.Unlock()
}

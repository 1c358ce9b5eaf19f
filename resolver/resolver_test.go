package resolver

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/internal/testutil"
	"github.com/peername/peername/records"
)

const zone = identity.DefaultZone

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// clock is a settable clock for Config.Now.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.ns.Store(t.UnixNano()); return c }
func (c *clock) Now() time.Time   { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Add(d time.Duration) {
	c.ns.Add(int64(d))
}

func ident(t testing.TB, seed byte) *identity.Identity { return testutil.Identity(seed) }

// signed returns a record for classifier signed by id, valid from t0 for
// lifetime.
func signed(t testing.TB, id *identity.Identity, classifier string, secured bool, seq uint64, lifetime time.Duration, mutate func(*records.Record)) *records.Record {
	t.Helper()
	return testutil.Signed(t, id, testutil.Name(t, id, classifier, secured), seq, t0, lifetime, mutate)
}

// fakeOverlay is a Searcher over a fixed map that counts searches.
type fakeOverlay struct {
	mu       sync.Mutex
	recs     map[identity.Key][]*records.Record
	searches atomic.Int64
	block    chan struct{} // when non-nil, searches wait for it (or ctx)
	started  chan identity.Key
	err      error
	active   atomic.Int64
	peak     atomic.Int64
}

func newFake(recs ...*records.Record) *fakeOverlay {
	f := &fakeOverlay{recs: make(map[identity.Key][]*records.Record)}
	for _, r := range recs {
		f.add(r.Name.Key(), r)
	}
	return f
}

func (f *fakeOverlay) add(k identity.Key, r *records.Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recs[k] = append(f.recs[k], r)
}

func (f *fakeOverlay) Search(ctx context.Context, key identity.Key) ([]*records.Record, error) {
	f.searches.Add(1)
	n := f.active.Add(1)
	defer f.active.Add(-1)
	for {
		p := f.peak.Load()
		if n <= p || f.peak.CompareAndSwap(p, n) {
			break
		}
	}
	f.mu.Lock()
	started, block, ferr := f.started, f.block, f.err
	f.mu.Unlock()
	if started != nil {
		started <- key
	}
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if ferr != nil {
		return nil, ferr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.recs[key], nil
}

// set changes the fake's error and blocking channel.
func (f *fakeOverlay) set(err error, block chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err, f.block = err, block
}

func newResolver(t testing.TB, s Searcher, c *clock, mod func(*Config)) *Resolver {
	t.Helper()
	cfg := Config{Searcher: s, Now: c.Now, TTL: time.Minute, NegativeTTL: 5 * time.Second, Timeout: time.Minute}
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestResolveVerification(t *testing.T) {
	t.Parallel()
	alice, mallory := ident(t, 1), ident(t, 2)
	good := signed(t, alice, "www", true, 1, time.Hour, nil)
	qname := good.Name.DNS(zone)

	forged := signed(t, alice, "www", true, 2, time.Hour, nil)
	forged.Endpoints = []netip.Addr{netip.MustParseAddr("203.0.113.66")} // changed after signing

	// Mallory's own, validly signed "www" lives under Mallory's authority.
	otherAuthority := signed(t, mallory, "www", true, 5, time.Hour, nil)
	// A validly signed record for a different name.
	otherName := signed(t, alice, "mail", true, 5, time.Hour, nil)
	unsecured := signed(t, mallory, "www", false, 5, time.Hour, nil)
	expired := signed(t, alice, "www", true, 3, time.Minute, nil)
	withdrawn := signed(t, alice, "www", true, 4, time.Hour, func(r *records.Record) {
		r.Withdrawn = true
		r.Endpoints, r.Services, r.TXT = nil, nil, nil
	})
	olderWithdrawn := signed(t, alice, "www", true, 0, time.Hour, func(r *records.Record) {
		r.Withdrawn = true
		r.Endpoints, r.Services, r.TXT = nil, nil, nil
	})

	tests := []struct {
		name    string
		stored  []*records.Record
		advance time.Duration
		wantErr error
		wantSeq uint64
	}{
		{name: "good", stored: []*records.Record{good}, wantSeq: 1},
		{name: "forged refused", stored: []*records.Record{forged}, wantErr: ErrNotFound},
		{name: "forged next to good", stored: []*records.Record{forged, good}, wantSeq: 1},
		{name: "other authority refused", stored: []*records.Record{otherAuthority}, wantErr: ErrNotFound},
		{name: "other name refused", stored: []*records.Record{otherName}, wantErr: ErrNotFound},
		{name: "unsecured for secured refused", stored: []*records.Record{unsecured}, wantErr: ErrNotFound},
		{name: "expired refused", stored: []*records.Record{expired}, advance: 2 * time.Minute, wantErr: ErrNotFound},
		{name: "expired newer falls back to live older", stored: []*records.Record{good, expired}, advance: 2 * time.Minute, wantSeq: 1},
		{name: "newest wins", stored: []*records.Record{good, expired}, wantSeq: 3},
		{name: "withdrawn is absent", stored: []*records.Record{good, withdrawn}, wantErr: ErrNotFound},
		{name: "older withdrawal ignored", stored: []*records.Record{olderWithdrawn, good}, wantSeq: 1},
		{name: "nothing stored", wantErr: ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake()
			for _, r := range tc.stored {
				f.add(good.Name.Key(), r) // all returned under the queried key
			}
			c := newClock(t0.Add(time.Second + tc.advance))
			res := newResolver(t, f, c, nil)
			ans, err := res.Resolve(context.Background(), qname, zone)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(ans.Records) != 1 || ans.Records[0].Seq != tc.wantSeq {
				t.Fatalf("records = %+v, want one with seq %d", ans.Records, tc.wantSeq)
			}
			if ans.Records[0].Name != good.Name {
				t.Fatalf("answer name %v, want %v", ans.Records[0].Name, good.Name)
			}
		})
	}
}

func TestResolveParse(t *testing.T) {
	t.Parallel()
	alice := ident(t, 1)
	good := signed(t, alice, "www", true, 1, time.Hour, nil)
	auth := good.Name.Authority.String()
	tests := []struct {
		qname   string
		wantErr error
		service string
	}{
		{qname: "www." + auth + ".peer.alt."},
		{qname: "WWW." + auth + ".PEER.ALT"},
		{qname: "_ssh._tcp.www." + auth + ".peer.alt.", service: "ssh"},
		{qname: "_http._tcp.www." + auth + ".peer.alt.", wantErr: ErrNotFound},
		{qname: "www.notanauthority.peer.alt.", wantErr: identity.ErrBadAuthority},
		{qname: "www.notanauthority.peer.alt.", wantErr: ErrNotFound},
		{qname: "a.b.c.peer.alt.", wantErr: ErrNotFound},
		{qname: "www." + auth + ".example.", wantErr: ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.qname, func(t *testing.T) {
			t.Parallel()
			res := newResolver(t, newFake(good), newClock(t0), nil)
			ans, err := res.Resolve(context.Background(), tc.qname, zone)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ans.Query.Service != tc.service {
				t.Fatalf("service = %q, want %q", ans.Query.Service, tc.service)
			}
			if got := ans.Services(); tc.service != "" && (len(got) != 1 || got[0].Port != 22) {
				t.Fatalf("services = %+v", got)
			}
			if got := ans.Addrs(); len(got) != 2 {
				t.Fatalf("addrs = %v", got)
			}
			if got := ans.TXT(); len(got) != 1 || got[0] != "hello" {
				t.Fatalf("txt = %v", got)
			}
		})
	}
}

func TestUnsecuredSeveralPublishers(t *testing.T) {
	t.Parallel()
	a, b := ident(t, 1), ident(t, 2)
	ra1 := signed(t, a, "printer", false, 1, time.Hour, nil)
	ra2 := signed(t, a, "printer", false, 2, time.Hour, func(r *records.Record) {
		r.Issued = t0.Add(time.Second)
		r.Endpoints = []netip.Addr{netip.MustParseAddr("192.0.2.2")}
	})
	rb := signed(t, b, "printer", false, 1, time.Hour, func(r *records.Record) {
		r.Endpoints = []netip.Addr{netip.MustParseAddr("192.0.2.3")}
	})
	res := newResolver(t, newFake(ra1, ra2, rb), newClock(t0.Add(time.Minute)), nil)
	ans, err := res.Resolve(context.Background(), "printer.0.peer.alt.", zone)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(ans.Addrs())
	if want := "[192.0.2.2 192.0.2.3]"; got != want {
		t.Fatalf("addrs = %s, want %s", got, want)
	}
}

func TestCaching(t *testing.T) {
	t.Parallel()
	alice := ident(t, 1)
	long := signed(t, alice, "www", true, 1, time.Hour, nil)
	short := signed(t, alice, "short", true, 1, 90*time.Second, nil)
	tests := []struct {
		name      string
		rec       *records.Record
		qname     string
		stillHit  time.Duration // cache still answers after this
		expiredBy time.Duration // searched again after this
		wantTTL   uint32
	}{
		// TTL (1m) is earlier than record expiry.
		{name: "ttl bound", qname: long.Name.DNS(zone), stillHit: 59 * time.Second, expiredBy: 60 * time.Second, wantTTL: 60},
		// Record expires 90s after t0; the clock starts at t0+50s, so
		// the record's 40s left beat the 60s TTL.
		{name: "expiry bound", qname: short.Name.DNS(zone), stillHit: 39 * time.Second, expiredBy: 40 * time.Second, wantTTL: 40},
		// Negative answers last NegativeTTL (5s).
		{name: "negative", qname: "nobody.0.peer.alt.", stillHit: 4 * time.Second, expiredBy: 5 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(long, short)
			c := newClock(t0.Add(50 * time.Second))
			res := newResolver(t, f, c, nil)
			ctx := context.Background()
			ans, err := res.Resolve(ctx, tc.qname, zone)
			if tc.wantTTL != 0 {
				if err != nil {
					t.Fatal(err)
				}
				if got := ans.TTL(c.Now()); got != tc.wantTTL {
					t.Fatalf("TTL = %d, want %d", got, tc.wantTTL)
				}
			} else if !errors.Is(err, ErrNotFound) {
				t.Fatalf("err = %v, want ErrNotFound", err)
			}
			c.Add(tc.stillHit)
			ans2, err2 := res.Resolve(ctx, tc.qname, zone)
			if f.searches.Load() != 1 {
				t.Fatalf("searches = %d after a cached lookup, want 1", f.searches.Load())
			}
			if (err == nil) != (err2 == nil) || (err == nil && ans2.Records[0] != ans.Records[0]) {
				t.Fatalf("cached result differs: %v %v", err2, ans2)
			}
			c.Add(tc.expiredBy - tc.stillHit)
			_, _ = res.Resolve(ctx, tc.qname, zone)
			if f.searches.Load() != 2 {
				t.Fatalf("searches = %d after expiry, want 2", f.searches.Load())
			}
		})
	}
}

func TestForget(t *testing.T) {
	t.Parallel()
	f := newFake()
	res := newResolver(t, f, newClock(t0), nil)
	ctx := context.Background()
	if _, err := res.Resolve(ctx, "x.0.peer.alt.", zone); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	r := signed(t, ident(t, 1), "x", false, 1, time.Hour, nil)
	f.add(r.Name.Key(), r)
	if _, err := res.Resolve(ctx, "x.0.peer.alt.", zone); !errors.Is(err, ErrNotFound) {
		t.Fatalf("negative answer not cached: %v", err)
	}
	res.Forget(r.Name)
	if _, err := res.Resolve(ctx, "x.0.peer.alt.", zone); err != nil {
		t.Fatalf("after Forget: %v", err)
	}
}

func TestCacheBounded(t *testing.T) {
	t.Parallel()
	f := newFake()
	res := newResolver(t, f, newClock(t0), func(c *Config) { c.CacheSize = 3 })
	for i := range 10 {
		_, _ = res.Resolve(context.Background(), fmt.Sprintf("n%d.0.peer.alt.", i), zone)
	}
	if n := res.cache.len(); n != 3 {
		t.Fatalf("cache holds %d entries, want 3", n)
	}
	// The most recent names are still cached, the oldest is not.
	_, _ = res.Resolve(context.Background(), "n9.0.peer.alt.", zone)
	if f.searches.Load() != 10 {
		t.Fatalf("recent name searched again")
	}
	_, _ = res.Resolve(context.Background(), "n0.0.peer.alt.", zone)
	if f.searches.Load() != 11 {
		t.Fatalf("evicted name not searched again")
	}
}

// waitWaiters spins until the flight for key has n waiters.
func waitWaiters(t *testing.T, r *Resolver, key identity.Key, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		f := r.flights[key]
		got := 0
		if f != nil {
			got = f.waiters
		}
		r.mu.Unlock()
		if got == n {
			return
		}
		runtime.Gosched()
	}
	t.Fatalf("flight never reached %d waiters", n)
}

// waitNoFlights spins until no search is running.
func waitNoFlights(t *testing.T, r *Resolver) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		n := len(r.flights)
		r.mu.Unlock()
		if n == 0 {
			return
		}
		runtime.Gosched()
	}
	t.Fatal("searches still running")
}

// TestForgetInFlight: a search that was already running when the name was
// published (Forget) may have missed the record; its "not found" is not
// cached, and a lookup after Forget searches again instead of joining it.
func TestForgetInFlight(t *testing.T) {
	t.Parallel()
	f := newFake()
	block := make(chan struct{})
	f.block, f.started = block, make(chan identity.Key, 4)
	res := newResolver(t, f, newClock(t0), nil)
	ctx := context.Background()
	r := signed(t, ident(t, 1), "x", false, 1, time.Hour, nil)
	first := make(chan error, 1)
	go func() {
		_, err := res.Resolve(ctx, "x.0.peer.alt.", zone)
		first <- err
	}()
	<-f.started // the search asked before the publish
	f.add(r.Name.Key(), r)
	res.Forget(r.Name)
	f.set(nil, nil) // later searches do not block
	second := make(chan error, 1)
	go func() {
		_, err := res.Resolve(ctx, "x.0.peer.alt.", zone)
		second <- err
	}()
	select {
	case <-f.started:
	case <-time.After(30 * time.Second):
		t.Fatal("the lookup after Forget joined the search that began before it")
	}
	if err := <-second; err != nil {
		t.Fatalf("lookup after Forget: %v, want the record", err)
	}
	f.mu.Lock()
	f.recs[r.Name.Key()] = nil // the first search saw no record ...
	f.mu.Unlock()
	close(block)
	if err := <-first; !errors.Is(err, ErrNotFound) {
		t.Fatalf("the first search: %v, want ErrNotFound", err)
	}
	f.add(r.Name.Key(), r)
	// ... and its "not found" must not have replaced the answer.
	if _, err := res.Resolve(ctx, "x.0.peer.alt.", zone); err != nil {
		t.Fatalf("after the stale search ended: %v", err)
	}
}

func TestCoalescing(t *testing.T) {
	t.Parallel()
	rec := signed(t, ident(t, 1), "www", true, 1, time.Hour, nil)
	f := newFake(rec)
	f.block = make(chan struct{})
	res := newResolver(t, f, newClock(t0), nil)
	const n = 50
	errs := make(chan error, n)
	for range n {
		go func() {
			ans, err := res.Resolve(context.Background(), rec.Name.DNS(zone), zone)
			if err == nil && ans.Records[0] != rec {
				err = errors.New("wrong record")
			}
			errs <- err
		}()
	}
	waitWaiters(t, res, rec.Name.Key(), n)
	close(f.block)
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := f.searches.Load(); got != 1 {
		t.Fatalf("%d concurrent lookups made %d searches, want 1", n, got)
	}
}

func TestDeadline(t *testing.T) {
	t.Parallel()
	rec := signed(t, ident(t, 1), "www", true, 1, time.Hour, nil)
	tests := []struct {
		name        string
		callerLimit time.Duration // 0 = no caller deadline
		timeout     time.Duration
		searchErr   error
	}{
		{name: "caller deadline", callerLimit: 50 * time.Millisecond, timeout: time.Hour},
		{name: "search timeout", timeout: 50 * time.Millisecond},
		{name: "search error", timeout: time.Hour, searchErr: errors.New("no route")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(rec)
			f.err = tc.searchErr
			if tc.searchErr == nil {
				f.block = make(chan struct{}) // never released
			}
			res := newResolver(t, f, newClock(t0), func(c *Config) { c.Timeout = tc.timeout })
			ctx := context.Background()
			if tc.callerLimit > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.callerLimit)
				defer cancel()
			}
			_, err := res.Resolve(ctx, rec.Name.DNS(zone), zone)
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
			if tc.searchErr != nil && !errors.Is(err, tc.searchErr) {
				t.Fatalf("err = %v does not wrap %v", err, tc.searchErr)
			}
			if tc.searchErr == nil && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want DeadlineExceeded", err)
			}
			// Failures are not cached: the next lookup searches again.
			f.set(nil, nil)
			if _, err := res.Resolve(context.Background(), rec.Name.DNS(zone), zone); err != nil {
				t.Fatalf("after failure: %v", err)
			}
		})
	}
}

// TestAbandonedSearchCancelled checks that a search nobody waits for any
// more is cancelled rather than left running.
func TestAbandonedSearchCancelled(t *testing.T) {
	t.Parallel()
	started, cancelled, release := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var calls atomic.Int64
	s := SearcherFunc(func(ctx context.Context, key identity.Key) ([]*records.Record, error) {
		if calls.Add(1) > 1 {
			return nil, nil // later searches: the name does not exist
		}
		close(started)
		<-ctx.Done()
		close(cancelled)
		<-release // the abandoned search is slow to finish
		return nil, ctx.Err()
	})
	res := newResolver(t, s, newClock(t0), func(c *Config) { c.Timeout = time.Hour })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := res.Resolve(ctx, "x.0.peer.alt.", zone)
		done <- err
	}()
	<-started // the search runs, and its only caller waits for it
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("abandoned search not cancelled")
	}
	// A new lookup does not join the cancelled search: it gets its own.
	if _, err := res.Resolve(context.Background(), "x.0.peer.alt.", zone); !errors.Is(err, ErrNotFound) {
		t.Fatalf("lookup after an abandoned search: %v, want ErrNotFound", err)
	}
	close(release)
	waitNoFlights(t, res)
}

func TestInFlightBound(t *testing.T) {
	t.Parallel()
	f := newFake()
	f.block = make(chan struct{})
	f.started = make(chan identity.Key)
	const limit, names = 3, 12
	res := newResolver(t, f, newClock(t0), func(c *Config) { c.MaxInFlight = limit })
	errs := make(chan error, names)
	for i := range names {
		go func() {
			_, err := res.Resolve(context.Background(), fmt.Sprintf("flood%d.0.peer.alt.", i), zone)
			errs <- err
		}()
	}
	for range limit {
		<-f.started
	}
	// Every lookup has its flight, but only limit searches run.
	deadline := time.Now().Add(10 * time.Second)
	for {
		res.mu.Lock()
		n := len(res.flights)
		res.mu.Unlock()
		if n == names {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d flights", n)
		}
		runtime.Gosched()
	}
	if got := f.active.Load(); got != limit {
		t.Fatalf("%d searches running, want %d", got, limit)
	}
	close(f.block)
	go func() {
		for range f.started {
		}
	}()
	for range names {
		if err := <-errs; !errors.Is(err, ErrNotFound) {
			t.Fatalf("err = %v", err)
		}
	}
	close(f.started)
	if p := f.peak.Load(); p > limit {
		t.Fatalf("peak %d searches, limit %d", p, limit)
	}
}

// waitFlights spins until n searches are running or waiting.
func waitFlights(t *testing.T, r *Resolver, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		got := len(r.flights)
		r.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d flights, want %d", got, n)
		}
		runtime.Gosched()
	}
}

func TestOverloadFailsFast(t *testing.T) {
	t.Parallel()
	f := newFake()
	f.block = make(chan struct{})
	res := newResolver(t, f, newClock(t0), func(c *Config) { c.MaxInFlight, c.MaxPending = 2, 4 })
	errs := make(chan error, 5)
	for i := range 4 {
		go func() {
			_, err := res.Resolve(context.Background(), fmt.Sprintf("p%d.0.peer.alt.", i), zone)
			errs <- err
		}()
	}
	waitFlights(t, res, 4)
	// A fifth name is refused at once, without a search or a goroutine.
	_, err := res.Resolve(context.Background(), "p4.0.peer.alt.", zone)
	if !errors.Is(err, ErrOverloaded) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrOverloaded", err)
	}
	// A name already being searched for still joins its search.
	go func() {
		_, err := res.Resolve(context.Background(), "p0.0.peer.alt.", zone)
		errs <- err
	}()
	p0, _ := identity.NewUnsecuredName("p0")
	waitWaiters(t, res, p0.Key(), 2)
	close(f.block)
	for range 5 {
		if err := <-errs; !errors.Is(err, ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	}
	if got := f.searches.Load(); got != 4 {
		t.Fatalf("%d searches, want 4", got)
	}
}

func TestObserveSearch(t *testing.T) {
	t.Parallel()
	rec := signed(t, ident(t, 1), "www", true, 1, time.Hour, nil)
	var got []Outcome
	res := newResolver(t, newFake(rec), newClock(t0), func(c *Config) {
		c.ObserveSearch = func(_ time.Duration, o Outcome) { got = append(got, o) }
	})
	_, _ = res.Resolve(context.Background(), rec.Name.DNS(zone), zone)
	_, _ = res.Resolve(context.Background(), "missing.0.peer.alt.", zone)
	if fmt.Sprint(got) != "[found notfound]" {
		t.Fatalf("outcomes = %v", got)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{}); err == nil {
		t.Fatal("nil searcher accepted")
	}
	if _, err := New(Config{Searcher: newFake(), TTL: -1}); err == nil {
		t.Fatal("negative TTL accepted")
	}
	if _, err := New(Config{Searcher: newFake(), MaxInFlight: 10, MaxPending: 5}); err == nil {
		t.Fatal("MaxPending below MaxInFlight accepted")
	}
}

func BenchmarkResolveCached(b *testing.B) {
	rec := signed(b, ident(b, 1), "www", true, 1, time.Hour, nil)
	res := newResolver(b, newFake(rec), newClock(t0), nil)
	qname := rec.Name.DNS(zone)
	ctx := context.Background()
	if _, err := res.Resolve(ctx, qname, zone); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := res.Resolve(ctx, qname, zone); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestCoalescedInconclusive: a shared search that could not conclude (any
// error other than ErrNotFound, such as the overlay's ErrInconclusive)
// reaches every waiter as ErrUnavailable, never as ErrNotFound, and is not
// cached: the next lookup searches again and finds the name.
func TestCoalescedInconclusive(t *testing.T) {
	t.Parallel()
	rec := signed(t, ident(t, 1), "www", true, 1, time.Hour, nil)
	f := newFake(rec)
	f.err = errors.New("overlay: inconclusive, the closest nodes did not all answer")
	f.block = make(chan struct{})
	res := newResolver(t, f, newClock(t0), nil)
	const n = 20
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := res.Resolve(context.Background(), rec.Name.DNS(zone), zone)
			errs <- err
		}()
	}
	waitWaiters(t, res, rec.Name.Key(), n)
	close(f.block)
	for range n {
		if err := <-errs; errors.Is(err, ErrNotFound) || !errors.Is(err, ErrUnavailable) {
			t.Fatalf("waiter: err = %v, want ErrUnavailable, not ErrNotFound", err)
		}
	}
	f.mu.Lock()
	f.err, f.block = nil, nil
	f.mu.Unlock()
	if _, err := res.Resolve(context.Background(), rec.Name.DNS(zone), zone); err != nil {
		t.Fatalf("after an inconclusive search: %v (cached as a negative?)", err)
	}
	if got := f.searches.Load(); got != 2 {
		t.Fatalf("searches = %d, want 2 (one shared, one after)", got)
	}
}

package peername

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/pkg/fall"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/internal/testutil"
	"github.com/peername/peername/overlay"
	"github.com/peername/peername/records"
	"github.com/peername/peername/resolver"
)

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func testIdentity(seed byte) *identity.Identity { return testutil.Identity(seed) }

// record signs a record for classifier (secured under id unless
// unsecured) issued at t0 and valid for an hour.
func record(t testing.TB, id *identity.Identity, classifier string, secured bool, mutate func(*records.Record)) *records.Record {
	t.Helper()
	return testutil.Signed(t, id, testutil.Name(t, id, classifier, secured), 1, t0, time.Hour, func(r *records.Record) {
		r.Endpoints, r.Services, r.TXT = nil, nil, nil // the cases say what a record holds
		if mutate != nil {
			mutate(r)
		}
	})
}

// mapSearcher serves fixed records by key.
type mapSearcher struct {
	mu   sync.Mutex
	recs map[identity.Key][]*records.Record
	err  error
}

func (m *mapSearcher) Search(ctx context.Context, key identity.Key) ([]*records.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return nil, m.err
	}
	return m.recs[key], nil
}

func newMapSearcher(recs ...*records.Record) *mapSearcher {
	m := &mapSearcher{recs: map[identity.Key][]*records.Record{}}
	for _, r := range recs {
		m.recs[r.Key()] = append(m.recs[r.Key()], r)
	}
	return m
}

func newHandler(t testing.TB, s resolver.Searcher, now time.Time) *Peername {
	t.Helper()
	res, err := resolver.New(resolver.Config{
		Searcher: s, TTL: 30 * time.Second, NegativeTTL: 5 * time.Second,
		Timeout: 200 * time.Millisecond, Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return &Peername{
		Zones:    []string{"peer.alt."},
		resolver: res,
		negTTL:   5,
		now:      func() time.Time { return now },
	}
}

func TestServeDNS(t *testing.T) {
	t.Parallel()
	alice, bob := testIdentity(1), testIdentity(2)
	auth := alice.Authority().String()
	www := record(t, alice, "www", true, func(r *records.Record) {
		r.Endpoints = []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}
		r.Services = []records.Service{{Service: "ssh", Proto: "tcp", Port: 22, Priority: 10, Weight: 5}}
		r.TXT = []string{"hello", strings.Repeat("x", 255)}
	})
	v6 := record(t, alice, "v6", true, func(r *records.Record) {
		r.Endpoints = []netip.Addr{netip.MustParseAddr("2001:db8::6")}
	})
	txtOnly := record(t, alice, "note", true, func(r *records.Record) { r.TXT = []string{"just text"} })
	svcOnly := record(t, alice, "svc", true, func(r *records.Record) {
		r.Services = []records.Service{{Service: "http", Proto: "tcp", Port: 8080}}
	})
	gone := record(t, alice, "gone", true, func(r *records.Record) { r.Withdrawn = true })
	p1 := record(t, alice, "printer", false, func(r *records.Record) {
		r.Endpoints = []netip.Addr{netip.MustParseAddr("192.0.2.10")}
	})
	p2 := record(t, bob, "printer", false, func(r *records.Record) {
		r.Endpoints = []netip.Addr{netip.MustParseAddr("192.0.2.11")}
	})
	// A storing node answers alice's name with bob's validly signed record.
	impostor := record(t, bob, "bank", true, func(r *records.Record) {
		r.Endpoints = []netip.Addr{netip.MustParseAddr("203.0.113.66")}
	})
	aliceBank, _ := identity.NewSecuredName("bank", alice.PublicKey())
	s := newMapSearcher(www, v6, txtOnly, svcOnly, gone, p1, p2)
	s.recs[aliceBank.Key()] = []*records.Record{impostor}

	zone := "peer.alt."
	wwwName := "www." + auth + "." + zone
	soa := test.SOA(zone + " 5 IN SOA ns.dns.peer.alt. hostmaster.dns.peer.alt. 1 7200 1800 86400 5")
	tests := []test.Case{
		{Qname: wwwName, Qtype: dns.TypeA, Authoritative: true,
			Answer: []dns.RR{test.A(wwwName + " 30 IN A 192.0.2.1")}},
		{Qname: strings.ToUpper(wwwName), Qtype: dns.TypeA, Authoritative: true,
			Answer: []dns.RR{test.A(strings.ToUpper(wwwName) + " 30 IN A 192.0.2.1")}},
		{Qname: wwwName, Qtype: dns.TypeAAAA, Authoritative: true,
			Answer: []dns.RR{test.AAAA(wwwName + " 30 IN AAAA 2001:db8::1")}},
		{Qname: wwwName, Qtype: dns.TypeTXT, Authoritative: true,
			Answer: []dns.RR{
				test.TXT(wwwName + ` 30 IN TXT "hello"`),
				test.TXT(wwwName + ` 30 IN TXT "` + strings.Repeat("x", 255) + `"`),
			}},
		// RFC 8482: ANY gets one RRset.
		{Qname: wwwName, Qtype: dns.TypeANY, Authoritative: true,
			Answer: []dns.RR{test.A(wwwName + " 30 IN A 192.0.2.1")}},
		{Qname: "v6." + auth + "." + zone, Qtype: dns.TypeANY, Authoritative: true,
			Answer: []dns.RR{test.AAAA("v6." + auth + "." + zone + " 30 IN AAAA 2001:db8::6")}},
		{Qname: "note." + auth + "." + zone, Qtype: dns.TypeANY, Authoritative: true,
			Answer: []dns.RR{test.TXT("note." + auth + "." + zone + ` 30 IN TXT "just text"`)}},
		{Qname: "svc." + auth + "." + zone, Qtype: dns.TypeANY, Authoritative: true,
			Answer: []dns.RR{test.HINFO("svc." + auth + "." + zone + ` 30 IN HINFO "RFC8482" ""`)}},
		// NODATA: the name exists, the type does not.
		{Qname: "v6." + auth + "." + zone, Qtype: dns.TypeA, Authoritative: true, Ns: []dns.RR{soa}},
		{Qname: wwwName, Qtype: dns.TypeMX, Authoritative: true, Ns: []dns.RR{soa}},
		{Qname: wwwName, Qtype: dns.TypeSRV, Authoritative: true, Ns: []dns.RR{soa}},
		// Services.
		{Qname: "_ssh._tcp." + wwwName, Qtype: dns.TypeSRV, Authoritative: true,
			Answer: []dns.RR{test.SRV("_ssh._tcp." + wwwName + " 30 IN SRV 10 5 22 " + wwwName)},
			Extra: []dns.RR{
				test.A(wwwName + " 30 IN A 192.0.2.1"),
				test.AAAA(wwwName + " 30 IN AAAA 2001:db8::1"),
			}},
		{Qname: "_SSH._TCP." + wwwName, Qtype: dns.TypeA, Authoritative: true, Ns: []dns.RR{soa}},
		{Qname: "_http._tcp." + wwwName, Qtype: dns.TypeSRV, Authoritative: true, Rcode: dns.RcodeNameError, Ns: []dns.RR{soa}},
		// Empty non-terminals.
		{Qname: "_tcp." + wwwName, Qtype: dns.TypeSRV, Authoritative: true, Ns: []dns.RR{soa}},
		{Qname: auth + "." + zone, Qtype: dns.TypeA, Authoritative: true, Ns: []dns.RR{soa}},
		{Qname: "0." + zone, Qtype: dns.TypeA, Authoritative: true, Ns: []dns.RR{soa}},
		// Names that do not exist.
		{Qname: "nobody." + auth + "." + zone, Qtype: dns.TypeA, Authoritative: true, Rcode: dns.RcodeNameError, Ns: []dns.RR{soa}},
		{Qname: "gone." + auth + "." + zone, Qtype: dns.TypeA, Authoritative: true, Rcode: dns.RcodeNameError, Ns: []dns.RR{soa}},
		{Qname: "bank." + auth + "." + zone, Qtype: dns.TypeA, Authoritative: true, Rcode: dns.RcodeNameError, Ns: []dns.RR{soa}},
		{Qname: "www.not-an-authority." + zone, Qtype: dns.TypeA, Authoritative: true, Rcode: dns.RcodeNameError, Ns: []dns.RR{soa}},
		{Qname: "a.b.c.d.e." + zone, Qtype: dns.TypeA, Authoritative: true, Rcode: dns.RcodeNameError, Ns: []dns.RR{soa}},
		{Qname: "ns.dns." + zone, Qtype: dns.TypeA, Authoritative: true, Rcode: dns.RcodeNameError, Ns: []dns.RR{soa}},
		// Unsecured names: every publisher's addresses.
		{Qname: "printer.0." + zone, Qtype: dns.TypeA, Authoritative: true,
			Answer: []dns.RR{
				test.A("printer.0." + zone + " 30 IN A 192.0.2.10"),
				test.A("printer.0." + zone + " 30 IN A 192.0.2.11"),
			}},
		// The apex.
		{Qname: zone, Qtype: dns.TypeSOA, Authoritative: true, Answer: []dns.RR{soa}},
		{Qname: zone, Qtype: dns.TypeNS, Authoritative: true, Answer: []dns.RR{test.NS(zone + " 5 IN NS ns.dns.peer.alt.")}},
		{Qname: zone, Qtype: dns.TypeANY, Authoritative: true, Answer: []dns.RR{soa}},
		{Qname: zone, Qtype: dns.TypeA, Authoritative: true, Ns: []dns.RR{soa}},
	}
	h := newHandler(t, s, t0.Add(time.Minute))
	for _, tc := range tests {
		t.Run(dns.TypeToString[tc.Qtype]+"/"+tc.Qname, func(t *testing.T) {
			rec := dnstest.NewRecorder(&test.ResponseWriter{})
			code, err := h.ServeDNS(context.Background(), rec, tc.Msg())
			if err != nil {
				t.Fatalf("ServeDNS: %v", err)
			}
			if code != tc.Rcode {
				t.Fatalf("returned rcode %d, want %d", code, tc.Rcode)
			}
			if rec.Msg == nil {
				t.Fatal("no response written")
			}
			if rec.Msg.Authoritative != tc.Authoritative {
				t.Errorf("AA = %v, want %v", rec.Msg.Authoritative, tc.Authoritative)
			}
			if err := test.SortAndCheck(rec.Msg, tc); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestServeDNSTTLFollowsExpiry(t *testing.T) {
	t.Parallel()
	alice := testIdentity(1)
	r := record(t, alice, "www", true, func(r *records.Record) {
		r.Endpoints = []netip.Addr{netip.MustParseAddr("192.0.2.1")}
		r.Expires = t0.Add(20 * time.Second)
	})
	h := newHandler(t, newMapSearcher(r), t0.Add(8*time.Second))
	rec := dnstest.NewRecorder(&test.ResponseWriter{})
	m := new(dns.Msg)
	m.SetQuestion(r.Name.DNS("peer.alt."), dns.TypeA)
	if _, err := h.ServeDNS(context.Background(), rec, m); err != nil {
		t.Fatal(err)
	}
	if len(rec.Msg.Answer) != 1 || rec.Msg.Answer[0].Header().Ttl != 12 {
		t.Fatalf("answer %v, want one A with TTL 12 (record expires in 12s)", rec.Msg.Answer)
	}
}

func TestServeDNSRefusedAndServfail(t *testing.T) {
	t.Parallel()
	alice := testIdentity(1)
	wwwName := "www." + alice.Authority().String() + ".peer.alt."
	failing := &mapSearcher{err: errors.New("overlay exploded")}
	tests := []struct {
		name     string
		searcher resolver.Searcher
		qname    string
		qclass   uint16
		opcode   int
		want     int
		wantErr  error
	}{
		{name: "notify", searcher: newMapSearcher(), qname: "peer.alt.", opcode: dns.OpcodeNotify, want: dns.RcodeNotImplemented},
		{name: "outside zone", searcher: newMapSearcher(), qname: "example.org.", want: dns.RcodeRefused},
		{name: "chaos class", searcher: newMapSearcher(), qname: wwwName, qclass: dns.ClassCHAOS, want: dns.RcodeRefused},
		{name: "overlay error", searcher: failing, qname: wwwName, want: dns.RcodeServerFailure, wantErr: resolver.ErrUnavailable},
		// A lookup that did not hear the closest nodes: SERVFAIL, never NXDOMAIN.
		{name: "inconclusive", searcher: &mapSearcher{err: searchErr(fmt.Errorf("search: %w", overlay.ErrInconclusive), func() bool { return true })},
			qname: wwwName, want: dns.RcodeServerFailure, wantErr: overlay.ErrInconclusive},
		{name: "overlay too slow", searcher: resolver.SearcherFunc(func(ctx context.Context, _ identity.Key) ([]*records.Record, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}), qname: wwwName, want: dns.RcodeServerFailure, wantErr: context.DeadlineExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHandler(t, tc.searcher, t0)
			m := new(dns.Msg)
			m.SetQuestion(tc.qname, dns.TypeA)
			if tc.qclass != 0 {
				m.Question[0].Qclass = tc.qclass
			}
			m.Opcode = tc.opcode
			rec := dnstest.NewRecorder(&test.ResponseWriter{})
			code, err := h.ServeDNS(context.Background(), rec, m)
			if code != tc.want {
				t.Fatalf("rcode %d, want %d", code, tc.want)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == nil && err != nil {
				t.Fatalf("err = %v", err)
			}
			// SERVFAIL, REFUSED and NOTIMP are written by the server, not the plugin.
			if rec.Msg != nil {
				t.Fatalf("plugin wrote %v", rec.Msg)
			}
		})
	}
}

func TestServeDNSFallthrough(t *testing.T) {
	t.Parallel()
	alice := testIdentity(1)
	tests := []struct {
		name  string
		fall  fall.F
		qname string
		next  bool
	}{
		{name: "nxdomain falls through", fall: fall.Root, qname: "nobody." + alice.Authority().String() + ".peer.alt.", next: true},
		{name: "outside zone falls through", fall: fall.Root, qname: "example.org.", next: true},
		{name: "other fall zone", fall: fall.F{Zones: []string{"example.org."}}, qname: "nobody.0.peer.alt.", next: false},
		{name: "no fallthrough", fall: fall.Zero, qname: "nobody.0.peer.alt.", next: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHandler(t, newMapSearcher(), t0)
			h.Fall = tc.fall
			called := false
			h.Next = test.HandlerFunc(func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
				called = true
				return dns.RcodeSuccess, nil
			})
			m := new(dns.Msg)
			m.SetQuestion(tc.qname, dns.TypeA)
			_, _ = h.ServeDNS(context.Background(), dnstest.NewRecorder(&test.ResponseWriter{}), m)
			if called != tc.next {
				t.Fatalf("next called = %v, want %v", called, tc.next)
			}
		})
	}
}

func BenchmarkServeDNSCached(b *testing.B) {
	alice := testIdentity(1)
	r := record(b, alice, "www", true, func(r *records.Record) {
		r.Endpoints = []netip.Addr{netip.MustParseAddr("192.0.2.1")}
	})
	h := newHandler(b, newMapSearcher(r), t0.Add(time.Minute))
	m := new(dns.Msg)
	m.SetQuestion(r.Name.DNS("peer.alt."), dns.TypeA)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		w := &test.ResponseWriter{}
		if code, err := h.ServeDNS(ctx, w, m); err != nil || code != dns.RcodeSuccess {
			b.Fatal(code, err)
		}
	}
}

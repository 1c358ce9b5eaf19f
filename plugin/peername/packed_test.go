package peername

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/request"
	"github.com/miekg/dns"
	dto "github.com/prometheus/client_model/go"

	"github.com/peername/peername/records"
	"github.com/peername/peername/resolver"
)

// clockHandler is newHandler with a clock the test moves.
func clockHandler(t *testing.T, s resolver.Searcher) (*Peername, *atomic.Int64) {
	t.Helper()
	var now atomic.Int64
	now.Store(t0.Add(time.Minute).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	res, err := resolver.New(resolver.Config{
		Searcher: s, TTL: 30 * time.Second, NegativeTTL: 5 * time.Second,
		Timeout: 200 * time.Millisecond, Now: clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &Peername{Zones: []string{"peer.alt."}, resolver: res, negTTL: 5, serial: 7, now: clock}, &now
}

// serveWire has h answer r the way CoreDNS's server hands a query to a
// zone's first plugin (through a request.ScrubWriter), or, with wrapped,
// behind another plugin's writer (dnstest.Recorder), which rules out the
// packed reply. It returns the reply's wire form and whether it was
// written packed (Write rather than WriteMsg).
func serveWire(t *testing.T, h *Peername, r *dns.Msg, wrapped bool) ([]byte, bool) {
	t.Helper()
	ww := &wireWriter{}
	var w dns.ResponseWriter = request.NewScrubWriter(r, ww)
	if wrapped {
		w = dnstest.NewRecorder(w)
	}
	ctx := context.WithValue(context.Background(), dnsserver.Key{}, &dnsserver.Server{Addr: "dns://test:53"})
	if _, err := h.ServeDNS(ctx, w, r.Copy()); err != nil {
		t.Fatal(err)
	}
	if ww.writes != 1 {
		t.Fatalf("%d writes", ww.writes)
	}
	return ww.out, ww.packs == 0
}

// TestPackedReplyMatchesWriteMsg checks that a packed reply is, byte for
// byte, the reply the ordinary path writes through CoreDNS's ScrubWriter:
// for each query type, for 0x20 mixed case, RD and CD bits, EDNS with and
// without DO, and with the TTL counting down between queries.
func TestPackedReplyMatchesWriteMsg(t *testing.T) {
	t.Parallel()
	alice := testIdentity(1)
	rec := record(t, alice, "www", true, func(r *records.Record) {
		r.Endpoints = []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("192.0.2.2")}
		r.TXT = []string{"hello", "world"}
	})
	v4only := record(t, alice, "v4", true, func(r *records.Record) {
		r.Endpoints = []netip.Addr{netip.MustParseAddr("192.0.2.3")}
	})
	www, v4 := rec.Name.DNS("peer.alt."), v4only.Name.DNS("peer.alt.")
	tests := []struct {
		name    string
		qname   string
		qtype   uint16
		rd, cd  bool
		edns    bool
		do      bool
		udpSize uint16
		answers int
	}{
		{name: "A", qname: www, qtype: dns.TypeA, rd: true, answers: 2},
		{name: "AAAA", qname: www, qtype: dns.TypeAAAA, answers: 1},
		{name: "TXT", qname: www, qtype: dns.TypeTXT, cd: true, answers: 2},
		{name: "ANY", qname: www, qtype: dns.TypeANY, rd: true, cd: true, answers: 2},
		{name: "NODATA MX", qname: www, qtype: dns.TypeMX},
		{name: "NODATA AAAA", qname: v4, qtype: dns.TypeAAAA, rd: true},
		{name: "0x20 case", qname: mixCase(www), qtype: dns.TypeA, rd: true, answers: 2},
		{name: "0x20 case NODATA", qname: mixCase(v4), qtype: dns.TypeAAAA},
		{name: "EDNS", qname: www, qtype: dns.TypeA, edns: true, udpSize: 1232, answers: 2},
		{name: "EDNS DO", qname: mixCase(www), qtype: dns.TypeA, edns: true, do: true, udpSize: 4096, rd: true, answers: 2},
		{name: "EDNS small buffer", qname: v4, qtype: dns.TypeA, edns: true, udpSize: 100, answers: 1},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, now := clockHandler(t, newMapSearcher(rec, v4only))
			r := new(dns.Msg)
			r.SetQuestion(tc.qname, tc.qtype)
			r.Id = uint16(1000 + i)
			r.RecursionDesired, r.CheckingDisabled = tc.rd, tc.cd
			if tc.edns {
				r.SetEdns0(tc.udpSize, tc.do)
			}
			for step := range 3 { // the first query packs, the others reuse
				if step > 0 {
					now.Add(int64(7 * time.Second))
				}
				want, packed := serveWire(t, h, r, true)
				if packed {
					t.Fatal("a wrapped writer got a packed reply")
				}
				got, packed := serveWire(t, h, r, false)
				if !packed {
					t.Fatal("no packed reply")
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("step %d: packed reply\n%x\nwant (WriteMsg)\n%x", step, got, want)
				}
				var m dns.Msg
				if err := m.Unpack(got); err != nil {
					t.Fatal(err)
				}
				if len(m.Answer) != tc.answers || m.Id != r.Id || m.Question[0].Name != tc.qname {
					t.Fatalf("reply %v", &m)
				}
				for _, rr := range m.Answer {
					if rr.Header().Name != tc.qname {
						t.Errorf("owner %s, want the question's case %s", rr.Header().Name, tc.qname)
					}
					if want := uint32(30 - 7*step); rr.Header().Ttl != want {
						t.Errorf("step %d: TTL %d, want %d", step, rr.Header().Ttl, want)
					}
				}
				if o := m.IsEdns0(); (o != nil) != tc.edns || o != nil && (o.Do() != tc.do || o.UDPSize() != tc.udpSize) {
					t.Errorf("OPT %v, want edns %v do %v size %d", o, tc.edns, tc.do, tc.udpSize)
				}
			}
		})
	}
}

// TestPackedReplyRefreshed checks that a packed reply follows the
// resolver's answer: once the cached answer is replaced, the next query
// gets the new record's address, not the old packed bytes.
func TestPackedReplyRefreshed(t *testing.T) {
	t.Parallel()
	alice := testIdentity(1)
	addr := func(a string) func(*records.Record) {
		return func(r *records.Record) { r.Endpoints = []netip.Addr{netip.MustParseAddr(a)} }
	}
	old := record(t, alice, "www", true, addr("192.0.2.1"))
	s := newMapSearcher(old)
	h, _ := clockHandler(t, s)
	r := new(dns.Msg)
	r.SetQuestion(old.Name.DNS("peer.alt."), dns.TypeA)
	for _, want := range []string{"192.0.2.1", "192.0.2.1", "192.0.2.9"} {
		if want == "192.0.2.9" {
			s.mu.Lock()
			s.recs[old.Key()] = []*records.Record{record(t, alice, "www", true, addr(want))}
			s.mu.Unlock()
			h.resolver.(*resolver.Resolver).Forget(old.Name)
		}
		b, packed := serveWire(t, h, r, false)
		var m dns.Msg
		if err := m.Unpack(b); err != nil || !packed || len(m.Answer) != 1 {
			t.Fatalf("packed %v: %v %v", packed, &m, err)
		}
		if got := m.Answer[0].(*dns.A).A.String(); got != want {
			t.Fatalf("address %s, want %s", got, want)
		}
	}
}

// TestPackedReplyNotUsed lists the queries that must take WriteMsg: the
// reply is then the ordinary one (its checks are the other tests').
func TestPackedReplyNotUsed(t *testing.T) {
	t.Parallel()
	alice := testIdentity(1)
	big := record(t, alice, "big", true, func(r *records.Record) {
		for i := range records.MaxTXT {
			r.TXT = append(r.TXT, strings.Repeat(string(rune('a'+i)), records.MaxTXTTotal/records.MaxTXT))
		}
	})
	svc := record(t, alice, "svc", true, func(r *records.Record) {
		r.Endpoints = []netip.Addr{netip.MustParseAddr("192.0.2.1")}
		r.Services = []records.Service{{Service: "http", Proto: "tcp", Port: 80}}
	})
	h, _ := clockHandler(t, newMapSearcher(big, svc))
	q := func(name string, qtype uint16, mutate func(*dns.Msg)) *dns.Msg {
		r := new(dns.Msg)
		r.SetQuestion(name, qtype)
		if mutate != nil {
			mutate(r)
		}
		return r
	}
	tests := []struct {
		name string
		r    *dns.Msg
		tc   bool // truncated
	}{
		{"larger than 512 octets", q(big.Name.DNS("peer.alt."), dns.TypeTXT, nil), true},
		{"larger, EDNS", q(big.Name.DNS("peer.alt."), dns.TypeTXT, func(r *dns.Msg) { r.SetEdns0(4096, false) }), false},
		{"EDNS option", q(svc.Name.DNS("peer.alt."), dns.TypeA, func(r *dns.Msg) {
			r.SetEdns0(1232, false)
			o := r.IsEdns0()
			o.Option = append(o.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
		}), false},
		{"TSIG", q(svc.Name.DNS("peer.alt."), dns.TypeA, func(r *dns.Msg) { r.SetTsig("key.", dns.HmacSHA256, 300, 0) }), false},
		{"service name", q("_http._tcp."+svc.Name.DNS("peer.alt."), dns.TypeSRV, nil), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, packed := serveWire(t, h, tc.r, false)
			if packed {
				t.Fatal("packed reply")
			}
			var m dns.Msg
			if err := m.Unpack(b); err != nil || m.Rcode != dns.RcodeSuccess || m.Truncated != tc.tc {
				t.Fatalf("reply %v %v, want truncated %v", &m, err, tc.tc)
			}
		})
	}
}

// TestQueryCount checks the pre-resolved counters count what they did
// through WithLabelValues, on the packed path and the ordinary one.
func TestQueryCount(t *testing.T) {
	t.Parallel() // the server's label is this test's own
	alice := testIdentity(1)
	rec := record(t, alice, "www", true, func(r *records.Record) {
		r.Endpoints = []netip.Addr{netip.MustParseAddr("192.0.2.1")}
	})
	h, _ := clockHandler(t, newMapSearcher(rec))
	server := "dns://test-count:53"
	ctx := context.WithValue(context.Background(), dnsserver.Key{}, &dnsserver.Server{Addr: server})
	ask := func(name string, qtype uint16, packed bool) {
		r := new(dns.Msg)
		r.SetQuestion(name, qtype)
		var w dns.ResponseWriter = request.NewScrubWriter(r, &wireWriter{})
		if !packed {
			w = dnstest.NewRecorder(w)
		}
		_, _ = h.ServeDNS(ctx, w, r)
	}
	value := func(result string) float64 {
		var m dto.Metric
		if err := queryCount.WithLabelValues(server, result).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}
	before := map[string]float64{}
	for _, r := range queryResults {
		before[r] = value(r)
	}
	www := rec.Name.DNS("peer.alt.")
	for _, packed := range []bool{true, false} {
		ask(www, dns.TypeA, packed)
		ask(www, dns.TypeA, packed)
		ask(www, dns.TypeAAAA, packed)
	}
	ask("peer.alt.", dns.TypeSOA, false)
	ask("other.zone.", dns.TypeA, false)
	want := map[string]float64{resultAnswer: 5, resultNoData: 2, resultRefused: 1, resultNXDomain: 0}
	for result, n := range want {
		if got := value(result) - before[result]; got != n {
			t.Errorf("%s: %v, want %v", result, got, n)
		}
	}
}

// TestQuestionName checks questionName against what it replaces:
// request.Request.QName and its lowercase.
func TestQuestionName(t *testing.T) {
	t.Parallel()
	for _, name := range []string{
		"www.peer.alt.", "WwW.PeEr.AlT.", "_http._tcp.x.peer.alt.", "a-b.peer.alt.", ".",
		`a\.b.peer.alt.`, `a\032b.peer.alt.`, `A\"B.peer.alt.`, "a b.peer.alt.", "\x01.peer.alt.", `a\\b.`,
	} {
		r := new(dns.Msg)
		r.Question = []dns.Question{{Name: name, Qtype: dns.TypeA, Qclass: dns.ClassINET}}
		state := request.Request{Req: r}
		asked, lower := questionName(r)
		if want := state.QName(); asked != want || lower != strings.ToLower(want) {
			t.Errorf("%q: %q %q, want %q %q", name, asked, lower, want, strings.ToLower(want))
		}
	}
}

// TestZoneOf checks zoneOf against plugin.Zones.Matches.
func TestZoneOf(t *testing.T) {
	t.Parallel()
	zoneSets := [][]string{{"peer.alt."}, {"alt.", "peer.alt."}, {"peer.alt.", "alt."}, {"."}, {"x.peer.alt.", "."}, {`a\.b.`}}
	names := []string{
		"peer.alt.", "www.peer.alt.", "x.peer.alt.", "y.x.peer.alt.", "alt.", "peer.alt.example.",
		"speer.alt.", "eer.alt.", ".", "example.", `a\.b.`, `c.a\.b.`, "b.", `a\.peer.alt.`, "Www.Peer.Alt.",
	}
	for _, zones := range zoneSets {
		h := &Peername{Zones: zones}
		for _, name := range names {
			lower := strings.ToLower(name)
			if got, want := h.zoneOf(lower), plugin.Zones(zones).Matches(lower); got != want {
				t.Errorf("zones %q, name %q: %q, want %q", zones, name, got, want)
			}
		}
	}
}

// mixCase capitalises every other letter of name.
func mixCase(name string) string {
	b := []byte(name)
	for i := 0; i < len(b); i += 2 {
		if 'a' <= b[i] && b[i] <= 'z' {
			b[i] -= 'a' - 'A'
		}
	}
	return string(b)
}

package overlay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// testDNS is a tiny authoritative DNS server on 127.0.0.1 answering from a
// fixed set of records, with a net.Resolver that talks only to it.
type testDNS struct {
	records map[string][]dns.RR // "name./TYPE" -> answers; a missing key is NXDOMAIN
	res     *net.Resolver
}

func newTestDNS(t *testing.T, zone ...string) *testDNS {
	t.Helper()
	td := &testDNS{records: map[string][]dns.RR{}}
	for _, line := range zone {
		rr, err := dns.NewRR(line)
		if err != nil {
			t.Fatalf("bad test record %q: %v", line, err)
		}
		k := strings.ToLower(rr.Header().Name) + "/" + dns.TypeToString[rr.Header().Rrtype]
		td.records[k] = append(td.records[k], rr)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	udpAddr, tcpAddr := pc.LocalAddr().String(), ln.Addr().String()
	serve(t, &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(td.serve)})
	serve(t, &dns.Server{Listener: ln, Handler: dns.HandlerFunc(td.serve)})
	td.res = &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			if strings.HasPrefix(network, "tcp") {
				return d.DialContext(ctx, "tcp", tcpAddr)
			}
			return d.DialContext(ctx, "udp", udpAddr)
		},
	}
	return td
}

// serve runs srv until the test ends.
func serve(t *testing.T, srv *dns.Server) {
	t.Helper()
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	served := make(chan error, 1)
	go func() { served <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-served:
		t.Fatalf("test DNS server: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Shutdown(); err != nil {
			t.Errorf("test DNS shutdown: %v", err)
		}
		<-served
	})
}

func (td *testDNS) serve(w dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative = true
	if len(q.Question) == 1 {
		qq := q.Question[0]
		name := strings.ToLower(qq.Name)
		if rrs, ok := td.records[name+"/"+dns.TypeToString[qq.Qtype]]; ok {
			m.Answer = rrs
		} else if !td.hasName(name) {
			m.Rcode = dns.RcodeNameError
		}
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if o := q.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		m.Truncate(size) // sets TC so the client retries over TCP
	}
	_ = w.WriteMsg(m)
}

func (td *testDNS) hasName(name string) bool {
	for k := range td.records {
		if strings.HasPrefix(k, name+"/") {
			return true
		}
	}
	return false
}

func TestDNSSRVBootstrap(t *testing.T) {
	t.Parallel()
	var many []string
	for i := range maxSeeds + 10 {
		many = append(many, fmt.Sprintf("_peername._udp.many.test. 60 IN SRV 10 10 %d seed1.example.test.", 1000+i))
	}
	td := newTestDNS(t, append(many,
		"_peername._udp.example.test. 60 IN SRV 20 10 4000 seed2.example.test.",
		"_peername._udp.example.test. 60 IN SRV 10 10 3540 seed1.example.test.",
		"seed1.example.test. 60 IN A 127.0.0.11",
		"seed1.example.test. 60 IN AAAA ::1",
		"seed2.example.test. 60 IN A 127.0.0.12",
		"_peername._udp.partial.test. 60 IN SRV 10 10 3540 gone.example.test.",
		"_peername._udp.partial.test. 60 IN SRV 20 10 4000 seed2.example.test.",
		"_peername._udp.dot.test. 60 IN SRV 0 0 0 .",
		"_peername._udp.unresolvable.test. 60 IN SRV 0 0 3540 gone.example.test.",
	)...)
	tests := []struct {
		name      string
		domain    string
		want      []string // any order
		last      string   // the lowest-priority seed, which must come last
		wantCount int      // when want is nil
		wantErr   bool
		errIs     error
	}{
		{name: "priority order, both families", domain: "example.test", want: []string{"127.0.0.11:3540", "[::1]:3540", "127.0.0.12:4000"}, last: "127.0.0.12:4000"},
		{name: "trailing dot", domain: "example.test.", want: []string{"127.0.0.11:3540", "[::1]:3540", "127.0.0.12:4000"}, last: "127.0.0.12:4000"},
		{name: "one target gone", domain: "partial.test", want: []string{"127.0.0.12:4000"}, wantErr: true},
		{name: "service not offered", domain: "dot.test", errIs: ErrNoSeeds, wantErr: true},
		{name: "no SRV records", domain: "missing.test", wantErr: true},
		{name: "only target gone", domain: "unresolvable.test", wantErr: true},
		{name: "bounded", domain: "many.test", wantCount: maxSeeds},
		{name: "empty domain", domain: " ", errIs: ErrBadSeed, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := DNSSRVBootstrap{Domain: tt.domain, Resolver: td.res}.Seeds(t.Context())
			if (err != nil) != tt.wantErr {
				t.Fatalf("Seeds error = %v, want error: %v", err, tt.wantErr)
			}
			if tt.errIs != nil && !errors.Is(err, tt.errIs) {
				t.Fatalf("Seeds error = %v, want %v", err, tt.errIs)
			}
			if tt.want == nil {
				if len(got) != tt.wantCount {
					t.Fatalf("Seeds = %d addresses, want %d", len(got), tt.wantCount)
				}
				return
			}
			gs := addrStrings(got)
			if tt.last != "" && gs[len(gs)-1] != tt.last {
				t.Fatalf("Seeds = %v, want %s last (highest priority value)", gs, tt.last)
			}
			if !sameSet(gs, tt.want) {
				t.Fatalf("Seeds = %v, want %v", gs, tt.want)
			}
		})
	}
}

func TestDNSSRVBootstrapNotFoundIsDNSError(t *testing.T) {
	t.Parallel()
	td := newTestDNS(t, "seed1.example.test. 60 IN A 127.0.0.11")
	_, err := DNSSRVBootstrap{Domain: "missing.test", Resolver: td.res}.Seeds(t.Context())
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Fatalf("Seeds error = %v, want a not-found *net.DNSError", err)
	}
}

func TestDNSSRVBootstrapHonoursContext(t *testing.T) {
	t.Parallel()
	td := newTestDNS(t, "_peername._udp.example.test. 60 IN SRV 10 10 3540 seed1.example.test.")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if got, err := (DNSSRVBootstrap{Domain: "example.test", Resolver: td.res}).Seeds(ctx); err == nil || len(got) != 0 {
		t.Fatalf("Seeds with a cancelled context = %v, %v; want an error", got, err)
	}
}

func TestStaticBootstrap(t *testing.T) {
	t.Parallel()
	td := newTestDNS(t,
		"seed1.example.test. 60 IN A 127.0.0.11",
		"seed1.example.test. 60 IN AAAA ::1",
	)
	tests := []struct {
		name    string
		addrs   []string
		want    []string
		errIs   error
		wantErr bool
	}{
		{name: "literals", addrs: []string{"127.0.0.1:3540", "[::1]:4000", " 10.0.0.1:1 "}, want: []string{"127.0.0.1:3540", "[::1]:4000", "10.0.0.1:1"}},
		{name: "default port", addrs: []string{"127.0.0.1", "2001:db8::1", "127.0.0.2:"}, want: []string{"127.0.0.1:3540", "[2001:db8::1]:3540", "127.0.0.2:3540"}},
		{name: "mapped IPv4 unmapped", addrs: []string{"[::ffff:192.0.2.1]:9"}, want: []string{"192.0.2.1:9"}},
		{name: "duplicates removed", addrs: []string{"127.0.0.1:1", "127.0.0.1:1", "[::ffff:127.0.0.1]:1"}, want: []string{"127.0.0.1:1"}},
		{name: "host name", addrs: []string{"seed1.example.test:5000"}, want: []string{"127.0.0.11:5000", "[::1]:5000"}},
		{name: "zero port skipped", addrs: []string{"127.0.0.1:0"}, errIs: ErrNoSeeds, wantErr: true},
		{name: "bad port", addrs: []string{"127.0.0.1:99999", "127.0.0.3:7"}, want: []string{"127.0.0.3:7"}, errIs: ErrBadSeed, wantErr: true},
		{name: "bad port name", addrs: []string{"seed1.example.test:no-such-service"}, errIs: ErrBadSeed, wantErr: true},
		{name: "bracket without port", addrs: []string{"[::1]"}, errIs: ErrBadSeed, wantErr: true},
		{name: "empty host", addrs: []string{":3540"}, errIs: ErrBadSeed, wantErr: true},
		{name: "unknown host", addrs: []string{"gone.example.test:1", "127.0.0.1:2"}, want: []string{"127.0.0.1:2"}, wantErr: true},
		{name: "none configured", addrs: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := StaticBootstrap{Addrs: tt.addrs, Resolver: td.res}.Seeds(t.Context())
			if (err != nil) != tt.wantErr {
				t.Fatalf("Seeds error = %v, want error: %v", err, tt.wantErr)
			}
			if tt.errIs != nil && !errors.Is(err, tt.errIs) {
				t.Fatalf("Seeds error = %v, want %v", err, tt.errIs)
			}
			if gs := addrStrings(got); !sameSet(gs, tt.want) {
				t.Fatalf("Seeds = %v, want %v", gs, tt.want)
			}
		})
	}
}

func TestGatherSeeds(t *testing.T) {
	t.Parallel()
	bad := StaticBootstrap{Addrs: []string{"[::1]"}}
	a := StaticBootstrap{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}}
	b := StaticBootstrap{Addrs: []string{"127.0.0.1:2", "[::1]:3"}}
	got, err := gatherSeeds(t.Context(), []Bootstrapper{a, nil, bad, b})
	if !errors.Is(err, ErrBadSeed) {
		t.Fatalf("gatherSeeds error = %v, want ErrBadSeed from the bad provider", err)
	}
	if gs, want := addrStrings(got), []string{"127.0.0.1:1", "127.0.0.1:2", "[::1]:3"}; !slices.Equal(gs, want) {
		t.Fatalf("gatherSeeds = %v, want %v", gs, want)
	}
}

// sameSet reports whether a and b hold the same strings, ignoring order.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func addrStrings(aps []netip.AddrPort) []string {
	var out []string
	for _, ap := range aps {
		out = append(out, ap.String())
	}
	return out
}

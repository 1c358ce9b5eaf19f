package integration

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/peername/peername/identity"
)

// member is one node of a test cloud and the name it publishes.
type member struct {
	srv   *server
	id    *identity.Identity
	name  string       // fully qualified secured name it publishes
	addrs []netip.Addr // the addresses it publishes
}

// Record lifetime in the five-node cloud: short, so the test can watch the
// record of a killed node expire.
const (
	cloudLifetime = 20 * time.Second
	cloudTTL      = 2 // seconds
)

// startCloud starts n CoreDNS nodes on loopback: node 1 first and alone,
// then the others in parallel, bootstrapping from node 1. Node i publishes
// "nodei" with 192.0.2.i; node 2 also 2001:db8::2; node 3 also an SSH
// service and TXT strings, and every node the unsecured name "shared" with
// 198.51.100.i.
func startCloud(ctx context.Context, t *testing.T, n int, cloud string) []*member {
	t.Helper()
	dir := t.TempDir()
	ms := make([]*member, n)
	for i := range ms {
		label := fmt.Sprintf("node%d", i+1)
		id, key := newKey(t, dir, label+".key")
		addrs := []netip.Addr{netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)})}
		if i == 1 {
			addrs = append(addrs, netip.MustParseAddr("2001:db8::2"))
		}
		pub := label
		for _, a := range addrs {
			pub += " " + a.String()
		}
		spec := nodeSpec{
			Label: label, Cloud: cloud, KeyFile: key, Publish: []string{pub},
			Unsecured: []string{fmt.Sprintf("shared 198.51.100.%d", i+1)},
			TTL:       cloudTTL, Timeout: "2s", Lifetime: cloudLifetime.String(),
		}
		switch i {
		case 2:
			spec.Extra = []string{"srv node3 ssh tcp 2222 10 5", `txt node3 "hello world" v=1`}
		case 3:
			// TXT data too large for a 512-byte UDP answer.
			spec.Extra = []string{"txt node4 " + strings.Join(bigTXT(), " ")}
		}
		ms[i] = &member{id: id, name: securedName(t, id, label), addrs: addrs}
		if i == 0 {
			ms[0].srv = startServer(t, spec)
			if err := ms[0].srv.waitReady(ctx); err != nil {
				t.Fatal(err)
			}
			continue
		}
		spec.Bootstrap = []netip.AddrPort{ms[0].srv.overlayAddr()}
		ms[i].srv = startServer(t, spec)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 1; i < n; i++ {
		wg.Go(func() { errs[i] = ms[i].srv.waitReady(ctx) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return ms
}

// resolvesTo checks that name's A (and AAAA) answer at srv is exactly want,
// authoritative. NXDOMAIN and SERVFAIL are retried: the record may still be
// on its way to the nodes responsible for it.
func resolvesTo(ctx context.Context, network string, srv *server, name string, want []netip.Addr) error {
	var got []netip.Addr
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		r, err := query(ctx, network, srv.dnsAddr, name, qt)
		if err != nil {
			return fmt.Errorf("%w: %w", errNotYet, err)
		}
		switch r.Rcode {
		case dns.RcodeSuccess:
		case dns.RcodeNameError, dns.RcodeServerFailure:
			return fmt.Errorf("%s %s at %s: %s: %w", network, name, srv.spec.Label, dns.RcodeToString[r.Rcode], errNotYet)
		default:
			return fmt.Errorf("%s %s at %s: rcode %s", network, name, srv.spec.Label, dns.RcodeToString[r.Rcode])
		}
		if !r.Authoritative {
			return fmt.Errorf("%s %s at %s: answer without AA", network, name, srv.spec.Label)
		}
		got = append(got, addrsOf(r)...)
	}
	slices.SortFunc(got, netip.Addr.Compare)
	want = slices.Clone(want)
	slices.SortFunc(want, netip.Addr.Compare)
	if !slices.Equal(got, want) {
		return fmt.Errorf("%s %s at %s: addresses %v, want %v", network, name, srv.spec.Label, got, want)
	}
	return nil
}

// TestFiveNodeCloud starts five CoreDNS processes, checks every published
// name at every node over UDP and TCP, the negative answers, then kills one
// node with SIGKILL and checks its name is still served by the rest.
func TestFiveNodeCloud(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	ms := startCloud(ctx, t, 5, "it-five")

	t.Run("every name at every node", func(t *testing.T) {
		for _, at := range ms {
			for _, m := range ms {
				for _, network := range []string{"udp", "tcp"} {
					wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
					err := eventually(wctx, func(ctx context.Context) error {
						return resolvesTo(ctx, network, at.srv, m.name, m.addrs)
					})
					wcancel()
					if err != nil {
						t.Error(err)
					}
				}
			}
		}
	})

	t.Run("SRV and TXT", func(t *testing.T) {
		srv := ms[0].srv
		owner := ms[2].name
		svc := "_ssh._tcp." + owner
		var r *dns.Msg
		err := eventually(ctx, func(ctx context.Context) error {
			var err error
			r, err = query(ctx, "udp", srv.dnsAddr, svc, dns.TypeSRV)
			if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
				return fmt.Errorf("SRV %s: %v %v: %w", svc, err, r, errNotYet)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		rr, ok := r.Answer[0].(*dns.SRV)
		if !ok || len(r.Answer) != 1 || rr.Port != 2222 || rr.Priority != 10 || rr.Weight != 5 || !strings.EqualFold(rr.Target, owner) {
			t.Errorf("SRV %s: %v; want one SRV 10 5 2222 %s", svc, r.Answer, owner)
		}
		r, err = query(ctx, "tcp", srv.dnsAddr, owner, dns.TypeTXT)
		if err != nil {
			t.Fatal(err)
		}
		var txt []string
		for _, rr := range r.Answer {
			if t, ok := rr.(*dns.TXT); ok {
				txt = append(txt, t.Txt...)
			}
		}
		slices.Sort(txt)
		if r.Rcode != dns.RcodeSuccess || !slices.Equal(txt, []string{"hello world", "v=1"}) {
			t.Errorf("TXT %s: %s %q; want \"hello world\" \"v=1\"", owner, dns.RcodeToString[r.Rcode], txt)
		}
		r, err = query(ctx, "udp", srv.dnsAddr, "_http._tcp."+owner, dns.TypeSRV)
		if err != nil {
			t.Fatal(err)
		}
		if r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
			t.Errorf("SRV of an unpublished service answered: %v", r.Answer)
		}
	})

	t.Run("truncation and EDNS0", func(t *testing.T) {
		srv, owner := ms[0].srv, ms[3].name
		want := bigTXT()
		txtOf := func(r *dns.Msg) []string {
			var out []string
			for _, rr := range r.Answer {
				if t, ok := rr.(*dns.TXT); ok {
					out = append(out, t.Txt...)
				}
			}
			slices.Sort(out)
			return out
		}
		var r *dns.Msg
		err := eventually(ctx, func(ctx context.Context) error {
			var err error
			r, err = query(ctx, "tcp", srv.dnsAddr, owner, dns.TypeTXT)
			if err != nil || r.Rcode != dns.RcodeSuccess {
				return fmt.Errorf("TXT %s over TCP: %v %v: %w", owner, err, r, errNotYet)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := txtOf(r); !slices.Equal(got, want) {
			t.Fatalf("TXT over TCP: %d strings, want %d", len(got), len(want))
		}
		// Plain UDP, no EDNS0: 512 bytes at most, so the answer is cut and TC set.
		m := new(dns.Msg)
		m.SetQuestion(owner, dns.TypeTXT)
		wire, n, err := exchangeRaw(ctx, srv.dnsAddr, m)
		if err != nil {
			t.Fatal(err)
		}
		if !wire.Truncated || n > 512 {
			t.Errorf("UDP without EDNS0: TC=%v, %d bytes; want TC=1 within 512 bytes", wire.Truncated, n)
		}
		// UDP with EDNS0 and a 1232-byte buffer: everything fits.
		r, err = query(ctx, "udp", srv.dnsAddr, owner, dns.TypeTXT)
		if err != nil {
			t.Fatal(err)
		}
		if r.Truncated || !slices.Equal(txtOf(r), want) || r.IsEdns0() == nil {
			t.Errorf("UDP with EDNS0: TC=%v, %d strings, OPT %v; want the whole answer with OPT", r.Truncated, len(txtOf(r)), r.IsEdns0())
		}
	})

	t.Run("unsecured name with several publishers", func(t *testing.T) {
		// Every node publishes shared.0 with its own address: a resolver
		// returns records of one or more publishers, never anything else.
		r, err := query(ctx, "udp", ms[1].srv.dnsAddr, "shared.0."+zone, dns.TypeA)
		if err != nil {
			t.Fatal(err)
		}
		got := addrsOf(r)
		if r.Rcode != dns.RcodeSuccess || len(got) == 0 {
			t.Fatalf("shared.0: %s %v", dns.RcodeToString[r.Rcode], r.Answer)
		}
		for _, a := range got {
			if !netip.MustParsePrefix("198.51.100.0/29").Contains(a) {
				t.Errorf("shared.0 answered %v, not one of the published addresses", a)
			}
		}
	})

	t.Run("dig", func(t *testing.T) {
		dig, err := exec.LookPath("dig")
		if err != nil {
			t.Skip("dig not installed (apt-get install bind9-dnsutils)")
		}
		host, port := splitHostPort(t, ms[2].srv.dnsAddr)
		for _, transport := range []string{"+notcp", "+tcp"} {
			out, err := exec.CommandContext(ctx, dig, "@"+host, "-p", port, transport, "+short", ms[1].name, "A").CombinedOutput()
			if err != nil {
				t.Fatalf("dig: %v: %s", err, out)
			}
			if got := strings.TrimSpace(string(out)); got != "192.0.2.2" {
				t.Errorf("dig %s +short %s A = %q, want 192.0.2.2", transport, ms[1].name, got)
			}
		}
	})

	t.Run("negative answers", func(t *testing.T) {
		other, err := identity.Generate(nil)
		if err != nil {
			t.Fatal(err)
		}
		srv := ms[3].srv
		tests := []struct {
			name      string
			qname     string
			qtype     uint16
			wantRcode int
			wantSOA   bool // SOA of the zone in the authority section
			wantAA    bool
		}{
			{"unpublished secured name", securedName(t, other, "nobody"), dns.TypeA, dns.RcodeNameError, true, true},
			{"unpublished classifier of a live authority", securedName(t, ms[0].id, "nothing-here"), dns.TypeA, dns.RcodeNameError, true, true},
			{"unpublished unsecured name", "nobody.0." + zone, dns.TypeA, dns.RcodeNameError, true, true},
			{"AAAA of an A-only name", ms[0].name, dns.TypeAAAA, dns.RcodeSuccess, true, true},
			{"MX of a published name", ms[1].name, dns.TypeMX, dns.RcodeSuccess, true, true},
			{"outside the zone", "www.example.com.", dns.TypeA, dns.RcodeRefused, false, false},
			{"malformed authority", "x.not-an-authority." + zone, dns.TypeA, dns.RcodeNameError, true, true},
		}
		for _, tc := range tests {
			for _, network := range []string{"udp", "tcp"} {
				r, err := query(ctx, network, srv.dnsAddr, tc.qname, tc.qtype)
				if err != nil {
					t.Errorf("%s: %v", tc.name, err)
					continue
				}
				if r.Rcode != tc.wantRcode {
					t.Errorf("%s (%s): rcode %s, want %s", tc.name, network, dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.wantRcode])
				}
				if len(r.Answer) != 0 {
					t.Errorf("%s (%s): unexpected answers %v", tc.name, network, r.Answer)
				}
				if hasSOA(r) != tc.wantSOA {
					t.Errorf("%s (%s): SOA in authority = %v, want %v (ns: %v)", tc.name, network, hasSOA(r), tc.wantSOA, r.Ns)
				}
				if r.Authoritative != tc.wantAA {
					t.Errorf("%s (%s): AA = %v, want %v", tc.name, network, r.Authoritative, tc.wantAA)
				}
			}
		}
	})

	t.Run("apex", func(t *testing.T) {
		srv := ms[4].srv
		for _, qt := range []uint16{dns.TypeSOA, dns.TypeNS} {
			r, err := query(ctx, "udp", srv.dnsAddr, zone, qt)
			if err != nil {
				t.Fatal(err)
			}
			if r.Rcode != dns.RcodeSuccess || !r.Authoritative || len(r.Answer) == 0 {
				t.Errorf("%s at the apex: rcode %s, AA %v, answer %v", dns.TypeToString[qt], dns.RcodeToString[r.Rcode], r.Authoritative, r.Answer)
				continue
			}
			for _, rr := range r.Answer {
				if rr.Header().Rrtype != qt || !strings.EqualFold(rr.Header().Name, zone) {
					t.Errorf("%s at the apex: unexpected record %v", dns.TypeToString[qt], rr)
				}
			}
		}
	})

	t.Run("CLI resolves over the overlay", func(t *testing.T) {
		out, err := exec.CommandContext(ctx, bin.peername, "resolve",
			"-bootstrap", ms[2].srv.overlayAddr().String(), "-cloud", "it-five", "-timeout", "10s", ms[1].name).CombinedOutput()
		if err != nil {
			t.Fatalf("peername resolve: %v\n%s", err, out)
		}
		for _, want := range []string{ms[1].name, "192.0.2.2", "2001:db8::2", ms[1].id.Authority().String(), "hops"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("peername resolve output lacks %q:\n%s", want, out)
			}
		}
		other, err := identity.Generate(nil)
		if err != nil {
			t.Fatal(err)
		}
		out, err = exec.CommandContext(ctx, bin.peername, "resolve",
			"-bootstrap", ms[2].srv.overlayAddr().String(), "-cloud", "it-five", "-timeout", "10s", securedName(t, other, "ghost")).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "not found") {
			t.Errorf("peername resolve of an unpublished name: %v, want exit 1 with \"not found\":\n%s", err, out)
		}
	})

	// Last: this one changes the cloud.
	t.Run("SIGKILL a node", func(t *testing.T) {
		dead := ms[4]
		dead.srv.kill(t)
		if st := dead.srv.exitState; st == nil || st.Exited() {
			t.Fatalf("%s did not die by a signal: %v", dead.srv.spec.Label, st)
		}
		for _, m := range ms[:4] {
			wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
			err := eventually(wctx, func(ctx context.Context) error {
				return resolvesTo(ctx, "udp", m.srv, dead.name, dead.addrs)
			})
			wcancel()
			if err != nil {
				t.Errorf("after SIGKILL: %v", err)
			}
		}
		// A node that joins after the death has no cached answer: it must
		// find the record on the overlay, replicated by the dead node's
		// neighbours.
		dir := t.TempDir()
		_, key := newKey(t, dir, "late.key")
		late := startServer(t, nodeSpec{Label: "late", Cloud: "it-five", KeyFile: key, TTL: cloudTTL, Timeout: "2s",
			Bootstrap: []netip.AddrPort{ms[1].srv.overlayAddr()}})
		if err := late.waitReady(ctx); err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
		defer wcancel()
		err := eventually(wctx, func(ctx context.Context) error {
			return resolvesTo(ctx, "tcp", late, dead.name, dead.addrs)
		})
		if err != nil {
			t.Errorf("late joiner after SIGKILL: %v", err)
		}

		// Nobody republishes the dead node's record: once it expires
		// (cloudLifetime after its last republish) every node answers
		// NXDOMAIN.
		killed := time.Now()
		wctx, wcancel = context.WithTimeout(ctx, cloudLifetime+15*time.Second)
		defer wcancel()
		for _, srv := range []*server{ms[0].srv, late} {
			err := eventually(wctx, func(ctx context.Context) error {
				r, err := query(ctx, "udp", srv.dnsAddr, dead.name, dns.TypeA)
				if err != nil {
					return fmt.Errorf("%w: %w", errNotYet, err)
				}
				if r.Rcode != dns.RcodeNameError {
					return fmt.Errorf("%s at %s: %s %v: %w", dead.name, srv.spec.Label, dns.RcodeToString[r.Rcode], r.Answer, errNotYet)
				}
				return nil
			})
			if err != nil {
				t.Errorf("the dead node's record did not expire: %v", err)
			}
		}
		t.Logf("dead node's record gone %v after SIGKILL (lifetime %v)", time.Since(killed).Round(time.Second), cloudLifetime)
	})
}

// exchangeRaw sends m over UDP and returns the reply with its size on the
// wire.
func exchangeRaw(ctx context.Context, addr string, m *dns.Msg) (*dns.Msg, int, error) {
	b, err := m.Pack()
	if err != nil {
		return nil, 0, err
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(3 * time.Second)); err != nil {
		return nil, 0, err
	}
	if _, err := c.Write(b); err != nil {
		return nil, 0, err
	}
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		return nil, 0, err
	}
	r := new(dns.Msg)
	if err := r.Unpack(buf[:n]); err != nil {
		return nil, n, fmt.Errorf("unpack %d-byte reply: %w", n, err)
	}
	return r, n, nil
}

// bigTXT returns three 200-character TXT strings, sorted.
func bigTXT() []string {
	return []string{strings.Repeat("a", 200), strings.Repeat("b", 200), strings.Repeat("c", 200)}
}

func splitHostPort(t testing.TB, hostport string) (string, string) {
	t.Helper()
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	return ap.Addr().String(), fmt.Sprint(ap.Port())
}

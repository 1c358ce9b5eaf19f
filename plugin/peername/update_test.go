package peername

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/coredns/coredns/plugin/tsig"
	"github.com/miekg/dns"

	"github.com/peername/peername/identity"
)

// testKey carries the TSIG key name the tsig plugin would have validated.
type testKey struct{}

func init() {
	validatedKey = func(ctx context.Context) (string, bool) {
		if k, ok := ctx.Value(testKey{}).(string); ok {
			return k, true
		}
		return tsig.ValidatedKeyName(ctx)
	}
}

// updateInstance starts an instance on a fake overlay that accepts UPDATEs
// from registrar. (anything) and limited. (A at limited.AUTH only).
func updateInstance(t *testing.T, extra string) (*instance, *fakeNet, string) {
	t.Helper()
	f := newFakeNet()
	id := testIdentity(11)
	auth := id.Authority().String()
	inst := newTestInstance(t, f.registry(), id, "peername {\nlisten 127.0.0.1:3540\npublish node 192.0.2.1\n"+
		"allow registrar. * A AAAA SRV TXT\nallow limited. limited."+auth+".peer.alt. A\n"+extra+"}")
	if err := inst.startup(); err != nil {
		t.Fatal(err)
	}
	inst.wg.Wait()
	t.Cleanup(func() { _ = inst.shutdown() })
	return inst, f, auth
}

// sendUpdate sends an UPDATE for zone signed (as far as the handler can
// tell) by key ("" for none) and returns the response.
func sendUpdate(t *testing.T, h *Peername, key, zone string, build func(m *dns.Msg)) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetUpdate(zone)
	build(m)
	ctx := context.Background()
	if key != "" {
		ctx = context.WithValue(ctx, testKey{}, key)
	}
	rec := dnstest.NewRecorder(&test.ResponseWriter{})
	if _, err := h.ServeDNS(ctx, rec, m); err != nil {
		t.Fatal(err)
	}
	if rec.Msg == nil {
		t.Fatal("no response written")
	}
	if rec.Msg.Opcode != dns.OpcodeUpdate {
		t.Fatalf("response opcode %d", rec.Msg.Opcode)
	}
	return rec.Msg
}

func securedName(t *testing.T, id *identity.Identity, cl string) identity.Name {
	t.Helper()
	n, err := identity.NewSecuredName(cl, id.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func rrs(t *testing.T, s ...string) []dns.RR {
	t.Helper()
	var out []dns.RR
	for _, x := range s {
		rr, err := dns.NewRR(x)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rr)
	}
	return out
}

func TestUpdateAddResolveDelete(t *testing.T) {
	t.Parallel()
	inst, f, auth := updateInstance(t, "")
	h := inst.handler
	app := "app." + auth + ".peer.alt."
	resp := sendUpdate(t, h, "registrar.", "peer.alt.", func(m *dns.Msg) {
		m.Insert(rrs(t, app+" 60 IN A 192.0.2.55", app+" 60 IN AAAA 2001:db8::55", app+` 60 IN TXT "v=1"`,
			"_http._tcp."+app+" 60 IN SRV 0 0 8080 "+app))
	})
	if resp.Rcode != dns.RcodeSuccess {
		t.Fatalf("add: %s", dns.RcodeToString[resp.Rcode])
	}
	if r := query(t, h, app, dns.TypeA); len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.55" {
		t.Fatalf("A after add: %v", r)
	}
	if r := query(t, h, "_http._tcp."+app, dns.TypeSRV); len(r.Answer) != 1 || r.Answer[0].(*dns.SRV).Port != 8080 {
		t.Fatalf("SRV after add: %v", r)
	}
	if r := query(t, h, app, dns.TypeTXT); len(r.Answer) != 1 {
		t.Fatalf("TXT after add: %v", r)
	}
	// Remove one RR, then the rest of the name.
	resp = sendUpdate(t, h, "registrar.", "peer.alt.", func(m *dns.Msg) { m.Remove(rrs(t, app+" 0 IN AAAA 2001:db8::55")) })
	if resp.Rcode != dns.RcodeSuccess {
		t.Fatalf("remove AAAA: %s", dns.RcodeToString[resp.Rcode])
	}
	if rec := f.latest(securedName(t, inst.id, "app")); rec == nil || len(rec.Endpoints) != 1 {
		t.Fatalf("record after removing AAAA: %+v", rec)
	}
	resp = sendUpdate(t, h, "registrar.", "peer.alt.", func(m *dns.Msg) { m.RemoveName(rrs(t, app+" 0 IN A 0.0.0.0")) })
	if resp.Rcode != dns.RcodeSuccess {
		t.Fatalf("delete name: %s", dns.RcodeToString[resp.Rcode])
	}
	if r := query(t, h, app, dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Fatalf("after delete: %v", r)
	}
	expectEvents(t, f, "start", "publish node."+auth, "publish app."+auth, "publish app."+auth, "unpublish app."+auth)
}

func TestUpdateRefusals(t *testing.T) {
	t.Parallel()
	inst, _, auth := updateInstance(t, "")
	h := inst.handler
	app := "app." + auth + ".peer.alt."
	other := "app." + testIdentity(12).Authority().String() + ".peer.alt."
	many := []string{}
	for i := range 11 {
		many = append(many, app+" 60 IN A 192.0.2."+string(rune('1'+i%9))+string(rune('0'+i/9)))
	}
	cases := []struct {
		name, key, zone string
		add             []string
		want            int
	}{
		{"no TSIG", "", "peer.alt.", []string{app + " 60 IN A 192.0.2.1"}, dns.RcodeRefused},
		{"unknown key", "stranger.", "peer.alt.", []string{app + " 60 IN A 192.0.2.1"}, dns.RcodeRefused},
		{"other authority", "registrar.", "peer.alt.", []string{other + " 60 IN A 192.0.2.1"}, dns.RcodeRefused},
		{"other zone", "registrar.", "example.org.", []string{"a.example.org. 60 IN A 192.0.2.1"}, dns.RcodeNotAuth},
		{"owner outside zone", "registrar.", "peer.alt.", []string{"a.example.org. 60 IN A 192.0.2.1"}, dns.RcodeNotZone},
		{"not a peer name", "registrar.", "peer.alt.", []string{"x.y.z.peer.alt. 60 IN A 192.0.2.1"}, dns.RcodeRefused},
		{"type MX", "registrar.", "peer.alt.", []string{app + " 60 IN MX 10 " + app}, dns.RcodeRefused},
		{"SRV at the name", "registrar.", "peer.alt.", []string{app + " 60 IN SRV 0 0 80 " + app}, dns.RcodeRefused},
		{"SRV elsewhere", "registrar.", "peer.alt.", []string{"_a._tcp." + app + " 60 IN SRV 0 0 80 example.org."}, dns.RcodeRefused},
		{"rule's name", "limited.", "peer.alt.", []string{app + " 60 IN A 192.0.2.1"}, dns.RcodeRefused},
		{"rule's type", "limited.", "peer.alt.", []string{"limited." + auth + ".peer.alt. 60 IN TXT x"}, dns.RcodeRefused},
		{"Corefile name", "registrar.", "peer.alt.", []string{"node." + auth + ".peer.alt. 60 IN A 192.0.2.9"}, dns.RcodeRefused},
		{"11 addresses", "registrar.", "peer.alt.", many, dns.RcodeRefused},
		{"9 TXT strings", "registrar.", "peer.alt.", []string{app + " 60 IN TXT 1 2 3 4 5 6 7 8 9"}, dns.RcodeRefused},
	}
	for _, c := range cases {
		resp := sendUpdate(t, h, c.key, c.zone, func(m *dns.Msg) {
			// A valid add first: nothing may be half-applied.
			m.Insert(rrs(t, "ok."+auth+".peer.alt. 60 IN A 192.0.2.77"))
			m.Insert(rrs(t, c.add...))
		})
		if resp.Rcode != c.want {
			t.Errorf("%s: %s, want %s", c.name, dns.RcodeToString[resp.Rcode], dns.RcodeToString[c.want])
		}
		if r := query(t, h, "ok."+auth+".peer.alt.", dns.TypeA); r.Rcode != dns.RcodeNameError {
			t.Errorf("%s: half-applied: %v", c.name, r)
		}
	}
	// The limited key may do what its rule says.
	if resp := sendUpdate(t, h, "limited.", "peer.alt.", func(m *dns.Msg) {
		m.Insert(rrs(t, "limited."+auth+".peer.alt. 60 IN A 192.0.2.8"))
	}); resp.Rcode != dns.RcodeSuccess {
		t.Errorf("limited key within its rule: %s", dns.RcodeToString[resp.Rcode])
	}
	// Unsecured names can be registered.
	if resp := sendUpdate(t, h, "registrar.", "peer.alt.", func(m *dns.Msg) {
		m.Insert(rrs(t, "printer.0.peer.alt. 60 IN A 192.0.2.30"))
	}); resp.Rcode != dns.RcodeSuccess {
		t.Errorf("unsecured name: %s", dns.RcodeToString[resp.Rcode])
	}
	// A QUERY is still a query.
	if r := query(t, h, "printer.0.peer.alt.", dns.TypeA); len(r.Answer) != 1 {
		t.Errorf("unsecured name not resolvable: %v", r)
	}
}

func TestUpdatePrerequisites(t *testing.T) {
	t.Parallel()
	inst, _, auth := updateInstance(t, "")
	h := inst.handler
	app := "app." + auth + ".peer.alt."
	add := func(m *dns.Msg) { m.Insert(rrs(t, app+" 60 IN A 192.0.2.55")) }
	steps := []struct {
		name string
		pre  func(m *dns.Msg)
		want int
	}{
		{"in use, absent", func(m *dns.Msg) { m.NameUsed(rrs(t, app+" 0 IN A 0.0.0.0")) }, dns.RcodeNameError},
		{"RRset exists, absent", func(m *dns.Msg) { m.RRsetUsed(rrs(t, app+" 0 IN A 0.0.0.0")) }, dns.RcodeNXRrset},
		{"not in use, absent", func(m *dns.Msg) { m.NameNotUsed(rrs(t, app+" 0 IN A 0.0.0.0")) }, dns.RcodeSuccess},
		{"not in use, present", func(m *dns.Msg) { m.NameNotUsed(rrs(t, app+" 0 IN A 0.0.0.0")) }, dns.RcodeYXDomain},
		{"no A RRset, present", func(m *dns.Msg) { m.RRsetNotUsed(rrs(t, app+" 0 IN A 0.0.0.0")) }, dns.RcodeYXRrset},
		{"no TXT RRset", func(m *dns.Msg) { m.RRsetNotUsed(rrs(t, app+" 0 IN TXT x")) }, dns.RcodeSuccess},
		{"in use, present", func(m *dns.Msg) { m.NameUsed(rrs(t, app+" 0 IN A 0.0.0.0")) }, dns.RcodeSuccess},
		{"value, equal", func(m *dns.Msg) { m.Used(rrs(t, app+" 0 IN A 192.0.2.55")) }, dns.RcodeSuccess},
		{"value, differs", func(m *dns.Msg) { m.Used(rrs(t, app+" 0 IN A 192.0.2.56")) }, dns.RcodeNXRrset},
		{"Corefile name in use", func(m *dns.Msg) { m.NameNotUsed(rrs(t, "node."+auth+".peer.alt. 0 IN A 0.0.0.0")) }, dns.RcodeYXDomain},
	}
	for _, s := range steps {
		resp := sendUpdate(t, h, "registrar.", "peer.alt.", func(m *dns.Msg) { s.pre(m); add(m) })
		if resp.Rcode != s.want {
			t.Errorf("%s: %s, want %s", s.name, dns.RcodeToString[resp.Rcode], dns.RcodeToString[s.want])
		}
	}
}

func TestUpdateLease(t *testing.T) {
	t.Parallel()
	inst, _, auth := updateInstance(t, "lease 1s 1h\n")
	h := inst.handler
	app := "leased." + auth + ".peer.alt."
	resp := sendUpdate(t, h, "registrar.", "peer.alt.", func(m *dns.Msg) {
		m.Insert(rrs(t, app+" 60 IN A 192.0.2.55"))
		o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		o.SetUDPSize(1232)
		o.Option = append(o.Option, &dns.EDNS0_UL{Code: dns.EDNS0UL, Lease: 1})
		m.Extra = append(m.Extra, o)
	})
	if resp.Rcode != dns.RcodeSuccess {
		t.Fatalf("add with lease: %s", dns.RcodeToString[resp.Rcode])
	}
	var granted uint32
	if o := resp.IsEdns0(); o != nil {
		for _, e := range o.Option {
			if ul, ok := e.(*dns.EDNS0_UL); ok {
				granted = ul.Lease
			}
		}
	}
	if granted != 1 {
		t.Fatalf("granted lease %d, want 1 (response %v)", granted, resp)
	}
	if r := query(t, h, app, dns.TypeA); len(r.Answer) != 1 {
		t.Fatalf("not resolvable within the lease: %v", r)
	}
	deadline := time.Now().Add(5 * time.Second)
	for query(t, h, app, dns.TypeA).Rcode != dns.RcodeNameError {
		if time.Now().After(deadline) {
			t.Fatal("still resolvable 5s after a 1s lease")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestUpdateSurvivesRestart registers a name with `state DIR`, stops the
// node (which withdraws it) and starts a new one from the same state: the
// name is published again.
func TestUpdateSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := newFakeNet()
	id := testIdentity(13)
	auth := id.Authority().String()
	corefile := "peername {\nlisten 127.0.0.1:3540\nstate " + dir + "\nallow registrar. * A\n}"
	app := "app." + auth + ".peer.alt."
	first := newTestInstance(t, f.registry(), id, corefile)
	if err := first.startup(); err != nil {
		t.Fatal(err)
	}
	if resp := sendUpdate(t, first.handler, "registrar.", "peer.alt.", func(m *dns.Msg) {
		m.Insert(rrs(t, app+" 60 IN A 192.0.2.55"))
	}); resp.Rcode != dns.RcodeSuccess {
		t.Fatalf("add: %s", dns.RcodeToString[resp.Rcode])
	}
	if err := first.shutdown(); err != nil {
		t.Fatal(err)
	}
	if rec := f.latest(securedName(t, id, "app")); rec == nil || !rec.Withdrawn {
		t.Fatalf("not withdrawn at shutdown: %+v", rec)
	}
	second := newTestInstance(t, f.registry(), id, corefile)
	if err := second.startup(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = second.shutdown() })
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := query(t, second.handler, app, dns.TypeA)
		if len(r.Answer) == 1 && r.Answer[0].(*dns.A).A.Equal(net.ParseIP("192.0.2.55")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not resumed after restart: %v", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestParseAllow(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"allow k. *", "allow k. * MX", "allow k. bad..name A", "lease 0s 1h", "lease 2h 1h", "lease 1s"} {
		if _, err := parse(controller("peername {\n" + bad + "\n}")); err == nil || !strings.Contains(err.Error(), "") {
			t.Errorf("%q: no error", bad)
		}
	}
	cfg, err := parse(controller("peername {\nallow Registrar. * a aaaa\nallow k2 app.x.peer.alt. *\n}"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.allow) != 2 || cfg.allow[0].key != "registrar." || !cfg.allow[0].types[dns.TypeAAAA] || !cfg.allow[1].any || cfg.allow[1].name != "app.x.peer.alt." {
		t.Fatalf("%+v", cfg.allow)
	}
	if !cfg.allow[0].permits("registrar.", "a.b.", dns.TypeA) || cfg.allow[0].permits("registrar.", "a.b.", dns.TypeANY) || !cfg.allow[1].permits("k2.", "app.x.peer.alt.", dns.TypeANY) {
		t.Fatal("permits")
	}
}

// TestUpdateSurvivesReload registers a name, reloads (the new instance
// starts before the old one stops) and checks the name is still published
// and can be deleted through the new instance.
func TestUpdateSurvivesReload(t *testing.T) {
	t.Parallel()
	f := newFakeNet()
	reg := f.registry()
	id := testIdentity(14)
	auth := id.Authority().String()
	corefile := "peername {\nlisten 127.0.0.1:3540\npublish node 192.0.2.1\nallow registrar. * A\n}"
	app := "app." + auth + ".peer.alt."
	old := newTestInstance(t, reg, id, corefile)
	if err := old.startup(); err != nil {
		t.Fatal(err)
	}
	if resp := sendUpdate(t, old.handler, "registrar.", "peer.alt.", func(m *dns.Msg) {
		m.Insert(rrs(t, app+" 60 IN A 192.0.2.55"))
	}); resp.Rcode != dns.RcodeSuccess {
		t.Fatalf("add: %s", dns.RcodeToString[resp.Rcode])
	}
	next := newTestInstance(t, reg, id, corefile)
	if err := next.startup(); err != nil {
		t.Fatal(err)
	}
	if err := old.shutdown(); err != nil {
		t.Fatal(err)
	}
	if rec := f.latest(securedName(t, id, "app")); rec == nil || rec.Withdrawn {
		t.Fatalf("withdrawn by the reload: %+v", rec)
	}
	if r := query(t, next.handler, app, dns.TypeA); len(r.Answer) != 1 {
		t.Fatalf("not resolvable after reload: %v", r)
	}
	if resp := sendUpdate(t, next.handler, "registrar.", "peer.alt.", func(m *dns.Msg) {
		m.RemoveRRset(rrs(t, app+" 0 IN A 0.0.0.0"))
	}); resp.Rcode != dns.RcodeSuccess {
		t.Fatalf("delete after reload: %s", dns.RcodeToString[resp.Rcode])
	}
	if rec := f.latest(securedName(t, id, "app")); rec == nil || !rec.Withdrawn {
		t.Fatalf("not withdrawn by the delete: %+v", rec)
	}
	if err := next.shutdown(); err != nil {
		t.Fatal(err)
	}
}

package peername

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/pkg/fall"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/overlay"
	"github.com/peername/peername/records"
	"github.com/peername/peername/resolver"
)

func controller(input string) *caddy.Controller {
	c := caddy.NewTestController("dns", input)
	c.ServerBlockKeys = []string{"peer.alt.:1053"}
	return c
}

func TestParse(t *testing.T) {
	t.Parallel()
	defListen := []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:3540"), netip.MustParseAddrPort("[::]:3540")}
	tests := []struct {
		input   string
		wantErr string
		check   func(t *testing.T, c *config)
	}{
		{input: `peername`, check: func(t *testing.T, c *config) {
			if !slices.Equal(c.zones, []string{"peer.alt."}) || !slices.Equal(c.listen, defListen) ||
				c.cloud != "global" || c.identityFile != "peername.key" || c.ttl != 30*time.Second ||
				c.timeout != 2*time.Second || len(c.bootstrap) != 0 || len(c.publish) != 0 || c.fall.Zones != nil ||
				c.puzzleBits != overlay.DefaultPuzzleBits {
				t.Fatalf("defaults: %+v", c)
			}
		}},
		{input: `peername peer.alt lan.alt.`, check: func(t *testing.T, c *config) {
			if !slices.Equal(c.zones, []string{"peer.alt.", "lan.alt."}) {
				t.Fatalf("zones %v", c.zones)
			}
		}},
		{input: `peername {
			identity /var/lib/peername/node.key
			listen 127.0.0.1:3541 [::1]:3541 10.0.0.1
			bootstrap 127.0.0.1:3540 seed.example.org:3540 dns:_peername._udp.example.org
			cloud lab
			publish www
			publish db 192.0.2.7 2001:DB8::7
			publish_unsecured Printer 192.0.2.9
			srv www _https _tcp 443 10 20
			srv db postgres tcp 5432
			txt www "hello world" second
			ttl 60
			negative_ttl 3
			timeout 1500ms
			lifetime 10m
			state /var/lib/peername/state
			linklocal eth0
			puzzle 24
			fallthrough example.org
		}`, check: func(t *testing.T, c *config) {
			if c.stateDir != "/var/lib/peername/state" || !c.linkLocal || c.linkIface != "eth0" {
				t.Errorf("state %q linklocal %v %q", c.stateDir, c.linkLocal, c.linkIface)
			}
			if c.puzzleBits != 24 {
				t.Errorf("puzzle %d", c.puzzleBits)
			}
			want := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:3541"), netip.MustParseAddrPort("[::1]:3541"), netip.MustParseAddrPort("10.0.0.1:3540")}
			if !slices.Equal(c.listen, want) {
				t.Errorf("listen %v", c.listen)
			}
			if got := fmt.Sprint(c.bootstrap); got != "[127.0.0.1:3540 seed.example.org:3540 dns:_peername._udp.example.org]" {
				t.Errorf("bootstrap %s", got)
			}
			if c.identityFile != "/var/lib/peername/node.key" || c.cloud != "lab" || c.ttl != time.Minute ||
				c.negTTL != 3*time.Second || c.timeout != 1500*time.Millisecond || c.lifetime != 10*time.Minute {
				t.Errorf("options %+v", c)
			}
			if !c.fall.Equal(fall.F{Zones: []string{"example.org."}}) {
				t.Errorf("fallthrough %v", c.fall)
			}
			if len(c.publish) != 3 {
				t.Fatalf("publish %v", c.publish)
			}
			www, db, pr := c.publish[0], c.publish[1], c.publish[2]
			if www.classifier != "www" || !www.secured || len(www.ips) != 0 ||
				!slices.Equal(www.services, []records.Service{{Service: "https", Proto: "tcp", Port: 443, Priority: 10, Weight: 20}}) ||
				!slices.Equal(www.txt, []string{"hello world", "second"}) {
				t.Errorf("www %+v", www)
			}
			if db.classifier != "db" || fmt.Sprint(db.ips) != "[192.0.2.7 2001:db8::7]" ||
				!slices.Equal(db.services, []records.Service{{Service: "postgres", Proto: "tcp", Port: 5432}}) {
				t.Errorf("db %+v", db)
			}
			if pr.classifier != "printer" || pr.secured || fmt.Sprint(pr.ips) != "[192.0.2.9]" {
				t.Errorf("printer %+v", pr)
			}
		}},
		{input: `peername {
			fallthrough
		}`, check: func(t *testing.T, c *config) {
			if !c.fall.Equal(fall.Root) {
				t.Fatalf("fallthrough %v", c.fall)
			}
		}},
		{input: "peername\npeername", wantErr: "only be used once"},
		{input: "peername {\nbogus\n}", wantErr: "unknown property"},
		{input: "peername {\nstate\n}", wantErr: "Wrong argument count"},
		{input: "peername {\nlinklocal eth0 eth1\n}", wantErr: "Wrong argument count"},
		{input: "peername {\nlinklocal\n}", check: func(t *testing.T, c *config) {
			if !c.linkLocal || c.linkIface != "" {
				t.Fatalf("linklocal %v %q", c.linkLocal, c.linkIface)
			}
		}},
		{input: "peername {\nidentity\n}", wantErr: "Wrong argument count"},
		{input: "peername {\nidentity a b\n}", wantErr: "Wrong argument count"},
		{input: "peername {\nlisten\n}", wantErr: "Wrong argument count"},
		{input: "peername {\nlisten 127.0.0.1:99999\n}", wantErr: "listen"},
		{input: "peername {\nlisten localhost:3540\n}", wantErr: "listen"},
		{input: "peername {\nbootstrap 0.0.0.0:3540\n}", wantErr: "unusable"},
		{input: "peername {\nbootstrap 127.0.0.1\n}", wantErr: "bootstrap"},
		{input: "peername {\nbootstrap host:0\n}", wantErr: "bad port"},
		{input: "peername {\nbootstrap dns:\n}", wantErr: "SRV domain"},
		{input: "peername {\ncloud\n}", wantErr: "cloud"},
		{input: "peername {\npublish\n}", wantErr: "Wrong argument count"},
		{input: "peername {\npublish bad_label\n}", wantErr: "publish"},
		{input: "peername {\npublish www 0.0.0.0\n}", wantErr: "not an IP"},
		{input: "peername {\npublish www nope\n}", wantErr: "not an IP"},
		{input: "peername {\npublish www\npublish_unsecured WWW\n}", wantErr: "published twice"},
		{input: "peername {\npublish www 1.1.1.1 1.1.1.2 1.1.1.3 1.1.1.4 1.1.1.5 1.1.1.6 1.1.1.7 1.1.1.8 1.1.1.9 1.1.1.10 1.1.1.11\n}", wantErr: "at most"},
		{input: "peername {\nsrv www ssh tcp 22\n}", wantErr: "no publish line"},
		{input: "peername {\npublish www\nsrv www ssh tcp 0\n}", wantErr: "port 0"},
		{input: "peername {\npublish www\nsrv www ssh tcp 70000\n}", wantErr: "bad number"},
		{input: "peername {\npublish www\nsrv www ssh tcp 22 1\n}", wantErr: "want SERVICE"},
		{input: "peername {\npublish www\nsrv www s.h tcp 22\n}", wantErr: "bad service"},
		{input: "peername {\npublish www\ntxt www\n}", wantErr: "needs a classifier"},
		{input: "peername {\npublish www\ntxt www " + strings.Repeat("x", 256) + "\n}", wantErr: "255"},
		{input: "peername {\nttl 0\n}", wantErr: "ttl needs"},
		{input: "peername {\nttl many\n}", wantErr: "ttl needs"},
		{input: "peername {\ntimeout -1s\n}", wantErr: "positive duration"},
		{input: "peername {\ntimeout 2m\n}", wantErr: "longer than"},
		{input: "peername {\nlifetime 1s\n}", wantErr: "outside"},
		{input: "peername {\npuzzle 0\n}", check: func(t *testing.T, c *config) {
			if c.puzzleBits != 0 {
				t.Fatalf("puzzle 0: %d bits", c.puzzleBits)
			}
		}},
		{input: "peername {\npuzzle\n}", wantErr: "Wrong argument count"},
		{input: "peername {\npuzzle 8 16\n}", wantErr: "Wrong argument count"},
		{input: "peername {\npuzzle 33\n}", wantErr: "puzzle needs a number of bits from 0 (no puzzle) to 32"},
		{input: "peername {\npuzzle -1\n}", wantErr: "puzzle needs"},
		{input: "peername {\npuzzle hard\n}", wantErr: "puzzle needs"},
		{input: "peername {\nprefix_cap 0\n}", check: func(t *testing.T, c *config) {
			if c.prefixCap != 0 {
				t.Fatalf("prefix_cap 0: %d", c.prefixCap)
			}
		}},
		{input: "peername {\nprefix_cap 5\n}", check: func(t *testing.T, c *config) {
			if c.prefixCap != 5 {
				t.Fatalf("prefix_cap 5: %d", c.prefixCap)
			}
		}},
		{input: "peername {\n}", check: func(t *testing.T, c *config) {
			if c.prefixCap != 2 {
				t.Fatalf("default prefix_cap: %d, want 2", c.prefixCap)
			}
		}},
		{input: "peername {\nprefix_cap\n}", wantErr: "Wrong argument count"},
		{input: "peername {\n}", check: func(t *testing.T, c *config) {
			if c.mode != overlay.ModeAuto {
				t.Fatalf("default mode: %v, want auto", c.mode)
			}
		}},
		{input: "peername {\nmode client\n}", check: func(t *testing.T, c *config) {
			if c.mode != overlay.ModeClient {
				t.Fatalf("mode client: %v", c.mode)
			}
		}},
		{input: "peername {\nmode server\n}", check: func(t *testing.T, c *config) {
			if c.mode != overlay.ModeServer {
				t.Fatalf("mode server: %v", c.mode)
			}
		}},
		{input: "peername {\nmode\n}", wantErr: "Wrong argument count"},
		{input: "peername {\nmode relay\n}", wantErr: "mode needs auto, server or client"},
		{input: "peername {\nmode auto client\n}", wantErr: "Wrong argument count"},
		{input: "peername {\nprefix_cap 17\n}", wantErr: "prefix_cap needs a number of nodes per network prefix from 0 (no cap) to 16"},
		{input: "peername {\nprefix_cap -1\n}", wantErr: "prefix_cap needs"},
		{input: "peername {\nprefix_cap many\n}", wantErr: "prefix_cap needs"},
		{input: "peername {\ncontacts /etc/peername/contacts\n}", check: func(t *testing.T, c *config) {
			if !c.contacts || c.contactsFile != "/etc/peername/contacts" {
				t.Fatalf("contacts FILE: %v %q", c.contacts, c.contactsFile)
			}
		}},
		{input: "peername {\nstate /var/lib/pn\ncontacts\n}", check: func(t *testing.T, c *config) {
			if !c.contacts || c.contactsFile != "" {
				t.Fatalf("contacts: %v %q", c.contacts, c.contactsFile)
			}
		}},
		{input: "peername {\n}", check: func(t *testing.T, c *config) {
			if c.contacts {
				t.Fatal("contacts answered without a contacts line")
			}
		}},
		{input: "peername {\ncontacts a b\n}", wantErr: "Wrong argument count"},
	}
	for _, tc := range tests {
		t.Run(tc.input, func(t *testing.T) {
			t.Parallel()
			cfg, err := parse(controller(tc.input))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, cfg)
		})
	}
}

func TestSetupCreatesIdentity(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "node.key")
	c := controller(fmt.Sprintf("peername {\nidentity %s\npublish www\n}", keyFile))
	if err := setup(c); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	// A second load uses the same key.
	id1, err := identity.LoadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := setup(controller(fmt.Sprintf("peername {\nidentity %s\n}", keyFile))); err != nil {
		t.Fatal(err)
	}
	id2, err := identity.LoadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if id1.Authority() != id2.Authority() {
		t.Fatal("key file rewritten")
	}

	// A key file others can read is refused.
	loose := filepath.Join(dir, "loose.key")
	if err := id1.SaveFile(loose); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	err = setup(controller(fmt.Sprintf("peername {\nidentity %s\n}", loose)))
	if !errors.Is(err, identity.ErrKeyFilePermissions) {
		t.Fatalf("err = %v, want ErrKeyFilePermissions", err)
	}
}

// expectEvents reads n events from the fake network.
func expectEvents(t *testing.T, f *fakeNet, want ...string) {
	t.Helper()
	var got []string
	timeout := time.After(10 * time.Second)
	for range want {
		select {
		case e := <-f.events:
			got = append(got, e)
		case <-timeout:
			t.Fatalf("events %v, want %v", got, want)
		}
	}
	slices.Sort(got)
	w := slices.Clone(want)
	slices.Sort(w)
	if !slices.Equal(got, w) {
		t.Fatalf("events %v, want %v", got, w)
	}
}

func newTestInstance(t testing.TB, reg *nodeRegistry, id *identity.Identity, corefile string) *instance {
	t.Helper()
	cfg, err := parse(controller(corefile))
	if err != nil {
		t.Fatal(err)
	}
	inst, err := newInstance(cfg, id, reg)
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

func query(t testing.TB, h *Peername, qname string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(qname, qtype)
	rec := dnstest.NewRecorder(&test.ResponseWriter{})
	if _, err := h.ServeDNS(context.Background(), rec, m); err != nil {
		t.Fatalf("%s: %v", qname, err)
	}
	return rec.Msg
}

// TestReloadKeepsNode plays CoreDNS's reload order: the new instance starts
// before the old one shuts down. The node (and its socket) must survive,
// names published by both must stay, names dropped by the new Corefile must
// be withdrawn, and the last shutdown must withdraw the rest and close.
func TestReloadKeepsNode(t *testing.T) {
	t.Parallel()
	f := newFakeNet()
	reg := f.registry()
	id := testIdentity(7)
	auth := id.Authority().String()
	const listen = "listen 127.0.0.1:3540"
	old := newTestInstance(t, reg, id, "peername {\n"+listen+"\npublish www\npublish db 192.0.2.5\nlifetime 1h\n}")
	if old.handler.Ready() {
		t.Fatal("ready before startup")
	}
	if err := old.startup(); err != nil {
		t.Fatal(err)
	}
	expectEvents(t, f, "start", "publish www."+auth, "publish db."+auth)
	old.wg.Wait() // the publishers have finished
	if !old.handler.Ready() {
		t.Fatal("not ready after start and publish")
	}
	if msg := query(t, old.handler, "db."+auth+".peer.alt.", dns.TypeA); len(msg.Answer) != 1 {
		t.Fatalf("db not resolvable: %v", msg)
	}

	// Reload: the new Corefile drops db.
	next := newTestInstance(t, reg, id, "peername {\n"+listen+"\npublish www\nlifetime 1h\n}")
	if err := next.startup(); err != nil {
		t.Fatal(err)
	}
	expectEvents(t, f, "publish www."+auth)
	if err := old.shutdown(); err != nil {
		t.Fatal(err)
	}
	expectEvents(t, f, "unpublish db."+auth)
	if f.started != 1 || f.closed != 0 {
		t.Fatalf("node started %d closed %d times across a reload, want 1 and 0", f.started, f.closed)
	}
	wwwName, _ := identity.NewSecuredName("www", id.PublicKey())
	if r := f.latest(wwwName); r == nil || r.Withdrawn {
		t.Fatal("www withdrawn by the old instance's shutdown")
	}
	if msg := query(t, next.handler, "www."+auth+".peer.alt.", dns.TypeA); len(msg.Answer) != 1 || msg.Rcode != dns.RcodeSuccess {
		t.Fatalf("www after reload: %v", msg)
	}
	if msg := query(t, next.handler, "db."+auth+".peer.alt.", dns.TypeA); msg.Rcode != dns.RcodeNameError {
		t.Fatalf("db after reload: %v", msg)
	}

	// Final shutdown.
	if err := next.shutdown(); err != nil {
		t.Fatal(err)
	}
	expectEvents(t, f, "unpublish www."+auth, "close")
	if r := f.latest(wwwName); r == nil || !r.Withdrawn {
		t.Fatal("www not withdrawn at final shutdown")
	}
	if len(reg.nodes) != 0 {
		t.Fatalf("registry still holds %d nodes", len(reg.nodes))
	}
	if next.handler.Ready() {
		t.Fatal("ready after shutdown")
	}
	// The address is free again: a fresh start works.
	again := newTestInstance(t, reg, id, "peername {\n"+listen+"\n}")
	if err := again.startup(); err != nil {
		t.Fatal(err)
	}
	expectEvents(t, f, "start")
	if err := again.shutdown(); err != nil {
		t.Fatal(err)
	}
	expectEvents(t, f, "close")
}

// TestDistinctNodesConflict shows why nodes are shared by key: a second
// node on the same address fails like a second socket would, while a node
// with the same identity and address is shared.
func TestDistinctNodesConflict(t *testing.T) {
	t.Parallel()
	f := newFakeNet()
	reg := f.registry()
	a := newTestInstance(t, reg, testIdentity(1), "peername {\nlisten 127.0.0.1:3540\n}")
	if err := a.startup(); err != nil {
		t.Fatal(err)
	}
	b := newTestInstance(t, reg, testIdentity(2), "peername {\nlisten 127.0.0.1:3540\n}")
	if err := b.startup(); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second identity on a used address: err = %v", err)
	}
	c := newTestInstance(t, reg, testIdentity(1), "peername {\nlisten 127.0.0.1:3540\n}")
	if err := c.startup(); err != nil {
		t.Fatal(err)
	}
	for _, inst := range []*instance{a, b, c} {
		if err := inst.shutdown(); err != nil {
			t.Fatal(err)
		}
	}
	if f.started != 1 || f.closed != 1 {
		t.Fatalf("started %d closed %d", f.started, f.closed)
	}
}

// TestLonePublishPushedWhenPeersJoin: a name published while the node is
// alone counts as published (the node can answer for it) and is published
// again as soon as the node has peers.
func TestLonePublishPushedWhenPeersJoin(t *testing.T) {
	t.Parallel()
	f := newFakeNet()
	f.peers = 0
	reg := f.registry()
	id := testIdentity(9)
	inst := newTestInstance(t, reg, id, "peername {\nlisten 127.0.0.1:3540\npublish solo\n}")
	if err := inst.startup(); err != nil {
		t.Fatal(err)
	}
	name := "solo." + id.Authority().String()
	expectEvents(t, f, "start", "publish-local "+name)
	eventually(t, "ready while alone", inst.handler.Ready)
	if msg := query(t, inst.handler, name+".peer.alt.", dns.TypeA); len(msg.Answer) != 1 {
		t.Fatalf("own name while alone: %v", msg)
	}
	f.mu.Lock()
	f.peers = 1
	f.mu.Unlock()
	expectEvents(t, f, "publish "+name)
	inst.wg.Wait() // the publisher is done once the name reached peers
	if err := inst.shutdown(); err != nil {
		t.Fatal(err)
	}
	expectEvents(t, f, "unpublish "+name, "close")
}

func TestNotStarted(t *testing.T) {
	t.Parallel()
	inst := newTestInstance(t, newFakeNet().registry(), testIdentity(1), "peername")
	_, err := inst.res.Resolve(context.Background(), "x.0.peer.alt.", "peer.alt.")
	if !errors.Is(err, resolver.ErrUnavailable) || !errors.Is(err, errNotStarted) {
		t.Fatalf("err = %v", err)
	}
}

func TestEndpoints(t *testing.T) {
	t.Parallel()
	ifs := interfaceAddrs()
	tests := []struct {
		name       string
		configured []netip.Addr
		bound      []netip.AddrPort
		want       func([]netip.Addr) bool
	}{
		{name: "configured wins", configured: []netip.Addr{netip.MustParseAddr("192.0.2.1")},
			bound: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:3540")},
			want:  func(a []netip.Addr) bool { return fmt.Sprint(a) == "[192.0.2.1]" }},
		{name: "bound address", bound: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:3540"), netip.MustParseAddrPort("[::1]:3540")},
			want: func(a []netip.Addr) bool { return fmt.Sprint(a) == "[127.0.0.1 ::1]" }},
		{name: "unspecified expands to interfaces", bound: []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:3540")},
			want: func(a []netip.Addr) bool {
				for _, ip := range a {
					if !ip.Is4() || !slices.Contains(ifs, ip) {
						return false
					}
				}
				return len(a) <= maxEndpoints
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := endpoints(tc.configured, tc.bound, netip.AddrPort{}, "it"); !tc.want(got) {
				t.Fatalf("endpoints = %v", got)
			}
		})
	}
}

// TestChooseEndpoints: what a node publishes without explicit addresses.
func TestChooseEndpoints(t *testing.T) {
	t.Parallel()
	ap := netip.MustParseAddrPort
	ips := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, x := range s {
			out = append(out, netip.MustParseAddr(x))
		}
		return out
	}
	any4 := []netip.AddrPort{ap("0.0.0.0:3540")}
	ifs := ips("127.0.0.1", "169.254.1.2", "192.168.1.10", "198.51.100.7", "100.64.0.9")
	tests := []struct {
		name     string
		bound    []netip.AddrPort
		ifs      []netip.Addr
		external netip.AddrPort
		global   bool
		want     string
	}{
		{"global cloud: no loopback, link-local or private", any4, ifs, netip.AddrPort{}, true, "[198.51.100.7]"},
		{"LAN cloud keeps private addresses", any4, ifs, netip.AddrPort{}, false, "[192.168.1.10 198.51.100.7 100.64.0.9]"},
		{"agreed external address first", any4, ips("192.168.1.10"), ap("203.0.113.5:40000"), true, "[203.0.113.5]"},
		{"external plus LAN addresses in a LAN cloud", any4, ips("192.168.1.10"), ap("203.0.113.5:40000"), false, "[203.0.113.5 192.168.1.10]"},
		{"a private external address is not published", any4, ips("198.51.100.7"), ap("10.0.0.1:3540"), true, "[198.51.100.7]"},
		{"global cloud with only private addresses keeps them", any4, ips("192.168.1.10"), netip.AddrPort{}, true, "[192.168.1.10]"},
		{"bound to loopback: a cloud on one host", []netip.AddrPort{ap("127.0.0.1:3540")}, nil, netip.AddrPort{}, true, "[127.0.0.1]"},
		{"bound link-local is never published", []netip.AddrPort{ap("[fe80::1]:3540"), ap("[2001:db8::1]:3540")}, nil, netip.AddrPort{}, true, "[2001:db8::1]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := fmt.Sprint(chooseEndpoints(tc.bound, tc.ifs, tc.external, tc.global)); got != tc.want {
				t.Fatalf("chooseEndpoints = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestSameSettings(t *testing.T) {
	t.Parallel()
	base := nodeConfig{
		Identity:  testIdentity(1),
		Listen:    []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:3540")},
		Bootstrap: []bootstrapSpec{{Addr: netip.MustParseAddrPort("127.0.0.1:3541")}},
		Cloud:     "global", RecordLifetime: time.Hour,
	}
	tests := []struct {
		name   string
		change func(*nodeConfig)
		same   bool
	}{
		{name: "identical", change: func(*nodeConfig) {}, same: true},
		{name: "identity loaded again", change: func(c *nodeConfig) { c.Identity = testIdentity(1) }, same: true},
		{name: "bootstrap", change: func(c *nodeConfig) { c.Bootstrap = nil }},
		{name: "lifetime", change: func(c *nodeConfig) { c.RecordLifetime = time.Minute }},
		{name: "state", change: func(c *nodeConfig) { c.StateDir = "/tmp/x" }},
		{name: "linklocal", change: func(c *nodeConfig) { c.LinkLocal = true }},
		{name: "puzzle", change: func(c *nodeConfig) { c.PuzzleBits = 8 }},
		{name: "mode", change: func(c *nodeConfig) { c.Mode = overlay.ModeClient }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := base
			tc.change(&o)
			if got := base.sameSettings(o); got != tc.same {
				t.Fatalf("sameSettings = %v, want %v", got, tc.same)
			}
			if base.key() != o.key() {
				t.Fatal("settings changed the node key")
			}
		})
	}
}

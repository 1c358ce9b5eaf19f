package integration

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The address plan of TestNAT, all in RFC 2544's benchmarking space
// (198.18.0.0/15) and, behind the masquerading routers, RFC 1918's
// 10.99.0.0/16, inside namespaces only. Each public host and each router's
// outside sits in a /24 of its own, so the agreement rule (two /24 groups)
// can be met on the public side; the firewalled LAN is 198.19.107.0/24.
const natPublic = "198.19.%d.%d" // third octet: 101-103 public hosts, 104-106 router outsides

// natDetectWithin bounds how long after it joins a node behind NAT may take
// to find it out and turn client: its first detection round starts a few
// seconds after its first peer, and an undecided node re-checks every 30 s;
// the bound leaves room for two rounds and a loaded -race run.
const natDetectWithin = 150 * time.Second

// natRouterRules are the nftables rulesets of the three kinds of router.
var natRouterRules = map[string]string{
	// Masquerade: the LAN's datagrams leave with the router's outside
	// address; conntrack lets in only answers to what went out.
	"masquerade": `table ip pnnat {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "eth0" masquerade
	}
}
`,
	// A strict stateful firewall, no translation: the LAN's public
	// addresses are routed, but only answers come in.
	"firewall": `table inet pnfw {
	chain through {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "lan0" accept
	}
}
`,
	// Masquerade plus a port forward of the overlay port to the LAN host.
	"forward": `table ip pnfwd {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "eth0" udp dport 3540 dnat to 10.99.3.2:3540
	}
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "eth0" masquerade
	}
}
`,
}

// natHost is one peername host of TestNAT.
type natHost struct {
	label  string
	ns     string
	addr   netip.Addr // its own interface address
	public netip.Addr // the address the public side reaches it at
	router string     // "" for a public host, else the kind of its router
	client bool       // whether it must end up a client
	name   string
	srv    *server
}

// TestNAT is issue 13 on a real network. An "internet" router namespace
// joins three public hosts (each on a /24 of its own) and three routers:
// one masquerading a private LAN, one a strict stateful firewall in front
// of a routed LAN, and one masquerading with the overlay port forwarded to
// its LAN host. Every host runs CoreDNS with peername in mode auto and
// publishes a name without addresses. Then:
//   - the hosts behind the masquerade and the firewall find out that
//     unsolicited datagrams do not reach them and turn client within
//     natDetectWithin, and are in no routing table (every server's table
//     holds exactly the other four servers);
//   - the port-forwarded host is never judged unreachable (the probes come
//     in through the forward) and serves: it is in the servers' tables and
//     stores records for others. No server can be proven public in a cloud
//     this small (every dialer is a node it sent to), so "unknown" passes;
//     the simulator's larger clouds show the public verdicts;
//   - every host resolves every name through its own CoreDNS (dig; getent
//     on the masqueraded host), and each name's address is the one the
//     public side can use: the router's outside address for the
//     masquerades, the routed address behind the firewall.
func TestNAT(t *testing.T) {
	t.Parallel()
	requireNetNS(t)
	for _, tool := range []string{"nft", "dig", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s is not installed", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	dir := t.TempDir()
	hs := natTopology(ctx, t)
	const overlayPort = 3540
	began := time.Now()
	for i, h := range hs {
		id, key := newKey(t, dir, h.label+".key")
		h.name = securedName(t, id, h.label)
		spec := nodeSpec{
			Label: h.label, Host: h.addr.String(), DNSPort: 53, NetNS: h.ns, KeyFile: key,
			Overlay: netip.AddrPortFrom(h.addr, overlayPort), TTL: 2, Timeout: "2s",
			Publish: []string{h.label},
			Extra:   []string{"mode auto"},
			ExtraZones: fmt.Sprintf("metrics.test.:53 {\n    bind %s\n    prometheus %s:9153\n}\n",
				h.addr, h.addr),
		}
		if i > 0 {
			spec.Bootstrap = []netip.AddrPort{netip.AddrPortFrom(hs[0].addr, overlayPort)}
		}
		h.srv = startServer(t, spec)
		if i == 0 {
			if err := h.srv.waitReady(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, h := range hs[1:] {
		if err := h.srv.waitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// Modes and reachability, from each node's metrics.
	servers := 0
	for _, h := range hs {
		if !h.client {
			servers++
		}
	}
	wctx, wcancel := context.WithTimeout(ctx, natDetectWithin)
	err := eventually(wctx, func(ctx context.Context) error {
		for _, h := range hs {
			m, err := natMetrics(ctx, h)
			if err != nil {
				return err
			}
			// A server must never be judged unreachable; it need not be
			// proven public: in a cloud this small every dialer is a node
			// it has sent to, whose probe an address-restricted NAT would
			// let in too, so no probe is proof (docs/protocol.md).
			mode, reachOK := "server", m["coredns_peername_reachability{reachability=unreachable}"] == 0
			if h.client {
				mode, reachOK = "client", m["coredns_peername_reachability{reachability=unreachable}"] == 1
			}
			if m["coredns_peername_mode{mode="+mode+"}"] != 1 || !reachOK {
				return fmt.Errorf("%s (%s): mode %v, reachability %v; want %s: %w",
					h.label, natWhere(h), natLabels(m, "coredns_peername_mode"), natLabels(m, "coredns_peername_reachability"), mode, errNotYet)
			}
			if !h.client && m["coredns_peername_routing_table_size"] != float64(servers-1) {
				return fmt.Errorf("%s: routing table of %v peers, want the %d other servers and no client: %w",
					h.label, m["coredns_peername_routing_table_size"], servers-1, errNotYet)
			}
		}
		return nil
	})
	wcancel()
	if err != nil {
		for _, h := range hs {
			t.Logf("%s log:\n%s", h.label, h.srv.logTail(15))
		}
		t.Fatal(err)
	}
	detected := time.Since(began)
	for _, h := range hs {
		if m, err := natMetrics(ctx, h); err == nil {
			t.Logf("%s (%s): mode %v, reachability %v, routing table %v", h.label, natWhere(h),
				natLabels(m, "coredns_peername_mode"), natLabels(m, "coredns_peername_reachability"), m["coredns_peername_routing_table_size"])
		}
	}

	// Every name, from every host, at the address the public side can use.
	var wg sync.WaitGroup
	for _, at := range hs {
		wg.Go(func() {
			for _, h := range hs {
				if err := natResolves(ctx, at, h); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	// The user behind the masquerade, through glibc.
	for _, at := range hs {
		if at.router != "masquerade" {
			continue
		}
		for _, h := range hs {
			name := strings.TrimSuffix(h.name, ".")
			out, err := exec.CommandContext(ctx, "ip", "netns", "exec", at.ns, "getent", "hosts", name).CombinedOutput()
			if f := strings.Fields(string(out)); err != nil || len(f) < 2 || f[0] != h.public.String() {
				t.Errorf("getent hosts %s on %s: %q (%v), want %s", name, at.label, out, err, h.public)
			}
		}
	}

	// Clients store nothing for others; the port-forwarded server does.
	for _, h := range hs {
		m, err := natMetrics(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		stored := m["coredns_peername_records_stored"]
		switch {
		case h.client && stored > 1: // its own name at most
			t.Errorf("client %s stores %v records", h.label, stored)
		case h.router == "forward" && stored < 2:
			t.Errorf("port-forwarded server %s stores %v records, want others' too", h.label, stored)
		}
	}
	t.Logf("%d hosts: modes and routing tables as expected %v after the start; every name resolved everywhere after %v",
		len(hs), detected.Round(time.Second), time.Since(began).Round(time.Second))
}

// natWhere says where h sits.
func natWhere(h *natHost) string {
	if h.router == "" {
		return "public"
	}
	return "behind a " + h.router
}

// natTopology builds TestNAT's namespaces and returns its hosts: three
// public ones (the first is the seed), then one behind each router.
func natTopology(ctx context.Context, t *testing.T) []*natHost {
	t.Helper()
	var sfx [3]byte
	if _, err := rand.Read(sfx[:]); err != nil {
		t.Fatal(err)
	}
	p := "pn" + hex.EncodeToString(sfx[:]) // interface and namespace names stay short
	inet := p + "in"
	addNetNS(ctx, t, inet)
	mustIP(ctx, t, "-n", inet, "link", "set", "lo", "up")
	natSysctl(ctx, t, inet)
	// link connects namespace ns (as eth0, at .2) to the internet router
	// (at .1) on 198.19.octet.0/24.
	link := func(ns string, octet int) netip.Addr {
		addNetNS(ctx, t, ns)
		peer := fmt.Sprintf("%sv%d", p, octet)
		mustIP(ctx, t, "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", peer, "netns", inet)
		mustIP(ctx, t, "-n", inet, "addr", "add", fmt.Sprintf(natPublic, octet, 1)+"/24", "dev", peer)
		mustIP(ctx, t, "-n", inet, "link", "set", peer, "up")
		a := netip.MustParseAddr(fmt.Sprintf(natPublic, octet, 2))
		mustIP(ctx, t, "-n", ns, "link", "set", "lo", "up")
		mustIP(ctx, t, "-n", ns, "addr", "add", a.String()+"/24", "dev", "eth0")
		mustIP(ctx, t, "-n", ns, "link", "set", "eth0", "up")
		mustIP(ctx, t, "-n", ns, "route", "add", "default", "via", fmt.Sprintf(natPublic, octet, 1))
		return a
	}
	var hs []*natHost
	for i := range 3 {
		ns := fmt.Sprintf("%sa%d", p, i+1)
		a := link(ns, 101+i)
		hs = append(hs, &natHost{label: fmt.Sprintf("public%d", i+1), ns: ns, addr: a, public: a})
	}
	routers := []struct {
		kind   string
		octet  int    // the router's outside /24
		lan    string // the LAN's address format (%d: .1 router, .2 host)
		client bool
	}{
		{"masquerade", 104, "10.99.1.%d", true},
		{"firewall", 105, "198.19.107.%d", true},
		{"forward", 106, "10.99.3.%d", false}, // natRouterRules["forward"] names 10.99.3.2
	}
	for i, r := range routers {
		rns := fmt.Sprintf("%sr%d", p, i+1)
		outside := link(rns, r.octet)
		natSysctl(ctx, t, rns)
		hns := fmt.Sprintf("%sh%d", p, i+1)
		addNetNS(ctx, t, hns)
		mustIP(ctx, t, "link", "add", "eth0", "netns", hns, "type", "veth", "peer", "name", "lan0", "netns", rns)
		mustIP(ctx, t, "-n", rns, "addr", "add", fmt.Sprintf(r.lan, 1)+"/24", "dev", "lan0")
		mustIP(ctx, t, "-n", rns, "link", "set", "lan0", "up")
		a := netip.MustParseAddr(fmt.Sprintf(r.lan, 2))
		mustIP(ctx, t, "-n", hns, "link", "set", "lo", "up")
		mustIP(ctx, t, "-n", hns, "addr", "add", a.String()+"/24", "dev", "eth0")
		mustIP(ctx, t, "-n", hns, "link", "set", "eth0", "up")
		mustIP(ctx, t, "-n", hns, "route", "add", "default", "via", fmt.Sprintf(r.lan, 1))
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", rns, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(natRouterRules[r.kind])
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft in %s: %v: %s", rns, err, out)
		}
		h := &natHost{label: r.kind, ns: hns, addr: a, public: outside, router: r.kind, client: r.client}
		if r.kind == "firewall" {
			// Routed, not translated: the internet reaches the LAN
			// through the router (only answers get past it).
			mustIP(ctx, t, "-n", inet, "route", "add", fmt.Sprintf(r.lan, 0)+"/24", "via", outside.String())
			h.public = a
		}
		netnsResolvConf(t, h.ns, h.addr)
		hs = append(hs, h)
	}
	return hs
}

// natSysctl makes namespace ns forward IPv4.
func natSysctl(ctx context.Context, t *testing.T, ns string) {
	t.Helper()
	if out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
		t.Fatalf("sysctl in %s: %v: %s", ns, err, out)
	}
}

// natMetrics scrapes h's peername metrics from inside its namespace and
// returns the coredns_peername_* samples keyed by name and their labels
// other than node (one node per process), e.g.
// `coredns_peername_mode{mode=client}`.
func natMetrics(ctx context.Context, h *natHost) (map[string]float64, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", h.ns, "curl", "-sf", "--max-time", "5",
		"http://"+netip.AddrPortFrom(h.addr, 9153).String()+"/metrics").Output()
	if err != nil {
		return nil, fmt.Errorf("metrics of %s: %v: %w", h.label, err, errNotYet)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "coredns_peername_") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		key := line[:sp]
		if i := strings.IndexByte(key, '{'); i >= 0 {
			var keep []string
			for _, l := range strings.Split(strings.TrimSuffix(key[i+1:], "}"), ",") {
				if !strings.HasPrefix(l, "node=") {
					keep = append(keep, strings.ReplaceAll(l, `"`, ""))
				}
			}
			key = key[:i]
			if len(keep) > 0 {
				key += "{" + strings.Join(keep, ",") + "}"
			}
		}
		m[key] += v
	}
	return m, nil
}

// natLabels lists the samples of metric m that are 1.
func natLabels(m map[string]float64, metric string) []string {
	var out []string
	for k, v := range m {
		if strings.HasPrefix(k, metric+"{") && v == 1 {
			out = append(out, strings.TrimPrefix(k, metric))
		}
	}
	return out
}

// natResolves makes at resolve h's name with dig through at's CoreDNS until
// it answers with h's public address (SERVFAIL and answers without an
// address are retried for up to 60 s; NXDOMAIN or another address fails).
// Right after a node learns its external address its record is republished,
// so an answer may show the address it had before for up to the TTL.
func natResolves(ctx context.Context, at, h *natHost) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	name := strings.TrimSuffix(h.name, ".")
	var last string
	for {
		out, _ := exec.CommandContext(ctx, "ip", "netns", "exec", at.ns, "dig", "+tries=1", "+time=4",
			"@"+at.addr.String(), name, "A").CombinedOutput()
		st := ""
		if m := digStatus.FindSubmatch(out); m != nil {
			st = string(m[1])
		}
		if st == "NXDOMAIN" {
			return fmt.Errorf("dig on %s: %s, which %s published, is NXDOMAIN:\n%s", at.label, h.name, h.label, out)
		}
		var got []string
		for _, m := range digA.FindAllSubmatch(out, -1) {
			got = append(got, string(m[1]))
		}
		if st == "NOERROR" && len(got) == 1 && got[0] == h.public.String() {
			return nil
		}
		last = fmt.Sprintf("%s %v", st, got)
		if ctx.Err() != nil {
			return fmt.Errorf("dig on %s: %s (%s) never answered just %s; last: %s", at.label, h.name, natWhere(h), h.public, last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// moveSubnet is TestAddressChangeRepublished's LAN (RFC 2544 space).
const moveSubnet = "198.18.83.%d"

// TestAddressChangeRepublished: a node bound to 0.0.0.0 that publishes its
// name without addresses republishes it at once when the host gets a new
// address (a new lease, another network): the name resolves to the new
// address within seconds, not at the next republish half a lifetime later.
func TestAddressChangeRepublished(t *testing.T) {
	t.Parallel()
	requireNetNS(t)
	if _, err := exec.LookPath("dig"); err != nil {
		t.Skip("skipping: dig is not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	const overlayPort = 3540
	lan := netnsLAN(ctx, t, moveSubnet, 2, 1)
	var srvs []*server
	var mover string
	for i, h := range lan {
		label := fmt.Sprintf("move%d", i+1)
		id, key := newKey(t, dir, label+".key")
		spec := nodeSpec{
			Label: label, Host: h.addr.String(), DNSPort: 53, NetNS: h.ns, Cloud: "it-move", KeyFile: key,
			Overlay: netip.AddrPortFrom(h.addr, overlayPort), TTL: 1, Timeout: "2s",
		}
		if i == 1 {
			spec.Overlay = netip.AddrPortFrom(netip.IPv4Unspecified(), overlayPort)
			spec.Publish = []string{"mover"}
			spec.Bootstrap = []netip.AddrPort{netip.AddrPortFrom(lan[0].addr, overlayPort)}
			mover = strings.TrimSuffix(securedName(t, id, "mover"), ".")
		}
		s := startServer(t, spec)
		if err := s.waitReady(ctx); err != nil {
			t.Fatal(err)
		}
		srvs = append(srvs, s)
	}
	// addrsOf is what host 1's CoreDNS answers for the mover's name.
	addrsOf := func(ctx context.Context) []string {
		out, _ := exec.CommandContext(ctx, "ip", "netns", "exec", lan[0].ns, "dig", "+tries=1", "+time=3",
			"@"+lan[0].addr.String(), mover, "A").CombinedOutput()
		var got []string
		for _, m := range digA.FindAllSubmatch(out, -1) {
			got = append(got, string(m[1]))
		}
		return got
	}
	waitFor := func(want string, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		wctx, wcancel := context.WithTimeout(ctx, within)
		defer wcancel()
		err := eventually(wctx, func(ctx context.Context) error {
			if got := addrsOf(ctx); !slices.Contains(got, want) {
				return fmt.Errorf("%s resolves to %v, want %s among them: %w", mover, got, want, errNotYet)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%v\nmover's log:\n%s", err, srvs[1].logTail(20))
		}
		return time.Since(start)
	}
	waitFor(lan[1].addr.String(), time.Minute)
	moved := strings.Replace(moveSubnet, "%d", "77", 1)
	mustIP(ctx, t, "-n", lan[1].ns, "addr", "add", moved+"/24", "dev", "eth0")
	took := waitFor(moved, 45*time.Second)
	t.Logf("the new address %s resolved %v after it was added", moved, took.Round(100*time.Millisecond))
}

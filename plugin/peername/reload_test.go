package peername

import (
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/coredns/caddy"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/whoami"
	"github.com/miekg/dns"

	"github.com/peername/peername/identity"
)

func corefileInput(s string) caddy.Input {
	return caddy.CaddyfileInput{Contents: []byte(s), Filepath: "Corefile", ServerTypeName: "dns"}
}

// TestCoreDNSReload starts a real CoreDNS server with a peername block on
// a real overlay node and reloads it the way SIGUSR1 does: the overlay node
// must be the same one afterwards, names kept by the new Corefile must keep
// resolving, and a name it dropped must be withdrawn.
func TestCoreDNSReload(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a CoreDNS server")
	}
	caddy.Quiet = true
	keyFile := filepath.Join(t.TempDir(), "node.key")
	corefile := func(publish string) string {
		return fmt.Sprintf("peer.alt.:0 {\nbind 127.0.0.1\npeername {\nidentity %s\nlisten 127.0.0.1:0\ncloud reload-test\n%s\n}\n}\n", keyFile, publish)
	}
	inst, err := caddy.Start(corefileInput(corefile("publish a 192.0.2.1\npublish b 192.0.2.2")))
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			inst.ShutdownCallbacks()
			_ = inst.Stop()
		}
	}()
	id, err := identity.LoadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	name := func(c string) string { return c + "." + id.Authority().String() + ".peer.alt." }
	udp := inst.Servers()[0].LocalAddr().String()
	tcp := inst.Servers()[0].Addr().String()
	ask := func(network, addr, qname string) *dns.Msg {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(qname, dns.TypeA)
		c := &dns.Client{Net: network, Timeout: 5 * time.Second}
		r, _, err := c.Exchange(m, addr)
		if err != nil {
			t.Fatalf("%s %s: %v", network, qname, err)
		}
		return r
	}
	answers := func(network, addr, qname, want string) bool {
		r := ask(network, addr, qname)
		return r.Rcode == dns.RcodeSuccess && r.Authoritative && len(r.Answer) == 1 && r.Answer[0].(*dns.A).A.String() == want
	}
	eventually(t, "a published", func() bool { return answers("udp", udp, name("a"), "192.0.2.1") })
	if !answers("tcp", tcp, name("b"), "192.0.2.2") {
		t.Fatal("b over TCP")
	}
	nodeBefore := onlyNode(t)

	// Reload with b dropped and c added.
	inst2, err := inst.Restart(corefileInput(corefile("publish a 192.0.2.1\npublish c 192.0.2.3")))
	if err != nil {
		t.Fatal(err)
	}
	inst = inst2
	if onlyNode(t) != nodeBefore {
		t.Fatal("the overlay node was replaced by the reload")
	}
	udp = inst.Servers()[0].LocalAddr().String()
	eventually(t, "c published", func() bool { return answers("udp", udp, name("c"), "192.0.2.3") })
	if !answers("udp", udp, name("a"), "192.0.2.1") {
		t.Fatal("a lost across the reload")
	}
	if r := ask("udp", udp, name("b")); r.Rcode != dns.RcodeNameError {
		t.Fatalf("b after the reload dropped it: %v", r)
	}

	// Final shutdown closes the node.
	stopped = true
	if errs := inst.ShutdownCallbacks(); len(errs) > 0 {
		t.Fatal(errs)
	}
	if err := inst.Stop(); err != nil {
		t.Fatal(err)
	}
	nodes.mu.Lock()
	left := len(nodes.nodes)
	nodes.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d nodes left in the registry", left)
	}
}

// onlyNode returns the one node of the process-wide registry.
func onlyNode(t *testing.T) *sharedNode {
	t.Helper()
	nodes.mu.Lock()
	defer nodes.mu.Unlock()
	if len(nodes.nodes) != 1 {
		t.Fatalf("%d nodes in the registry, want 1", len(nodes.nodes))
	}
	for _, s := range nodes.nodes {
		return s
	}
	return nil
}

// TestCoreDNSReloadFailure: when a reload fails after the new
// configuration's peername block started (here a second server cannot bind
// its port), CoreDNS keeps the old configuration and never shuts the new
// one down; the plugin must release what the new one took, so the final
// shutdown still withdraws the names and closes the node.
func TestCoreDNSReloadFailure(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a CoreDNS server")
	}
	caddy.Quiet = true
	keyFile := filepath.Join(t.TempDir(), "node.key")
	block := fmt.Sprintf("peer.alt.:0 {\nbind 127.0.0.1\npeername {\nidentity %s\nlisten 127.0.0.1:0\ncloud reload-fail-test\npublish a 192.0.2.1\n}\n}\n", keyFile)
	inst, err := caddy.Start(corefileInput(block))
	if err != nil {
		t.Fatal(err)
	}
	s := onlyNode(t)
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, port, _ := net.SplitHostPort(busy.LocalAddr().String())
	bad := block + fmt.Sprintf("other.test.:%s {\nbind 127.0.0.1\nwhoami\n}\n", port)
	if _, err := inst.Restart(corefileInput(bad)); err == nil {
		t.Fatal("reload onto a busy port succeeded")
	}
	nodes.mu.Lock()
	refs := s.refs
	nodes.mu.Unlock()
	if refs != 1 {
		t.Fatalf("node has %d references after the failed reload, want 1", refs)
	}
	if errs := inst.ShutdownCallbacks(); len(errs) > 0 {
		t.Fatal(errs)
	}
	_ = inst.Stop()
	nodes.mu.Lock()
	left := len(nodes.nodes)
	nodes.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d nodes left after the final shutdown", left)
	}
}

package peername

import (
	"context"
	"testing"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
)

// FuzzServeDNSUpdate feeds arbitrary messages, as UPDATEs signed by an
// allowed key, through ServeDNS. It must never panic, must always write an
// UPDATE response, and whatever it accepts must keep every runtime name
// within the record bounds and of this node's authority or unsecured.
func FuzzServeDNSUpdate(f *testing.F) {
	id := testIdentity(21)
	auth := id.Authority().String()
	inst := newTestInstance(f, newFakeNet().registry(), id,
		"peername {\nlisten 127.0.0.1:3540\npublish node 192.0.2.1\nallow registrar. * A AAAA SRV TXT ANY\n}")
	if err := inst.startup(); err != nil {
		f.Fatal(err)
	}
	inst.wg.Wait()
	f.Cleanup(func() { _ = inst.shutdown() })
	app := "app." + auth + ".peer.alt."
	seed := func(build func(m *dns.Msg)) {
		m := new(dns.Msg)
		m.SetUpdate("peer.alt.")
		build(m)
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	mk := func(s ...string) []dns.RR {
		var out []dns.RR
		for _, x := range s {
			rr, err := dns.NewRR(x)
			if err != nil {
				f.Fatal(err)
			}
			out = append(out, rr)
		}
		return out
	}
	seed(func(m *dns.Msg) { m.Insert(mk(app + " 60 IN A 192.0.2.55")) })
	seed(func(m *dns.Msg) {
		m.NameNotUsed(mk(app + " 0 IN A 0.0.0.0"))
		m.Insert(mk(app+" 60 IN AAAA 2001:db8::1", app+` 60 IN TXT "a" "b"`, "_h._tcp."+app+" 60 IN SRV 1 2 80 "+app))
	})
	seed(func(m *dns.Msg) { m.RemoveName(mk(app + " 0 IN A 0.0.0.0")) })
	seed(func(m *dns.Msg) { m.Remove(mk(app + " 0 IN TXT a")) })
	seed(func(m *dns.Msg) { m.Used(mk(app + " 0 IN A 192.0.2.55")); m.RemoveRRset(mk(app + " 0 IN A 0.0.0.0")) })
	seed(func(m *dns.Msg) { m.Insert(mk("printer.0.peer.alt. 60 IN A 192.0.2.30")) })

	ctx := context.WithValue(context.Background(), testKey{}, "registrar.")
	f.Fuzz(func(t *testing.T, b []byte) {
		m := new(dns.Msg)
		if err := m.Unpack(b); err != nil {
			return
		}
		m.Opcode = dns.OpcodeUpdate
		rec := dnstest.NewRecorder(&test.ResponseWriter{})
		if _, err := inst.handler.ServeDNS(ctx, rec, m); err != nil {
			t.Fatalf("ServeDNS: %v", err)
		}
		if rec.Msg == nil || rec.Msg.Opcode != dns.OpcodeUpdate {
			t.Fatalf("no UPDATE response: %v", rec.Msg)
		}
		rt := inst.node.Load().runtime()
		rt.mu.Lock()
		defer rt.mu.Unlock()
		if len(rt.regs) > maxNamesPerKey {
			t.Fatalf("%d runtime names", len(rt.regs))
		}
		for n, reg := range rt.regs {
			if err := checkBounds(reg); err != nil || reg.empty() {
				t.Fatalf("%s kept out of bounds or empty: %v %+v", n, err, reg)
			}
			if n.Secured && n.Authority != id.Authority() {
				t.Fatalf("registered another authority's name %s", n)
			}
		}
	})
}

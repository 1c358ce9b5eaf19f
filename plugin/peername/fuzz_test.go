package peername

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"

	"github.com/peername/peername/records"
)

// FuzzParse feeds arbitrary Corefile text to the peername block parser. It
// must never panic, and whatever it accepts must be a usable configuration.
// The seed corpus is in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add("peername")
	f.Add("peername peer.alt lan.alt {\nlisten 127.0.0.1:3540 [::1]\nbootstrap 127.0.0.1:3541 dns:example.org\npublish www\nsrv www ssh tcp 22 1 2\ntxt www hi\n}")
	f.Add("peername {\nprefix_cap 4\npuzzle 12\n}")
	f.Fuzz(func(t *testing.T, input string) {
		c := caddy.NewTestController("dns", input)
		c.ServerBlockKeys = []string{"peer.alt.:1053"}
		cfg, err := parse(c)
		if err != nil {
			return
		}
		if len(cfg.zones) == 0 || len(cfg.listen) == 0 || cfg.ttl <= 0 || cfg.negTTL <= 0 ||
			cfg.timeout <= 0 || cfg.lifetime <= 0 || cfg.identityFile == "" || cfg.cloud == "" ||
			cfg.prefixCap < 0 || cfg.prefixCap > maxPrefixCap {
			t.Fatalf("accepted an unusable config: %+v", cfg)
		}
		seen := map[string]bool{}
		for _, p := range cfg.publish {
			if err := checkClassifier(p.classifier); err != nil {
				t.Fatalf("accepted classifier %q: %v", p.classifier, err)
			}
			if seen[p.classifier] {
				t.Fatalf("accepted duplicate classifier %q", p.classifier)
			}
			seen[p.classifier] = true
			if len(p.ips) > maxEndpoints {
				t.Fatalf("accepted %d addresses", len(p.ips))
			}
			for _, s := range p.services {
				if s.Port == 0 || s.Service == "" || s.Proto == "" {
					t.Fatalf("accepted service %+v", s)
				}
			}
			for _, s := range p.txt {
				if len(s) > 255 {
					t.Fatalf("accepted a %d-octet TXT string", len(s))
				}
			}
		}
		// What was accepted can be turned into an instance.
		if _, err := newInstance(cfg, testIdentity(1), newFakeNet().registry()); err != nil {
			t.Fatalf("parsed config rejected by newInstance: %v", err)
		}
	})
}

// FuzzServeDNS sends arbitrary question names and types to the handler
// (with a fixed set of published records behind it). It must never panic,
// and every answer must be one of the outcomes the plugin documents.
// The seed corpus is in testdata/fuzz/FuzzServeDNS.
func FuzzServeDNS(f *testing.F) {
	alice := testIdentity(1)
	www := record(f, alice, "www", true, func(r *records.Record) {
		r.Endpoints = []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}
		r.Services = []records.Service{{Service: "ssh", Proto: "tcp", Port: 22}}
		r.TXT = []string{"hello"}
	})
	h := newHandler(f, newMapSearcher(www), t0.Add(time.Minute))
	f.Add(www.Name.DNS("peer.alt."), uint16(dns.TypeA))
	f.Add("_ssh._tcp."+www.Name.DNS("peer.alt."), uint16(dns.TypeSRV))
	f.Fuzz(func(t *testing.T, qname string, qtype uint16) {
		m := new(dns.Msg)
		m.SetQuestion(qname, qtype)
		_, perr := m.Pack()
		wireQuery := perr == nil // could have come off the wire
		rec := dnstest.NewRecorder(&test.ResponseWriter{})
		code, err := h.ServeDNS(context.Background(), rec, m)
		switch code {
		case dns.RcodeRefused, dns.RcodeServerFailure, dns.RcodeNotImplemented:
			if rec.Msg != nil {
				t.Fatalf("rcode %d with a written message", code)
			}
			return
		case dns.RcodeSuccess, dns.RcodeNameError:
		default:
			t.Fatalf("rcode %d, err %v", code, err)
		}
		if rec.Msg == nil || !rec.Msg.Authoritative || rec.Msg.Rcode != code {
			t.Fatalf("rcode %d, message %v", code, rec.Msg)
		}
		if len(rec.Msg.Answer) == 0 && (len(rec.Msg.Ns) != 1 || rec.Msg.Ns[0].Header().Rrtype != dns.TypeSOA) {
			t.Fatalf("negative answer without the SOA: %v", rec.Msg)
		}
		if _, err := rec.Msg.Pack(); wireQuery && err != nil {
			t.Fatalf("answer does not pack: %v", err)
		}
	})
}

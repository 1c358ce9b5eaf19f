package peername

import (
	"testing"

	"github.com/coredns/caddy"
)

// FuzzParse feeds arbitrary Corefile text to the peername block parser. It
// must never panic, and whatever it accepts must be a usable configuration.
// The seed corpus is in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add("peername")
	f.Add("peername peer.alt lan.alt {\nlisten 127.0.0.1:3540 [::1]\nbootstrap 127.0.0.1:3541 dns:example.org\npublish www\nsrv www ssh tcp 22 1 2\ntxt www hi\n}")
	f.Fuzz(func(t *testing.T, input string) {
		c := caddy.NewTestController("dns", input)
		c.ServerBlockKeys = []string{"peer.alt.:1053"}
		cfg, err := parse(c)
		if err != nil {
			return
		}
		if len(cfg.zones) == 0 || len(cfg.listen) == 0 || cfg.ttl <= 0 || cfg.negTTL <= 0 ||
			cfg.timeout <= 0 || cfg.lifetime <= 0 || cfg.identityFile == "" || cfg.cloud == "" {
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

package sim

import (
	"context"
	"testing"

	"github.com/peername/peername/overlay"
)

// TestNATFilter: a node behind NAT hears only from nodes it sent to within
// the NAT timeout; others hear from it as ever.
func TestNATFilter(t *testing.T) {
	t.Parallel()
	e, err := NewEngine(1, Network{NAT: []bool{false, true, false}}, false)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		from, to int32
		at       int64
		dropped  bool
	}{
		{0, 1, 0, true},           // unsolicited
		{1, 0, 1e9, false},        // out through the NAT
		{0, 1, 2e9, false},        // the answer
		{2, 1, 3e9, true},         // another node: still unsolicited
		{0, 1, 1e9 + 30e9, false}, // 30 s after the last send: still open
		{0, 1, 2e9 + 30e9, true},  // past the timeout
	}
	for i, s := range steps {
		e.now = s.at
		if got := e.natFiltered(s.from, s.to); got != s.dropped {
			t.Errorf("step %d (%d -> %d at %v): dropped %v, want %v", i, s.from, s.to, s.at, got, s.dropped)
		}
	}
}

// TestNATClientMode: with a third of the nodes behind NAT, mode auto turns
// every one of them into a client and no reachable node; mode server keeps
// them all serving. Lookups succeed either way (the figures are in
// docs/benchmarks.md).
func TestNATClientMode(t *testing.T) {
	t.Parallel()
	for _, mode := range []overlay.Mode{overlay.ModeAuto, overlay.ModeServer} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			nat, err := NATNodes(0.3, 5, 150, 1)
			if err != nil {
				t.Fatal(err)
			}
			cfg := Config{Seed: 5, Nodes: 150, Lookups: 300, Net: Network{RTTMin: 20e6, RTTMax: 100e6, NAT: nat}}
			cfg.Core.Mode = mode
			w, err := NewWorld(cfg)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := w.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if rep.NATNodes < 20 {
				t.Fatalf("%d nodes behind NAT, want a third of 150", rep.NATNodes)
			}
			switch mode {
			case overlay.ModeAuto:
				if rep.NATClients != rep.NATNodes || rep.PublicClients != 0 {
					t.Errorf("auto: %d of %d NATed nodes are clients, %d reachable clients", rep.NATClients, rep.NATNodes, rep.PublicClients)
				}
			case overlay.ModeServer:
				if rep.NATServing != rep.NATNodes {
					t.Errorf("server: %d of %d NATed nodes serve", rep.NATServing, rep.NATNodes)
				}
			}
			if rep.SuccessRate < 0.99 || rep.RecordsLost != 0 {
				t.Errorf("%v: success %.4f, records lost %d", mode, rep.SuccessRate, rep.RecordsLost)
			}
		})
	}
}

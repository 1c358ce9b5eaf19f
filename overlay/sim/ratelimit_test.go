package sim

import (
	"context"
	"testing"
	"time"
)

// The per-source rate limits of the overlay core never fire in an honest
// simulated network (joins, publishes, lookups, loss and churn), so they
// cost honest nodes nothing; overlay/abuse_test.go shows they do fire on
// floods.
func TestHonestWorkloadNeverRateLimited(t *testing.T) {
	t.Parallel()
	cfg := Config{
		Seed:        5,
		Nodes:       150,
		Lookups:     1000,
		Publishers:  0.3,
		Fail:        0.1,
		Net:         Network{RTTMin: 10 * time.Millisecond, RTTMax: 120 * time.Millisecond, Loss: 0.02},
		LookupPhase: 30 * time.Second,
	}
	w, err := NewWorld(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := w.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var limited, stores, hellos, rejected uint64
	for _, n := range w.nodes {
		if n == nil || n.Core == nil {
			continue // a failed node
		}
		s := n.Stats()
		limited += s.RateLimited
		stores += s.StoresRateLimited
		hellos += s.HandshakesRateLimited
		rejected += s.RecordsRejected
	}
	t.Logf("%d nodes, %d/%d lookups ok; rate-limited: %d requests, %d stores, %d handshakes; %d stores refused",
		cfg.Nodes, rep.Succeeded, cfg.Lookups, limited, stores, hellos, rejected)
	if limited+stores+hellos != 0 {
		t.Errorf("honest network rate-limited %d requests, %d stores, %d handshakes", limited, stores, hellos)
	}
	if rep.Succeeded == 0 || rep.Published == 0 {
		t.Errorf("the workload did not run: %+v", rep)
	}
}

package sim

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/peername/peername/overlay"
)

func fakeWorld(seed uint64, forgeAt int) Config {
	return Config{
		Seed:        seed,
		Nodes:       60,
		Lookups:     300,
		Publishers:  0.2,
		Net:         Network{RTTMin: 10 * time.Millisecond, RTTMax: 80 * time.Millisecond, Loss: 0.02},
		LookupPhase: 30 * time.Second,
		CheckEvery:  10 * time.Second,
		HashData:    true,
		NewCore: func(i int, cfg overlay.Config) (Core, error) {
			return newFakeCore(i, cfg, i == forgeAt), nil
		},
	}
}

func runWorld(t *testing.T, cfg Config) (*Report, error) {
	t.Helper()
	w, err := NewWorld(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w.Run(context.Background())
}

// comparable strips the fields that depend on the machine, not the seed.
func comparable(r Report) Report {
	r.WallS, r.HeapBytesPerNode = 0, 0
	r.ViolationList = nil
	return r
}

func TestWorldDeterministic(t *testing.T) {
	t.Parallel()
	a, err := runWorld(t, fakeWorld(11, -1))
	if err != nil {
		t.Fatal(err)
	}
	b, err := runWorld(t, fakeWorld(11, -1))
	if err != nil {
		t.Fatal(err)
	}
	c, err := runWorld(t, fakeWorld(12, -1))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(comparable(*a), comparable(*b)) {
		t.Errorf("seed 11 twice:\n%+v\n%+v", comparable(*a), comparable(*b))
	}
	if a.Trace == c.Trace {
		t.Errorf("seeds 11 and 12 have the same trace %s", a.Trace)
	}
	if a.Succeeded == 0 || a.Published == 0 || a.Sweeps == 0 || a.RecordsChecked == 0 {
		t.Errorf("the workload did not run: %+v", a)
	}
}

func TestWorldAccountsForEveryLookup(t *testing.T) {
	t.Parallel()
	cfg := fakeWorld(3, -1)
	cfg.Fail = 0.3
	cfg.Net.Loss = 0.2
	r, err := runWorld(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sum := r.Succeeded + r.Timeouts + r.NotFound + r.Inconclusive + r.Stale + r.WrongRecord + r.HopLimit + r.OtherErrors + r.Unfinished + r.NotIssued
	if sum != r.Lookups || r.Failures != r.Lookups-r.Succeeded {
		t.Errorf("lookups %d, categories sum to %d, failures %d: %+v", r.Lookups, sum, r.Failures, r)
	}
	if r.FailedNodes != 18 {
		t.Errorf("failed nodes = %d, want 18", r.FailedNodes)
	}
	if r.Failures == 0 {
		t.Errorf("20%% loss and 30%% failures against the fake core left no failure: %+v", r)
	}
}

func TestWorldForgedRecordReportsSeed(t *testing.T) {
	t.Parallel()
	cfg := fakeWorld(77, 5)
	r, err := runWorld(t, cfg)
	if !errors.Is(err, ErrInvariant) {
		t.Fatalf("err = %v, want ErrInvariant", err)
	}
	if !strings.Contains(err.Error(), "seed 77") || !strings.Contains(err.Error(), "fails Verify") {
		t.Errorf("error does not name the seed and the check: %v", err)
	}
	if r == nil || r.Violations == 0 || len(r.ViolationList) == 0 {
		t.Errorf("report does not list the violation: %+v", r)
	}
}

func TestWorldStopsOnViolation(t *testing.T) {
	t.Parallel()
	cfg := fakeWorld(78, 0)
	cfg.StopOnViolation = true
	r, err := runWorld(t, cfg)
	if !errors.Is(err, ErrInvariant) {
		t.Fatalf("err = %v, want ErrInvariant", err)
	}
	if r.VirtualS >= (cfg.LookupPhase + 60*time.Second).Seconds() {
		t.Errorf("run went on to %v s after the violation", r.VirtualS)
	}
}

func TestWorldContextCancel(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w, err := NewWorld(fakeWorld(1, -1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func TestConfigRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"no nodes", func(c *Config) { c.Nodes = 0 }},
		{"fail > 1", func(c *Config) { c.Fail = 2 }},
		{"negative lookups", func(c *Config) { c.Lookups = -1 }},
		{"bad loss", func(c *Config) { c.Net.Loss = -1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := fakeWorld(1, -1)
			tt.mod(&cfg)
			if _, err := NewWorld(cfg); !errors.Is(err, ErrBadConfig) {
				t.Errorf("err = %v, want ErrBadConfig", err)
			}
		})
	}
}

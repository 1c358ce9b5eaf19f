package sim

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/peername/peername/overlay"
)

// scenario is a small run of the real core with every invariant checked
// throughout: held and returned records verify and state stays within bounds
// (sweep every 15 s), and every name whose owner is alive resolves (probe
// every 15 s, three attempts).
func scenario(seed uint64, nodes int) Config {
	return Config{
		Seed:          seed,
		Nodes:         nodes,
		Lookups:       150,
		Publishers:    0.1,
		JoinRate:      50,
		Settle:        10 * time.Second,
		LookupPhase:   45 * time.Second,
		Net:           Network{RTTMin: 20 * time.Millisecond, RTTMax: 200 * time.Millisecond},
		CheckEvery:    15 * time.Second,
		ProbeEvery:    15 * time.Second,
		ProbeGrace:    20 * time.Second,
		ProbeAttempts: 3,
	}
}

func checkRun(t *testing.T, cfg Config, minSuccess float64) *Report {
	t.Helper()
	r, err := runWorld(t, cfg)
	if err != nil {
		if r != nil {
			var b bytes.Buffer
			_ = r.WriteText(&b)
			t.Log(b.String())
		}
		t.Fatalf("seed %d: %v", cfg.Seed, err)
	}
	if r.SuccessRate < minSuccess {
		t.Errorf("seed %d: success %.4f < %.4f: %+v", cfg.Seed, r.SuccessRate, minSuccess, r)
	}
	if r.Probes == 0 || r.Sweeps == 0 || r.RecordsChecked == 0 {
		t.Errorf("seed %d: the checks did not run: probes %d, sweeps %d, records %d", cfg.Seed, r.Probes, r.Sweeps, r.RecordsChecked)
	}
	if r.Published != r.Names {
		t.Errorf("seed %d: %d of %d names published", cfg.Seed, r.Published, r.Names)
	}
	return r
}

func TestScenarioNoFaults(t *testing.T) {
	t.Parallel()
	r := checkRun(t, scenario(101, 60), 1)
	if r.HopsMean > 3 {
		t.Errorf("mean hops %.2f > 3", r.HopsMean)
	}
}

func TestScenarioChurnAndLoss(t *testing.T) {
	t.Parallel()
	cfg := scenario(102, 60)
	cfg.Fail = 0.2
	cfg.JoinLate = 0.1
	cfg.Net.Loss = 0.05
	r := checkRun(t, cfg, 0.99)
	if r.FailedNodes != 12 || r.LateJoins != 6 || r.Lost == 0 || r.ToDead == 0 {
		t.Errorf("faults not injected: %+v", r)
	}
}

func TestScenarioPartitionHeals(t *testing.T) {
	t.Parallel()
	cfg := scenario(103, 60)
	cfg.LookupPhase = 75 * time.Second
	// Cut half of the network off for 25 s, from about 9 s into the lookup
	// phase (which starts after 1.2 s of joins, 10 s of settling, 10 s of
	// publishes and 10 s more).
	start := 40 * time.Second
	p, err := ParsePartition("40s:65s:0.5", cfg.Seed, cfg.Nodes)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Net.Partitions = []Partition{p}
	w, err := NewWorld(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Probes pause during the partition and its grace period; the ones that
	// run after it are what shows the overlay healed.
	probesBefore := -1
	w.Engine().At(start+25*time.Second+cfg.ProbeGrace, func(time.Time) { probesBefore = w.rep.Probes })
	r, err := w.Run(context.Background())
	if err != nil {
		t.Fatalf("seed %d: %v", cfg.Seed, err)
	}
	if r.Partitioned == 0 {
		t.Error("the partition dropped nothing")
	}
	if probesBefore < 0 || r.Probes-probesBefore < r.Published {
		t.Errorf("only %d probes after the partition healed (%d before)", r.Probes-probesBefore, probesBefore)
	}
}

func TestScenarioDuplicationReordering(t *testing.T) {
	t.Parallel()
	cfg := scenario(104, 60)
	cfg.Net.Duplicate = 0.1
	cfg.Net.Reorder = 0.2
	r := checkRun(t, cfg, 0.99)
	if r.Duplicated == 0 {
		t.Error("nothing duplicated")
	}
}

func TestScenarioDeterministic(t *testing.T) {
	t.Parallel()
	run := func(seed uint64) *Report {
		cfg := scenario(seed, 30)
		cfg.Lookups = 60
		cfg.Fail = 0.1
		cfg.Net.Loss = 0.05
		cfg.Net.Duplicate = 0.05
		cfg.Net.Reorder = 0.05
		cfg.HashData = true
		return checkRun(t, cfg, 0)
	}
	a, b, c := run(9), run(9), run(10)
	if a.Trace != b.Trace || a.Events != b.Events || a.Succeeded != b.Succeeded || a.Sent != b.Sent {
		t.Errorf("seed 9 twice: trace %s/%s, events %d/%d", a.Trace, b.Trace, a.Events, b.Events)
	}
	if a.Trace == c.Trace {
		t.Errorf("seeds 9 and 10: same trace %s", a.Trace)
	}
}

// TestRunReportsViolation: a core that breaks an invariant makes Run fail
// with the seed, and the report lists the violation (peername sim prints the
// replay command from ReplayArgs).
func TestRunReportsViolation(t *testing.T) {
	t.Parallel()
	cfg := scenario(4242, 30)
	cfg.Lookups = 100
	cfg.NewCore = func(i int, cfg overlay.Config) (Core, error) { return newFakeCore(i, cfg, i == 3), nil }
	rep, err := runWorld(t, cfg)
	if err == nil || !strings.Contains(err.Error(), "seed 4242") {
		t.Fatalf("Run with a forging core: err = %v, want an invariant failure naming seed 4242", err)
	}
	var b bytes.Buffer
	if rep == nil || rep.WriteText(&b) != nil || !strings.Contains(b.String(), "VIOLATION") {
		t.Errorf("report does not list the violation:\n%s", b.String())
	}
}

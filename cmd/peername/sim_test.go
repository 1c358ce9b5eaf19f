package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestSim(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runCLI(t, nil, "sim", "-nodes", "30", "-lookups", "30", "-seed", "7", "-json", "-quiet")
	if code != exitOK {
		t.Fatalf("sim: exit %d\n%s", code, stderr)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("sim -json output is not JSON: %v\n%s", err, stdout)
	}
	for _, k := range []string{"nodes", "seed", "lookups", "success_rate", "hops_mean", "hops_p99", "latency_p50_ms", "latency_p99_ms"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("sim report lacks %q: %s", k, stdout)
		}
	}
	if rep["nodes"] != float64(30) || rep["seed"] != float64(7) {
		t.Errorf("sim report nodes=%v seed=%v, want 30 and 7", rep["nodes"], rep["seed"])
	}
}

func TestSimUsage(t *testing.T) {
	t.Parallel()
	code, _, stderr := runCLI(t, nil, "sim", "-no-such-flag")
	if code != exitUsage || !strings.Contains(stderr, "no-such-flag") {
		t.Errorf("exit %d, stderr %q; want exit 2 naming the flag", code, stderr)
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peername/peername/overlay"
	"github.com/peername/peername/overlay/sim"
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

func TestSimJSONFields(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	code := simMain([]string{"-nodes", "20", "-lookups", "40", "-seed", "5", "-lookup-phase", "20s", "-json", "-quiet"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, out.String())
	}
	for _, k := range []string{"nodes", "seed", "lookups", "success_rate", "hops_mean", "hops_p99", "latency_p50_ms",
		"latency_p99_ms", "msgs_per_node_per_s", "bytes_per_node_per_s", "heap_bytes_per_node", "wall_s", "failures", "timeouts"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	if m["nodes"] != 20.0 || m["seed"] != 5.0 || m["lookups"] != 40.0 {
		t.Errorf("nodes/seed/lookups = %v/%v/%v", m["nodes"], m["seed"], m["lookups"])
	}
}

func TestSimUsageErrors(t *testing.T) {
	t.Parallel()
	tests := [][]string{
		{"-rtt", "5ms:1ms"},
		{"-nodes", "0"},
		{"-partition", "bad"},
		{"-no-such-flag"},
		{"extra"},
		{"-max-datagram", "10"},
		{"-burst", "0.5"},
		{"-loss", "0.6", "-burst", "1"},
		{"-payload", "5000"},
	}
	for _, args := range tests {
		var out, errOut bytes.Buffer
		if code := simMain(args, &out, &errOut); code != 2 {
			t.Errorf("sim %q = %d, want 2 (stderr %q)", args, code, errOut.String())
		}
	}
	var out, errOut bytes.Buffer
	if code := simMain([]string{"-h"}, &out, &errOut); code != 0 || !strings.Contains(errOut.String(), "-nodes") {
		t.Errorf("-h: exit %d, %q", code, errOut.String())
	}
}

func TestPuzzleFlag(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		bits int
		ok   bool
	}{
		{nil, sim.DefaultPuzzleBits, true},
		{[]string{"-puzzle", "0"}, 0, true},
		{[]string{"-puzzle", "16"}, 16, true},
		{[]string{"-puzzle", "32"}, overlay.MaxPuzzleBits, true},
		{[]string{"-puzzle", "33"}, 0, false},
		{[]string{"-puzzle", "-1"}, 0, false},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		apply := puzzleFlag(fs)
		if err := fs.Parse(tt.args); err != nil {
			t.Fatalf("%v: parse: %v", tt.args, err)
		}
		var cfg sim.Config
		err := apply(&cfg)
		if (err == nil) != tt.ok {
			t.Errorf("%v: err = %v, want ok=%v", tt.args, err, tt.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, sim.ErrBadFlag) {
				t.Errorf("%v: error %v is not sim.ErrBadFlag", tt.args, err)
			}
			continue
		}
		if cfg.Core.PuzzleBits != tt.bits {
			t.Errorf("%v: PuzzleBits %d, want %d", tt.args, cfg.Core.PuzzleBits, tt.bits)
		}
	}
	// Through the command: a bad value is a usage error.
	if code := simMain([]string{"-puzzle", "40", "-quiet"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("-puzzle 40: exit %d, want 2", code)
	}
}

func TestAttackFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args     []string
		err      bool
		kind     sim.HostileKind // sim.HostileNone: no attack
		quorum   int
		paths    int
		capN     int
		prefixes int
		fraction float64
	}{
		{args: nil, quorum: overlay.DefaultK / 2, paths: 3, capN: 2}, // the default is what a real node runs
		{args: []string{"-defence", "off"}},
		{args: []string{"-defence", "on"}, quorum: overlay.DefaultK / 2, paths: 3, capN: 2},
		{args: []string{"-defence", "on", "-prefix-cap", "0"}, quorum: overlay.DefaultK / 2, paths: 3},
		{args: []string{"-defence", "off", "-prefix-cap", "3"}},
		{args: []string{"-malicious", "0.2", "-attacker-prefixes", "8", "-defence", "on", "-prefix-cap", "4"},
			kind: sim.HostileEclipse, fraction: 0.2, quorum: overlay.DefaultK / 2, paths: 3, capN: 4, prefixes: 8},
		{args: []string{"-malicious", "0.2"}, kind: sim.HostileEclipse, fraction: 0.2, quorum: overlay.DefaultK / 2, paths: 3, capN: 2},
		{args: []string{"-malicious", "0.2", "-defence", "off"}, kind: sim.HostileEclipse, fraction: 0.2},
		{args: []string{"-malicious", "0.1", "-attack", "stale", "-defence", "on", "-quorum", "4", "-paths", "5"},
			kind: sim.HostileStale, fraction: 0.1, quorum: 4, paths: 5, capN: 2},
		{args: []string{"-malicious", "0.3", "-attack", "churn"}, kind: sim.HostileChurn, fraction: 0.3, quorum: overlay.DefaultK / 2, paths: 3, capN: 2},
		{args: []string{"-attack", "nice"}, err: true},
		{args: []string{"-attack", "none"}, err: true},
		{args: []string{"-defence", "maybe"}, err: true},
		{args: []string{"-malicious", "1"}, err: true},
		{args: []string{"-malicious", "-0.1"}, err: true},
		{args: []string{"-defence", "on", "-paths", "-1"}, err: true},
		{args: []string{"-defence", "on", "-prefix-cap", "-2"}, err: true},
		{args: []string{"-malicious", "0.2", "-attacker-prefixes", "-1"}, err: true},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		apply := attackFlags(fs)
		if err := fs.Parse(tt.args); err != nil {
			t.Fatalf("%v: parse: %v", tt.args, err)
		}
		var cfg sim.Config
		err := apply(&cfg)
		if tt.err {
			if !errors.Is(err, sim.ErrBadFlag) {
				t.Errorf("%v: err = %v, want sim.ErrBadFlag", tt.args, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", tt.args, err)
			continue
		}
		if d := cfg.Core.Defence; d.Quorum != tt.quorum || d.DisjointPaths != tt.paths || d.PrefixCap != tt.capN {
			t.Errorf("%v: defence %+v, want quorum %d paths %d prefix cap %d", tt.args, d, tt.quorum, tt.paths, tt.capN)
		}
		if cfg.Attack != nil && cfg.Attack.Prefixes != tt.prefixes {
			t.Errorf("%v: attacker prefixes %d, want %d", tt.args, cfg.Attack.Prefixes, tt.prefixes)
		}
		switch {
		case tt.kind == sim.HostileNone && cfg.Attack != nil:
			t.Errorf("%v: attack %+v, want none", tt.args, cfg.Attack)
		case tt.kind != sim.HostileNone && (cfg.Attack == nil || cfg.Attack.Kind != tt.kind || cfg.Attack.Fraction != tt.fraction):
			t.Errorf("%v: attack %+v, want %v at %v", tt.args, cfg.Attack, tt.kind, tt.fraction)
		}
	}
}

// TestSimPlots: -plot writes each plot as a PNG, for an honest run and for an
// attack run (which is repeated with the defences toggled).
func TestSimPlots(t *testing.T) {
	t.Parallel()
	for _, extra := range [][]string{nil, {"-malicious", "0.2", "-attack", "stale"}} {
		dir := t.TempDir()
		args := append([]string{"sim", "-nodes", "30", "-lookups", "60", "-seed", "3", "-lookup-phase", "20s", "-quiet", "-plot", dir}, extra...)
		if code, _, stderr := runCLI(t, nil, args...); code != exitOK {
			t.Fatalf("%v: exit %d\n%s", extra, code, stderr)
		}
		for _, name := range []string{"latency-cdf.png", "hops.png", "traffic-msgs.png", "traffic-bytes.png", "success.png"} {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) || len(b) < 1000 {
				t.Errorf("%v: %s: %d bytes, err %v: not a PNG plot", extra, name, len(b), err)
			}
		}
	}
}

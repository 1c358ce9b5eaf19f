package sim

import (
	"errors"
	"flag"
	"io"
	"testing"

	"github.com/peername/peername/overlay"
)

func TestAttackFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args     []string
		err      bool
		kind     HostileKind // HostileNone: no attack
		quorum   int
		paths    int
		capN     int
		prefixes int
		fraction float64
	}{
		{args: nil},
		{args: []string{"-defence", "on"}, quorum: overlay.DefaultK / 2, paths: 3, capN: 2},
		{args: []string{"-defence", "on", "-prefix-cap", "0"}, quorum: overlay.DefaultK / 2, paths: 3},
		{args: []string{"-defence", "off", "-prefix-cap", "3"}},
		{args: []string{"-malicious", "0.2", "-attacker-prefixes", "8", "-defence", "on", "-prefix-cap", "4"},
			kind: HostileEclipse, fraction: 0.2, quorum: overlay.DefaultK / 2, paths: 3, capN: 4, prefixes: 8},
		{args: []string{"-malicious", "0.2"}, kind: HostileEclipse, fraction: 0.2},
		{args: []string{"-malicious", "0.1", "-attack", "stale", "-defence", "on", "-quorum", "4", "-paths", "5"},
			kind: HostileStale, fraction: 0.1, quorum: 4, paths: 5, capN: 2},
		{args: []string{"-malicious", "0.3", "-attack", "churn"}, kind: HostileChurn, fraction: 0.3},
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
		apply := AttackFlags(fs)
		if err := fs.Parse(tt.args); err != nil {
			t.Fatalf("%v: parse: %v", tt.args, err)
		}
		var cfg Config
		err := apply(&cfg)
		if tt.err {
			if !errors.Is(err, ErrBadFlag) {
				t.Errorf("%v: err = %v, want ErrBadFlag", tt.args, err)
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
		case tt.kind == HostileNone && cfg.Attack != nil:
			t.Errorf("%v: attack %+v, want none", tt.args, cfg.Attack)
		case tt.kind != HostileNone && (cfg.Attack == nil || cfg.Attack.Kind != tt.kind || cfg.Attack.Fraction != tt.fraction):
			t.Errorf("%v: attack %+v, want %v at %v", tt.args, cfg.Attack, tt.kind, tt.fraction)
		}
	}
}

func TestHostileKindNames(t *testing.T) {
	t.Parallel()
	for k := HostileNone; k <= HostileChurn; k++ {
		got, ok := ParseHostileKind(k.String())
		if !ok || got != k {
			t.Errorf("ParseHostileKind(%q) = %v, %v", k.String(), got, ok)
		}
	}
	if _, ok := ParseHostileKind("unknown"); ok {
		t.Error(`ParseHostileKind("unknown") succeeded`)
	}
}

package sim

import (
	"context"
	"testing"

	"github.com/peername/peername/overlay"
)

// attackRun runs a small network with 20% colluding hostile nodes.
func attackRun(t *testing.T, kind HostileKind, defence bool) *Report {
	t.Helper()
	var d overlay.Defence
	if defence {
		d = overlay.DefaultDefence(0)
	}
	return attackRunWith(t, kind, 120, 0.2, 7, d)
}

func attackRunWith(t *testing.T, kind HostileKind, nodes int, frac float64, seed uint64, d overlay.Defence) *Report {
	t.Helper()
	return attackRunPrefixes(t, kind, nodes, frac, seed, d, 0)
}

// attackRunPrefixes is attackRunWith with the hostile nodes in the given
// number of /48s (0: each its own).
func attackRunPrefixes(t *testing.T, kind HostileKind, nodes int, frac float64, seed uint64, d overlay.Defence, prefixes int) *Report {
	t.Helper()
	cfg := Config{Seed: seed, Nodes: nodes, Lookups: 300, Publishers: 0.25, Net: Network{RTTMin: 20e6, RTTMax: 100e6},
		Attack: &Attack{Kind: kind, Fraction: frac, Defence: d != overlay.Defence{}, Prefixes: prefixes}}
	cfg.Core.Defence = d
	// The attacks target routing among servers, and the thresholds below
	// were set on these runs: in mode server no node asks for dial-backs,
	// whose traffic would reshuffle them (the trace is the one from before
	// modes existed).
	cfg.Core.Mode = overlay.ModeServer
	w, err := NewWorld(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := w.Run(context.Background())
	if err != nil {
		t.Fatalf("%v: %v", kind, err)
	}
	if rep.Attack == nil || rep.Attack.Malicious == 0 {
		t.Fatalf("%v: no hostile node in the run: %+v", kind, rep.Attack)
	}
	return rep
}

// TestAttacksNeverPlantRecords: whatever the hostile nodes answer, no honest
// resolver returns a record that fails Verify or is not the owner's.
func TestAttacksNeverPlantRecords(t *testing.T) {
	t.Parallel()
	for _, kind := range []HostileKind{HostileForge, HostileStale, HostileEclipse} {
		t.Run(kind.String(), func(t *testing.T) {
			t.Parallel()
			rep := attackRun(t, kind, false)
			if rep.Attack.ForgedAccepted != 0 || rep.WrongRecord != 0 {
				t.Errorf("forged accepted %d, wrong record %d", rep.Attack.ForgedAccepted, rep.WrongRecord)
			}
			if kind == HostileForge && rep.Attack.ForgedAnswers == 0 {
				t.Errorf("the forging nodes sent no forged answer: the test attacks nothing")
			}
		})
	}
}

// TestQuorumReadsDefeatStaleReplicas: colluders that serve an older, validly
// signed record win some lookups without quorum reads and none with them.
func TestQuorumReadsDefeatStaleReplicas(t *testing.T) {
	t.Parallel()
	tests := []struct {
		defence   bool
		wantStale bool
	}{
		{defence: false, wantStale: true},
		{defence: true, wantStale: false},
	}
	for _, tt := range tests {
		t.Run(map[bool]string{false: "off", true: "on"}[tt.defence], func(t *testing.T) {
			t.Parallel()
			rep := attackRun(t, HostileStale, tt.defence)
			a := rep.Attack
			if a.Republished == 0 || a.StaleAnswers == 0 {
				t.Fatalf("no republish (%d) or no stale answer (%d): the attack did not run", a.Republished, a.StaleAnswers)
			}
			if got := a.StaleAccepted > 0; got != tt.wantStale {
				t.Errorf("stale accepted = %d (lookups ok %d/%d), want stale: %v", a.StaleAccepted, rep.Succeeded, rep.Lookups, tt.wantStale)
			}
		})
	}
}

// TestDisjointPathsResistEclipse: 40% colluders that answer every FIND_NODE
// and FIND_VALUE with colluders only hide many names from single-path
// lookups; three disjoint paths (DefaultDefence) find most of them.
func TestDisjointPathsResistEclipse(t *testing.T) {
	t.Parallel()
	off := make(chan int, 1)
	t.Run("off", func(t *testing.T) {
		rep := attackRunWith(t, HostileEclipse, 200, 0.4, 7, overlay.Defence{})
		if rep.Attack.Eclipsed < 20 {
			t.Errorf("eclipsed %d lookups of %d without defence, want >= 20: the attack is too weak to test the defence", rep.Attack.Eclipsed, rep.Lookups)
		}
		off <- rep.Attack.Eclipsed - rep.Attack.EclipsedBySeeds
	})
	rep := attackRunWith(t, HostileEclipse, 200, 0.4, 7, overlay.DefaultDefence(0))
	o := <-off
	// A node whose every bootstrap seed is hostile only ever hears of
	// colluders, and no lookup defence can help it: the comparison is on the
	// other lookups (which nodes draw only hostile seeds depends on the
	// run's timing).
	e := rep.Attack.Eclipsed - rep.Attack.EclipsedBySeeds
	t.Logf("eclipsed, besides seed-eclipsed nodes: %d without defence, %d with (of %d lookups; %d more by %d seed-eclipsed nodes)",
		o, e, rep.Lookups, rep.Attack.EclipsedBySeeds, rep.Attack.SeedEclipsedNodes)
	if e*3 > o {
		t.Errorf("eclipsed %d lookups with disjoint paths, %d without: want at most a third", e, o)
	}
	if rep.Attack.ForgedAccepted != 0 {
		t.Errorf("forged accepted %d", rep.Attack.ForgedAccepted)
	}
}

// TestPrefixCapResistsConcentratedColluders: 40% colluders all in one IPv6
// /48 eclipse many single-path lookups; with Defence.PrefixCap alone (2 per
// /48 per bucket and per lookup) they can fill neither routing tables nor a
// lookup's candidates.
func TestPrefixCapResistsConcentratedColluders(t *testing.T) {
	t.Parallel()
	off := make(chan int, 1)
	t.Run("off", func(t *testing.T) {
		rep := attackRunPrefixes(t, HostileEclipse, 200, 0.4, 7, overlay.Defence{}, 1)
		if rep.Attack.Eclipsed < 20 {
			t.Errorf("eclipsed %d lookups of %d without defence, want >= 20: the attack is too weak to test the defence", rep.Attack.Eclipsed, rep.Lookups)
		}
		off <- rep.Attack.Eclipsed
	})
	rep := attackRunPrefixes(t, HostileEclipse, 200, 0.4, 7, overlay.Defence{PrefixCap: 2}, 1)
	o := <-off
	t.Logf("eclipsed: %d without the prefix cap, %d with (of %d lookups)", o, rep.Attack.Eclipsed, rep.Lookups)
	if rep.Attack.Eclipsed*10 > o {
		t.Errorf("eclipsed %d lookups with the prefix cap, %d without: want at most a tenth", rep.Attack.Eclipsed, o)
	}
}

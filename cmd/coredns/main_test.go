package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/coredns/caddy"
)

// TestDirectives checks that every directive this binary lists is a
// registered plugin, every registered DNS plugin is listed, and peername
// sits after cache and before hosts, file and forward.
func TestDirectives(t *testing.T) {
	t.Parallel()
	var registered []string
	for _, p := range caddy.ListPlugins()["others"] {
		if name, ok := strings.CutPrefix(p, "dns."); ok {
			registered = append(registered, name)
		}
	}
	for _, d := range directives {
		if !slices.Contains(registered, d) {
			t.Errorf("directive %q has no plugin linked in", d)
		}
	}
	for _, p := range registered {
		if !slices.Contains(directives, p) {
			t.Errorf("plugin %q is linked in but not in the directive list", p)
		}
	}
	pos := func(d string) int { return slices.Index(directives, d) }
	if p := pos("peername"); p < pos("cache") || p > pos("hosts") || p > pos("file") || p > pos("forward") {
		t.Errorf("peername at %d: want after cache and before hosts, file, forward: %v", p, directives)
	}
}

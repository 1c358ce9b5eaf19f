package peername

import (
	"os"
	"strings"
	"testing"

	"github.com/coredns/caddy"
	"github.com/coredns/caddy/caddyfile"
	"github.com/coredns/coredns/core/dnsserver"
)

// TestReadmeExamples parses every ~~~ corefile block of README.md: the
// server blocks must use real directives and each peername block must be
// accepted by parse.
func TestReadmeExamples(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	var cur []string
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case !in && strings.TrimSpace(line) == "~~~ corefile":
			in, cur = true, nil
		case in && strings.TrimSpace(line) == "~~~":
			in = false
			blocks = append(blocks, strings.Join(cur, "\n"))
		case in:
			cur = append(cur, line)
		}
	}
	if len(blocks) < 3 {
		t.Fatalf("found %d corefile examples, want at least 3", len(blocks))
	}
	for i, text := range blocks {
		sbs, err := caddyfile.Parse("README.md", strings.NewReader(text), dnsserver.Directives)
		if err != nil {
			t.Fatalf("example %d: %v", i, err)
		}
		found := 0
		for _, sb := range sbs {
			toks, ok := sb.Tokens[pluginName]
			if !ok {
				continue
			}
			found++
			c := caddy.NewTestController("dns", "")
			c.Dispenser = caddyfile.NewDispenserTokens("README.md", toks)
			c.ServerBlockKeys = sb.Keys
			if _, err := parse(c); err != nil {
				t.Errorf("example %d, block %v: %v", i, sb.Keys, err)
			}
		}
		if found == 0 {
			t.Errorf("example %d has no peername block", i)
		}
	}
}

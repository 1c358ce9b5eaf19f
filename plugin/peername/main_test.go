package peername

import (
	"os"
	"slices"
	"testing"

	"github.com/coredns/coredns/core/dnsserver"
	clog "github.com/coredns/coredns/plugin/pkg/log"
)

func TestMain(m *testing.M) {
	clog.Discard()
	// Register the directive where cmd/coredns puts it, so tests can
	// start CoreDNS servers with peername blocks.
	i := slices.Index(dnsserver.Directives, "hosts")
	dnsserver.Directives = slices.Insert(slices.Clone(dnsserver.Directives), i, pluginName)
	os.Exit(m.Run())
}

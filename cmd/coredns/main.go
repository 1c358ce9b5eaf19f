// Command coredns is CoreDNS built with the peername plugin and a slim set
// of standard plugins, so one binary answers a peer-name zone from the
// overlay and can serve, cache or forward everything else.
//
//	coredns -conf Corefile.example
//
// The plugin order below decides the order in which plugins see a query
// (CoreDNS's own order for the standard plugins, peername after cache and
// before hosts, file and forward). Only these plugin packages are linked in
// (dnstap, metadata and transfer come with the others, so they are offered
// too); github.com/coredns/coredns/core/plugin, which pulls in every plugin,
// is not.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	// The standard plugins this binary offers.
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/debug"
	_ "github.com/coredns/coredns/plugin/dnstap"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/file"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/https"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/metadata"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/tls"
	_ "github.com/coredns/coredns/plugin/transfer"
	_ "github.com/coredns/coredns/plugin/tsig"
	_ "github.com/coredns/coredns/plugin/whoami"

	_ "github.com/peername/peername/plugin/peername"
)

// directives lists the plugins in execution order.
var directives = []string{
	"metadata",
	"https",
	"reload",
	"bind",
	"debug",
	"ready",
	"health",
	"prometheus",
	"errors",
	"log",
	"dnstap",
	"tsig",
	"cache",
	"tls",
	"peername",
	"transfer",
	"hosts",
	"file",
	"forward",
	"whoami",
}

func init() {
	dnsserver.Directives = directives
}

func main() {
	coremain.Run()
}

package peername

import (
	"strings"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/miekg/dns"

	"github.com/peername/peername/records"
)

// allowRule is one `allow KEYNAME NAME TYPE...` line: the TSIG key KEYNAME
// may add and delete records of the listed types at NAME ("*": any name of
// the zones this node may sign).
type allowRule struct {
	key   string
	name  string // "*" or a lowercase FQDN
	types map[uint16]bool
	any   bool // TYPE "*" or "ANY": every type, and deleting a whole name
}

// updateTypes are the record types an UPDATE may add or delete.
var updateTypes = []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeTXT}

// parseAllow parses the arguments of one `allow` line into cfg.
func parseAllow(c *caddy.Controller, cfg *config, args []string) error {
	if len(args) < 3 {
		return c.Errf("allow needs KEYNAME NAME TYPE...")
	}
	r := allowRule{key: dns.CanonicalName(args[0]), name: args[1], types: map[uint16]bool{}}
	if r.name != "*" {
		if _, ok := dns.IsDomainName(r.name); !ok {
			return c.Errf("allow: bad name %q", args[1])
		}
		r.name = dns.CanonicalName(r.name)
	}
	for _, t := range args[2:] {
		switch u := strings.ToUpper(t); u {
		case "*", "ANY":
			r.any = true
		default:
			typ, ok := dns.StringToType[u]
			if !ok || !isUpdateType(typ) {
				return c.Errf("allow: type %q: want A, AAAA, SRV, TXT, ANY or *", t)
			}
			r.types[typ] = true
		}
	}
	cfg.allow = append(cfg.allow, r)
	return nil
}

func isUpdateType(t uint16) bool {
	for _, u := range updateTypes {
		if t == u {
			return true
		}
	}
	return false
}

// permits reports whether the rule lets key change RRs of type t at owner
// (t is dns.TypeANY for deleting every RRset of a name).
func (r allowRule) permits(key, owner string, t uint16) bool {
	if r.key != key || (r.name != "*" && r.name != owner) {
		return false
	}
	if r.any {
		return true
	}
	if t == dns.TypeANY {
		for _, u := range updateTypes {
			if !r.types[u] {
				return false
			}
		}
		return true
	}
	return r.types[t]
}

// parseLease parses `lease MIN MAX`: the bounds of the leases UPDATEs get.
func parseLease(c *caddy.Controller, cfg *config, args []string) error {
	if len(args) != 2 {
		return c.ArgErr()
	}
	lo, err1 := time.ParseDuration(args[0])
	hi, err2 := time.ParseDuration(args[1])
	if err1 != nil || err2 != nil || lo < time.Second || hi < lo || hi > records.MaxLifetime {
		return c.Errf("lease needs MIN and MAX durations, 1s <= MIN <= MAX <= %s", records.MaxLifetime)
	}
	cfg.leaseMin, cfg.leaseMax = lo, hi
	return nil
}

// allowUpdates lets the server accept UPDATE messages (CoreDNS, like
// miekg/dns, answers NOTIMP to them unless a plugin asks for them) when
// the block has allow rules.
func allowUpdates(c *caddy.Controller, cfg *config) {
	if len(cfg.allow) > 0 {
		dnsserver.GetConfig(c).AllowOpcode(dns.OpcodeUpdate)
	}
}

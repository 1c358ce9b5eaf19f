package peername

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/pkg/fall"
	clog "github.com/coredns/coredns/plugin/pkg/log"
	"github.com/miekg/dns"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/overlay"
	"github.com/peername/peername/records"
)

var log = clog.NewWithPlugin(pluginName)

func init() { plugin.Register(pluginName, setup) }

// maxPrefixCap bounds the prefix_cap option: beyond a bucket's K (16) the
// cap can no longer bind.
const maxPrefixCap = 16

// Defaults of the Corefile options.
const (
	defaultPort     = 3540
	defaultCloud    = "global"
	defaultTTL      = 30 * time.Second
	defaultNegTTL   = 5 * time.Second
	defaultTimeout  = 2 * time.Second
	defaultLifetime = time.Hour
	maxTTL          = 24 * time.Hour
	maxTimeout      = time.Minute
	maxEndpoints    = 10
)

// config is a parsed `peername` block.
type config struct {
	zones        []string
	fall         fall.F
	identityFile string
	listen       []netip.AddrPort
	bootstrap    []bootstrapSpec
	cloud        string
	publish      []*publication
	ttl          time.Duration
	negTTL       time.Duration
	timeout      time.Duration
	lifetime     time.Duration
	stateDir     string
	linkLocal    bool
	linkIface    string
	puzzleBits   int         // identity puzzle difficulty of the cloud; 0: none
	prefixCap    int         // contacts per /24 or /48 per bucket and per lookup; 0: off
	allow        []allowRule // who may UPDATE which names (update_setup.go)
	leaseMin     time.Duration
	leaseMax     time.Duration
}

// publication is one name this node publishes.
type publication struct {
	classifier string
	secured    bool
	ips        []netip.Addr // empty: the node's own addresses
	services   []records.Service
	txt        []string
}

func setup(c *caddy.Controller) error {
	cfg, err := parse(c)
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	root := dnsserver.GetConfig(c).Root
	if !filepath.IsAbs(cfg.identityFile) && root != "" {
		cfg.identityFile = filepath.Join(root, cfg.identityFile)
	}
	if cfg.stateDir != "" && !filepath.IsAbs(cfg.stateDir) && root != "" {
		cfg.stateDir = filepath.Join(root, cfg.stateDir)
	}
	id, created, err := identity.LoadOrCreate(cfg.identityFile)
	if err != nil {
		return plugin.Error(pluginName, fmt.Errorf("identity %s: %w", cfg.identityFile, err))
	}
	if created {
		log.Infof("created identity key %s (authority %s)", cfg.identityFile, id.Authority())
	}
	inst, err := newInstance(cfg, id, nodes)
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	allowUpdates(c, cfg)
	c.OnStartup(inst.startup)
	c.OnShutdown(func() error {
		// After a successful reload the old configuration shuts down:
		// the reload is over.
		_ = nodes.endReload(false)
		return inst.shutdown()
	})
	c.OnRestart(func() error { nodes.beginReload(); return nil })
	c.OnRestartFailed(func() error { return nodes.endReload(true) })

	dnsserver.GetConfig(c).AddPlugin(func(next plugin.Handler) plugin.Handler {
		inst.handler.Next = next
		return inst.handler
	})
	return nil
}

// parse parses the `peername` block. It has no side effects: the identity
// file is only named here and loaded by setup.
func parse(c *caddy.Controller) (*config, error) {
	cfg := &config{
		identityFile: "peername.key",
		cloud:        defaultCloud,
		ttl:          defaultTTL,
		negTTL:       defaultNegTTL,
		timeout:      defaultTimeout,
		lifetime:     defaultLifetime,
		puzzleBits:   overlay.DefaultPuzzleBits,
		prefixCap:    overlay.DefaultDefence(0).PrefixCap,
		leaseMin:     defaultMinLease,
		leaseMax:     defaultMaxLease,
	}
	byClassifier := map[string]*publication{}
	type pending struct {
		line int
		kind string
		args []string
	}
	var extras []pending // srv and txt lines, applied once every publish is known

	blocks := 0
	for c.Next() {
		if blocks > 0 {
			return nil, plugin.ErrOnce
		}
		blocks++
		cfg.zones = plugin.OriginsFromArgsOrServerBlock(c.RemainingArgs(), c.ServerBlockKeys)
		for c.NextBlock() {
			opt := c.Val()
			args := c.RemainingArgs()
			switch opt {
			case "identity":
				if len(args) != 1 {
					return nil, c.ArgErr()
				}
				cfg.identityFile = args[0]
			case "listen":
				if len(args) == 0 {
					return nil, c.ArgErr()
				}
				cfg.listen = nil
				for _, a := range args {
					ap, err := parseListen(a)
					if err != nil {
						return nil, c.Errf("listen %q: %v", a, err)
					}
					cfg.listen = append(cfg.listen, ap)
				}
			case "bootstrap":
				if len(args) == 0 {
					return nil, c.ArgErr()
				}
				for _, a := range args {
					b, err := parseBootstrap(a)
					if err != nil {
						return nil, c.Errf("bootstrap %q: %v", a, err)
					}
					cfg.bootstrap = append(cfg.bootstrap, b)
				}
			case "cloud":
				if len(args) != 1 || args[0] == "" || len(args[0]) > 63 {
					return nil, c.Errf("cloud needs one name of 1 to 63 characters")
				}
				cfg.cloud = args[0]
			case "publish", "publish_unsecured":
				if len(args) == 0 {
					return nil, c.ArgErr()
				}
				p := &publication{classifier: strings.ToLower(args[0]), secured: opt == "publish"}
				if err := checkClassifier(p.classifier); err != nil {
					return nil, c.Errf("%s %q: %v", opt, args[0], err)
				}
				if _, dup := byClassifier[p.classifier]; dup {
					return nil, c.Errf("classifier %q published twice", p.classifier)
				}
				for _, a := range args[1:] {
					ip, err := netip.ParseAddr(a)
					if err != nil || ip.Zone() != "" || ip.IsUnspecified() {
						return nil, c.Errf("%s %s: %q is not an IP address", opt, p.classifier, a)
					}
					p.ips = append(p.ips, ip.Unmap())
				}
				if len(p.ips) > maxEndpoints {
					return nil, c.Errf("%s %s: at most %d addresses", opt, p.classifier, maxEndpoints)
				}
				byClassifier[p.classifier] = p
				cfg.publish = append(cfg.publish, p)
			case "srv", "txt":
				extras = append(extras, pending{line: c.Line(), kind: opt, args: args})
			case "ttl", "negative_ttl":
				if len(args) != 1 {
					return nil, c.ArgErr()
				}
				n, err := strconv.Atoi(args[0])
				if err != nil || n < 1 || time.Duration(n)*time.Second > maxTTL {
					return nil, c.Errf("%s needs a number of seconds from 1 to %d", opt, int(maxTTL/time.Second))
				}
				if opt == "ttl" {
					cfg.ttl = time.Duration(n) * time.Second
				} else {
					cfg.negTTL = time.Duration(n) * time.Second
				}
			case "timeout", "lifetime":
				if len(args) != 1 {
					return nil, c.ArgErr()
				}
				d, err := time.ParseDuration(args[0])
				if err != nil || d <= 0 {
					return nil, c.Errf("%s needs a positive duration, got %q", opt, args[0])
				}
				if opt == "timeout" && d > maxTimeout {
					return nil, c.Errf("timeout %s is longer than %s", d, maxTimeout)
				}
				if opt == "lifetime" && (d < 10*time.Second || d > 7*24*time.Hour) {
					return nil, c.Errf("lifetime %s is outside 10s..168h", d)
				}
				if opt == "timeout" {
					cfg.timeout = d
				} else {
					cfg.lifetime = d
				}
			case "state":
				if len(args) != 1 || args[0] == "" {
					return nil, c.ArgErr()
				}
				cfg.stateDir = args[0]
			case "linklocal":
				if len(args) > 1 {
					return nil, c.ArgErr()
				}
				cfg.linkLocal = true
				if len(args) == 1 {
					cfg.linkIface = args[0]
				}
			case "puzzle":
				if len(args) != 1 {
					return nil, c.ArgErr()
				}
				n, err := strconv.Atoi(args[0])
				if err != nil || n < 0 || n > overlay.MaxPuzzleBits {
					return nil, c.Errf("puzzle needs a number of bits from 0 (no puzzle) to %d, got %q", overlay.MaxPuzzleBits, args[0])
				}
				cfg.puzzleBits = n
			case "prefix_cap":
				if len(args) != 1 {
					return nil, c.ArgErr()
				}
				n, err := strconv.Atoi(args[0])
				if err != nil || n < 0 || n > maxPrefixCap {
					return nil, c.Errf("prefix_cap needs a number of nodes per network prefix from 0 (no cap) to %d, got %q", maxPrefixCap, args[0])
				}
				cfg.prefixCap = n
			case "fallthrough":
				cfg.fall.SetZonesFromArgs(args)
			case "allow":
				if err := parseAllow(c, cfg, args); err != nil {
					return nil, err
				}
			case "lease":
				if err := parseLease(c, cfg, args); err != nil {
					return nil, err
				}
			default:
				return nil, c.Errf("unknown property %q", opt)
			}
		}
	}
	if blocks == 0 {
		return nil, c.ArgErr()
	}
	if len(cfg.zones) == 0 {
		cfg.zones = []string{identity.DefaultZone}
	}
	for _, e := range extras {
		if len(e.args) < 2 {
			return nil, fmt.Errorf("line %d: %s needs a classifier and data", e.line, e.kind)
		}
		p, ok := byClassifier[strings.ToLower(e.args[0])]
		if !ok {
			return nil, fmt.Errorf("line %d: %s %s: no publish line for classifier %q", e.line, e.kind, e.args[0], e.args[0])
		}
		if e.kind == "txt" {
			for _, t := range e.args[1:] {
				if len(t) > 255 {
					return nil, fmt.Errorf("line %d: txt %s: string longer than 255 octets", e.line, e.args[0])
				}
			}
			p.txt = append(p.txt, e.args[1:]...)
			continue
		}
		s, err := parseSRV(e.args[1:])
		if err != nil {
			return nil, fmt.Errorf("line %d: srv %s: %w", e.line, e.args[0], err)
		}
		p.services = append(p.services, s)
	}
	if len(cfg.listen) == 0 {
		cfg.listen = []netip.AddrPort{
			netip.AddrPortFrom(netip.IPv4Unspecified(), defaultPort),
			netip.AddrPortFrom(netip.IPv6Unspecified(), defaultPort),
		}
	}
	return cfg, nil
}

// checkClassifier checks a classifier the way identity does.
func checkClassifier(cl string) error {
	_, err := identity.NewUnsecuredName(cl)
	return err
}

// parseListen parses an overlay listen address; a missing port means the
// default one.
func parseListen(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	ip, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("not an IP:port: %w", err)
	}
	return netip.AddrPortFrom(ip, defaultPort), nil
}

// parseBootstrap parses a seed: IP:port, host:port or dns:DOMAIN.
func parseBootstrap(s string) (bootstrapSpec, error) {
	if d, ok := strings.CutPrefix(s, "dns:"); ok {
		d = strings.TrimSuffix(d, ".")
		if _, valid := dns.IsDomainName(d); !valid || d == "" {
			return bootstrapSpec{}, fmt.Errorf("bad SRV domain %q", d)
		}
		return bootstrapSpec{SRVDomain: d}, nil
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if !ap.Addr().IsValid() || ap.Addr().IsUnspecified() || ap.Port() == 0 {
			return bootstrapSpec{}, fmt.Errorf("unusable seed address")
		}
		return bootstrapSpec{Addr: ap}, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return bootstrapSpec{}, fmt.Errorf("want IP:port, host:port or dns:DOMAIN: %w", err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return bootstrapSpec{}, fmt.Errorf("bad port %q", port)
	}
	if _, valid := dns.IsDomainName(host); !valid || host == "" {
		return bootstrapSpec{}, fmt.Errorf("bad host %q", host)
	}
	return bootstrapSpec{Host: host, Port: uint16(p)}, nil
}

// parseSRV parses "SERVICE PROTO PORT [PRIORITY WEIGHT]".
func parseSRV(args []string) (records.Service, error) {
	if len(args) != 3 && len(args) != 5 {
		return records.Service{}, fmt.Errorf("want SERVICE PROTO PORT [PRIORITY WEIGHT]")
	}
	s := records.Service{
		Service: strings.ToLower(strings.TrimPrefix(args[0], "_")),
		Proto:   strings.ToLower(strings.TrimPrefix(args[1], "_")),
	}
	for _, l := range []string{s.Service, s.Proto} {
		if l == "" || len(l) > 62 || strings.IndexFunc(l, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-')
		}) >= 0 {
			return records.Service{}, fmt.Errorf("bad service or protocol label %q", l)
		}
	}
	nums := make([]uint16, 0, 3)
	for _, a := range args[2:] {
		n, err := strconv.ParseUint(a, 10, 16)
		if err != nil {
			return records.Service{}, fmt.Errorf("bad number %q: %w", a, err)
		}
		nums = append(nums, uint16(n))
	}
	s.Port = nums[0]
	if len(nums) == 3 {
		s.Priority, s.Weight = nums[1], nums[2]
	}
	if s.Port == 0 {
		return records.Service{}, fmt.Errorf("port 0")
	}
	return s, nil
}

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
	"github.com/peername/peername/overlay/bootstrap"
	"github.com/peername/peername/records"
	"github.com/peername/peername/resolver"
)

var log = clog.NewWithPlugin(pluginName)

func init() { plugin.Register(pluginName, setup) }

// maxPrefixCap bounds the prefix_cap option: beyond a bucket's K (16) the
// cap can no longer bind.
const maxPrefixCap = 16

// Defaults of the Corefile options come from the packages that own them
// (overlay, bootstrap, resolver); these are the plugin's own bounds.
const (
	defaultPort  = bootstrap.DefaultPort
	maxTTL       = 24 * time.Hour
	maxTimeout   = time.Minute
	maxEndpoints = records.MaxEndpoints
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
	contacts     bool   // a contacts line: answer PETNAME.contacts.ZONE
	contactsFile string // its file; empty: contacts.DefaultPath(stateDir)
	linkLocal    bool
	linkIface    string
	puzzleBits   int // identity puzzle difficulty of the cloud; 0: none
	prefixCap    int // contacts per /24 or /48 per bucket and per lookup; 0: off
	mode         overlay.Mode
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
	p := &parser{
		c: c,
		cfg: &config{
			identityFile: "peername.key",
			cloud:        overlay.DefaultCloud,
			ttl:          resolver.DefaultTTL,
			negTTL:       resolver.DefaultNegativeTTL,
			timeout:      resolver.DefaultTimeout,
			lifetime:     overlay.DefaultRecordLifetime,
			puzzleBits:   overlay.DefaultPuzzleBits,
			prefixCap:    overlay.DefaultDefence(0).PrefixCap,
			leaseMin:     defaultMinLease,
			leaseMax:     defaultMaxLease,
		},
		byClassifier: map[string]*publication{},
	}
	cfg := p.cfg
	blocks := 0
	for c.Next() {
		if blocks > 0 {
			return nil, plugin.ErrOnce
		}
		blocks++
		cfg.zones = plugin.OriginsFromArgsOrServerBlock(c.RemainingArgs(), c.ServerBlockKeys)
		for c.NextBlock() {
			opt := c.Val()
			parseOpt, ok := options[opt]
			if !ok {
				return nil, c.Errf("unknown property %q", opt)
			}
			if err := parseOpt(p, opt, c.RemainingArgs()); err != nil {
				return nil, err
			}
		}
	}
	if blocks == 0 {
		return nil, c.ArgErr()
	}
	if len(cfg.zones) == 0 {
		cfg.zones = []string{identity.DefaultZone}
	}
	if err := p.applyExtras(); err != nil {
		return nil, err
	}
	if len(cfg.listen) == 0 {
		cfg.listen = []netip.AddrPort{
			netip.AddrPortFrom(netip.IPv4Unspecified(), defaultPort),
			netip.AddrPortFrom(netip.IPv6Unspecified(), defaultPort),
		}
	}
	return cfg, nil
}

// parser is the state of one parse: the config being built, the publish
// lines by classifier, and the srv and txt lines, applied once every publish
// line is known (they may come first).
type parser struct {
	c            *caddy.Controller
	cfg          *config
	byClassifier map[string]*publication
	extras       []extraLine
}

// extraLine is an srv or txt line.
type extraLine struct {
	line int
	kind string
	args []string
}

// options maps each property of the block to its parser, one function per
// option (as CoreDNS's own plugins do).
var options = map[string]func(p *parser, opt string, args []string) error{
	"identity":          parseIdentity,
	"listen":            parseListenOpt,
	"bootstrap":         parseBootstrapOpt,
	"cloud":             parseCloud,
	"publish":           parsePublish,
	"publish_unsecured": parsePublish,
	"srv":               parseExtra,
	"txt":               parseExtra,
	"ttl":               parseTTL,
	"negative_ttl":      parseTTL,
	"timeout":           parseDuration,
	"lifetime":          parseDuration,
	"state":             parseState,
	"linklocal":         parseLinkLocal,
	"puzzle":            parsePuzzle,
	"prefix_cap":        parsePrefixCap,
	"mode":              parseMode,
	"fallthrough":       parseFallthrough,
	"contacts":          parseContacts,
	"allow":             func(p *parser, _ string, args []string) error { return parseAllow(p.c, p.cfg, args) },
	"lease":             func(p *parser, _ string, args []string) error { return parseLease(p.c, p.cfg, args) },
}

// parseContacts parses `contacts [FILE]`.
func parseContacts(p *parser, _ string, args []string) error {
	if len(args) > 1 || (len(args) == 1 && args[0] == "") {
		return p.c.ArgErr()
	}
	p.cfg.contacts = true
	if len(args) == 1 {
		p.cfg.contactsFile = args[0]
	}
	return nil
}

func parseIdentity(p *parser, _ string, args []string) error {
	if len(args) != 1 {
		return p.c.ArgErr()
	}
	p.cfg.identityFile = args[0]
	return nil
}

func parseListenOpt(p *parser, _ string, args []string) error {
	if len(args) == 0 {
		return p.c.ArgErr()
	}
	p.cfg.listen = nil
	for _, a := range args {
		ap, err := parseListen(a)
		if err != nil {
			return p.c.Errf("listen %q: %v", a, err)
		}
		p.cfg.listen = append(p.cfg.listen, ap)
	}
	return nil
}

func parseBootstrapOpt(p *parser, _ string, args []string) error {
	if len(args) == 0 {
		return p.c.ArgErr()
	}
	for _, a := range args {
		b, err := parseBootstrap(a)
		if err != nil {
			return p.c.Errf("bootstrap %q: %v", a, err)
		}
		p.cfg.bootstrap = append(p.cfg.bootstrap, b)
	}
	return nil
}

func parseCloud(p *parser, _ string, args []string) error {
	if len(args) != 1 || args[0] == "" || len(args[0]) > 63 {
		return p.c.Errf("cloud needs one name of 1 to 63 characters")
	}
	p.cfg.cloud = args[0]
	return nil
}

// parsePublish parses `publish CLASSIFIER [IP...]` and publish_unsecured.
func parsePublish(p *parser, opt string, args []string) error {
	if len(args) == 0 {
		return p.c.ArgErr()
	}
	pub := &publication{classifier: strings.ToLower(args[0]), secured: opt == "publish"}
	if err := checkClassifier(pub.classifier); err != nil {
		return p.c.Errf("%s %q: %v", opt, args[0], err)
	}
	if _, dup := p.byClassifier[pub.classifier]; dup {
		return p.c.Errf("classifier %q published twice", pub.classifier)
	}
	for _, a := range args[1:] {
		ip, err := netip.ParseAddr(a)
		if err != nil || ip.Zone() != "" || ip.IsUnspecified() {
			return p.c.Errf("%s %s: %q is not an IP address", opt, pub.classifier, a)
		}
		pub.ips = append(pub.ips, ip.Unmap())
	}
	if len(pub.ips) > maxEndpoints {
		return p.c.Errf("%s %s: at most %d addresses", opt, pub.classifier, maxEndpoints)
	}
	p.byClassifier[pub.classifier] = pub
	p.cfg.publish = append(p.cfg.publish, pub)
	return nil
}

// parseExtra keeps an srv or txt line for applyExtras.
func parseExtra(p *parser, opt string, args []string) error {
	p.extras = append(p.extras, extraLine{line: p.c.Line(), kind: opt, args: args})
	return nil
}

// applyExtras adds the srv and txt lines to their publish lines.
func (p *parser) applyExtras() error {
	for _, e := range p.extras {
		if len(e.args) < 2 {
			return fmt.Errorf("line %d: %s needs a classifier and data", e.line, e.kind)
		}
		pub, ok := p.byClassifier[strings.ToLower(e.args[0])]
		if !ok {
			return fmt.Errorf("line %d: %s %s: no publish line for classifier %q", e.line, e.kind, e.args[0], e.args[0])
		}
		if e.kind == "txt" {
			for _, t := range e.args[1:] {
				if len(t) > 255 {
					return fmt.Errorf("line %d: txt %s: string longer than 255 octets", e.line, e.args[0])
				}
			}
			pub.txt = append(pub.txt, e.args[1:]...)
			continue
		}
		s, err := parseSRV(e.args[1:])
		if err != nil {
			return fmt.Errorf("line %d: srv %s: %w", e.line, e.args[0], err)
		}
		pub.services = append(pub.services, s)
	}
	return nil
}

// parseTTL parses ttl and negative_ttl (whole seconds).
func parseTTL(p *parser, opt string, args []string) error {
	if len(args) != 1 {
		return p.c.ArgErr()
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 || time.Duration(n)*time.Second > maxTTL {
		return p.c.Errf("%s needs a number of seconds from 1 to %d", opt, int(maxTTL/time.Second))
	}
	if opt == "ttl" {
		p.cfg.ttl = time.Duration(n) * time.Second
	} else {
		p.cfg.negTTL = time.Duration(n) * time.Second
	}
	return nil
}

// parseDuration parses timeout and lifetime.
func parseDuration(p *parser, opt string, args []string) error {
	if len(args) != 1 {
		return p.c.ArgErr()
	}
	d, err := time.ParseDuration(args[0])
	if err != nil || d <= 0 {
		return p.c.Errf("%s needs a positive duration, got %q", opt, args[0])
	}
	if opt == "timeout" && d > maxTimeout {
		return p.c.Errf("timeout %s is longer than %s", d, maxTimeout)
	}
	if opt == "lifetime" && (d < 10*time.Second || d > 7*24*time.Hour) {
		return p.c.Errf("lifetime %s is outside 10s..168h", d)
	}
	if opt == "timeout" {
		p.cfg.timeout = d
	} else {
		p.cfg.lifetime = d
	}
	return nil
}

func parseState(p *parser, _ string, args []string) error {
	if len(args) != 1 || args[0] == "" {
		return p.c.ArgErr()
	}
	p.cfg.stateDir = args[0]
	return nil
}

func parseLinkLocal(p *parser, _ string, args []string) error {
	if len(args) > 1 {
		return p.c.ArgErr()
	}
	p.cfg.linkLocal = true
	if len(args) == 1 {
		p.cfg.linkIface = args[0]
	}
	return nil
}

func parsePuzzle(p *parser, _ string, args []string) error {
	if len(args) != 1 {
		return p.c.ArgErr()
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 0 || n > overlay.MaxPuzzleBits {
		return p.c.Errf("puzzle needs a number of bits from 0 (no puzzle) to %d, got %q", overlay.MaxPuzzleBits, args[0])
	}
	p.cfg.puzzleBits = n
	return nil
}

func parsePrefixCap(p *parser, _ string, args []string) error {
	if len(args) != 1 {
		return p.c.ArgErr()
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 0 || n > maxPrefixCap {
		return p.c.Errf("prefix_cap needs a number of nodes per network prefix from 0 (no cap) to %d, got %q", maxPrefixCap, args[0])
	}
	p.cfg.prefixCap = n
	return nil
}

func parseMode(p *parser, _ string, args []string) error {
	if len(args) != 1 {
		return p.c.ArgErr()
	}
	m, err := overlay.ParseMode(args[0])
	if err != nil || args[0] == "" {
		return p.c.Errf("mode needs auto, server or client, got %q", args[0])
	}
	p.cfg.mode = m
	return nil
}

func parseFallthrough(p *parser, _ string, args []string) error {
	p.cfg.fall.SetZonesFromArgs(args)
	return nil
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

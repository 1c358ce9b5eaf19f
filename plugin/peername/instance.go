package peername

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peername/peername/contacts"
	"github.com/peername/peername/identity"
	"github.com/peername/peername/overlay"
	"github.com/peername/peername/records"
	"github.com/peername/peername/resolver"
)

// instance is one `peername` block of one Corefile load: its handler, its
// resolver and the names it publishes on the shared node.
type instance struct {
	cfg     *config
	id      *identity.Identity
	reg     *nodeRegistry
	handler *Peername
	res     *resolver.Resolver
	names   []identity.Name // parallel to cfg.publish

	node      atomic.Pointer[sharedNode]
	published atomic.Int64 // publications done at least once

	cancel context.CancelFunc
	wg     sync.WaitGroup // publishing (done once every name was published)
	watch  sync.WaitGroup // watchAddrs
}

// errNotStarted is returned by searches before OnStartup or after
// OnShutdown.
var errNotStarted = errors.New("overlay node not running")

func newInstance(cfg *config, id *identity.Identity, reg *nodeRegistry) (*instance, error) {
	inst := &instance{cfg: cfg, id: id, reg: reg}
	for _, p := range cfg.publish {
		var (
			n   identity.Name
			err error
		)
		if p.secured {
			n, err = identity.NewSecuredName(p.classifier, id.PublicKey())
		} else {
			n, err = identity.NewUnsecuredName(p.classifier)
		}
		if err != nil {
			return nil, fmt.Errorf("publish %s: %w", p.classifier, err)
		}
		inst.names = append(inst.names, n)
	}
	res, err := resolver.New(resolver.Config{
		Searcher: resolver.SearcherFunc(inst.search),
		TTL:      cfg.ttl, NegativeTTL: cfg.negTTL, Timeout: cfg.timeout,
		ObserveSearch: func(d time.Duration, o resolver.Outcome) {
			searchDuration.WithLabelValues(string(o)).Observe(d.Seconds())
		},
	})
	if err != nil {
		return nil, err
	}
	inst.res = res
	inst.handler = &Peername{
		Zones:    cfg.zones,
		Fall:     cfg.fall,
		resolver: res,
		negTTL:   uint32(cfg.negTTL / time.Second),
		serial:   uint32(time.Now().Unix()),
		now:      time.Now,
		ready:    inst.ready,
	}
	if cfg.contacts {
		path := cfg.contactsFile
		if path == "" {
			if path, err = contacts.DefaultPath(cfg.stateDir); err != nil {
				return nil, err
			}
		}
		inst.handler.contacts = &contactBook{path: path}
	}
	inst.handler.upd = &updater{rules: cfg.allow, minLease: cfg.leaseMin, maxLease: cfg.leaseMax, id: id, node: inst.node.Load, forget: res.Forget, now: time.Now}
	return inst, nil
}

func (inst *instance) search(ctx context.Context, key identity.Key) ([]*records.Record, error) {
	s := inst.node.Load()
	if s == nil {
		return nil, errNotStarted
	}
	return s.node.Search(ctx, key)
}

// ready reports whether the node has joined (or is knowingly alone) and
// every name has been published once.
func (inst *instance) ready() bool {
	s := inst.node.Load()
	return s != nil && s.node.Ready() && inst.published.Load() == int64(len(inst.names))
}

func (inst *instance) nodeConfig() nodeConfig {
	return nodeConfig{
		Identity:       inst.id,
		Listen:         inst.cfg.listen,
		Bootstrap:      inst.cfg.bootstrap,
		Cloud:          inst.cfg.cloud,
		RecordLifetime: inst.cfg.lifetime,
		StateDir:       inst.cfg.stateDir,
		LinkLocal:      inst.cfg.linkLocal,
		LinkLocalIface: inst.cfg.linkIface,
		PuzzleBits:     inst.cfg.puzzleBits,
		PrefixCap:      inst.cfg.prefixCap,
		Mode:           inst.cfg.mode,
	}
}

// startup acquires the shared node and starts publishing this block's
// names. It is the OnStartup callback.
func (inst *instance) startup() error {
	s, err := inst.reg.acquire(context.Background(), inst.nodeConfig())
	if err != nil {
		return fmt.Errorf("peername: %w", err)
	}
	inst.node.Store(s)
	inst.reg.started(inst)
	log.Infof("overlay node %s (authority %s, cloud %s) on %v", inst.id.NodeID().String()[:16], inst.id.Authority(), inst.cfg.cloud, s.node.Addrs())
	s.runtime().resume(inst.res.Forget)
	ctx, cancel := context.WithCancel(context.Background())
	inst.cancel = cancel
	for i, p := range inst.cfg.publish {
		n := inst.names[i]
		s.claim(n)
		tmpl := &records.Record{
			Name:      n,
			Endpoints: endpoints(p.ips, s.node.Addrs(), s.node.Stats().External, inst.cfg.cloud),
			Services:  p.services,
			TXT:       p.txt,
		}
		log.Infof("publishing %s %v", n.DNS(inst.zone()), tmpl.Endpoints)
		inst.wg.Add(1)
		go inst.publish(ctx, s, tmpl)
	}
	if slices.ContainsFunc(inst.cfg.publish, func(p *publication) bool { return len(p.ips) == 0 }) {
		inst.watch.Go(func() { inst.watchAddrs(ctx, s) })
	}
	return nil
}

// watchAddrs republishes, at once, the names published without explicit
// addresses when the addresses they would get change: the external address
// the node's peers agree on, or the host's interface addresses (a node
// bound to 0.0.0.0 or [::] on a new network).
func (inst *instance) watchAddrs(ctx context.Context, s *sharedNode) {
	last := s.node.Stats().External
	lastEps := endpoints(nil, s.node.Addrs(), last, inst.cfg.cloud)
	t := time.NewTicker(statsInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ext := s.node.Stats().External
		eps := endpoints(nil, s.node.Addrs(), ext, inst.cfg.cloud)
		if ext == last && slices.Equal(eps, lastEps) {
			continue
		}
		why := "external address now " + addrOrNone(ext)
		if ext == last {
			why = "interface addresses changed"
		}
		last, lastEps = ext, eps
		for i, p := range inst.cfg.publish {
			if len(p.ips) > 0 {
				continue
			}
			tmpl := &records.Record{Name: inst.names[i], Services: p.services, TXT: p.txt, Endpoints: eps}
			log.Infof("%s: republishing %s %v", why, tmpl.Name.DNS(inst.zone()), tmpl.Endpoints)
			pctx, cancel := context.WithTimeout(ctx, publishTimeout)
			_, err := s.node.Publish(pctx, tmpl)
			cancel()
			if err != nil && !errors.Is(err, errOnlyLocal) && ctx.Err() == nil {
				log.Warningf("republishing %s: %v", tmpl.Name.DNS(inst.zone()), err)
			}
		}
	}
}

// zone is the zone names are shown in: the block's first zone.
func (inst *instance) zone() string {
	if len(inst.cfg.zones) > 0 {
		return inst.cfg.zones[0]
	}
	return identity.DefaultZone
}

// publishTimeout bounds one publish attempt; failed attempts are retried
// with backoff until one succeeds (the node then republishes by itself).
const publishTimeout = 10 * time.Second

func (inst *instance) publish(ctx context.Context, s *sharedNode, tmpl *records.Record) {
	defer inst.wg.Done()
	backoff := time.Second
	counted := false
	for {
		pctx, cancel := context.WithTimeout(ctx, publishTimeout)
		rec, err := s.node.Publish(pctx, tmpl)
		cancel()
		local := errors.Is(err, errOnlyLocal)
		switch {
		case err == nil:
			held, want := s.node.Replicas(tmpl.Name)
			log.Infof("published %s seq %d, expires %s, held by %d of %d replicas", rec.Name.DNS(inst.zone()), rec.Seq, rec.Expires.Format(time.RFC3339), held, want)
		case local:
			log.Infof("published %s on this node only (no peer reachable yet); it is pushed to peers once they join", tmpl.Name.DNS(inst.zone()))
		default:
			publishCount.WithLabelValues("publish", "error").Inc()
		}
		if err == nil || local {
			publishCount.WithLabelValues("publish", "ok").Inc()
			inst.res.Forget(tmpl.Name)
			if !counted {
				inst.published.Add(1)
				counted = true
			}
		}
		if err == nil {
			return
		}
		if local {
			// Store it on the peers as soon as there are some, rather
			// than at the next maintenance round.
			if !waitForPeers(ctx, s.node) {
				return
			}
			backoff = time.Second
			continue
		}
		if ctx.Err() != nil {
			return
		}
		log.Warningf("publishing %s: %v (retrying in %s)", tmpl.Name.DNS(inst.zone()), err, backoff)
		if !sleepCtx(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// peerPoll is how often a lone node checks whether peers have joined.
const peerPoll = 500 * time.Millisecond

// waitForPeers waits until n has a peer in its routing table. It reports
// false if ctx ended first.
func waitForPeers(ctx context.Context, n overlayNode) bool {
	t := time.NewTicker(peerPoll)
	defer t.Stop()
	for n.Stats().RoutingTableSize == 0 {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

// sleepCtx waits for d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// unpublishTimeout bounds the withdrawal of one name at shutdown.
const unpublishTimeout = 5 * time.Second

// shutdown withdraws the names no newer instance publishes and releases the
// node. It is the OnShutdown callback.
func (inst *instance) shutdown() error {
	s := inst.node.Swap(nil)
	if s == nil {
		return nil
	}
	inst.cancel()
	inst.wg.Wait()
	inst.watch.Wait()
	var errs []error
	for _, n := range inst.names {
		if !s.unclaim(n) {
			continue // a reloaded instance publishes it now
		}
		ctx, cancel := context.WithTimeout(context.Background(), unpublishTimeout)
		err := s.node.Unpublish(ctx, n)
		cancel()
		if err != nil {
			publishCount.WithLabelValues("unpublish", "error").Inc()
			errs = append(errs, fmt.Errorf("unpublish %s: %w", n, err))
			continue
		}
		publishCount.WithLabelValues("unpublish", "ok").Inc()
		log.Infof("withdrew %s", n.DNS(inst.zone()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), unpublishTimeout)
	defer cancel()
	if err := s.release(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("peername: %w", err)
	}
	return nil
}

// endpoints returns the addresses to publish: the configured ones, or the
// node's own (chooseEndpoints), with this host's interface addresses for a
// node bound to an unspecified address.
func endpoints(configured []netip.Addr, bound []netip.AddrPort, external netip.AddrPort, cloud string) []netip.Addr {
	if len(configured) > 0 {
		return configured
	}
	var ifAddrs []netip.Addr
	for _, ap := range bound {
		if ap.Addr().IsUnspecified() {
			ifAddrs = interfaceAddrs()
			break
		}
	}
	return chooseEndpoints(bound, ifAddrs, external, cloud == overlay.DefaultCloud)
}

// chooseEndpoints picks the node's own addresses to publish: first the
// external address its peers agree on (a node behind a port-forward or a
// 1:1 NAT), if global; then the bound addresses, an unspecified one standing
// for the interface addresses of its family. Never a link-local address;
// a loopback address only when the node is bound to it (a cloud on one
// host) or the host has nothing else; and in the global cloud no private
// address (RFC 1918, ULA, CGNAT), which the world cannot use, unless that
// would leave nothing to publish.
func chooseEndpoints(bound []netip.AddrPort, ifAddrs []netip.Addr, external netip.AddrPort, global bool) []netip.Addr {
	var out, private, loop []netip.Addr
	add := func(ip netip.Addr) {
		ip = ip.Unmap()
		switch {
		case !ip.IsValid() || ip.IsUnspecified() || ip.IsLinkLocalUnicast() || ip.IsMulticast() || contains(out, ip) || contains(private, ip):
		case global && (ip.IsPrivate() || cgnatPrefix.Contains(ip)):
			private = append(private, ip)
		case len(out) < maxEndpoints:
			out = append(out, ip)
		}
	}
	if ext := external.Addr().Unmap(); external.IsValid() && !ext.IsLoopback() && !ext.IsPrivate() && !cgnatPrefix.Contains(ext) {
		add(ext)
	}
	for _, ap := range bound {
		ip := ap.Addr().Unmap()
		if !ip.IsUnspecified() {
			add(ip)
			continue
		}
		for _, a := range ifAddrs {
			switch {
			case a.Is4() != ip.Is4():
			case a.Unmap().IsLoopback():
				loop = append(loop, a.Unmap())
			default:
				add(a)
			}
		}
	}
	if len(out) == 0 {
		out = private[:min(len(private), maxEndpoints)]
	}
	if len(out) == 0 {
		out = loop[:min(len(loop), maxEndpoints)]
	}
	return out
}

var cgnatPrefix = netip.MustParsePrefix("100.64.0.0/10")

func contains(s []netip.Addr, ip netip.Addr) bool {
	for _, a := range s {
		if a == ip {
			return true
		}
	}
	return false
}

// interfaceAddrs returns this host's global unicast addresses, or its
// loopback addresses when it has none.
func interfaceAddrs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		log.Warningf("listing interface addresses: %v", err)
		return []netip.Addr{}
	}
	var global, loop []netip.Addr
	for _, a := range addrs {
		pfx, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ip := pfx.Addr().Unmap()
		switch {
		case ip.IsLoopback():
			loop = append(loop, ip)
		case ip.IsGlobalUnicast() || ip.IsPrivate():
			global = append(global, ip)
		}
	}
	if len(global) > 0 {
		return global
	}
	if len(loop) == 0 {
		return []netip.Addr{}
	}
	return loop
}

package peername

// RFC 2136 UPDATE of this node's names. The tsig plugin validates the
// request's TSIG and tells us the key (tsig.ValidatedKeyName); `allow`
// rules say what each key may change. An accepted UPDATE becomes signed
// records this node publishes on the overlay (and republishes); a deletion
// that empties a name withdraws it. Runtime names live on the shared node,
// so they survive a Corefile reload, and in DIR/registrations.json with
// `state DIR`, so they survive a restart.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/metrics"
	"github.com/coredns/coredns/plugin/tsig"
	"github.com/miekg/dns"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/records"
)

// Bounds of UPDATE handling.
const (
	maxUpdateRRs    = 64 // prerequisite and update RRs in one UPDATE
	maxNamesPerKey  = 64 // runtime names one TSIG key may hold
	defaultMinLease = 30 * time.Second
	defaultMaxLease = 7 * 24 * time.Hour
	updatePublishTO = 5 * time.Second
)

// Update results counted by updateCount.
const (
	updOK       = "ok"
	updRefused  = "refused"
	updNotAuth  = "notauth"
	updNotZone  = "notzone"
	updFormErr  = "formerr"
	updPrereq   = "prereq"
	updServFail = "servfail"
)

// updater is the UPDATE side of one plugin instance.
type updater struct {
	rules []allowRule
	// minLease and maxLease bound the leases granted (RFC 9664).
	minLease, maxLease time.Duration
	id                 *identity.Identity
	node               func() *sharedNode // nil before OnStartup and after OnShutdown
	forget             func(identity.Name)
	now                func() time.Time
}

// validatedKey is the TSIG key the tsig plugin validated (a variable for
// tests).
var validatedKey = tsig.ValidatedKeyName

// errUpdate is an UPDATE refused with an rcode.
type errUpdate struct {
	rcode int
	msg   string
}

func (e *errUpdate) Error() string { return e.msg }

func refuse(rcode int, format string, args ...any) error {
	return &errUpdate{rcode: rcode, msg: fmt.Sprintf(format, args...)}
}

// serveUpdate handles an UPDATE message (ServeDNS dispatches on its opcode).
func (p *Peername) serveUpdate(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	server := metrics.WithServer(ctx)
	m := new(dns.Msg)
	m.SetReply(r)
	m.Opcode = dns.OpcodeUpdate
	m.Authoritative = true
	lease, err := p.update(ctx, r)
	result := updOK
	var ue *errUpdate
	switch {
	case errors.As(err, &ue):
		m.Rcode = ue.rcode
		result = map[int]string{dns.RcodeRefused: updRefused, dns.RcodeNotAuth: updNotAuth,
			dns.RcodeNotZone: updNotZone, dns.RcodeFormatError: updFormErr}[ue.rcode]
		if result == "" {
			result = updPrereq
		}
		log.Debugf("UPDATE refused (%s): %s", dns.RcodeToString[ue.rcode], ue.msg)
	case err != nil:
		m.Rcode = dns.RcodeServerFailure
		result = updServFail
		log.Errorf("UPDATE failed: %v", err)
	}
	if err == nil && lease > 0 {
		// RFC 9664 §4: the response carries the granted lease.
		o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		o.SetUDPSize(dns.DefaultMsgSize)
		s := uint32(lease / time.Second)
		o.Option = append(o.Option, &dns.EDNS0_UL{Code: dns.EDNS0UL, Lease: s, KeyLease: s})
		m.Extra = append(m.Extra, o)
	}
	updateCount.WithLabelValues(server, result).Inc()
	if err := w.WriteMsg(m); err != nil {
		return dns.RcodeServerFailure, plugin.Error(pluginName, err)
	}
	return dns.RcodeSuccess, nil
}

// update checks and applies r; it returns the granted lease (0: none).
// Nothing is applied unless every check passed.
func (p *Peername) update(ctx context.Context, r *dns.Msg) (time.Duration, error) {
	if len(r.Question) != 1 || r.Question[0].Qtype != dns.TypeSOA || r.Question[0].Qclass != dns.ClassINET {
		return 0, refuse(dns.RcodeFormatError, "zone section: want one SOA IN")
	}
	zone := dns.CanonicalName(r.Question[0].Name)
	if !contains2(p.Zones, zone) {
		return 0, refuse(dns.RcodeNotAuth, "zone %s is not served here", zone)
	}
	u := p.upd
	key, ok := validatedKey(ctx)
	if !ok || u == nil {
		return 0, refuse(dns.RcodeRefused, "no validated TSIG (configure the tsig plugin)")
	}
	key = dns.CanonicalName(key)
	known := false
	for _, rule := range u.rules {
		known = known || rule.key == key
	}
	if !known {
		return 0, refuse(dns.RcodeRefused, "key %s has no allow rule", key)
	}
	if len(r.Answer)+len(r.Ns) > maxUpdateRRs {
		return 0, refuse(dns.RcodeRefused, "more than %d records", maxUpdateRRs)
	}
	s := u.node()
	if s == nil {
		return 0, errNotStarted
	}
	lease := u.requestedLease(r)
	rt := s.runtime()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if err := rt.checkPrereqs(r.Answer, zone); err != nil {
		return 0, err
	}
	changed, err := u.plan(rt, key, r.Ns, zone)
	if err != nil {
		return 0, err
	}
	for _, reg := range changed {
		if reg.empty() {
			continue
		}
		reg.Lease, reg.Expires = 0, time.Time{}
		if lease > 0 {
			reg.Lease, reg.Expires = lease, u.now().Add(lease).UTC().Truncate(time.Second)
		}
	}
	return lease, rt.commit(ctx, changed, zone, u.forget)
}

// requestedLease returns the lease the UPDATE asks for (RFC 9664), bounded
// by the `lease` option; 0 without the option.
func (u *updater) requestedLease(r *dns.Msg) time.Duration {
	o := r.IsEdns0()
	if o == nil {
		return 0
	}
	for _, e := range o.Option {
		if ul, ok := e.(*dns.EDNS0_UL); ok {
			return min(max(time.Duration(ul.Lease)*time.Second, u.minLease), u.maxLease)
		}
	}
	return 0
}

func contains2(zones []string, z string) bool {
	for _, x := range zones {
		if strings.EqualFold(x, z) {
			return true
		}
	}
	return false
}

// owner is an UPDATE owner name parsed as a peer name.
type owner struct {
	name           identity.Name
	service, proto string // set for _svc._proto.NAME
}

// parseOwner parses an owner name within zone.
func (u *updater) parseOwner(rrName, zone string) (owner, error) {
	n := dns.CanonicalName(rrName)
	if !dns.IsSubDomain(zone, n) {
		return owner{}, refuse(dns.RcodeNotZone, "%s is outside zone %s", n, zone)
	}
	if strings.HasPrefix(n, "_") {
		svc, proto, name, err := identity.ParseServiceName(n, zone)
		if err != nil {
			return owner{}, refuse(dns.RcodeRefused, "%s: %v", n, err)
		}
		return owner{name: name, service: svc, proto: proto}, nil
	}
	name, err := identity.ParseName(n, zone)
	if err != nil {
		return owner{}, refuse(dns.RcodeRefused, "%s is not a peer name: %v", n, err)
	}
	return owner{name: name}, nil
}

// plan applies the update section to copies of the registrations it
// touches and checks the results; rt.mu is held. It returns the changed
// registrations (an empty one means: withdraw the name).
func (u *updater) plan(rt *runtimeSet, key string, upd []dns.RR, zone string) (map[identity.Name]*runtimeReg, error) {
	changed := map[identity.Name]*runtimeReg{}
	for _, rr := range upd {
		h := rr.Header()
		o, err := u.parseOwner(h.Name, zone)
		if err != nil {
			return nil, err
		}
		if o.name.Secured && o.name.Authority != u.id.Authority() {
			return nil, refuse(dns.RcodeRefused, "%s belongs to another authority", h.Name)
		}
		t := h.Rrtype
		if h.Class == dns.ClassANY && t == dns.TypeANY {
			t = dns.TypeANY
		} else if !isUpdateType(t) {
			return nil, refuse(dns.RcodeRefused, "%s: type %s cannot be updated", h.Name, dns.TypeToString[t])
		}
		if (t == dns.TypeSRV) != (o.service != "") && t != dns.TypeANY {
			return nil, refuse(dns.RcodeRefused, "%s: SRV records belong at _service._proto names, others not", h.Name)
		}
		permitted := false
		for _, rule := range u.rules {
			permitted = permitted || rule.permits(key, dns.CanonicalName(h.Name), t)
		}
		if !permitted {
			return nil, refuse(dns.RcodeRefused, "key %s may not change %s %s", key, h.Name, dns.TypeToString[t])
		}
		if rt.configured(o.name) {
			return nil, refuse(dns.RcodeRefused, "%s is published by the Corefile", h.Name)
		}
		reg := changed[o.name]
		if reg == nil {
			if cur := rt.regs[o.name]; cur != nil {
				reg = cur.clone()
			} else {
				reg = &runtimeReg{Classifier: o.name.Classifier, Secured: o.name.Secured, Key: key}
			}
			changed[o.name] = reg
		}
		if err := reg.apply(rr, o, zone); err != nil {
			return nil, err
		}
	}
	// Bounds, checked on the results: nothing is applied if one fails.
	perKey := map[string]int{}
	for n, reg := range rt.regs {
		if _, ok := changed[n]; !ok {
			perKey[reg.Key]++
		}
	}
	for n, reg := range changed {
		if reg.empty() {
			continue
		}
		perKey[reg.Key]++
		if perKey[reg.Key] > maxNamesPerKey {
			return nil, refuse(dns.RcodeRefused, "key %s holds %d names, at most %d", reg.Key, perKey[reg.Key], maxNamesPerKey)
		}
		if err := checkBounds(reg); err != nil {
			return nil, refuse(dns.RcodeRefused, "%s: %v", n.DNS(zone), err)
		}
	}
	return changed, nil
}

// checkBounds checks reg against the record bounds.
func checkBounds(reg *runtimeReg) error {
	switch {
	case len(reg.Endpoints) > records.MaxEndpoints:
		return fmt.Errorf("%d addresses, at most %d", len(reg.Endpoints), records.MaxEndpoints)
	case len(reg.Services) > records.MaxServices:
		return fmt.Errorf("%d services, at most %d", len(reg.Services), records.MaxServices)
	case len(reg.TXT) > records.MaxTXT:
		return fmt.Errorf("%d TXT strings, at most %d", len(reg.TXT), records.MaxTXT)
	}
	total := 0
	for _, t := range reg.TXT {
		total += len(t)
	}
	if total > records.MaxTXTTotal {
		return fmt.Errorf("TXT strings of %d octets, at most %d", total, records.MaxTXTTotal)
	}
	return nil
}

// apply applies one update RR (RFC 2136 §2.5) to reg.
func (reg *runtimeReg) apply(rr dns.RR, o owner, zone string) error {
	h := rr.Header()
	switch h.Class {
	case dns.ClassINET: // add to an RRset
		switch v := rr.(type) {
		case *dns.A:
			reg.addAddr(v.A)
		case *dns.AAAA:
			reg.addAddr(v.AAAA)
		case *dns.TXT:
			for _, t := range v.Txt {
				if !containsStr(reg.TXT, t) {
					reg.TXT = append(reg.TXT, t)
				}
			}
		case *dns.SRV:
			s, err := reg.service(v, o, zone)
			if err != nil {
				return err
			}
			for i, c := range reg.Services {
				if c.Service == s.Service && c.Proto == s.Proto && c.Port == s.Port {
					reg.Services = append(reg.Services[:i], reg.Services[i+1:]...)
					break
				}
			}
			reg.Services = append(reg.Services, s)
		default:
			return refuse(dns.RcodeFormatError, "%s: no data", h.Name)
		}
	case dns.ClassANY: // delete an RRset, or every RRset
		if h.Rdlength != 0 || h.Ttl != 0 {
			return refuse(dns.RcodeFormatError, "%s: delete of an RRset with data", h.Name)
		}
		switch h.Rrtype {
		case dns.TypeANY:
			if o.service != "" {
				reg.dropServices(o.service, o.proto, nil)
			} else {
				reg.Endpoints, reg.TXT = nil, nil
				reg.Services = nil
			}
		case dns.TypeA, dns.TypeAAAA:
			v4 := h.Rrtype == dns.TypeA
			reg.Endpoints = filterAddrs(reg.Endpoints, func(a netip.Addr) bool { return a.Is4() == v4 })
		case dns.TypeTXT:
			reg.TXT = nil
		case dns.TypeSRV:
			reg.dropServices(o.service, o.proto, nil)
		}
	case dns.ClassNONE: // delete one RR
		if h.Ttl != 0 {
			return refuse(dns.RcodeFormatError, "%s: delete with a TTL", h.Name)
		}
		switch v := rr.(type) {
		case *dns.A:
			ip, _ := netip.AddrFromSlice(v.A.To4())
			reg.Endpoints = filterAddrs(reg.Endpoints, func(a netip.Addr) bool { return a == ip })
		case *dns.AAAA:
			ip, _ := netip.AddrFromSlice(v.AAAA.To16())
			reg.Endpoints = filterAddrs(reg.Endpoints, func(a netip.Addr) bool { return a == ip.Unmap() || a == ip })
		case *dns.TXT:
			var kept []string
			for _, t := range reg.TXT {
				if !containsStr(v.Txt, t) {
					kept = append(kept, t)
				}
			}
			reg.TXT = kept
		case *dns.SRV:
			s, err := reg.service(v, o, zone)
			if err != nil {
				return err
			}
			reg.dropServices(s.Service, s.Proto, &s)
		default:
			return refuse(dns.RcodeFormatError, "%s: no data", h.Name)
		}
	default:
		return refuse(dns.RcodeFormatError, "%s: class %s", h.Name, dns.ClassToString[h.Class])
	}
	return nil
}

func (reg *runtimeReg) addAddr(ip []byte) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return
	}
	a = a.Unmap()
	if !a.IsValid() || a.IsUnspecified() || contains(reg.Endpoints, a) {
		return
	}
	reg.Endpoints = append(reg.Endpoints, a)
}

// service converts an SRV update; its target must be the name itself (the
// only target peername answers with) or ".".
func (reg *runtimeReg) service(v *dns.SRV, o owner, zone string) (records.Service, error) {
	target := dns.CanonicalName(v.Target)
	if target != "." && target != dns.CanonicalName(o.name.DNS(zone)) {
		return records.Service{}, refuse(dns.RcodeRefused, "%s: SRV target must be %s", v.Hdr.Name, o.name.DNS(zone))
	}
	if v.Port == 0 {
		return records.Service{}, refuse(dns.RcodeRefused, "%s: SRV port 0", v.Hdr.Name)
	}
	return records.Service{Service: o.service, Proto: o.proto, Port: v.Port, Priority: v.Priority, Weight: v.Weight}, nil
}

// dropServices removes the services _svc._proto (only the one like s, if s
// is set).
func (reg *runtimeReg) dropServices(svc, proto string, s *records.Service) {
	var kept []records.Service
	for _, c := range reg.Services {
		match := c.Service == svc && c.Proto == proto
		if match && s != nil {
			match = c.Port == s.Port && c.Priority == s.Priority && c.Weight == s.Weight
		}
		if !match {
			kept = append(kept, c)
		}
	}
	reg.Services = kept
}

func filterAddrs(in []netip.Addr, drop func(netip.Addr) bool) []netip.Addr {
	var out []netip.Addr
	for _, a := range in {
		if !drop(a) {
			out = append(out, a)
		}
	}
	return out
}

func containsStr(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

// rrsets returns reg's RRs of type t at its names (for prerequisites).
func (reg *runtimeReg) rrs(owner string, o owner, zone string) []dns.RR {
	var out []dns.RR
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: owner, Rrtype: t, Class: dns.ClassINET}
	}
	if o.service != "" {
		for _, s := range reg.Services {
			if s.Service == o.service && s.Proto == o.proto {
				out = append(out, &dns.SRV{Hdr: hdr(dns.TypeSRV), Priority: s.Priority, Weight: s.Weight, Port: s.Port, Target: o.name.DNS(zone)})
			}
		}
		return out
	}
	out = append(out, addrRRs(reg.Endpoints, owner, 0, true, true)...)
	for i := range out {
		out[i].Header().Ttl = 0
	}
	out = append(out, txtRRs(reg.TXT, hdr(dns.TypeTXT))...)
	return out
}

// checkPrereqs evaluates the prerequisite section (RFC 2136 §3.2) against
// this node's names; rt.mu is held.
func (rt *runtimeSet) checkPrereqs(pre []dns.RR, zone string) error {
	type setKey struct {
		owner string
		t     uint16
	}
	want := map[setKey][]dns.RR{}
	u := &updater{}
	for _, rr := range pre {
		h := rr.Header()
		if h.Ttl != 0 {
			return refuse(dns.RcodeFormatError, "prerequisite %s with a TTL", h.Name)
		}
		o, err := u.parseOwner(h.Name, zone)
		owner := dns.CanonicalName(h.Name)
		if err != nil {
			var ue *errUpdate
			if errors.As(err, &ue) && ue.rcode == dns.RcodeNotZone {
				return err
			}
		}
		var have []dns.RR
		inUse := false
		if err == nil {
			if reg := rt.regs[o.name]; reg != nil {
				have = reg.rrs(owner, o, zone)
				inUse = len(have) > 0
			}
			if o.service == "" && rt.configured(o.name) {
				inUse = true
			}
		}
		ofType := func(t uint16) bool {
			for _, x := range have {
				if x.Header().Rrtype == t {
					return true
				}
			}
			return false
		}
		switch h.Class {
		case dns.ClassANY:
			if h.Rdlength != 0 {
				return refuse(dns.RcodeFormatError, "prerequisite %s with data", h.Name)
			}
			if h.Rrtype == dns.TypeANY && !inUse {
				return refuse(dns.RcodeNameError, "%s is not in use", h.Name)
			}
			if h.Rrtype != dns.TypeANY && !ofType(h.Rrtype) {
				return refuse(dns.RcodeNXRrset, "%s has no %s", h.Name, dns.TypeToString[h.Rrtype])
			}
		case dns.ClassNONE:
			if h.Rdlength != 0 {
				return refuse(dns.RcodeFormatError, "prerequisite %s with data", h.Name)
			}
			if h.Rrtype == dns.TypeANY && inUse {
				return refuse(dns.RcodeYXDomain, "%s is in use", h.Name)
			}
			if h.Rrtype != dns.TypeANY && ofType(h.Rrtype) {
				return refuse(dns.RcodeYXRrset, "%s has %s", h.Name, dns.TypeToString[h.Rrtype])
			}
		case dns.ClassINET:
			k := setKey{owner, h.Rrtype}
			c := dns.Copy(rr)
			c.Header().Name = owner
			want[k] = append(want[k], c)
		default:
			return refuse(dns.RcodeFormatError, "prerequisite %s: class %s", h.Name, dns.ClassToString[h.Class])
		}
	}
	// Value-dependent prerequisites: the RRsets must be equal.
	for k, rrs := range want {
		var have []dns.RR
		if o, err := u.parseOwner(k.owner, zone); err == nil {
			if reg := rt.regs[o.name]; reg != nil {
				for _, x := range reg.rrs(k.owner, o, zone) {
					if x.Header().Rrtype == k.t {
						have = append(have, x)
					}
				}
			}
		}
		if !sameRRset(have, rrs) {
			return refuse(dns.RcodeNXRrset, "%s %s differs", k.owner, dns.TypeToString[k.t])
		}
	}
	return nil
}

// sameRRset compares two RRsets, ignoring TTLs, order and duplicates.
func sameRRset(a, b []dns.RR) bool {
	in := func(x dns.RR, set []dns.RR) bool {
		for _, y := range set {
			if dns.IsDuplicate(x, y) {
				return true
			}
		}
		return false
	}
	for _, x := range a {
		if !in(x, b) {
			return false
		}
	}
	for _, x := range b {
		if !in(x, a) {
			return false
		}
	}
	return true
}

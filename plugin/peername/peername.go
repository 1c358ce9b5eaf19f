// Package peername is a CoreDNS plugin that answers a peer-name zone
// (default peer.alt.) from peername's overlay: it runs an overlay node,
// publishes this node's own names on it, and resolves the names it is asked
// for through the resolver, which verifies every record it finds. The
// plugin only translates between DNS and resolver calls.
package peername

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/metrics"
	"github.com/coredns/coredns/plugin/pkg/fall"
	"github.com/miekg/dns"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/overlay"
	"github.com/peername/peername/resolver"
)

const pluginName = "peername"

// lookuper is what the handler needs from the resolver.
type lookuper interface {
	Lookup(ctx context.Context, q resolver.Query) (*resolver.Answer, error)
}

// Peername is the plugin handler.
type Peername struct {
	Next  plugin.Handler
	Zones []string
	Fall  fall.F

	resolver lookuper
	contacts *contactBook // nil without a `contacts` line
	parsed   queryCache
	// negTTL is the TTL of the SOA in negative answers (and its minimum).
	negTTL uint32
	// serial is the SOA serial: the time this configuration was loaded.
	serial uint32
	now    func() time.Time
	// ready reports whether the node has joined and published.
	ready func() bool
	// upd handles UPDATE messages (update.go).
	upd *updater
	// counters are queryCount's children, by server (metrics.go).
	counters sync.Map
}

// Name implements plugin.Handler.
func (p *Peername) Name() string { return pluginName }

// ServeDNS implements plugin.Handler.
func (p *Peername) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	if r.Opcode == dns.OpcodeUpdate {
		return p.serveUpdate(ctx, w, r)
	}
	asked, qname := questionName(r)
	server := metrics.WithServer(ctx)

	zone := p.zoneOf(qname)
	if zone == "" || r.Question[0].Qclass != dns.ClassINET {
		if p.Fall.Through(qname) {
			p.count(server, resultFallthrough)
			return plugin.NextOrFailure(p.Name(), p.Next, ctx, w, r)
		}
		p.count(server, resultRefused)
		return dns.RcodeRefused, nil
	}

	if r.Opcode != dns.OpcodeQuery {
		// UPDATE, NOTIFY, ...: names are published on the overlay, not here.
		p.count(server, resultNotImp)
		return dns.RcodeNotImplemented, nil
	}

	qtype := r.Question[0].Qtype

	if qname == zone {
		m := newReply(r)
		switch qtype {
		case dns.TypeSOA, dns.TypeANY:
			m.Answer = []dns.RR{p.soa(zone)}
		case dns.TypeNS:
			m.Answer = []dns.RR{p.ns(zone)}
		default:
			m.Ns = []dns.RR{p.soa(zone)}
		}
		return p.write(w, m, server)
	}

	if emptyNonTerminal(qname, zone) {
		m := newReply(r)
		m.Ns = []dns.RR{p.soa(zone)}
		return p.write(w, m, server)
	}

	lookupName := qname
	if p.contacts != nil {
		kind, target, err := p.contacts.target(qname, zone)
		switch {
		case err != nil:
			p.count(server, resultServFail)
			return dns.RcodeServerFailure, plugin.Error(pluginName, err)
		case kind == contactsNode:
			m := newReply(r)
			m.Ns = []dns.RR{p.soa(zone)}
			return p.write(w, m, server)
		case kind == noContact:
			m := newReply(r)
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{p.soa(zone)}
			return p.write(w, m, server)
		case kind == contactFound:
			lookupName = target
		}
	}
	pn, err := p.parsed.parse(lookupName, zone)
	var ans *resolver.Answer
	if err == nil {
		ans, err = p.resolver.Lookup(ctx, pn.q)
	}
	switch {
	case errors.Is(err, resolver.ErrNotFound):
		if p.Fall.Through(qname) {
			p.count(server, resultFallthrough)
			return plugin.NextOrFailure(p.Name(), p.Next, ctx, w, r)
		}
		m := newReply(r)
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{p.soa(zone)}
		return p.write(w, m, server)
	case errors.Is(err, overlay.ErrAlone):
		// The node has no peer yet and keeps joining; it says so in its
		// log once (node.Node), so no error goes to the errors plugin's
		// line per query. The server writes the SERVFAIL.
		p.count(server, resultServFail)
		return dns.RcodeServerFailure, nil
	case err != nil:
		p.count(server, resultServFail)
		return dns.RcodeServerFailure, plugin.Error(pluginName, err)
	}

	if lookupName == qname {
		if ok, err := p.servePacked(w, r, pn, ans, asked, qname, zone, qtype, server); ok {
			if err != nil {
				return dns.RcodeServerFailure, plugin.Error(pluginName, err)
			}
			return dns.RcodeSuccess, nil
		}
	}
	// Owner names keep the question's case (0x20-randomising resolvers).
	m := newReply(r)
	p.answer(m, ans, asked, zone, qtype, ans.TTL(p.now()))
	return p.write(w, m, server)
}

// newReply returns an authoritative reply to r.
func newReply(r *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	return m
}

// answer fills m's answer, authority and additional sections with the
// answer to qtype from ans, with owner names owner.
func (p *Peername) answer(m *dns.Msg, ans *resolver.Answer, owner, zone string, qtype uint16, ttl uint32) {
	m.Answer, m.Extra = answerRRs(ans, owner, zone, qtype, ttl)
	if len(m.Answer) == 0 {
		m.Ns = []dns.RR{p.soa(zone)}
	}
}

// result is queryCount's result for the reply m.
func result(m *dns.Msg) string {
	switch {
	case m.Rcode == dns.RcodeNameError:
		return resultNXDomain
	case len(m.Answer) == 0:
		return resultNoData
	}
	return resultAnswer
}

// questionName returns the question's name as asked, in presentation
// format (what request.Request.QName gives), and lowercased. A name of
// letters, digits, '-', '_' and dots is its own presentation format, and
// without capitals its own lowercase: the common case costs one pass over
// the name and no allocation.
func questionName(r *dns.Msg) (asked, lower string) {
	if len(r.Question) == 0 {
		return ".", "."
	}
	name := r.Question[0].Name
	upper := false
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '.', c == '_':
		case 'A' <= c && c <= 'Z':
			upper = true
		default:
			asked = dns.Name(name).String()
			return asked, strings.ToLower(asked)
		}
	}
	if upper {
		return name, strings.ToLower(name)
	}
	return name, name
}

// zoneOf returns the most specific of the handler's zones that qname
// (lowercase) is in, or "": plugin.Zones.Matches without its label
// splitting, for names and zones without escapes.
func (p *Peername) zoneOf(qname string) string {
	if strings.IndexByte(qname, '\\') >= 0 {
		return plugin.Zones(p.Zones).Matches(qname)
	}
	best := ""
	for _, z := range p.Zones {
		if strings.IndexByte(z, '\\') >= 0 {
			return plugin.Zones(p.Zones).Matches(qname)
		}
		if len(z) > len(best) && inZone(qname, z) {
			best = z
		}
	}
	return best
}

// inZone reports whether the name is zone or a name below it; neither has
// escapes, and the name is lowercase.
func inZone(name, zone string) bool {
	switch {
	case zone == ".":
		return true
	case len(name) < len(zone) || !strings.EqualFold(name[len(name)-len(zone):], zone):
		return false
	}
	return len(name) == len(zone) || name[len(name)-len(zone)-1] == '.'
}

// write sends m and counts it.
func (p *Peername) write(w dns.ResponseWriter, m *dns.Msg, server string) (int, error) {
	p.count(server, result(m))
	if err := w.WriteMsg(m); err != nil {
		return dns.RcodeServerFailure, plugin.Error(pluginName, err)
	}
	return m.Rcode, nil
}

// emptyNonTerminal reports whether qname is a name that exists only because
// names exist below it: an authority ("<authority>.<zone>", "0.<zone>") or a
// service's protocol node ("_proto.<classifier>.<authority>.<zone>"). Such
// names answer NODATA, not NXDOMAIN (RFC 8020), without an overlay search.
func emptyNonTerminal(qname, zone string) bool {
	var n int
	if zone != "." && strings.IndexByte(qname, '\\') < 0 {
		n = strings.Count(qname[:len(qname)-len(zone)], ".") // one per label above the zone
	} else {
		n = dns.CountLabel(qname) - dns.CountLabel(zone)
	}
	if n != 1 && n != 3 {
		return false // the common case: no allocation
	}
	labels := dns.SplitDomainName(strings.TrimSuffix(qname, zone))
	if len(labels) != n {
		return false // malformed, e.g. an empty label
	}
	if n == 1 {
		if labels[0] == "0" {
			return true
		}
		_, err := identity.ParseAuthority(labels[0])
		return err == nil
	}
	if !strings.HasPrefix(labels[0], "_") || len(labels[0]) < 2 {
		return false
	}
	_, err := identity.ParseName(labels[1]+"."+labels[2]+"."+zone, zone)
	return err == nil
}

// answerRRs builds the answer and additional sections for qtype from ans.
func answerRRs(ans *resolver.Answer, qname, zone string, qtype uint16, ttl uint32) (answer, extra []dns.RR) {
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: qname, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	}
	if ans.Query.Service != "" {
		switch qtype {
		case dns.TypeSRV, dns.TypeANY:
			target := ans.Query.Name.DNS(zone)
			for _, s := range ans.Services() {
				answer = append(answer, &dns.SRV{Hdr: hdr(dns.TypeSRV), Priority: s.Priority, Weight: s.Weight, Port: s.Port, Target: target})
			}
			extra = addrRRs(ans.Addrs(), target, ttl, true, true)
		}
		return answer, extra
	}
	switch qtype {
	case dns.TypeA:
		return addrRRs(ans.Addrs(), qname, ttl, true, false), nil
	case dns.TypeAAAA:
		return addrRRs(ans.Addrs(), qname, ttl, false, true), nil
	case dns.TypeTXT:
		return txtRRs(ans.TXT(), hdr(dns.TypeTXT)), nil
	case dns.TypeANY:
		// RFC 8482: answer ANY with one RRset rather than everything.
		if rrs := addrRRs(ans.Addrs(), qname, ttl, true, false); len(rrs) > 0 {
			return rrs, nil
		}
		if rrs := addrRRs(ans.Addrs(), qname, ttl, false, true); len(rrs) > 0 {
			return rrs, nil
		}
		if rrs := txtRRs(ans.TXT(), hdr(dns.TypeTXT)); len(rrs) > 0 {
			return rrs, nil
		}
		return []dns.RR{&dns.HINFO{Hdr: hdr(dns.TypeHINFO), Cpu: "RFC8482"}}, nil
	}
	return nil, nil
}

// addrRRs returns A and/or AAAA records for addrs.
func addrRRs(addrs []netip.Addr, name string, ttl uint32, v4, v6 bool) []dns.RR {
	if len(addrs) == 0 {
		return nil
	}
	rrs := make([]dns.RR, 0, len(addrs))
	for _, ip := range addrs {
		switch {
		case ip.Is4() && v4:
			rrs = append(rrs, &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: ip.AsSlice()})
		case ip.Is6() && v6:
			rrs = append(rrs, &dns.AAAA{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl}, AAAA: ip.AsSlice()})
		}
	}
	return rrs
}

// txtRRs returns one TXT record per string (records bound each string to
// the 255 octets of one DNS character-string).
func txtRRs(txt []string, hdr dns.RR_Header) []dns.RR {
	var rrs []dns.RR
	for _, s := range txt {
		rrs = append(rrs, &dns.TXT{Hdr: hdr, Txt: []string{s}})
	}
	return rrs
}

// soa synthesizes the zone's SOA record.
func (p *Peername) soa(zone string) dns.RR {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: p.negTTL},
		Ns:      nsName(zone),
		Mbox:    "hostmaster.dns." + zone,
		Serial:  p.serial,
		Refresh: 7200,
		Retry:   1800,
		Expire:  86400,
		Minttl:  p.negTTL,
	}
}

// ns synthesizes the zone's NS record.
func (p *Peername) ns(zone string) dns.RR {
	return &dns.NS{Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: p.negTTL}, Ns: nsName(zone)}
}

// nsName is the name server name of the zone: every node answering the
// zone is authoritative for it, so it names no one node.
func nsName(zone string) string { return "ns.dns." + zone }

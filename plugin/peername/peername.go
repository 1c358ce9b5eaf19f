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
	"time"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/metrics"
	"github.com/coredns/coredns/plugin/pkg/fall"
	"github.com/coredns/coredns/request"
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
}

// Name implements plugin.Handler.
func (p *Peername) Name() string { return pluginName }

// ServeDNS implements plugin.Handler.
func (p *Peername) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	if r.Opcode == dns.OpcodeUpdate {
		return p.serveUpdate(ctx, w, r)
	}
	state := request.Request{W: w, Req: r}
	// The question's name as asked (owner names keep its case, for
	// 0x20-randomising resolvers) and lowercased; converting it once,
	// not once for each (dns.Name.String escapes it byte by byte).
	asked := state.QName()
	qname := strings.ToLower(asked)
	server := metrics.WithServer(ctx)

	zone := plugin.Zones(p.Zones).Matches(qname)
	if zone == "" || state.QClass() != dns.ClassINET {
		if p.Fall.Through(qname) {
			queryCount.WithLabelValues(server, resultFallthrough).Inc()
			return plugin.NextOrFailure(p.Name(), p.Next, ctx, w, r)
		}
		queryCount.WithLabelValues(server, resultRefused).Inc()
		return dns.RcodeRefused, nil
	}

	if r.Opcode != dns.OpcodeQuery {
		// UPDATE, NOTIFY, ...: names are published on the overlay, not here.
		queryCount.WithLabelValues(server, resultNotImp).Inc()
		return dns.RcodeNotImplemented, nil
	}

	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	qtype := state.QType()

	if qname == zone {
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
		m.Ns = []dns.RR{p.soa(zone)}
		return p.write(w, m, server)
	}

	lookupName := qname
	if p.contacts != nil {
		kind, target, err := p.contacts.target(qname, zone)
		switch {
		case err != nil:
			queryCount.WithLabelValues(server, resultServFail).Inc()
			return dns.RcodeServerFailure, plugin.Error(pluginName, err)
		case kind == contactsNode:
			m.Ns = []dns.RR{p.soa(zone)}
			return p.write(w, m, server)
		case kind == noContact:
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{p.soa(zone)}
			return p.write(w, m, server)
		case kind == contactFound:
			lookupName = target
		}
	}
	q, err := p.parsed.parse(lookupName, zone)
	var ans *resolver.Answer
	if err == nil {
		ans, err = p.resolver.Lookup(ctx, q)
	}
	switch {
	case errors.Is(err, resolver.ErrNotFound):
		if p.Fall.Through(qname) {
			queryCount.WithLabelValues(server, resultFallthrough).Inc()
			return plugin.NextOrFailure(p.Name(), p.Next, ctx, w, r)
		}
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{p.soa(zone)}
		return p.write(w, m, server)
	case errors.Is(err, overlay.ErrAlone):
		// The node has no peer yet and keeps joining; it says so in its
		// log once (node.Node), so no error goes to the errors plugin's
		// line per query. The server writes the SERVFAIL.
		queryCount.WithLabelValues(server, resultServFail).Inc()
		return dns.RcodeServerFailure, nil
	case err != nil:
		queryCount.WithLabelValues(server, resultServFail).Inc()
		return dns.RcodeServerFailure, plugin.Error(pluginName, err)
	}

	// Owner names keep the question's case (0x20-randomising resolvers).
	m.Answer, m.Extra = answerRRs(ans, asked, zone, qtype, ans.TTL(p.now()))
	if len(m.Answer) == 0 {
		m.Ns = []dns.RR{p.soa(zone)}
	}
	return p.write(w, m, server)
}

// write sends m and counts it.
func (p *Peername) write(w dns.ResponseWriter, m *dns.Msg, server string) (int, error) {
	result := resultAnswer
	switch {
	case m.Rcode == dns.RcodeNameError:
		result = resultNXDomain
	case len(m.Answer) == 0:
		result = resultNoData
	}
	queryCount.WithLabelValues(server, result).Inc()
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
	n := dns.CountLabel(qname) - dns.CountLabel(zone)
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

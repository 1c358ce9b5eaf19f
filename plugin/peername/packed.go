package peername

import (
	"bytes"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/coredns/coredns/request"
	"github.com/miekg/dns"

	"github.com/peername/peername/resolver"
)

// Packed replies. A cached answer is the same message for every query of a
// name and type except for the header's ID, RD and CD bits, the TTLs (which
// count down), the case of the query name (kept as asked, for
// 0x20-randomising resolvers) and an OPT record when the query has one.
// The handler packs the reply once per (resolver answer, qtype), notes where
// those fields are, and answers later queries by copying the bytes and
// patching them: no dns.Msg, RRs or packing per query. That is what made a
// cached peer name cost more than a hosts name, whose reply miekg/dns packs
// (and CoreDNS's ScrubWriter measures twice) for every query.
//
// The bytes go to the client with ResponseWriter.Write, which bypasses
// WriteMsg; so the handler uses a packed reply only when w is the
// request.ScrubWriter that CoreDNS's server hands to the first plugin of a
// zone, that is, when no plugin in front of peername (cache, log, metrics,
// rewrite, dnssec, ...) wraps the writer to see or change the reply. The
// ScrubWriter's own work (an OPT record like the query's, truncation to the
// client's buffer) is done here: the reply gets the query's OPT as
// request.Request.SizeAndDo would add it, queries with EDNS options or a
// TSIG record take the ordinary path, and packed replies are at most
// maxPacked bytes with the OPT record, which fits every client's buffer, so
// none is ever truncated. The reply's buffer is pooled and reused once
// Write returns: every writer under a ScrubWriter (miekg/dns's UDP and TCP
// responses, CoreDNS's DoH, DoQ and gRPC writers) sends or copies the bytes
// before it returns.

// maxPacked bounds a packed reply with its OPT record: the smallest buffer
// a client has (RFC 1035's 512 octets). Larger replies take WriteMsg.
const maxPacked = dns.MinMsgSize

// optLen is the length of an OPT record without options.
const optLen = 11

// packedReply is the wire form of the reply to one (name, qtype), built from
// one resolver answer: ID 0, RD and CD clear, the names lowercase, TTLs 0.
type packedReply struct {
	ans    *resolver.Answer // the answer it was built from
	qtype  uint16
	result string // queryCount's result for it
	wire   []byte
	qlen   int      // length of the question name, at offset 12
	owners []uint16 // offsets of answer owner names equal to the question name
	ttls   []uint16 // offsets of the TTLs that count down (answer and additional sections)
}

// packed holds a name's packed replies: A, AAAA, and the last other type.
type packed struct {
	slots [3]atomic.Pointer[packedReply]
}

func (pk *packed) slot(qtype uint16) *atomic.Pointer[packedReply] {
	switch qtype {
	case dns.TypeA:
		return &pk.slots[0]
	case dns.TypeAAAA:
		return &pk.slots[1]
	}
	return &pk.slots[2]
}

var replyBufs = sync.Pool{New: func() any { return new([maxPacked]byte) }}

// servePacked answers r from a packed reply of ans when it can (see above),
// packing one first if the name has none for ans and qtype. It reports
// whether it answered; when it did not, nothing was written.
func (p *Peername) servePacked(w dns.ResponseWriter, r *dns.Msg, pn *parsedName, ans *resolver.Answer, asked, qname, zone string, qtype uint16, server string) (bool, error) {
	if _, ok := w.(*request.ScrubWriter); !ok || pn.q.Service != "" || r.IsTsig() != nil {
		return false, nil
	}
	opt := r.IsEdns0()
	if opt != nil && len(opt.Option) > 0 {
		return false, nil
	}
	slot := pn.slot(qtype)
	pr := slot.Load()
	if pr == nil || pr.ans != ans || pr.qtype != qtype {
		var err error
		if pr, err = p.packReply(ans, qname, zone, qtype); err != nil {
			return false, nil // too large, or not packable: WriteMsg says why
		}
		slot.Store(pr)
	}
	buf := replyBufs.Get().(*[maxPacked]byte)
	defer replyBufs.Put(buf)
	b := append(buf[:0], pr.wire...)
	binary.BigEndian.PutUint16(b, r.Id)
	if r.RecursionDesired {
		b[2] |= 0x01
	}
	if r.CheckingDisabled {
		b[3] |= 0x10
	}
	if asked != qname {
		end, err := dns.PackDomainName(asked, b, 12, nil, false)
		if err != nil || end != 12+pr.qlen {
			return false, nil
		}
		for _, off := range pr.owners {
			copy(b[off:], b[12:end])
		}
	}
	ttl := ans.TTL(p.now())
	for _, off := range pr.ttls {
		binary.BigEndian.PutUint32(b[off:], ttl)
	}
	if opt != nil {
		// request.Request.SizeAndDo: the query's OPT, version 0, its UDP
		// size and flags (DO) kept, extended RCODE 0.
		b = append(b, 0, byte(dns.TypeOPT>>8), byte(dns.TypeOPT), 0, 0, 0, 0, 0, 0, 0, 0)
		binary.BigEndian.PutUint16(b[len(b)-8:], opt.Hdr.Class)
		binary.BigEndian.PutUint32(b[len(b)-6:], opt.Hdr.Ttl&0xff00)
		binary.BigEndian.PutUint16(b[10:], binary.BigEndian.Uint16(b[10:])+1)
	}
	p.count(server, pr.result)
	if _, err := w.Write(b); err != nil {
		return true, err
	}
	return true, nil
}

// errUnpackable says a reply cannot be served packed.
var errUnpackable = errors.New("reply not packable")

// packReply packs the reply the ordinary path gives a query for qname
// (lowercase) and qtype from ans, and locates its variable fields.
func (p *Peername) packReply(ans *resolver.Answer, qname, zone string, qtype uint16) (*packedReply, error) {
	m := new(dns.Msg)
	m.Response, m.Opcode, m.Authoritative = true, dns.OpcodeQuery, true
	m.Question = []dns.Question{{Name: qname, Qtype: qtype, Qclass: dns.ClassINET}}
	p.answer(m, ans, qname, zone, qtype, 0)
	wire, err := m.Pack() // uncompressed, as ScrubWriter leaves a small reply
	if err != nil {
		return nil, err
	}
	if len(wire)+optLen > maxPacked {
		return nil, errUnpackable
	}
	pr := &packedReply{ans: ans, qtype: qtype, result: result(m), wire: wire}
	end, err := nameEnd(wire, 12)
	if err != nil {
		return nil, err
	}
	pr.qlen = end - 12
	off := end + 4
	counts := [3]int{len(m.Answer), len(m.Ns), len(m.Extra)}
	for sec, n := range counts {
		for range n {
			start := off
			if off, err = nameEnd(wire, off); err != nil {
				return nil, err
			}
			if sec == 0 && bytes.Equal(wire[start:off], wire[12:end]) {
				pr.owners = append(pr.owners, uint16(start))
			}
			if off+10 > len(wire) {
				return nil, errUnpackable
			}
			if sec != 1 { // the authority section's SOA keeps its TTL
				pr.ttls = append(pr.ttls, uint16(off+4))
			}
			off += 10 + int(binary.BigEndian.Uint16(wire[off+8:]))
		}
	}
	if off != len(wire) {
		return nil, errUnpackable
	}
	return pr, nil
}

// nameEnd returns the offset after the uncompressed name at off.
func nameEnd(wire []byte, off int) (int, error) {
	for off < len(wire) {
		l := int(wire[off])
		switch {
		case l == 0:
			return off + 1, nil
		case l&0xc0 != 0:
			return 0, errUnpackable // compressed or extended label
		}
		off += 1 + l
	}
	return 0, errUnpackable
}

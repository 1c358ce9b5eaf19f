package overlay

import (
	"bytes"
	"time"

	"github.com/peername/peername/identity"
)

// Retransmission (RFC 6298 style). A request is sent, then resent each time
// its retransmission timeout (RTO) passes without an answer, the RTO doubling
// every time (capped at maxRTO), until its lifetime ends: RequestTimeout
// times requestLifetimeFactor after the first send, or the deadline of its
// operation, whichever is first. Only then is the request (and the lookup's
// candidate, and the contact's fail count) failed. A resend over a session
// still waiting for its handshake resends the HELLO (the responder answers a
// duplicate HELLO with the same HELLO_ACK), so handshakes are retransmitted
// too. The RTO of a peer comes from its smoothed round trip (SRTT, RTTVAR,
// kept in its routing-table entry); a peer without a sample uses the node's
// own estimate over all peers, and a node without one RequestTimeout/3.
// Karn's rule: a request that was resent gives no sample.

const (
	// backoffCap bounds the exponential backoff at this many times the
	// first RTO: loss, not congestion, is what a lookup meets on a link
	// that answered before, and its deadline is short.
	backoffCap = 2
	// quietSends: a lookup candidate that has not answered this many sends
	// of its request (measured when the next one goes out) stops holding up
	// a quorum read (closestSettled).
	quietSends = 1
	minRTO     = int64(100 * time.Millisecond)
	// requestLifetimeFactor: a request lives RequestTimeout*factor (within
	// its operation's deadline) before it is failed.
	requestLifetimeFactor = 2
)

// rttEst is a smoothed round-trip estimate, in microseconds (RFC 6298).
type rttEst struct {
	srtt, rttvar int32
}

func (e *rttEst) sample(ns int64) {
	r := int32(min(ns/1000, 1<<30))
	if e.srtt == 0 {
		e.srtt, e.rttvar = max(r, 1), r/2
		return
	}
	d := e.srtt - r
	if d < 0 {
		d = -d
	}
	e.rttvar += (d - e.rttvar) / 4
	e.srtt += (r - e.srtt) / 8
}

// rto is SRTT + 4*RTTVAR in ns, or 0 without a sample.
func (e rttEst) rto() int64 {
	if e.srtt == 0 {
		return 0
	}
	return (int64(e.srtt) + 4*int64(e.rttvar)) * 1000
}

func (c *Core) maxRTO() int64 { return max(c.cfg.RequestTimeout.Nanoseconds()/2, minRTO) }

// rtoFor returns the first retransmission timeout of a request to peer.
func (c *Core) rtoFor(peer identity.Key, hasID bool) int64 {
	r := int64(0)
	if hasID {
		if ct := c.rt.entry(peer); ct != nil {
			r = ct.rtt.rto()
		}
	}
	if r == 0 {
		r = c.rtt.rto()
	}
	if r == 0 {
		r = c.cfg.RequestTimeout.Nanoseconds() / 3
	}
	return min(max(r, minRTO), c.maxRTO())
}

// rttSample records a round trip measured on a request answered by peer.
func (c *Core) rttSample(peer identity.Key, ns int64) {
	c.rtt.sample(ns)
	if ct := c.rt.entry(peer); ct != nil {
		ct.rtt.sample(ns)
	}
}

// armRequest sets a new request's retransmission state and first timer.
func (c *Core) armRequest(now int64, req *request) {
	req.end = now + requestLifetimeFactor*c.cfg.RequestTimeout.Nanoseconds()
	if req.op != nil && req.op.deadline > 0 {
		req.end = min(req.end, req.op.deadline)
	}
	req.rto = c.rtoFor(req.peer, req.hasID)
	req.rto0 = req.rto
	c.timers.push(timer{at: min(now+req.rto, req.end), kind: tRequest, id: req.id})
}

// onRequestTimer resends a request whose RTO passed, or fails it at the end
// of its lifetime. It reports whether the request is still pending.
func (c *Core) onRequestTimer(now int64, req *request) bool {
	if now >= req.end {
		c.st.RequestTimeouts++
		return false
	}
	req.tries++
	c.st.Retransmits++
	if int(req.tries) >= quietSends && req.kind == reqLookup && req.op != nil && int(req.cand) >= 0 && int(req.cand) < len(req.op.all) {
		if cd := &req.op.all[req.cand]; cd.state == cInflight && !cd.quiet {
			cd.quiet = true
			defer c.step(now, req.op) // a quorum may be met now
		}
	}
	c.retransmit(now, req)
	req.rto = min(2*req.rto, backoffCap*req.rto0, c.maxRTO())
	c.timers.push(timer{at: min(now+req.rto, req.end), kind: tRequest, id: req.id})
	return true
}

// retransmit sends a request again: over its session, or, while the session
// waits for its handshake, by resending the HELLO (the request is queued on
// it), or over a new handshake if the session is gone.
func (c *Core) retransmit(now int64, req *request) {
	s := c.sessionFor(req.peer, req.hasID, req.addr)
	if s == nil || s.state == sessInitSent && s.hs == nil {
		c.transmit(now, req.peer, req.hasID, req.addr, req.body)
		return
	}
	if s.state == sessInitSent {
		queued := bytes.Equal(s.hs.early, req.body) // the HELLO carries it
		for _, b := range s.hs.queue {
			if bytes.Equal(b, req.body) {
				queued = true
				break
			}
		}
		if !queued && len(s.hs.queue) < maxQueuedPerHandshake {
			s.hs.queue = append(s.hs.queue, req.body)
		}
		c.st.HandshakesResent++
		c.emit(s.addr, c.helloPacket(s))
		return
	}
	c.transmit(now, req.peer, req.hasID, req.addr, req.body)
}

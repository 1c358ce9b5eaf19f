package overlay

// Early requests: one round trip to a new peer, not two.
//
// A lookup mostly asks nodes it has never talked to (the answers name
// them), and a session costs a round trip before its first request: HELLO,
// HELLO_ACK, then the request and its answer. The initiator of a lookup
// request instead sends the request with its HELLO (ptHelloReq: the HELLO,
// the request in plaintext, zero padding to earlyHelloLen), and the
// responder answers it over the half-open session right after its HELLO_ACK,
// so the answer arrives one round trip after the HELLO was sent.
//
// What stays as it was:
//   - The answer is authenticated: it is sealed with the session's keys,
//     which only the peer named by the certificate in the HELLO_ACK holds.
//   - The question cannot be swapped: the HELLO_ACK's tag covers the early
//     request the responder saw (ackAD), so an initiator whose request was
//     altered on the way rejects the HELLO_ACK, and the answer with it.
//   - Only questions whose answers change nothing are early: FIND_NODE and
//     FIND_VALUE. The responder does not add the initiator to its routing
//     table, and the session stays half-open, until the initiator's first
//     DATA proves its key: when it has nothing else to send, a PING, tracked
//     and retransmitted like any request (with a fire-and-forget message
//     instead, 30 % loss left responders' tables short of the initiators
//     they never heard again, and the replica census of the simulator at 200
//     nodes went from 8 to 25 short names over seeds 1-4; with the PING, 3).
//   - Amplification: before that proof the source address is unverified,
//     so the responder sends back at most earlyAmplification times the
//     bytes of the HELLO (HELLO_ACK included), as QUIC does before address
//     validation; the HELLO's padding makes room for K contacts and a
//     record. An answer whose records alone do not fit is not sent (the
//     request's retransmission asks again over the established session);
//     contacts beyond the budget are left out.
//
// Only the lookups a user waits for are early: Resolve and the lookup
// phase of Publish, Unpublish and Store. A join (which asks seeds known by
// address only) and internal lookups (bucket refreshes) keep the plain
// HELLO: nobody waits on a refresh, and the padding would cost maintenance
// bytes.

// earlyAmplification bounds what a responder sends to an unverified
// address, in multiples of what it received from there.
const earlyAmplification = 3

// earlyEligible reports whether a request of kind for op, message m, may go
// with a HELLO.
func (c *Core) earlyEligible(op *operation, kind uint8, m *msg) bool {
	if kind != reqLookup || op == nil || op.internal || m.typ != mFindNode && m.typ != mFindValue {
		return false
	}
	switch op.kind {
	case opResolve, opPublish, opUnpublish, opStore:
		return true
	}
	return false
}

// ackAD is the additional data of a HELLO_ACK's tag: the HELLO_ACK, then
// the early request it answers, if any.
func ackAD(ack, early []byte) []byte {
	if len(early) == 0 {
		return ack
	}
	ad := make([]byte, 0, len(ack)+len(early))
	return append(append(ad, ack...), early...)
}

// answerEarly answers the early request of hello, a ptHelloReq packet that
// created (or duplicates the one that created) the half-open session s.
func (c *Core) answerEarly(now int64, s *session, hello []byte) {
	body := earlyRequest(hello)
	if body == nil || s.state != sessHalfOpen || s.hs == nil {
		return
	}
	cbuf := contactScratch()
	defer putContactScratch(cbuf)
	m, err := decodeMsgInto(body, cbuf)
	if err != nil || m.typ != mFindNode && m.typ != mFindValue {
		c.st.DroppedMalformed++
		return
	}
	if !c.admit(now, s, &m) {
		return
	}
	c.replyBudget = earlyAmplification*len(hello) - len(s.hs.ack)
	c.onMessage(now, s, &m)
	c.replyBudget = 0
}

// fitBudget returns body, the encoding of the answer m, cut to
// c.replyBudget bytes of DATA packet by leaving out its farthest contacts,
// or an empty body if its records alone do not fit.
func (c *Core) fitBudget(body []byte, m *msg) []byte {
	fits := func(b []byte) bool { return dataPrefix+len(b)+tagLen <= c.replyBudget }
	if fits(body) {
		c.st.EarlyAnswered++
		return body
	}
	cut := *m
	for len(cut.contacts) > 0 {
		cut.contacts = cut.contacts[:len(cut.contacts)-1]
		if b := appendMsg(body[:0], &cut); fits(b) {
			c.st.EarlyAnswered++
			return b
		}
	}
	c.st.EarlyTooLarge++
	return body[:0]
}

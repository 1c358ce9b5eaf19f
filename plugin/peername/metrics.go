package peername

import (
	"github.com/coredns/coredns/plugin"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Query results counted by queryCount.
const (
	resultAnswer      = "answer"
	resultNoData      = "nodata"
	resultNXDomain    = "nxdomain"
	resultServFail    = "servfail"
	resultRefused     = "refused"
	resultFallthrough = "fallthrough"
	resultNotImp      = "notimp"
)

// Reasons counted by droppedCount.
const (
	dropAuth            = "auth"
	dropPuzzle          = "puzzle"
	dropMalformed       = "malformed"
	dropRecordsRejected = "records_rejected"
	dropRateLimited     = "rate_limited"
	dropPrefixCap       = "prefix_cap"
	dropInboxFull       = "inbox_full"        // the event loop fell behind, its inbox was full
	dropInboxStale      = "inbox_stale"       // waited in the inbox past its useful life
	dropHalfOpenEvicted = "half_open_evicted" // handshakes answered, evicted before the joiner's first DATA
)

var (
	// queryCount counts the queries the plugin handled, by result.
	queryCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: "peername",
		Name:      "queries_total",
		Help:      "Counter of queries handled by the peername plugin, by result (answer, nodata, nxdomain, servfail, refused, notimp, fallthrough).",
	}, []string{"server", "result"})
	// searchDuration is the latency of overlay searches (cache misses).
	searchDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: plugin.Namespace,
		Subsystem: "peername",
		Name:      "search_duration_seconds",
		Buckets:   plugin.TimeBuckets,
		Help:      "Histogram of the time overlay searches took, by outcome (found, notfound, error).",
	}, []string{"outcome"})
	// routingTableSize is the number of peers in a node's routing table.
	routingTableSize = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: "peername",
		Name:      "routing_table_size",
		Help:      "Number of peers in the overlay node's routing table.",
	}, []string{"node"})
	// recordsStored is the number of records a node stores for the overlay.
	recordsStored = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: "peername",
		Name:      "records_stored",
		Help:      "Number of records the overlay node stores.",
	}, []string{"node"})
	// droppedCount counts what a node's defences and limits turned away.
	droppedCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: "peername",
		Name:      "dropped_total",
		Help:      "Counter of datagrams, contacts and records the overlay node turned away, by reason (auth, puzzle, malformed, records_rejected, rate_limited, prefix_cap, inbox_full, inbox_stale, half_open_evicted).",
	}, []string{"node", "reason"})
	// joinTries is how many attempts the node's current join (or, once
	// joined, its last one) took; joined says whether its routing table works.
	joinTries = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: "peername",
		Name:      "join_tries",
		Help:      "Join attempts of the overlay node's current join, or of its last one once joined.",
	}, []string{"node"})
	// modeGauge is 1 for the mode the node acts in (server or client).
	modeGauge = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: "peername",
		Name:      "mode",
		Help:      "1 for the mode the overlay node acts in (server, client), 0 for the other.",
	}, []string{"node", "mode"})
	// reachGauge is 1 for what dial-backs showed about the node.
	reachGauge = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: "peername",
		Name:      "reachability",
		Help:      "1 for what dial-backs showed about unsolicited datagrams to the overlay node (unknown, public, unreachable), 0 for the others.",
	}, []string{"node", "reachability"})
	joinedGauge = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: "peername",
		Name:      "joined",
		Help:      "1 when the overlay node has joined (its routing table works), 0 while it is alone and still trying.",
	}, []string{"node"})
	// retransmitCount counts the overlay requests and handshakes resent
	// after their retransmission timeout (a lossy network shows here
	// first).
	retransmitCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: "peername",
		Name:      "retransmits_total",
		Help:      "Counter of overlay requests and handshakes the node resent after their retransmission timeout, by kind (request, handshake).",
	}, []string{"node", "kind"})
	// requestTimeoutCount counts requests that failed with every resend
	// unanswered.
	requestTimeoutCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: "peername",
		Name:      "request_timeouts_total",
		Help:      "Counter of overlay requests that got no answer to any of their sends.",
	}, []string{"node"})
	// ownReplicas is, for each name the node publishes, how many nodes of
	// its replica set acknowledged the current record.
	ownReplicas = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: "peername",
		Name:      "own_replicas",
		Help:      "Number of nodes of its replica set that acknowledged the current record of each name this node publishes.",
	}, []string{"node", "name"})
	// publishCount counts the node's publish and unpublish operations.
	publishCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: "peername",
		Name:      "publishes_total",
		Help:      "Counter of publish operations of this node's own names, by operation (publish, unpublish) and result (ok, error).",
	}, []string{"op", "result"})
	// updateCount counts UPDATE messages, by result.
	updateCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: "peername",
		Name:      "updates_total",
		Help:      "Counter of DNS UPDATE messages handled by the peername plugin, by result (ok, refused, notauth, notzone, formerr, prereq, servfail; expired counts leases that ran out).",
	}, []string{"server", "result"})
)

// queryResults are queryCount's results, in the order of a server's
// counters.
var queryResults = [...]string{resultAnswer, resultNoData, resultNXDomain, resultServFail, resultRefused, resultFallthrough, resultNotImp}

// serverCounters are queryCount's children for one server, one per result
// of queryResults, resolved once: WithLabelValues hashes the labels and
// looks the child up in a locked map on every call.
type serverCounters [len(queryResults)]prometheus.Counter

// count adds one to queryCount for server and result.
func (p *Peername) count(server, result string) {
	c, ok := p.counters.Load(server)
	if !ok {
		var sc serverCounters
		for i, r := range queryResults {
			sc[i] = queryCount.WithLabelValues(server, r)
		}
		c, _ = p.counters.LoadOrStore(server, &sc)
	}
	sc := c.(*serverCounters)
	for i, r := range queryResults {
		if r == result {
			sc[i].Inc()
			return
		}
	}
	queryCount.WithLabelValues(server, result).Inc()
}

package sim

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"time"
)

// Series is what a run measured over virtual time (Report.Series).
type Series struct {
	// Lookups holds every workload lookup, in completion order.
	Lookups []LookupSample
	// Traffic holds the datagrams sent in each virtual second, from Epoch.
	Traffic []Second
}

// LookupSample is one workload lookup.
type LookupSample struct {
	At      time.Duration // virtual time of its completion, since Epoch
	Latency time.Duration // from issue to completion
	Hops    int
	OK      bool // returned the owner's current record
}

// Report is the outcome of a run. Every lookup the workload scheduled is in
// exactly one of Succeeded, Stale, WrongRecord, Timeouts, NotFound,
// Inconclusive, HopLimit,
// OtherErrors, Unfinished and NotIssued; Failures is their sum minus
// Succeeded.
type Report struct {
	Nodes   int    `json:"nodes"`
	Seed    uint64 `json:"seed"`
	Lookups int    `json:"lookups"`

	Succeeded   int     `json:"succeeded"`
	SuccessRate float64 `json:"success_rate"`
	Failures    int     `json:"failures"`
	Timeouts    int     `json:"timeouts"`
	NotFound    int     `json:"not_found"`
	// Inconclusive: nothing found, but the closest nodes did not all answer
	// (overlay.ErrInconclusive; SERVFAIL, not NXDOMAIN, in the plugin).
	Inconclusive int `json:"inconclusive"`
	// Replica census at the end of the run (census.go): live honest nodes
	// other than the owner holding each live name's current record.
	ReplicasMin     int     `json:"replicas_min"`
	ReplicasMean    float64 `json:"replicas_mean"`
	ReplicaTarget   int     `json:"replica_target"` // min(Replication, live nodes - 1)
	UnderReplicated int     `json:"under_replicated"`
	// With nodes behind NAT (Network.NAT): the names whose current record
	// no live node outside NAT holds (owner excepted): lost to the cloud,
	// since nobody can reach the nodes that hold them; and the mean number
	// of reachable replicas.
	RecordsLost           int     `json:"records_lost"`
	ReachableReplicasMean float64 `json:"reachable_replicas_mean"`
	// Modes at the end of the run (reach.go): live nodes behind NAT, those
	// of them acting as clients and those still serving; reachable nodes
	// acting as clients (should be 0 in mode auto) and those whose
	// reachability dial-backs confirmed.
	NATNodes        int    `json:"nat_nodes"`
	NATClients      int    `json:"nat_clients"`
	NATServing      int    `json:"nat_serving"`
	PublicClients   int    `json:"public_clients"`
	PublicConfirmed int    `json:"public_confirmed"`
	NATFiltered     uint64 `json:"nat_filtered"` // unsolicited datagrams the NAT filters dropped
	Stale           int    `json:"stale"`        // an older record of the name
	WrongRecord     int    `json:"wrong_record"` // no error, but no record of the name's owner
	HopLimit        int    `json:"hop_limit"`
	OtherErrors     int    `json:"other_errors"`
	// OtherErrorKinds counts the other errors by message.
	OtherErrorKinds map[string]int `json:"other_error_kinds,omitempty"`
	Unfinished      int            `json:"unfinished"` // no completion by the end of the run
	NotIssued       int            `json:"not_issued"` // no live name or source to use

	HopsMean     float64 `json:"hops_mean"` // over successful lookups
	HopsP99      float64 `json:"hops_p99"`
	HopsMax      int     `json:"hops_max"`
	LatencyP50ms float64 `json:"latency_p50_ms"` // virtual time, successful lookups
	LatencyP99ms float64 `json:"latency_p99_ms"`

	// Traffic per live node per virtual second, over the whole run and over
	// the lookup phase alone.
	MsgsPerNodePerS        float64 `json:"msgs_per_node_per_s"`
	BytesPerNodePerS       float64 `json:"bytes_per_node_per_s"`
	LookupMsgsPerNodePerS  float64 `json:"lookup_phase_msgs_per_node_per_s"`
	LookupBytesPerNodePerS float64 `json:"lookup_phase_bytes_per_node_per_s"`

	// HeapBytesPerNode is the Go heap in use (after a GC) when the lookup
	// phase starts, less the heap before the run, divided by the live nodes:
	// cores, engine and workload state together.
	HeapBytesPerNode float64 `json:"heap_bytes_per_node"`
	WallS            float64 `json:"wall_s"`
	VirtualS         float64 `json:"virtual_s"`

	Joined          int `json:"joined"` // nodes whose join completed by the lookup phase
	JoinRetries     int `json:"join_retries"`
	JoinFailures    int `json:"join_failures"`
	Names           int `json:"names"`
	Published       int `json:"published"`
	PublishRetries  int `json:"publish_retries"`
	PublishFailures int `json:"publish_failures"`
	FailedNodes     int `json:"failed_nodes"`
	LateJoins       int `json:"late_joins"`

	// Flash crowd (Config.FlashCrowd), at the start of the lookup phase: the
	// crowd's join times (first try to joined), how many joined within 10,
	// 30 and 60 s, how many were still alone; the processing budget's
	// datagrams that waited in an inbox or found it full.
	JoinTimes   []time.Duration `json:"-"`
	JoinP50ms   float64         `json:"join_p50_ms,omitempty"`
	JoinP90ms   float64         `json:"join_p90_ms,omitempty"`
	JoinP99ms   float64         `json:"join_p99_ms,omitempty"`
	JoinMaxMs   float64         `json:"join_max_ms,omitempty"`
	JoinedIn10s int             `json:"joined_in_10s,omitempty"`
	JoinedIn30s int             `json:"joined_in_30s,omitempty"`
	JoinedIn60s int             `json:"joined_in_60s,omitempty"`
	Alone       int             `json:"alone"`
	Queued      uint64          `json:"queued,omitempty"`
	Overloaded  uint64          `json:"overloaded,omitempty"`
	InboxStale  uint64          `json:"inbox_stale,omitempty"`
	MaxInbox    int             `json:"max_inbox,omitempty"`

	Probes           int `json:"probes"`
	ProbeRetries     int `json:"probe_retries"`
	Sweeps           int `json:"sweeps"`
	RecordsChecked   int `json:"records_checked"`
	MaxRoutingTable  int `json:"max_routing_table"`
	MaxRecordsStored int `json:"max_records_stored"`
	MaxPending       int `json:"max_pending"`
	// Replica census of the -check sweep (World.censusSweep): checks of a
	// live name two ticks or more after its last publish, republish or
	// change of membership, and how many found it held by fewer than
	// CensusTarget nodes (each also a violation).
	CensusChecks int `json:"census_checks"`
	CensusShort  int `json:"census_short"`

	Events   uint64 `json:"events"`
	MaxQueue int    `json:"max_queue"`
	Sent     uint64 `json:"datagrams"`
	Lost     uint64 `json:"lost"`
	// Messages sent as several fragments (Network.MaxDatagram), and those
	// of them lost with a fragment (counted in Lost too).
	Fragmented   uint64 `json:"fragmented"`
	FragmentLost uint64 `json:"fragment_lost"`
	Duplicated   uint64 `json:"duplicated"`
	Partitioned  uint64 `json:"partitioned"`
	ToDead       uint64 `json:"to_failed_nodes"`
	Trace        string `json:"trace"`

	Attack *AttackReport `json:"attack,omitempty"` // with -malicious

	// Series holds the run's samples over virtual time, for plots.
	Series *Series `json:"-"`

	Violations    int      `json:"violations"`
	ViolationList []string `json:"violation_list,omitempty"`
}

// WriteText prints the report for a person.
func (r *Report) WriteText(out io.Writer) error {
	_, err := fmt.Fprintf(out, `peername overlay simulation (seed %d, trace %s)
nodes            %d (joined %d, failed %d, late joins %d; join retries %d, failures %d)
names            %d published of %d (publish retries %d, failures %d)
lookups          %d: %d ok = %.4f%%  failures %d (timeout %d, not found %d, inconclusive %d, stale %d, wrong %d, hop limit %d, other %d, unfinished %d, not issued %d)
hops             mean %.2f  p99 %.0f  max %d
latency          p50 %.1f ms  p99 %.1f ms (virtual)
traffic          %.2f msgs/node/s  %.0f bytes/node/s (run); %.2f msgs/node/s  %.0f bytes/node/s (lookup phase)
memory           %.0f heap bytes/node
checks           %d probes (%d retried), %d node sweeps, %d held records verified, %d replica census checks (%d short), %d violations
network          %d datagrams, %d lost (%d fragmented messages, %d lost with a fragment), %d duplicated, %d partitioned, %d to failed nodes; %d events, max queue %d
time             %.0f s virtual, %.1f s wall
`,
		r.Seed, r.Trace,
		r.Nodes, r.Joined, r.FailedNodes, r.LateJoins, r.JoinRetries, r.JoinFailures,
		r.Published, r.Names, r.PublishRetries, r.PublishFailures,
		r.Lookups, r.Succeeded, 100*r.SuccessRate, r.Failures, r.Timeouts, r.NotFound, r.Inconclusive, r.Stale, r.WrongRecord, r.HopLimit, r.OtherErrors, r.Unfinished, r.NotIssued,
		r.HopsMean, r.HopsP99, r.HopsMax,
		r.LatencyP50ms, r.LatencyP99ms,
		r.MsgsPerNodePerS, r.BytesPerNodePerS, r.LookupMsgsPerNodePerS, r.LookupBytesPerNodePerS,
		r.HeapBytesPerNode,
		r.Probes, r.ProbeRetries, r.Sweeps, r.RecordsChecked, r.CensusChecks, r.CensusShort, r.Violations,
		r.Sent, r.Lost, r.Fragmented, r.FragmentLost, r.Duplicated, r.Partitioned, r.ToDead, r.Events, r.MaxQueue,
		r.VirtualS, r.WallS)
	if err != nil {
		return fmt.Errorf("sim: write report: %w", err)
	}
	if len(r.JoinTimes) > 0 || r.Alone > 0 {
		if _, err := fmt.Fprintf(out, "flash crowd      joined p50 %.0f ms  p90 %.0f ms  p99 %.0f ms  max %.0f ms; within 10 s %d, 30 s %d, 60 s %d; alone %d\nbudget           %d datagrams waited in an inbox, %d dropped at a full inbox, %d for waiting too long (max %d waiting)\n",
			r.JoinP50ms, r.JoinP90ms, r.JoinP99ms, r.JoinMaxMs, r.JoinedIn10s, r.JoinedIn30s, r.JoinedIn60s, r.Alone,
			r.Queued, r.Overloaded, r.InboxStale, r.MaxInbox); err != nil {
			return fmt.Errorf("sim: write report: %w", err)
		}
		if n := len(r.JoinTimes); n > 0 {
			line := "join time CDF   "
			for d := 1; d <= 10; d++ {
				line += fmt.Sprintf(" p%d %.1fs", d*10, r.JoinTimes[min(n-1, d*n/10)].Seconds())
			}
			if _, err := fmt.Fprintln(out, line); err != nil {
				return fmt.Errorf("sim: write report: %w", err)
			}
			hist := "joined per second"
			for s := 0; s <= int(r.JoinTimes[n-1].Seconds()); s++ {
				c := 0
				for _, d := range r.JoinTimes {
					if int(d.Seconds()) == s {
						c++
					}
				}
				hist += fmt.Sprintf(" [%d,%d)s:%d", s, s+1, c)
			}
			if _, err := fmt.Fprintln(out, hist); err != nil {
				return fmt.Errorf("sim: write report: %w", err)
			}
		}
	}
	if _, err := fmt.Fprintf(out, "modes            %d behind NAT: %d clients, %d serving; %d reachable clients, %d confirmed public; %d unsolicited datagrams filtered\nreplicas         min %d mean %.2f (target %d, under-replicated %d); outside NAT mean %.2f, records lost %d\n",
		r.NATNodes, r.NATClients, r.NATServing, r.PublicClients, r.PublicConfirmed, r.NATFiltered,
		r.ReplicasMin, r.ReplicasMean, r.ReplicaTarget, r.UnderReplicated, r.ReachableReplicasMean, r.RecordsLost); err != nil {
		return fmt.Errorf("sim: write report: %w", err)
	}
	for _, k := range slices.Sorted(maps.Keys(r.OtherErrorKinds)) {
		if _, err := fmt.Fprintf(out, "other error      %d × %s\n", r.OtherErrorKinds[k], k); err != nil {
			return fmt.Errorf("sim: write report: %w", err)
		}
	}
	if a := r.Attack; a != nil {
		if _, err := fmt.Fprintf(out, "attack           %s by %d colluding nodes (%.0f%%), defence %v: honest ok %.4f%%, forged accepted %d, stale accepted %d, eclipsed %d\n",
			a.Kind, a.Malicious, 100*a.Fraction, a.Defence, 100*a.HonestSuccessRate, a.ForgedAccepted, a.StaleAccepted, a.Eclipsed); err != nil {
			return fmt.Errorf("sim: write report: %w", err)
		}
	}
	for _, v := range r.ViolationList {
		if _, err := fmt.Fprintf(out, "VIOLATION %s\n", v); err != nil {
			return fmt.Errorf("sim: write report: %w", err)
		}
	}
	return nil
}

package overlay

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/records"
)

// Defaults for Config fields left at zero. docs/protocol.md gives the reason
// for each value.
const (
	DefaultCloud           = "global"
	DefaultK               = 16
	DefaultAlpha           = 3
	DefaultReplication     = 16
	DefaultRecordLifetime  = time.Hour
	DefaultRequestTimeout  = time.Second
	DefaultSearchTimeout   = 10 * time.Second
	DefaultMaxHops         = 16
	DefaultRefreshInterval = 15 * time.Minute
	DefaultTickInterval    = 30 * time.Second
	DefaultPingAge         = time.Minute
	DefaultSessionIdle     = 2 * time.Minute
	DefaultValueGrace      = 250 * time.Millisecond
	DefaultMaxSessions     = 256
	DefaultMaxHalfOpen     = 2048
	DefaultMaxRecords      = 4096
	DefaultMaxRecordBytes  = 8 << 20
	DefaultMaxPerSource    = 1024
	DefaultMaxPublishers   = 8
	DefaultMaxPerPublisher = 256
	DefaultMaxPending      = 512
	DefaultMaxOps          = 256
	DefaultMaxRangeKeys    = 64
	DefaultMaxFails        = 2
	maxK                   = 32
	maxContactsPerMessage  = 32
	maxKeysPerMessage      = 64
	maxRecordsPerMessage   = 16
	maxQueuedPerHandshake  = 16
	maxValueMessageBytes   = 60 << 10 // keeps every datagram under 64 KiB
)

// Config holds a Core's identity and tunables. Zero values select the defaults above.
type Config struct {
	// Identity is the node's key pair; its NodeID is the node's overlay ID. Required.
	Identity *identity.Identity
	// Cloud separates overlays sharing a network; nodes of different clouds never talk.
	Cloud string
	// Seed seeds the PCG that is the core's only source of randomness. The UDP
	// driver must seed it from crypto/rand; the simulator from its run seed.
	Seed uint64
	// K is the bucket size and the size of a lookup's result set (max 32).
	K int
	// Alpha is the number of parallel requests of an iterative lookup.
	Alpha int
	// Replication is the number of closest nodes a record is stored on (max 32).
	Replication int
	// RecordLifetime is the lifetime of records this node signs (Publish);
	// owners republish at half of it.
	RecordLifetime time.Duration
	// RequestTimeout bounds one request, handshake included.
	RequestTimeout time.Duration
	// SearchTimeout is the deadline of a search whose SearchOptions has none.
	SearchTimeout time.Duration
	// MaxHops is the hop limit of a search whose SearchOptions has none.
	MaxHops int
	// RefreshInterval: a bucket with no lookup in this long is refreshed.
	RefreshInterval time.Duration
	// TickInterval is the period of the maintenance timer (refresh, republish,
	// expiry, re-replication, session ageing).
	TickInterval time.Duration
	// PingAge: the least-recently-seen contact of a full bucket is pinged before a
	// newcomer is refused if it was last heard from longer ago than this.
	PingAge time.Duration
	// SessionIdle: sessions unused for this long are closed.
	SessionIdle time.Duration
	// ValueGrace: once a Resolve found a record it waits at most this long for
	// answers already in flight (to prefer the newest replica) before completing.
	ValueGrace time.Duration
	// MaxSessions bounds the sessions in use (established, and those this
	// node initiated); MaxHalfOpen, separately, the half-open ones it
	// answered a HELLO for and that wait for the initiator's first DATA
	// (default DefaultMaxHalfOpen: ~0.6 KB each). A seed answering a crowd
	// of joiners holds one half-open session per joiner for a round trip
	// plus its inbox's wait: 2,048 covers ~3,000 handshakes a second (one
	// core's worth) with 0.7 s between HELLO and first DATA.
	MaxSessions int
	MaxHalfOpen int
	// MaxRecords and MaxRecordBytes bound the records this node stores for others.
	MaxRecords     int
	MaxRecordBytes int
	// MaxPerSource bounds the records stored on behalf of one source IP address.
	MaxPerSource int
	// MaxPublishers bounds the publishers kept for one unsecured name.
	MaxPublishers int
	// MaxPerPublisher bounds the records stored for others under one
	// publisher key (all the names one key signs).
	MaxPerPublisher int
	// MaxPending bounds outstanding requests; MaxOps bounds concurrent operations.
	MaxPending int
	MaxOps     int
	// MaxRangeKeys bounds the keys a Range search returns.
	MaxRangeKeys int
	// MaxFails is the number of consecutive timeouts after which a contact is evicted.
	MaxFails int
	// CanReach, when set, tells which addresses the driver can send to (e.g.
	// an IPv4-only node cannot reach IPv6 contacts); lookups skip the others.
	CanReach func(netip.AddrPort) bool
	// SkipJoinRefresh disables the bucket refresh lookups that follow a join's
	// self-lookup (the periodic refresh still runs).
	SkipJoinRefresh bool
	// RateLimits are the per-source request, store and handshake limits (ratelimit.go).
	RateLimits RateLimits
	// Defence switches the defences against hostile nodes (defence.go).
	Defence Defence
	// Intercept, when set, sees every FIND_NODE, FIND_VALUE, STORE, NEAREST
	// and RANGE request of an authenticated peer before the core handles it,
	// and may answer or drop it (Request). It is the one hook through which
	// the simulator's hostile nodes (overlay/sim) lie; a real node leaves it
	// nil.
	Intercept func(*Request)
	// PuzzleBits is the difficulty D of the identity puzzle (puzzle.go), a
	// parameter of the cloud: this node's certificate carries a nonce whose
	// hash with its key has D leading zero bits (~2^D hashes to find), and
	// handshakes with peers whose certificates fall short are refused
	// (Stats.DroppedPuzzle). Like Seed, it is the driver's choice: the UDP
	// driver (overlay/node) uses DefaultPuzzleBits when it is zero; the
	// simulator, which builds tens of thousands of cores, a small D (its
	// -puzzle flag). The core takes it as given: 0 or a negative value means
	// no puzzle; above MaxPuzzleBits is ErrBadConfig.
	PuzzleBits int
	// Mode is the node's role (reach.go): ModeAuto (the zero value) serves
	// until dial-backs through two independent peers show that unsolicited
	// datagrams do not reach it, then acts as a client; ModeServer always
	// serves; ModeClient never does (never in peers' routing tables, stores
	// nothing for others, still resolves and publishes).
	Mode Mode
	// LocalAddrs are the addresses the driver's sockets are bound to (with
	// their ports). Peers of two groups agreeing that they see the node at
	// one of them, a non-global (LAN, loopback) address, shows no NAT is in
	// between: the node counts as reachable without a dial-back.
	LocalAddrs []netip.AddrPort
	// PuzzleNonce is a precomputed solution for Identity at PuzzleBits
	// (SolvePuzzle). If it is not one (say, left at zero), NewCore solves the
	// puzzle itself, which takes ~2^PuzzleBits hashes.
	PuzzleNonce uint64
}

// ApplyDefaults fills c's zero fields with the defaults NewCore uses and
// checks the result; an invalid config is ErrBadConfig (or ErrNoIdentity).
// A driver calls it to validate a config before it builds the core.
func (c *Config) ApplyDefaults() error {
	if c.Identity == nil {
		return ErrNoIdentity
	}
	if c.Cloud == "" {
		c.Cloud = DefaultCloud
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.K, DefaultK)
	def(&c.Alpha, DefaultAlpha)
	def(&c.Replication, DefaultReplication)
	def(&c.MaxHops, DefaultMaxHops)
	def(&c.MaxSessions, DefaultMaxSessions)
	def(&c.MaxHalfOpen, DefaultMaxHalfOpen)
	def(&c.MaxRecords, DefaultMaxRecords)
	def(&c.MaxRecordBytes, DefaultMaxRecordBytes)
	def(&c.MaxPerSource, DefaultMaxPerSource)
	def(&c.MaxPublishers, DefaultMaxPublishers)
	def(&c.MaxPerPublisher, DefaultMaxPerPublisher)
	c.RateLimits.applyDefaults()
	def(&c.MaxPending, DefaultMaxPending)
	def(&c.MaxOps, DefaultMaxOps)
	def(&c.MaxRangeKeys, DefaultMaxRangeKeys)
	def(&c.MaxFails, DefaultMaxFails)
	if c.Mode > ModeClient {
		return fmt.Errorf("%w: mode %d", ErrBadConfig, c.Mode)
	}
	if c.PuzzleBits > MaxPuzzleBits {
		return fmt.Errorf("%w: PuzzleBits %d above %d", ErrBadConfig, c.PuzzleBits, MaxPuzzleBits)
	}
	defd(&c.RecordLifetime, DefaultRecordLifetime)
	defd(&c.RequestTimeout, DefaultRequestTimeout)
	defd(&c.SearchTimeout, DefaultSearchTimeout)
	defd(&c.RefreshInterval, DefaultRefreshInterval)
	defd(&c.TickInterval, DefaultTickInterval)
	defd(&c.PingAge, DefaultPingAge)
	defd(&c.SessionIdle, DefaultSessionIdle)
	defd(&c.ValueGrace, DefaultValueGrace)
	if c.K > maxK || c.Replication > maxK {
		return ErrBadConfig
	}
	if c.Alpha > c.K {
		c.Alpha = c.K
	}
	if c.MaxRangeKeys > maxKeysPerMessage {
		c.MaxRangeKeys = maxKeysPerMessage
	}
	if c.MaxSessions < 8 {
		c.MaxSessions = 8
	}
	return nil
}

// OpID identifies an API call; its Completion carries the same OpID.
type OpID uint64

// Send is a datagram the driver must send. Data may exceed 1,200 bytes (a
// VALUE with 4 KiB payloads); the UDP driver fragments it.
type Send struct {
	To   netip.AddrPort
	Data []byte
}

// Path describes how a search went.
type Path struct {
	// Hops is the depth, counted in referrals from this node's own routing table
	// (a node found in the table is hop 1), of the node that answered; for node
	// lookups, the deepest node of the final closest set.
	Hops int
	// Asked is the number of requests sent; Timeouts how many of them got no answer.
	Asked    int
	Timeouts int
	// Nodes is the referral chain that led to the answer, first hop first.
	Nodes []identity.Key
}

// Completion reports the end of an operation started by an API call.
type Completion struct {
	Op OpID
	// Records: for Resolve, the verified live records (newest first; an
	// unsecured name may have several publishers); for Publish and Unpublish,
	// the record this node signed.
	Records []*records.Record
	// Keys: for Nearest and Range, the registered keys found (Nearest: closest
	// first by XOR distance; Range: ascending).
	Keys []identity.Key
	Path Path
	// Stored is the number of nodes that acknowledged a Publish/Unpublish/Store.
	Stored int
	Err    error
}

// SearchOptions bound one search. Zero values select Config.SearchTimeout and Config.MaxHops.
type SearchOptions struct {
	Deadline time.Time
	MaxHops  int
}

// Stats is a snapshot of a core's state sizes, their bounds and its counters.
type Stats struct {
	ID                   identity.Key
	Joined               bool // a join's self-lookup reached at least one node
	Alone                bool // the routing table is empty
	RoutingTableSize     int
	RoutingTableMax      int // 256 buckets * K in theory; buckets in use * K in practice
	ReplacementCacheSize int
	Sessions             int
	HalfOpenSessions     int
	MaxHalfOpen          int
	MaxSessions          int
	RecordsStored        int
	RecordBytes          int
	MaxRecords           int
	MaxRecordBytes       int
	MaxSourceRecords     int // records attributed to the busiest source address
	OwnedRecords         int
	PendingRequests      int
	MaxPending           int
	ActiveOps            int
	MaxOps               int
	TimerEntries         int
	// Counters since NewCore.
	MsgsSent, MsgsReceived   uint64
	BytesSent, BytesReceived uint64
	HandshakesStarted        uint64
	HandshakesCompleted      uint64
	Retransmits              uint64 // requests resent after their retransmission timeout
	HandshakesResent         uint64 // HELLOs resent for a request waiting on a handshake
	RequestTimeouts          uint64 // requests failed at the end of their lifetime, every resend unanswered
	DroppedAuth              uint64 // failed authentication, replays, unknown sessions
	DroppedPuzzle            uint64 // handshakes refused for a certificate puzzle below PuzzleBits (also in DroppedAuth)
	DroppedCloud             uint64 // datagrams of another cloud
	DroppedMalformed         uint64
	RecordsRejected          uint64 // STOREs refused (bad signature, stale, bounds)
	RateLimited              uint64 // requests dropped over the per-source request limit
	StoresRateLimited        uint64 // STOREs refused unverified over the per-source store limit
	HandshakesRateLimited    uint64 // HELLOs dropped over the per-source handshake limit
	EarlyAnswered            uint64 // requests answered from the HELLO that carried them (early.go)
	EarlyTooLarge            uint64 // early requests left unanswered: the answer's records alone exceed earlyAmplification times the HELLO
	HalfOpenEvicted          uint64 // half-open sessions evicted for a newer HELLO at MaxHalfOpen (their initiator must handshake again)
	PrefixRefused            uint64 // contacts and lookup candidates turned away by Defence.PrefixCap
}

// Errors reported in Completion.Err or by NewCore. Test them with errors.Is.
var (
	ErrNoIdentity = errors.New("overlay: config has no identity")
	ErrBadConfig  = errors.New("overlay: invalid config")
	ErrNotFound   = errors.New("overlay: not found")
	// ErrWithdrawn: the newest record for the name is a signed withdrawal.
	// errors.Is(ErrWithdrawn, ErrNotFound) holds.
	ErrWithdrawn = wrapNotFound("overlay: name withdrawn by its owner")
	ErrTimeout   = errors.New("overlay: search deadline passed")
	ErrHopLimit  = errors.New("overlay: hop limit reached")
	ErrAlone     = errors.New("overlay: no reachable peer")
	// ErrInconclusive: nothing was found, but the lookup did not hear the
	// closest nodes responsible for the key (some of them timed out, or were
	// never asked), so it cannot tell that the key holds nothing. It does not
	// wrap ErrNotFound: a DNS front end answers SERVFAIL, not NXDOMAIN, and
	// caches nothing. A node that had peers and lost them all reports
	// ErrInconclusive wrapping ErrAlone.
	ErrInconclusive = errors.New("overlay: inconclusive, the closest nodes did not all answer")
	ErrBusy         = errors.New("overlay: too many concurrent operations")
	ErrNotStored    = errors.New("overlay: no node acknowledged the store")
	ErrLeft         = errors.New("overlay: node has left the overlay")
	ErrBadRecord    = errors.New("overlay: record refused")
	ErrNotOwned     = errors.New("overlay: name not published by this node")
	ErrMalformed    = errors.New("overlay: malformed message")
	ErrWrongCloud   = errors.New("overlay: message from another cloud")
	ErrVersion      = errors.New("overlay: unsupported protocol version")
)

type notFoundErr struct{ msg string }

func (e notFoundErr) Error() string        { return e.msg }
func (e notFoundErr) Is(target error) bool { return target == ErrNotFound }

func wrapNotFound(msg string) error { return notFoundErr{msg} }

// inconclusiveAlone is ErrInconclusive and ErrAlone at once: the node is
// alone now, but it had peers, so "nobody here has it" proves nothing.
type inconclusiveAloneErr struct{}

func (inconclusiveAloneErr) Error() string {
	return "overlay: inconclusive: no reachable peer left (the node had peers)"
}
func (inconclusiveAloneErr) Is(target error) bool {
	return target == ErrInconclusive || target == ErrAlone
}

// errInconclusiveAlone is reported instead of ErrAlone by a node that had
// peers: errors.Is holds for both ErrInconclusive and ErrAlone.
var errInconclusiveAlone error = inconclusiveAloneErr{}

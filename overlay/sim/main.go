package sim

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrBadFlag is wrapped by the errors of the flag value parsers.
var ErrBadFlag = errors.New("sim: bad flag value")

// DefaultPuzzleBits is the identity puzzle difficulty of `peername sim`
// (-puzzle): a real node's default (overlay.DefaultPuzzleBits, ~2^20 hashes)
// would cost tens of thousands of virtual nodes hours of CPU before the
// first datagram; 8 bits (~256 hashes, ~40 µs a node) still puts a real
// puzzle in every certificate and checks it in every handshake. The cost of
// minting identities does not change what the simulator measures.
const DefaultPuzzleBits = 8

// ParseRTT parses "MIN:MAX" (e.g. "20ms:200ms") or a single duration for a
// fixed RTT.
func ParseRTT(s string) (lo, hi time.Duration, err error) {
	a, b, found := strings.Cut(s, ":")
	if lo, err = time.ParseDuration(a); err != nil {
		return 0, 0, fmt.Errorf("%w: rtt %q: %w", ErrBadFlag, s, err)
	}
	hi = lo
	if found {
		if hi, err = time.ParseDuration(b); err != nil {
			return 0, 0, fmt.Errorf("%w: rtt %q: %w", ErrBadFlag, s, err)
		}
	}
	if lo < 0 || hi < lo || hi > time.Hour {
		return 0, 0, fmt.Errorf("%w: rtt %q: want 0 <= MIN <= MAX <= 1h", ErrBadFlag, s)
	}
	return lo, hi, nil
}

// ParsePartition parses "START:END:FRACTION" (e.g. "200s:260s:0.5"): from
// START to END of virtual time, the given fraction of the nodes (chosen by
// a hash of the seed) cannot reach the others. END 0 means it never heals.
func ParsePartition(s string, seed uint64, nodes int) (Partition, error) {
	f := strings.Split(s, ":")
	if len(f) != 3 {
		return Partition{}, fmt.Errorf("%w: partition %q: want START:END:FRACTION", ErrBadFlag, s)
	}
	start, err1 := time.ParseDuration(f[0])
	end, err2 := time.ParseDuration(f[1])
	frac, err3 := strconv.ParseFloat(f[2], 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return Partition{}, fmt.Errorf("%w: partition %q: %w", ErrBadFlag, s, err)
	}
	if start < 0 || (end != 0 && end <= start) || !(frac > 0 && frac < 1) {
		return Partition{}, fmt.Errorf("%w: partition %q: want 0 <= START < END (or END 0) and 0 < FRACTION < 1", ErrBadFlag, s)
	}
	if nodes < 0 || nodes > 1<<24 {
		return Partition{}, fmt.Errorf("%w: partition over %d nodes", ErrBadFlag, nodes)
	}
	p := Partition{Start: start, End: end, Group: make([]uint8, nodes)}
	cut := uint64(frac * (1 << 32))
	for i := range p.Group {
		if Derive(seed, "partition", uint64(i))&(1<<32-1) < cut {
			p.Group[i] = 1
		}
	}
	return p, nil
}

// ReplayArgs is the command line that replays a run: the same flags, with the
// seed made explicit.
func ReplayArgs(args []string, seed uint64) string {
	out := make([]string, 0, len(args)+1)
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "-seed" || a == "--seed" {
			i++
			continue
		}
		if strings.HasPrefix(a, "-seed=") || strings.HasPrefix(a, "--seed=") {
			continue
		}
		out = append(out, a)
	}
	return strings.Join(append(out, "-seed", strconv.FormatUint(seed, 10)), " ")
}

// NATNodes returns which of nodes nodes sit behind NAT: each with
// probability frac (decided by a hash of the seed and the index), except
// the first seeds nodes, which a cloud's operators run reachable (a node
// behind NAT cannot be anybody's seed).
func NATNodes(frac float64, seed uint64, nodes, seeds int) ([]bool, error) {
	if !(frac >= 0 && frac < 1) {
		return nil, fmt.Errorf("%w: nat %v: want 0 <= FRACTION < 1", ErrBadFlag, frac)
	}
	if nodes < 0 || nodes > 1<<24 {
		return nil, fmt.Errorf("%w: nat over %d nodes", ErrBadFlag, nodes)
	}
	out := make([]bool, nodes)
	cut := uint64(frac * (1 << 32))
	for i := max(seeds, 0); i < nodes; i++ {
		out[i] = Derive(seed, "nat", uint64(i))&(1<<32-1) < cut
	}
	return out, nil
}

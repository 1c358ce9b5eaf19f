package sim

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/peername/peername/overlay"
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

// puzzleFlag registers -puzzle; the returned function range-checks it into
// cfg.Core.PuzzleBits (0 = no puzzle).
func puzzleFlag(fs *flag.FlagSet) func(cfg *Config) error {
	bits := fs.Int("puzzle", DefaultPuzzleBits, fmt.Sprintf("identity puzzle difficulty `BITS` of every node, 0 (none) to %d", overlay.MaxPuzzleBits))
	return func(cfg *Config) error {
		if *bits < 0 || *bits > overlay.MaxPuzzleBits {
			return fmt.Errorf("%w: -puzzle %d: want 0 to %d bits", ErrBadFlag, *bits, overlay.MaxPuzzleBits)
		}
		cfg.Core.PuzzleBits = *bits
		return nil
	}
}

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

// Main implements `peername sim`: it runs one simulation and prints its
// report, as text or (-json) one JSON object. It returns the process exit
// code: 0 on success, 1 if an invariant failed (the seed is printed), 2 for
// bad usage.
func Main(args []string, stdout, stderr io.Writer) int {
	return run(args, stdout, stderr, nil)
}

// run is Main with the core constructor as a parameter (nil = overlay.NewCore),
// so tests can run the command against misbehaving cores.
func run(args []string, stdout, stderr io.Writer, newCore func(int, overlay.Config) (Core, error)) int {
	fs := flag.NewFlagSet("peername sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg         Config
		rtt         = fs.String("rtt", "20ms:200ms", "round-trip time of a link, MIN:MAX (uniform per link)")
		partition   = fs.String("partition", "", "START:END:FRACTION: cut FRACTION of the nodes off from START to END of virtual time")
		jsonOut     = fs.Bool("json", false, "print one JSON object")
		quiet       = fs.Bool("quiet", false, "no progress on stderr")
		cpuprofile  = fs.String("cpuprofile", "", "write a CPU profile to this file")
		lookupPhase = fs.Duration("lookup-phase", 120*time.Second, "virtual time over which lookups, failures and late joins are spread")
	)
	fs.IntVar(&cfg.Nodes, "nodes", 2000, "nodes that join at the start")
	fs.IntVar(&cfg.Lookups, "lookups", 10000, "lookups of published names")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "seed of every random choice of the run")
	fs.Float64Var(&cfg.Fail, "fail", 0, "fraction of nodes that fail silently during the lookup phase")
	fs.Float64Var(&cfg.JoinLate, "join-late", 0, "fraction of extra nodes joining during the lookup phase")
	fs.Float64Var(&cfg.Net.Loss, "loss", 0, "probability a datagram is lost")
	fs.Float64Var(&cfg.Net.Duplicate, "dup", 0, "probability a datagram is delivered twice")
	fs.Float64Var(&cfg.Net.Reorder, "reorder", 0, "probability a datagram is held back (reordered)")
	fs.Float64Var(&cfg.Publishers, "publishers", 0.1, "fraction of nodes that publish a name")
	fs.Float64Var(&cfg.JoinRate, "join-rate", 0, "joins per virtual second (0 = max(100, nodes/60))")
	fs.DurationVar(&cfg.LookupTimeout, "timeout", 10*time.Second, "deadline of one lookup")
	fs.DurationVar(&cfg.CheckEvery, "check", 0, "virtual period of the state sweep (bounds, held records verify); 0 = off")
	fs.DurationVar(&cfg.ProbeEvery, "probe", 0, "virtual period of the probe that every live owner's name resolves; 0 = off")
	fs.BoolVar(&cfg.HashData, "hash-data", false, "fold datagram contents into the trace hash")
	fs.IntVar(&cfg.Core.K, "k", 0, "bucket size K (0 = core default)")
	fs.IntVar(&cfg.Core.Alpha, "alpha", 0, "lookup parallelism (0 = core default)")
	fs.IntVar(&cfg.Core.Replication, "replication", 0, "replication factor (0 = core default)")
	applyAttack := AttackFlags(fs)
	applyPuzzle := puzzleFlag(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: peername sim [-nodes N] [-lookups L] [-seed S] [-fail F] [-loss P] [-rtt MIN:MAX] [-json] [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "peername sim: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var err error
	if cfg.Net.RTTMin, cfg.Net.RTTMax, err = ParseRTT(*rtt); err != nil {
		fmt.Fprintln(stderr, "peername sim:", err)
		return 2
	}
	if *partition != "" {
		p, err := ParsePartition(*partition, cfg.Seed, cfg.Nodes)
		if err != nil {
			fmt.Fprintln(stderr, "peername sim:", err)
			return 2
		}
		cfg.Net.Partitions = []Partition{p}
	}
	if err := applyAttack(&cfg); err != nil {
		fmt.Fprintln(stderr, "peername sim:", err)
		return 2
	}
	if err := applyPuzzle(&cfg); err != nil {
		fmt.Fprintln(stderr, "peername sim:", err)
		return 2
	}
	cfg.LookupPhase = *lookupPhase
	cfg.NewCore = newCore
	if !*quiet {
		cfg.Progress = stderr
	}
	w, err := NewWorld(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "peername sim:", err)
		return 2
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(stderr, "peername sim:", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "peername sim:", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, runErr := w.Run(ctx)
	if rep != nil {
		if *jsonOut {
			enc := json.NewEncoder(stdout)
			if err := enc.Encode(rep); err != nil {
				fmt.Fprintln(stderr, "peername sim:", err)
				return 1
			}
		} else if err := rep.WriteText(stdout); err != nil {
			fmt.Fprintln(stderr, "peername sim:", err)
			return 1
		}
	}
	if runErr != nil {
		fmt.Fprintf(stderr, "peername sim: %v\nreplay with: peername sim %s\n", runErr, replayArgs(args, cfg.Seed))
		return 1
	}
	return 0
}

// replayArgs is the command line that replays a run: the same flags, with the
// seed made explicit.
func replayArgs(args []string, seed uint64) string {
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

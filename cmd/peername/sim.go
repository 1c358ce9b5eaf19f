package main

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
	"time"

	"github.com/peername/peername/overlay"
	"github.com/peername/peername/overlay/sim"
)

func init() {
	register("sim", command{"run the overlay simulator (peername sim -h for its flags)", runSim})
}

// runSim runs the simulator (simMain), which prints its own report and errors.
func runSim(_ context.Context, e *env, args []string) error {
	if code := simMain(args, e.stdout, e.stderr); code != 0 {
		return exitCodeError{code}
	}
	return nil
}

// simMain implements `peername sim`: it parses the simulator's flags, runs
// one simulation (stopped early by SIGINT, with a CPU profile on request) and
// prints its report, as text or (-json) one JSON object. It returns the
// process exit code: 0 on success, 1 if an invariant failed (the seed and the
// replay command are printed), 2 for bad usage.
func simMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("peername sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg         sim.Config
		rtt         = fs.String("rtt", "20ms:200ms", "round-trip time of a link, MIN:MAX (uniform per link)")
		partition   = fs.String("partition", "", "START:END:FRACTION: cut FRACTION of the nodes off from START to END of virtual time")
		natFrac     = fs.Float64("nat", 0, "FRACTION of the nodes behind NAT: they receive datagrams only from nodes they sent to in the last 30 s (never the first -seeds/-crowd-seeds nodes)")
		mode        = fs.String("mode", "auto", "every node's mode: auto (client once dial-backs show it unreachable), server (the comparison without client mode) or client")
		jsonOut     = fs.Bool("json", false, "print one JSON object")
		quiet       = fs.Bool("quiet", false, "no progress on stderr")
		cpuprofile  = fs.String("cpuprofile", "", "write a CPU profile to this file")
		plotDir     = fs.String("plot", "", "write PNG plots of the run into `DIR` (latency CDF, hops, traffic and success over time); with -malicious the run is repeated with the defences toggled and both are drawn on each plot")
		lookupPhase = fs.Duration("lookup-phase", 120*time.Second, "virtual time over which lookups, failures and late joins are spread")
	)
	fs.IntVar(&cfg.Nodes, "nodes", 2000, "nodes that join at the start")
	fs.IntVar(&cfg.Lookups, "lookups", 10000, "lookups of published names")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "seed of every random choice of the run")
	fs.Float64Var(&cfg.Fail, "fail", 0, "fraction of nodes that fail silently during the lookup phase")
	fs.Float64Var(&cfg.JoinLate, "join-late", 0, "fraction of extra nodes joining during the lookup phase")
	fs.Float64Var(&cfg.Net.Loss, "loss", 0, "probability a datagram is lost")
	fs.IntVar(&cfg.Net.MaxDatagram, "max-datagram", sim.DefaultMaxDatagram, "the UDP driver's datagram `SIZE`: a longer message travels as the fragments the driver cuts, each lost on its own (0 = messages travel whole)")
	fs.Float64Var(&cfg.Net.Burst, "burst", 0, "bursty loss (Gilbert-Elliott): mean length `N` in datagrams of a sender's loss bursts, at the -loss long-run rate (0 = uniform loss)")
	fs.Float64Var(&cfg.Net.Duplicate, "dup", 0, "probability a datagram is delivered twice")
	fs.Float64Var(&cfg.Net.Reorder, "reorder", 0, "probability a datagram is held back (reordered)")
	fs.Float64Var(&cfg.Publishers, "publishers", 0.1, "fraction of nodes that publish a name")
	fs.IntVar(&cfg.Payload, "payload", 0, "`BYTES` of opaque payload in every published record (0 to 4096): large records travel fragmented")
	fs.Float64Var(&cfg.JoinRate, "join-rate", 0, "joins per virtual second (0 = max(100, nodes/60))")
	fs.DurationVar(&cfg.LookupTimeout, "timeout", 10*time.Second, "deadline of one lookup")
	fs.DurationVar(&cfg.CheckEvery, "check", 0, "virtual period of the state sweep (bounds, held records verify); 0 = off")
	fs.DurationVar(&cfg.ProbeEvery, "probe", 0, "virtual period of the probe that every live owner's name resolves; 0 = off")
	fs.BoolVar(&cfg.HashData, "hash-data", false, "fold datagram contents into the trace hash")
	fs.DurationVar(&cfg.FlashCrowd, "flash-crowd", 0, "all nodes but the seeds join within this virtual `SPAN` (e.g. 1s), through -crowd-seeds seeds, retrying with the driver's backoff; 0 = steady joins at -join-rate")
	fs.IntVar(&cfg.CrowdSeeds, "crowd-seeds", 1, "with -flash-crowd: how many seeds the crowd joins through")
	fs.DurationVar(&cfg.Net.ServiceTime, "service", 0, "per-node processing budget: virtual time each datagram occupies its receiver (0 = infinitely fast nodes)")
	fs.DurationVar(&cfg.Net.HandshakeTime, "service-handshake", 0, "with -service: what a HELLO or HELLO_ACK costs instead (0 = as -service)")
	fs.IntVar(&cfg.Net.InboxLimit, "inbox", 0, "with -service: datagrams a busy node queues before it drops (0 = unbounded; the UDP driver's is 2048)")
	fs.DurationVar(&cfg.Net.InboxMaxWait, "inbox-wait", 0, "with -service: drop a datagram that would wait longer than this in an inbox (0 = never; the UDP driver's default is node.DefaultInboxMaxWait)")
	fs.DurationVar(&cfg.Settle, "settle", 20*time.Second, "quiet time after the last join and after the publishes")
	fs.IntVar(&cfg.Core.MaxSessions, "max-sessions", 0, "session table size of every node (0 = core default)")
	fs.IntVar(&cfg.Core.K, "k", 0, "bucket size K (0 = core default)")
	fs.IntVar(&cfg.Core.Alpha, "alpha", 0, "lookup parallelism (0 = core default)")
	fs.IntVar(&cfg.Core.Replication, "replication", 0, "replication factor (0 = core default)")
	applyAttack := attackFlags(fs)
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
	if cfg.Net.RTTMin, cfg.Net.RTTMax, err = sim.ParseRTT(*rtt); err != nil {
		fmt.Fprintln(stderr, "peername sim:", err)
		return 2
	}
	if *partition != "" {
		p, err := sim.ParsePartition(*partition, cfg.Seed, cfg.Nodes)
		if err != nil {
			fmt.Fprintln(stderr, "peername sim:", err)
			return 2
		}
		cfg.Net.Partitions = []sim.Partition{p}
	}
	if *natFrac > 0 {
		seeds := 1
		if cfg.FlashCrowd > 0 {
			seeds = max(cfg.CrowdSeeds, 1)
		}
		if cfg.Net.NAT, err = sim.NATNodes(*natFrac, cfg.Seed, cfg.Nodes+int(cfg.JoinLate*float64(cfg.Nodes))+1, seeds); err != nil {
			fmt.Fprintln(stderr, "peername sim:", err)
			return 2
		}
	}
	if cfg.Core.Mode, err = overlay.ParseMode(*mode); err != nil {
		fmt.Fprintln(stderr, "peername sim:", err)
		return 2
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
	if !*quiet {
		cfg.Progress = stderr
	}
	w, err := sim.NewWorld(cfg)
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
	if rep != nil && *plotDir != "" {
		if err := plotRun(ctx, *plotDir, cfg, rep, stderr); err != nil {
			fmt.Fprintln(stderr, "peername sim:", err)
			return 1
		}
	}
	if runErr != nil {
		fmt.Fprintf(stderr, "peername sim: %v\nreplay with: peername sim %s\n", runErr, sim.ReplayArgs(args, cfg.Seed))
		return 1
	}
	return 0
}

// plotRun draws rep's plots into dir. For an attack run it first runs the
// same configuration with the defences toggled, so each plot compares the
// two.
func plotRun(ctx context.Context, dir string, cfg sim.Config, rep *sim.Report, stderr io.Writer) error {
	title := fmt.Sprintf("%d nodes, seed %d", cfg.Nodes, cfg.Seed)
	runs := []labelled{{label: "defences " + onOff(cfg.Core.Defence != overlay.Defence{}), series: rep.Series}}
	if a := cfg.Attack; a != nil {
		title = fmt.Sprintf("%s, %.0f%% %s colluders", title, 100*a.Fraction, a.Kind)
		other, otherA := cfg, *a
		otherA.Defence = !a.Defence
		other.Attack = &otherA
		other.Core.Defence = overlay.Defence{}
		if otherA.Defence {
			other.Core.Defence = overlay.DefaultDefence(cfg.Core.K)
		}
		fmt.Fprintf(stderr, "peername sim: -plot: running again with the defences %s\n", onOff(otherA.Defence))
		w, err := sim.NewWorld(other)
		if err != nil {
			return err
		}
		orep, err := w.Run(ctx)
		if orep == nil {
			return fmt.Errorf("the comparison run: %w", err)
		}
		runs = []labelled{
			{label: "defences " + onOff(a.Defence), series: rep.Series},
			{label: "defences " + onOff(otherA.Defence), series: orep.Series},
		}
		if !a.Defence {
			runs[0], runs[1] = runs[1], runs[0]
		}
	}
	paths, err := writePlots(dir, title, runs)
	for _, p := range paths {
		fmt.Fprintln(stderr, "peername sim: wrote", p)
	}
	return err
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// puzzleFlag registers -puzzle; the returned function range-checks it into
// cfg.Core.PuzzleBits (0 = no puzzle).
func puzzleFlag(fs *flag.FlagSet) func(cfg *sim.Config) error {
	bits := fs.Int("puzzle", sim.DefaultPuzzleBits, fmt.Sprintf("identity puzzle difficulty `BITS` of every node, 0 (none) to %d; a real node uses %d, the simulator a cheaper default that changes its CPU time, not its figures", overlay.MaxPuzzleBits, overlay.DefaultPuzzleBits))
	return func(cfg *sim.Config) error {
		if *bits < 0 || *bits > overlay.MaxPuzzleBits {
			return fmt.Errorf("%w: -puzzle %d: want 0 to %d bits", sim.ErrBadFlag, *bits, overlay.MaxPuzzleBits)
		}
		cfg.Core.PuzzleBits = *bits
		return nil
	}
}

// attackFlags registers -malicious, -attack and -defence on fs; the
// returned function applies them to cfg after parsing.
func attackFlags(fs *flag.FlagSet) func(cfg *sim.Config) error {
	frac := fs.Float64("malicious", 0, "fraction of nodes that are hostile and collude (with -attack)")
	kind := fs.String("attack", "eclipse", "what hostile nodes do: forge, stale, eclipse, drop, flood, churn")
	def := fs.String("defence", "on", "defences against hostile nodes in honest cores, as a real node runs them (quorum reads, disjoint paths, prefix cap): on or off")
	quorum := fs.Int("quorum", 0, "with -defence on: quorum reads from this many storers (0 = K/2)")
	paths := fs.Int("paths", 0, "with -defence on: disjoint lookup paths (0 = 3)")
	prefixes := fs.Int("attacker-prefixes", 0, "hostile nodes' addresses come from this many IPv6 /48s (0 = each its own)")
	prefixCap := fs.Int("prefix-cap", -1, "with -defence on: contacts per /48 per bucket and per lookup (-1 = default 2, 0 = off)")
	return func(cfg *sim.Config) error {
		k, ok := sim.ParseHostileKind(*kind)
		if !ok || k == sim.HostileNone {
			return fmt.Errorf("%w: -attack %q", sim.ErrBadFlag, *kind)
		}
		if *def != "off" && *def != "on" {
			return fmt.Errorf("%w: -defence %q: want off or on", sim.ErrBadFlag, *def)
		}
		if !(*frac >= 0 && *frac < 1) {
			return fmt.Errorf("%w: -malicious %v: want 0 <= F < 1", sim.ErrBadFlag, *frac)
		}
		if *quorum < 0 || *paths < 0 || *prefixes < 0 || *prefixes >= 1<<27 || *prefixCap < -1 {
			return fmt.Errorf("%w: -quorum %d, -paths %d, -attacker-prefixes %d, -prefix-cap %d: out of range",
				sim.ErrBadFlag, *quorum, *paths, *prefixes, *prefixCap)
		}
		if *def == "on" {
			cfg.Core.Defence = overlay.DefaultDefence(cfg.Core.K)
			if *quorum > 0 {
				cfg.Core.Defence.Quorum = *quorum
			}
			if *paths > 0 {
				cfg.Core.Defence.DisjointPaths = *paths
			}
			if *prefixCap >= 0 {
				cfg.Core.Defence.PrefixCap = *prefixCap
			}
		}
		if *frac > 0 {
			cfg.Attack = &sim.Attack{Kind: k, Fraction: *frac, Defence: *def == "on", Prefixes: *prefixes}
		}
		return nil
	}
}

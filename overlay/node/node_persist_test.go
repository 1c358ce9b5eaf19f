package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peername/peername/overlay/bootstrap"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/overlay/state"
	"github.com/peername/peername/records"
)

// persistConfig is node i on loopback keeping its state in dir. Its
// maintenance tick is long, so the records it holds after a restart come
// from its state, not from a re-replication round of its peers.
func persistConfig(i int, dir string) Config {
	cfg := udpTestConfig(i, "127.0.0.1:0")
	cfg.Core.TickInterval = time.Hour
	cfg.StateDir = dir
	cfg.StateSaveInterval = 50 * time.Millisecond
	return cfg
}

// heldKeys lists the keys of the records a node holds for others.
func heldKeys(t testing.TB, n *Node) map[identity.Key]uint64 {
	t.Helper()
	out := map[identity.Key]uint64{}
	err := n.exec(t.Context(), func(now time.Time) {
		n.core.ForEachStored(now, func(r *records.Record, _ []byte) bool {
			out[r.Key()] = r.Seq
			return true
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// resumedSeq waits until a restarted node publishes name again and returns
// the Seq it signed.
func resumedSeq(ctx context.Context, t testing.TB, n *Node, name identity.Name) uint64 {
	t.Helper()
	var seq uint64
	waitFor(ctx, t, "resumed publishing", func() bool {
		_ = n.exec(ctx, func(time.Time) {
			if r := n.core.Published(name); r != nil {
				seq = r.Seq
			}
		})
		return seq != 0
	})
	return seq
}

// waitFor polls cond on the node's loop until it holds or ctx ends.
func waitFor(ctx context.Context, t testing.TB, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-tick.C:
		}
	}
}

// TestNodeStateRestart restarts a node in process from its state directory
// with no seed configured: it rejoins through its saved contacts, holds the
// records it stored for others again, and republishes its name above the
// Seq it had signed, although that Seq is ahead of the clock.
func TestNodeStateRestart(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	seedCfg := udpTestConfig(0, "127.0.0.1:0")
	seedCfg.Core.TickInterval = time.Hour
	seed := startNode(t, seedCfg)

	cfg := persistConfig(1, dir)
	cfg.Bootstrap = []bootstrap.Provider{seedsOf(seed)}
	n := startNode(t, cfg)
	other, err := seed.Publish(ctx, testRecordTemplate(t, 0, "other", nil))
	if err != nil {
		t.Fatal(err)
	}
	ahead := testRecordTemplate(t, 1, "mine", nil)
	ahead.Seq = uint64(time.Now().UnixMilli()) + 1e9 // signed while the clock was ahead
	mine, err := n.Publish(ctx, ahead)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the other record", func() bool { _, ok := heldKeys(t, n)[other.Key()]; return ok })
	n.Close()
	st := n.StateStats()
	if st.FloorWrites == 0 || st.Saves == 0 || st.Errors != 0 {
		t.Fatalf("state stats before restart: %+v", st)
	}

	cfg.Bootstrap = nil
	n2 := startNode(t, cfg)
	st = n2.StateStats()
	if st.NamesRestored != 1 || st.RecordsRestored != 1 || st.ContactsRestored != 1 || st.RecordsDropped != 0 {
		t.Errorf("restored %+v; want 1 name, 1 record, 1 contact", st)
	}
	if ns := n2.NetStats(); ns.AloneReason != "" || n2.Stats().RoutingTableSize == 0 {
		t.Errorf("restarted node did not rejoin through its snapshot: %+v", ns)
	}
	if seq, ok := heldKeys(t, n2)[other.Key()]; !ok || seq != other.Seq {
		t.Errorf("record stored for the seed not restored (have %v)", heldKeys(t, n2))
	}
	if seq := resumedSeq(ctx, t, n2, mine.Name); seq <= mine.Seq {
		t.Fatalf("restarted node signed seq %d, not above %d", seq, mine.Seq)
	}
	waitFor(ctx, t, "the resumed name on the seed", func() bool {
		recs, _, err := seed.Resolve(ctx, mine.Key())
		return err == nil && len(recs) > 0 && recs[0].Seq > mine.Seq
	})
}

func TestNodeStateDirErrors(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	n := startNode(t, persistConfig(1, dir))

	// Held by a running node.
	n2, err := New(persistConfig(1, dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := n2.Start(ctx); !errors.Is(err, state.ErrInUse) {
		t.Errorf("Start on a directory in use: %v, want state.ErrInUse", err)
	}
	n.Close()

	// Another identity's directory.
	n3, err := New(persistConfig(2, dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := n3.Start(ctx); !errors.Is(err, state.ErrOtherIdentity) {
		t.Errorf("Start on another identity's directory: %v, want state.ErrOtherIdentity", err)
	}

	// A damaged file.
	bad := t.TempDir()
	if err := os.WriteFile(bad+"/"+state.FileName, []byte("not a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	n4, err := New(persistConfig(1, bad))
	if err != nil {
		t.Fatal(err)
	}
	if err := n4.Start(ctx); !errors.Is(err, state.ErrCorrupt) {
		t.Errorf("Start on a damaged file: %v, want state.ErrCorrupt", err)
	}
	// The directory is still usable by its owner once released.
	startNode(t, persistConfig(1, dir)).Close()
}

// TestNodeHoldsSendsWhenFloorNotDurable breaks the database under a running
// node: Publish fails with ErrPersist and nothing is sent.
func TestNodeHoldsSendsWhenFloorNotDurable(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	seed := startNode(t, udpTestConfig(0, "127.0.0.1:0"))
	cfg := persistConfig(1, t.TempDir())
	cfg.Bootstrap = []bootstrap.Provider{seedsOf(seed)}
	n := startNode(t, cfg)
	if err := n.exec(ctx, func(time.Time) { n.ps.db.Close() }); err != nil {
		t.Fatal(err)
	}
	before := n.NetStats().DatagramsOut
	_, err := n.Publish(ctx, testRecordTemplate(t, 1, "web", nil))
	if !errors.Is(err, ErrPersist) || !errors.Is(err, state.ErrClosed) {
		t.Fatalf("Publish with a broken database: %v, want ErrPersist wrapping state.ErrClosed", err)
	}
	st := n.StateStats()
	if st.HeldSends == 0 || st.Errors == 0 || st.LastError == "" {
		t.Errorf("state stats: %+v", st)
	}
	if after := n.NetStats().DatagramsOut; after != before {
		t.Errorf("%d datagrams left the node while its floor was not durable", after-before)
	}
	recs, _, _ := seed.Resolve(ctx, testRecordTemplate(t, 1, "web", nil).Name.Key())
	if len(recs) != 0 {
		t.Error("the seed got a record whose Seq was never persisted")
	}
}

// Environment of the crash test's child process.
const (
	envCrashChild  = "PEERNAME_PERSIST_CHILD" // the state directory
	envCrashSeed   = "PEERNAME_PERSIST_SEED"  // seed address; empty on restart
	envCrashExpect = "PEERNAME_PERSIST_EXPECT"
)

// TestNodeStateCrashChild is the child process of TestNodeStateSurvivesSIGKILL.
// Without a seed it is the restarted node: it reports what it restored and
// the Seq it republished, then waits for stdin to close. With one, it joins,
// reports once it holds and saved the expected records of others, and then
// publishes its name again and again, printing each acknowledged Seq, until
// it is killed.
func TestNodeStateCrashChild(t *testing.T) {
	dir := os.Getenv(envCrashChild)
	if dir == "" {
		t.Skip("child process of TestNodeStateSurvivesSIGKILL")
	}
	ctx := t.Context()
	cfg := persistConfig(1, dir)
	if s := os.Getenv(envCrashSeed); s != "" {
		cfg.Bootstrap = []bootstrap.Provider{bootstrap.Static{Addrs: []string{s}}}
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	tmpl := testRecordTemplate(t, 1, "crash", nil)
	if cfg.Bootstrap == nil {
		st := n.StateStats()
		fmt.Printf("RESTORED %d %d %d\n", st.NamesRestored, st.RecordsRestored, st.ContactsRestored)
		for k := range heldKeys(t, n) {
			fmt.Printf("HELD %s\n", k)
		}
		fmt.Printf("JOINED %d %q\n", n.Stats().RoutingTableSize, n.NetStats().AloneReason)
		fmt.Printf("RESUMED %d\n", resumedSeq(ctx, t, n, tmpl.Name))
		_, _ = io.Copy(io.Discard, os.Stdin)
		return
	}
	fmt.Println("STARTED")
	expect, _ := strconv.Atoi(os.Getenv(envCrashExpect))
	waitFor(ctx, t, "records of others saved", func() bool {
		return len(heldKeys(t, n)) >= expect && n.StateStats().LastSaveRecords >= expect
	})
	fmt.Println("SAVED")
	for {
		// Signed as by a clock running ahead: only the floor can keep a
		// restarted node above these.
		tmpl.Seq = uint64(time.Now().UnixMilli()) + 1e9
		rec, err := n.Publish(ctx, tmpl)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("ACK %d\n", rec.Seq)
	}
}

// crashChild runs the test binary as TestNodeStateCrashChild.
type crashChild struct {
	cmd   *exec.Cmd
	lines chan string
	stdin io.WriteCloser
}

func startCrashChild(t *testing.T, dir, seed string, expect int) *crashChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestNodeStateCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envCrashChild+"="+dir, envCrashSeed+"="+seed, envCrashExpect+"="+strconv.Itoa(expect))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &crashChild{cmd: cmd, lines: make(chan string, 1024), stdin: in}
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return c
}

// next returns the child's next line with the given prefix, skipping others.
func (c *crashChild) next(ctx context.Context, t *testing.T, prefix string) []string {
	t.Helper()
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				t.Fatalf("child exited before printing %s", prefix)
			}
			if f := strings.Fields(l); len(f) > 0 && f[0] == prefix {
				return f[1:]
			}
		case <-ctx.Done():
			t.Fatalf("waiting for %s from the child: %v", prefix, ctx.Err())
		}
	}
}

// TestNodeStateSurvivesSIGKILL kills a publishing node with SIGKILL and
// restarts it from its state directory, without seeds: every Seq it
// acknowledged before the kill is below the Seq it republishes, its name
// resolves from another node again, and the records it held for others are
// back from disk. It fails without the Seq floor: the acknowledged Seqs are
// ahead of the clock, as a node whose clock was wrong would sign them.
func TestNodeStateSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts child processes")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()
	dir := t.TempDir()
	seedCfg := udpTestConfig(0, "127.0.0.1:0")
	seedCfg.Core.TickInterval = time.Hour // the seed never re-replicates to the child
	seed := startNode(t, seedCfg)

	const others = 3
	child := startCrashChild(t, dir, seed.Addrs()[0].String(), others)
	child.next(ctx, t, "STARTED")
	var otherKeys []identity.Key
	for i := range others {
		rec, err := seed.Publish(ctx, testRecordTemplate(t, 0, fmt.Sprintf("other%d", i), nil))
		if err != nil {
			t.Fatal(err)
		}
		otherKeys = append(otherKeys, rec.Key())
	}
	child.next(ctx, t, "SAVED")
	var acked []uint64
	for len(acked) < 5 {
		f := child.next(ctx, t, "ACK")
		seq, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, seq)
	}
	if err := child.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for l := range child.lines { // acknowledgements printed before the kill landed
		if f := strings.Fields(l); len(f) == 2 && f[0] == "ACK" {
			seq, _ := strconv.ParseUint(f[1], 10, 64)
			acked = append(acked, seq)
		}
	}
	_ = child.cmd.Wait()
	maxAcked := acked[len(acked)-1]

	restarted := startCrashChild(t, dir, "", others)
	f := restarted.next(ctx, t, "RESTORED")
	if f[0] != "1" || f[1] != strconv.Itoa(others) || f[2] == "0" {
		t.Errorf("restored names/records/contacts %v, want 1/%d/>0", f, others)
	}
	held := map[string]bool{}
	var joined []string
	for joined == nil {
		select {
		case l := <-restarted.lines:
			if f := strings.Fields(l); len(f) == 2 && f[0] == "HELD" {
				held[f[1]] = true
			} else if len(f) > 0 && f[0] == "JOINED" {
				joined = f[1:]
			}
		case <-ctx.Done():
			t.Fatal("no JOINED line from the restarted child")
		}
	}
	for _, k := range otherKeys {
		if !held[k.String()] {
			t.Errorf("record %s held for the seed before the kill is not back", k)
		}
	}
	if joined[0] == "0" || joined[1] != `""` {
		t.Errorf("restarted child did not rejoin from its snapshot: routing table %s, alone %s", joined[0], joined[1])
	}
	resumed, err := strconv.ParseUint(restarted.next(ctx, t, "RESUMED")[0], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if resumed <= maxAcked {
		t.Fatalf("restarted node republished seq %d, not above the %d acknowledged before the kill (highest %d)", resumed, len(acked), maxAcked)
	}
	name := testRecordTemplate(t, 1, "crash", nil).Name
	name.Authority = nodeIdentity(1).Authority()
	waitFor(ctx, t, "the name to resolve from the seed with the new seq", func() bool {
		recs, _, err := seed.Resolve(ctx, name.Key())
		return err == nil && len(recs) > 0 && recs[0].Seq == resumed
	})
	restarted.stdin.Close()
	if err := restarted.cmd.Wait(); err != nil {
		t.Errorf("restarted child: %v", err)
	}
	t.Logf("%d seqs acknowledged before SIGKILL (highest %d); republished at %d", len(acked), maxAcked, resumed)
}

// TestNodePersistsRepublishedSeq: the core republishes on its own timer;
// the Seq it signs there is on disk without a save or a clean Close (the
// node is killed, and the database read directly).
func TestNodePersistsRepublishedSeq(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	seed := startNode(t, udpTestConfig(0, "127.0.0.1:0"))
	dir := t.TempDir()
	cfg := persistConfig(1, dir)
	cfg.Bootstrap = []bootstrap.Provider{seedsOf(seed)}
	cfg.Core.TickInterval = 100 * time.Millisecond
	cfg.Core.RecordLifetime = 2 * time.Second // republished every second
	cfg.StateSaveInterval = time.Hour
	n := startNode(t, cfg)
	first, err := n.Publish(ctx, testRecordTemplate(t, 1, "web", nil))
	if err != nil {
		t.Fatal(err)
	}
	var seq uint64
	waitFor(ctx, t, "a republish", func() bool {
		_ = n.exec(ctx, func(time.Time) { seq = n.core.Published(first.Name).Seq })
		return seq > first.Seq
	})
	n.kill()
	db, err := state.Open(ctx, dir, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	owned, err := db.Owned(nodeIdentity(1).PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if len(owned) != 1 || owned[0].Seq < seq || owned[0].Record == nil || owned[0].Record.Seq < seq {
		t.Fatalf("saved %+v, want floor and record at least at the republished seq %d", owned, seq)
	}
}

// TestNodeStateKeepsPuzzle: the identity puzzle's solution is saved in the
// state directory and reused at the next start; a start at another
// difficulty solves it again.
func TestNodeStateKeepsPuzzle(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start := func(bits int) StateStats {
		cfg := persistConfig(5, dir)
		cfg.Core.PuzzleBits = bits
		n, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Prepare(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := n.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		st := n.StateStats()
		n.Close()
		return st
	}
	for i, tt := range []struct {
		bits     int
		restored bool
	}{{12, false}, {12, true}, {14, false}, {14, true}} {
		if st := start(tt.bits); st.PuzzleRestored != tt.restored {
			t.Errorf("start %d at %d bits: puzzle restored %v, want %v", i, tt.bits, st.PuzzleRestored, tt.restored)
		}
	}
}

package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/peername/peername/overlay"
)

// TestNodeStartSolvesPuzzle: the UDP driver solves the puzzle at the default
// difficulty before it starts, and the core's certificate carries the solution.
func TestNodeStartSolvesPuzzle(t *testing.T) {
	t.Parallel()
	cfg := udpTestConfig(70, "127.0.0.1:0")
	cfg.Core.PuzzleBits = 0
	n := startNode(t, cfg)
	var bits int
	var nonce uint64
	if err := n.exec(t.Context(), func(time.Time) {
		bits = n.core.Config().PuzzleBits
		nonce = n.core.Config().PuzzleNonce
	}); err != nil {
		t.Fatal(err)
	}
	if _, solved, err := overlay.PuzzleSolution(t.Context(), cfg.Identity.PublicKey(), nonce, overlay.DefaultPuzzleBits); bits != overlay.DefaultPuzzleBits || err != nil || solved {
		t.Fatalf("node core: %d bits, nonce %d does not solve %d bits", bits, nonce, overlay.DefaultPuzzleBits)
	}
	// A negative PuzzleBits turns the puzzle off.
	cfg = udpTestConfig(72, "127.0.0.1:0")
	cfg.Core.PuzzleBits = -1
	off := startNode(t, cfg)
	if err := off.exec(t.Context(), func(time.Time) { bits = off.core.Config().PuzzleBits }); err != nil || bits > 0 {
		t.Fatalf("node without puzzle: %v, requires %d bits", err, bits)
	}
}

// TestNodeStartCancelledWhileSolving: Start gives up on a puzzle as soon as
// its context ends (32 bits would take minutes) and the node is closed.
func TestNodeStartCancelledWhileSolving(t *testing.T) {
	t.Parallel()
	cfg := udpTestConfig(71, "127.0.0.1:0")
	cfg.Core.PuzzleBits = overlay.MaxPuzzleBits
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	began := time.Now()
	err = n.Start(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Start: %v, want the context's deadline", err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("Start took %v to notice its context", took)
	}
	if err := n.Start(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after a cancelled start: %v, want ErrClosed", err)
	}
	if st := n.Stats(); st.ID != cfg.Identity.NodeID() || st.MaxSessions != overlay.DefaultMaxSessions {
		t.Errorf("stats of a node that never started: %+v", st)
	}
}

// TestNewNodeRefusesBadPuzzleBits: New checks the core's config before
// anything starts.
func TestNewNodeRefusesBadPuzzleBits(t *testing.T) {
	t.Parallel()
	for _, bits := range []int{overlay.MaxPuzzleBits + 1, 64} {
		cfg := udpTestConfig(73, "127.0.0.1:0")
		cfg.Core.PuzzleBits = bits
		if _, err := New(cfg); !errors.Is(err, overlay.ErrBadConfig) {
			t.Errorf("New with PuzzleBits %d: err = %v, want ErrBadConfig", bits, err)
		}
	}
}

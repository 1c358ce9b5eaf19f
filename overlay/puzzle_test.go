package overlay

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"testing"
)

func TestSolvePuzzle(t *testing.T) {
	t.Parallel()
	pub := testIdentity(1).PublicKey()
	other := testIdentity(2).PublicKey()
	for _, d := range []int{1, 4, 8, 12, 16} {
		t.Run(fmt.Sprintf("bits=%d", d), func(t *testing.T) {
			t.Parallel()
			nonce, err := SolvePuzzle(context.Background(), pub, d)
			if err != nil {
				t.Fatal(err)
			}
			if !checkPuzzle(pub, nonce, d) {
				t.Fatalf("nonce %d does not solve its own puzzle at %d bits", nonce, d)
			}
			// The smallest solution: every smaller nonce fails.
			in := newPuzzleInput(pub)
			for n := uint64(0); n < nonce; n++ {
				if in.zeroBits(n) >= d {
					t.Fatalf("nonce %d solves %d bits but SolvePuzzle returned %d", n, d, nonce)
				}
			}
			// Deterministic per key.
			if again, _ := SolvePuzzle(context.Background(), pub, d); again != nonce {
				t.Fatalf("solved twice: %d then %d", nonce, again)
			}
			// A solution at d bits fails at some d+k: the check really counts bits.
			got := in.zeroBits(nonce)
			if checkPuzzle(pub, nonce, got+1) {
				t.Fatalf("nonce %d passes at %d bits but its hash has %d zero bits", nonce, got+1, got)
			}
			// Bound to the key: the nonce is (almost surely) no solution for another key.
			if d >= 8 && checkPuzzle(other, nonce, d) {
				t.Fatalf("nonce %d solves the puzzle of another key too", nonce)
			}
		})
	}
}

func TestCheckPuzzle(t *testing.T) {
	t.Parallel()
	pub := testIdentity(3).PublicKey()
	n12, err := SolvePuzzle(context.Background(), pub, 12)
	if err != nil {
		t.Fatal(err)
	}
	bits := newPuzzleInput(pub).zeroBits(n12)
	cases := []struct {
		name  string
		pub   []byte
		nonce uint64
		d     int
		want  bool
	}{
		{"solution", pub, n12, 12, true},
		{"solution, easier cloud", pub, n12, 6, true},
		{"solution, exact bits", pub, n12, bits, true},
		{"solution, one bit more", pub, n12, bits + 1, false},
		{"solution, max bits", pub, n12, MaxPuzzleBits, bits >= MaxPuzzleBits},
		{"no puzzle", pub, 12345, 0, true},
		{"no puzzle, negative", pub, 12345, -1, true},
		{"wrong key", testIdentity(4).PublicKey(), n12, 12, checkPuzzle(testIdentity(4).PublicKey(), n12, 12)},
		{"neighbour nonce", pub, n12 + 1, 12, newPuzzleInput(pub).zeroBits(n12+1) >= 12},
		{"short key", pub[:31], n12, 12, false},
	}
	for _, tc := range cases {
		if got := checkPuzzle(tc.pub, tc.nonce, tc.d); got != tc.want {
			t.Errorf("%s: checkPuzzle = %v, want %v", tc.name, got, tc.want)
		}
	}
	// The "wrong key" case must really be a failure for this key pair, or it
	// tests nothing.
	if checkPuzzle(testIdentity(4).PublicKey(), n12, 12) {
		t.Fatalf("test keys chosen badly: nonce %d solves both keys", n12)
	}
}

func TestSolvePuzzleErrors(t *testing.T) {
	t.Parallel()
	pub := testIdentity(1).PublicKey()
	if _, err := SolvePuzzle(context.Background(), pub, MaxPuzzleBits+1); !errors.Is(err, ErrBadConfig) {
		t.Errorf("%d bits: err = %v, want ErrBadConfig", MaxPuzzleBits+1, err)
	}
	if _, err := SolvePuzzle(context.Background(), pub[:16], 8); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("short key: err = %v, want ErrNoIdentity", err)
	}
	if n, err := SolvePuzzle(context.Background(), pub, 0); err != nil || n != 0 {
		t.Errorf("0 bits: %d, %v; want 0, nil", n, err)
	}
	// A cancelled context stops the search: 32 bits would take minutes.
	ctx, cancel := context.WithCancelCause(context.Background())
	stop := errors.New("stop")
	cancel(stop)
	if _, err := SolvePuzzle(ctx, pub, MaxPuzzleBits); !errors.Is(err, stop) {
		t.Errorf("cancelled: err = %v, want the context's cause", err)
	}
}

// BenchmarkPuzzleHash is the cost of one try (and of one check).
func BenchmarkPuzzleHash(b *testing.B) {
	in := newPuzzleInput(testIdentity(1).PublicKey())
	n := uint64(0)
	for b.Loop() {
		in.zeroBits(n)
		n++
	}
}

// BenchmarkSolvePuzzle measures the mean time to mint an identity at a few
// difficulties, over distinct keys (the work per key is geometric: its
// standard deviation equals its mean, so run enough keys, e.g.
// -benchtime=64x for 20 bits).
func BenchmarkSolvePuzzle(b *testing.B) {
	for _, d := range []int{8, 16, 18, 20, 22} {
		b.Run(fmt.Sprintf("bits=%d", d), func(b *testing.B) {
			keys := 0
			tries := uint64(0)
			for b.Loop() {
				keys++
				pub := testIdentity(1000 + keys).PublicKey()
				n, err := SolvePuzzle(context.Background(), pub, d)
				if err != nil {
					b.Fatal(err)
				}
				tries += n + 1
			}
			b.ReportMetric(float64(tries)/float64(keys), "hashes/op")
		})
	}
}

// BenchmarkCheckPuzzle is what a receiver pays per certificate.
func BenchmarkCheckPuzzle(b *testing.B) {
	pub := ed25519.PublicKey(testIdentity(1).PublicKey())
	n, err := SolvePuzzle(context.Background(), pub, 16)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if !checkPuzzle(pub, n, 16) {
			b.Fatal("check failed")
		}
	}
}

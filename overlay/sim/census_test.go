package sim

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/peername/peername/identity"
)

// TestCloseTo: the census's binary-search test of "among the n closest"
// agrees with counting every closer node, for keys near and far.
func TestCloseTo(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 8))
	randKey := func() (k identity.Key) {
		for i := range k {
			k[i] = byte(rng.UintN(256))
		}
		return k
	}
	for _, size := range []int{0, 1, 5, 40, 500} {
		ids := make([]identity.Key, size)
		for i := range ids {
			ids[i] = randKey()
		}
		slices.SortFunc(ids, func(a, b identity.Key) int { return bytes.Compare(a[:], b[:]) })
		for range 300 {
			key := randKey()
			var c identity.Key
			switch rng.UintN(3) {
			case 0: // a member of the set
				if size > 0 {
					c = ids[rng.UintN(uint(size))]
					break
				}
				fallthrough
			case 1: // near the key: a long shared prefix
				c = key
				c[rng.UintN(4)] ^= byte(1 << rng.UintN(8))
			default:
				c = randKey()
			}
			n := 1 + int(rng.UintN(20))
			closer := 0
			for _, id := range ids {
				if identity.Closer(id, c, key) {
					closer++
				}
			}
			if got, want := closeTo(c, key, ids, n), closer < n; got != want {
				t.Fatalf("size %d n %d: closeTo = %v, %d nodes are closer", size, n, got, closer)
			}
		}
	}
}

// TestCensusUnderChurn: with nodes failing and joining all through the
// lookup phase, the census still checks the names no change is near (the
// whole sweep used to wait for two quiet ticks, so under churn it checked
// nothing), and finds every one held in full.
func TestCensusUnderChurn(t *testing.T) {
	t.Parallel()
	cfg := lossyRun(33, 40, Network{})
	cfg.LookupPhase = 150 * time.Second
	cfg.Fail, cfg.JoinLate = 0.2, 0.2 // one change every ~9 s
	r, err := runWorld(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.FailedNodes == 0 || r.LateJoins == 0 {
		t.Fatalf("failed %d, late joins %d: no churn", r.FailedNodes, r.LateJoins)
	}
	if r.CensusChecks == 0 || r.CensusShort != 0 {
		t.Fatalf("census: %d checks, %d short; want some and 0", r.CensusChecks, r.CensusShort)
	}
	t.Logf("%d census checks, %d failed, %d late joins", r.CensusChecks, r.FailedNodes, r.LateJoins)
}

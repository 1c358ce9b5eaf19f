//go:build race

package records

// raceEnabled: the race detector adds allocations, so allocation counts are
// only checked without it.
const raceEnabled = true

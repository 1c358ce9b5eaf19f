package overlay

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// The identity puzzle: a tunable cost to minting node identities.
//
// A node ID is NodeIDOf(ed25519 pub), so anybody can mint as many IDs as they
// can generate keys, and grind keys until one lands next to a chosen target.
// The puzzle makes each usable identity cost work: a certificate carries an
// 8-byte nonce such that
//
//	SHA-256("peername-overlay-puzzle-v1\x00" || ed25519 pub || nonce)
//
// starts with at least D zero bits, where D (Config.PuzzleBits) is a
// parameter of the cloud. Solving costs 2^D hashes on average, checking one.
// Grinding for an ID near a target multiplies its cost by 2^D: every key tried
// is useless until its puzzle is solved. (S/Kademlia's static puzzle asks
// instead for H(H(pub)) to start with zero bits, which forces grinding the key
// itself and would invalidate every existing key and published name; binding
// a nonce to the key costs the same and keeps the keys.)

const (
	// DefaultPuzzleBits is the puzzle difficulty D of a node (overlay/node) whose
	// Core.PuzzleBits is zero: 2^20 SHA-256 hashes on average, 0.16 s on one
	// core of the development VM (docs/protocol.md has the measurements).
	DefaultPuzzleBits = 20
	// MaxPuzzleBits bounds PuzzleBits: 2^32 hashes take ~10 minutes.
	MaxPuzzleBits = 32

	puzzleNonceLen = 8
	puzzleDomain   = "peername-overlay-puzzle-v1\x00"
	// puzzleCheckEvery is how many hashes SolvePuzzle tries between two
	// looks at its context (~1 ms of work).
	puzzleCheckEvery = 4096
)

// ErrPuzzle reports a certificate whose puzzle nonce does not meet the
// receiver's difficulty (wrapped by the handshake's certificate check).
var ErrPuzzle = errors.New("overlay: identity puzzle not solved")

// puzzleInput is the hashed message with room for the nonce at the end.
type puzzleInput [len(puzzleDomain) + ed25519.PublicKeySize + puzzleNonceLen]byte

func newPuzzleInput(pub []byte) *puzzleInput {
	var in puzzleInput
	copy(in[:], puzzleDomain)
	copy(in[len(puzzleDomain):], pub)
	return &in
}

// zeroBits returns the number of leading zero bits of the puzzle hash for nonce.
func (in *puzzleInput) zeroBits(nonce uint64) int {
	binary.BigEndian.PutUint64(in[len(in)-puzzleNonceLen:], nonce)
	h := sha256.Sum256(in[:])
	return bits.LeadingZeros64(binary.BigEndian.Uint64(h[:8]))
}

// checkPuzzle reports whether nonce solves the puzzle of pub at d bits.
func checkPuzzle(pub []byte, nonce uint64, d int) bool {
	if d <= 0 {
		return true
	}
	if len(pub) != ed25519.PublicKeySize {
		return false
	}
	return newPuzzleInput(pub).zeroBits(nonce) >= d
}

// PuzzleSolution returns nonce if it solves the identity puzzle of pub at d
// bits, and
// otherwise solves it (SolvePuzzle); solved reports which. Drivers call it
// to fill Config.PuzzleNonce before NewCore, under a context of their own.
func PuzzleSolution(ctx context.Context, pub ed25519.PublicKey, nonce uint64, d int) (n uint64, solved bool, err error) {
	if checkPuzzle(pub, nonce, d) {
		return nonce, false, nil
	}
	n, err = SolvePuzzle(ctx, pub, d)
	return n, err == nil, err
}

// SolvePuzzle returns the smallest nonce that solves the identity puzzle of
// pub at d bits (counting up from 0: the answer is a function of the key), for
// Config.PuzzleNonce. It looks at ctx every few thousand hashes and returns
// ctx's cause if ctx ends first. d <= 0 needs no work (nonce 0).
func SolvePuzzle(ctx context.Context, pub ed25519.PublicKey, d int) (uint64, error) {
	if d > MaxPuzzleBits {
		return 0, fmt.Errorf("puzzle of %d bits (max %d): %w", d, MaxPuzzleBits, ErrBadConfig)
	}
	if len(pub) != ed25519.PublicKeySize {
		return 0, fmt.Errorf("puzzle for a public key of %d bytes: %w", len(pub), ErrNoIdentity)
	}
	if d <= 0 {
		return 0, nil
	}
	in := newPuzzleInput(pub)
	for nonce := uint64(0); ; nonce++ {
		if in.zeroBits(nonce) >= d {
			return nonce, nil
		}
		if nonce%puzzleCheckEvery == puzzleCheckEvery-1 && ctx != nil {
			if err := ctx.Err(); err != nil {
				return 0, fmt.Errorf("solving the identity puzzle (%d bits): %w", d, context.Cause(ctx))
			}
		}
	}
}

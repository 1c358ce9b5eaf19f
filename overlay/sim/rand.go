package sim

import (
	"crypto/sha256"
	"encoding/binary"
)

// Derive returns the 64-bit seed of one consumer of randomness (a core, the
// network, the workload) from the run's seed, a label and an index, so that
// each consumer has its own stream and adding one never shifts another.
func Derive(seed uint64, label string, i uint64) uint64 {
	s := DeriveBytes(seed, label, i)
	return binary.LittleEndian.Uint64(s[:8])
}

// DeriveBytes is Derive's 32-byte form, used for identity seeds.
func DeriveBytes(seed uint64, label string, i uint64) [32]byte {
	h := sha256.New()
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], seed)
	binary.LittleEndian.PutUint64(b[8:], i)
	h.Write([]byte("peername-sim-v1\x00"))
	h.Write([]byte(label))
	h.Write([]byte{0})
	h.Write(b[:])
	var out [32]byte
	h.Sum(out[:0])
	return out
}

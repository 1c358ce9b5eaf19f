package identity

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
)

// Key is a 256-bit point of the overlay's key space: a node ID or the key a
// name's records are stored under.
type Key [32]byte

// String returns the key as 64 lowercase hexadecimal digits.
func (k Key) String() string { return hex.EncodeToString(k[:]) }

// Closer reports whether a is strictly closer to t than b in the overlay's
// XOR distance.
func Closer(a, b, t Key) bool {
	for i := range t {
		da, db := a[i]^t[i], b[i]^t[i]
		if da != db {
			return da < db
		}
	}
	return false
}

// Domain-separation prefixes of the hashes this package computes.
const (
	nodeIDDomain    = "peername-node-v1\x00"
	authorityDomain = "peername-authority-v1\x00"
	nameKeyDomain   = "peername-name-v1\x00"
)

// Identity is an Ed25519 key pair: who a node is and what it may publish.
type Identity struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
}

// Generate creates a new identity from the randomness in r (crypto/rand.Reader
// when r is nil).
func Generate(r io.Reader) (*Identity, error) {
	pub, priv, err := ed25519.GenerateKey(r)
	if err != nil {
		return nil, fmt.Errorf("identity: generate key: %w", err)
	}
	return &Identity{priv: priv, pub: pub}, nil
}

// FromSeed derives an identity deterministically from a 32-byte seed, as the
// simulator and tests need. Keep seeds as secret as private keys.
func FromSeed(seed [32]byte) *Identity {
	priv := ed25519.NewKeyFromSeed(seed[:])
	return &Identity{priv: priv, pub: priv.Public().(ed25519.PublicKey)}
}

func fromPrivate(priv ed25519.PrivateKey) *Identity {
	return &Identity{priv: priv, pub: priv.Public().(ed25519.PublicKey)}
}

// PublicKey returns the identity's public key.
func (id *Identity) PublicKey() ed25519.PublicKey { return id.pub }

// PrivateKey returns the identity's private key.
func (id *Identity) PrivateKey() ed25519.PrivateKey { return id.priv }

// Sign signs msg with the identity's private key.
func (id *Identity) Sign(msg []byte) []byte { return ed25519.Sign(id.priv, msg) }

// NodeID returns the overlay ID of a node running with this identity.
func (id *Identity) NodeID() Key { return NodeIDOf(id.pub) }

// Authority returns the authority of the secured names this identity may
// publish.
func (id *Identity) Authority() Authority { return AuthorityOf(id.pub) }

// NodeIDOf returns the overlay ID bound to a public key. A node cannot choose
// its ID: it is the hash of the key it authenticates with.
func NodeIDOf(pub ed25519.PublicKey) Key {
	h := sha256.New()
	h.Write([]byte(nodeIDDomain))
	h.Write(pub)
	var k Key
	h.Sum(k[:0])
	return k
}

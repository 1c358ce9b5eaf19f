package invite

import (
	"crypto/sha256"
	"encoding/binary"

	"golang.org/x/crypto/argon2"

	"github.com/peername/peername/identity"
)

// The Argon2id cost (RFC 9106 §4, its second recommended option): 3 passes
// over 64 MiB in 4 lanes. See docs/invitations.md for the measurement and the
// reasoning; changing any of these changes every derived key, so they are
// part of the protocol.
const (
	KDFTime    = 3
	KDFMemory  = 64 * 1024 // KiB
	KDFThreads = 4
	// KDFSalt is Argon2id's salt: a constant, since the helper knows nothing
	// but the code. It separates peername's derivation from any other use of
	// the same password and version.
	KDFSalt = "peername-invitation-kdf-v1"
)

// Classifiers of the two code-derived names. Both are secured names of the
// code's signing key, so only a code holder can publish at them.
const (
	InvitationClassifier = "invitation"
	AcceptanceClassifier = "accepted"
)

// Keys are everything derived from a code. Deriving them costs one Argon2id
// evaluation; everything after that is a hash.
type Keys struct {
	// Signer is the Ed25519 key pair that signs the outer records of the
	// invitation and the acceptance. Its authority is the authority of both
	// names.
	Signer *identity.Identity
	// Invitation is the name the invitation is published under
	// (invitation.<authority>); Invitation.Key() is its overlay key.
	Invitation identity.Name
	// Acceptance is the name a helper's acceptance is published under
	// (accepted.<authority>), which the inviter watches.
	Acceptance identity.Name
	// InvitationKey and AcceptanceKey are the XChaCha20-Poly1305 keys of the
	// two payloads.
	InvitationKey, AcceptanceKey [32]byte
}

// Derive computes the keys of c:
//
//	master = Argon2id(password = 60-bit value as 8 bytes big-endian,
//	                  salt = KDFSalt, t = 3, m = 64 MiB, p = 4, 32 bytes)
//	sub(L) = SHA-256("peername-invite-" L "-v1" 0x00 ‖ master)
//	signing seed   = sub("sign")       (RFC 8032 Ed25519 seed)
//	invitation key = sub("invitation") (XChaCha20-Poly1305 key)
//	acceptance key = sub("acceptance") (XChaCha20-Poly1305 key)
func Derive(c Code) *Keys {
	var pw [8]byte
	binary.BigEndian.PutUint64(pw[:], c.v)
	master := argon2.IDKey(pw[:], []byte(KDFSalt), KDFTime, KDFMemory, KDFThreads, 32)
	return fromMaster(master)
}

func fromMaster(master []byte) *Keys {
	sub := func(label string) [32]byte {
		h := sha256.New()
		h.Write([]byte("peername-invite-" + label + "-v1\x00"))
		h.Write(master)
		return [32]byte(h.Sum(nil))
	}
	k := &Keys{Signer: identity.FromSeed(sub("sign"))}
	k.InvitationKey = sub("invitation")
	k.AcceptanceKey = sub("acceptance")
	a := k.Signer.Authority()
	k.Invitation = identity.Name{Classifier: InvitationClassifier, Secured: true, Authority: a}
	k.Acceptance = identity.Name{Classifier: AcceptanceClassifier, Secured: true, Authority: a}
	return k
}

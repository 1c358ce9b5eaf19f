// Package invite implements peername's invitations, remote assistance's
// "Easy Connect" on the DRT: the person who needs help publishes an
// encrypted invitation and reads a one-time code to the helper, whose
// machine finds the invitation by the code alone, checks who sent it and
// learns the inviter's secured name, addresses and services.
//
// A Code is 60 random bits written as 13 characters of Crockford's base32
// (the last a check character that catches any single typo or swap before
// anything is looked up). Derive stretches it with Argon2id into an Ed25519
// key pair, whose secured names invitation.<authority> and
// accepted.<authority> are the overlay keys of the invitation and of the
// helper's acceptance, and two XChaCha20-Poly1305 keys for their payloads.
// Only code holders can find, read or publish at those names, and a storer
// holds an opaque key and ciphertext. Inside, each side's Card (secured name,
// endpoints, services, TXT, application payload) is signed by that side's own
// identity and bound to the code and to the invitation's single-use nonce.
//
// Offer publishes an invitation and Pending.Wait watches for the acceptance
// and withdraws the invitation; Accept finds, checks and opens it and
// publishes the acceptance. Both work on any Overlay (Store and Resolve of
// signed records). The construction, its threat model, the cost figures and
// test vectors are in docs/invitations.md.
package invite

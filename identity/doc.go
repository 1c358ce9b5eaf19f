// Package identity holds what names a peer: its Ed25519 key pair and the key
// files that keep it, the authority derived from its public key, the peer
// names built from an authority and a classifier, and the 256-bit overlay key
// each name and node is found under.
//
// Every hash here is SHA-256 over a domain-separation prefix followed by the
// input, so a value computed for one purpose can never be mistaken for
// another:
//
//	node ID    = SHA-256("peername-node-v1\x00" || public key)
//	authority  = SHA-256("peername-authority-v1\x00" || public key)[:20]
//	name key   = SHA-256("peername-name-v1\x00" || kind || authority || classifier)
//
// An authority is written in DNS as 32 characters of lowercase RFC 4648
// base32 without padding, which fits one DNS label; an unsecured name uses
// the authority label "0".
package identity

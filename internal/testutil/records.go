package testutil

import (
	"net/netip"
	"testing"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/records"
)

// Identity returns the deterministic identity whose Ed25519 seed is b
// followed by 31 zero bytes: the same b gives the same key in every package.
func Identity(b byte) *identity.Identity {
	var seed [32]byte
	seed[0] = b
	return identity.FromSeed(seed)
}

// Name returns classifier as a secured name of id, or as an unsecured name.
func Name(t testing.TB, id *identity.Identity, classifier string, secured bool) identity.Name {
	t.Helper()
	var (
		n   identity.Name
		err error
	)
	if secured {
		n, err = identity.NewSecuredName(classifier, id.PublicKey())
	} else {
		n, err = identity.NewUnsecuredName(classifier)
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Signed returns a record for name signed by id with sequence number seq,
// issued at issued (whole seconds) and expiring lifetime later. It resolves
// to 192.0.2.1 and 2001:db8::1, offers ssh/tcp on port 22 and carries the TXT
// string "hello"; mutate, if not nil, changes the record before it is signed.
func Signed(t testing.TB, id *identity.Identity, name identity.Name, seq uint64, issued time.Time, lifetime time.Duration, mutate func(*records.Record)) *records.Record {
	t.Helper()
	issued = issued.UTC().Truncate(time.Second)
	r := &records.Record{
		Name:      name,
		Seq:       seq,
		Issued:    issued,
		Expires:   issued.Add(lifetime),
		Endpoints: []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")},
		Services:  []records.Service{{Service: "ssh", Proto: "tcp", Port: 22}},
		TXT:       []string{"hello"},
	}
	if mutate != nil {
		mutate(r)
	}
	if err := records.Sign(r, id); err != nil {
		t.Fatal(err)
	}
	return r
}

package records

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/peername/peername/identity"
)

// vector is one test vector of README.md: a key seed, the record's fields,
// and the expected encoding (body then signature).
type vector struct {
	name    string
	seed    byte // the key seed is seed, seed+1, ..., seed+31
	record  func(id *identity.Identity) *Record
	encHex  string
	sigHex  string
	nameDNS string
	keyHex  string
}

var vectors = []vector{
	{
		name: "secured name with every field",
		seed: 0,
		record: func(id *identity.Identity) *Record {
			return &Record{
				Name:      identity.Name{Classifier: "alice", Secured: true},
				Seq:       1,
				Issued:    time.Unix(1764072000, 0).UTC(), // 2025-11-25T12:00:00Z
				Expires:   time.Unix(1764075600, 0).UTC(), // +1 hour
				Endpoints: []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")},
				Services:  []Service{{Service: "ssh", Proto: "tcp", Port: 22, Priority: 10, Weight: 5}},
				TXT:       []string{"hello"},
				Payload:   []byte{0xde, 0xad, 0xbe, 0xef},
			}
		},
		nameDNS: "alice.hwvhn3ni7xtqshvzw4zbe3g6asnfb25x.peer.alt.",
		keyHex:  "9d052831d04a394e8f7ab24f7c69304287a0879d56ab2ab9dc089603428b5ef7",
		encHex:  "01013daa76eda8fde7091eb9b732126cde049a50ebb705616c69636503a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b800000000000000010000000069259a40000000006925a8500204c00002010620010db80000000000000000000000010103737368037463700016000a0005010568656c6c6f0004deadbeef",
		sigHex:  "6bee8e6998496af463764c2df18444b6cfd9904f2ec90a11e7f90da5af3b386db3909543ad4d9a5921435b5f1b21cd0be666499cc3749c20ca77ab47b1d2e20a",
	},
	{
		name: "unsecured name, address only",
		seed: 0,
		record: func(id *identity.Identity) *Record {
			return &Record{
				Name:      identity.Name{Classifier: "printer"},
				Seq:       42,
				Issued:    time.Unix(1764072000, 0).UTC(),
				Expires:   time.Unix(1764072600, 0).UTC(),
				Endpoints: []netip.Addr{netip.MustParseAddr("198.51.100.7")},
			}
		},
		nameDNS: "printer.0.peer.alt.",
		keyHex:  "e7e6ab8fdb3e1137320331739e257666110777c8a4b68b4fed61b973106dc56d",
		encHex:  "01000000000000000000000000000000000000000000077072696e74657203a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8000000000000002a0000000069259a400000000069259c980104c633640700000000",
		sigHex:  "c2406fdf8af5974b62d72d7e4ccec77a6b6c3db51904bfab58588b409adbf2c3ffa10080ec032b130a819e2aeb0cb294ae16f4d1b8300a9991b45351910ebf0a",
	},
	{
		name: "withdrawn secured name",
		seed: 0,
		record: func(id *identity.Identity) *Record {
			return &Record{
				Name:      identity.Name{Classifier: "alice", Secured: true},
				Seq:       2,
				Issued:    time.Unix(1764072060, 0).UTC(),
				Expires:   time.Unix(1764075660, 0).UTC(),
				Withdrawn: true,
			}
		},
		nameDNS: "alice.hwvhn3ni7xtqshvzw4zbe3g6asnfb25x.peer.alt.",
		keyHex:  "9d052831d04a394e8f7ab24f7c69304287a0879d56ab2ab9dc089603428b5ef7",
		encHex:  "01033daa76eda8fde7091eb9b732126cde049a50ebb705616c69636503a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b800000000000000020000000069259a7c000000006925a88c0000000000",
		sigHex:  "35f34803aaf388431e933dbfee0befbfc3c3373ebc4b90d3f107de371761c33310dbd81bee31c880f445529480ac7ce5e753f9e750eeba33c86b2c88d0c0e206",
	},
}

// TestPrintVectors prints the vectors in README.md's format; regenerate with
// go test -run TestPrintVectors -v ./records -args -vectors
func TestPrintVectors(t *testing.T) {
	if !*printVectors {
		t.Skip("use -vectors to print")
	}
	for _, v := range vectors {
		id := seededID(v.seed)
		r := v.record(id)
		if err := Sign(r, id); err != nil {
			t.Fatal(err)
		}
		enc := mustEncode(t, r)
		fmt.Printf("%s\nname %s\nkey %s\nbody %s\nsig %s\n\n", v.name, r.Name.DNS(""), r.Key(), hex.EncodeToString(enc[:len(enc)-64]), hex.EncodeToString(r.Signature))
	}
}

// TestVectors checks the README's vectors: the encoding and signature of each
// record are byte-exact (Ed25519 signatures are deterministic), and the
// published bytes decode and verify.
func TestVectors(t *testing.T) {
	t.Parallel()
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			id := seededID(v.seed)
			r := v.record(id)
			if err := Sign(r, id); err != nil {
				t.Fatal(err)
			}
			enc := mustEncode(t, r)
			if got := hex.EncodeToString(enc[:len(enc)-64]); got != v.encHex {
				t.Errorf("body\n got %s\nwant %s", got, v.encHex)
			}
			if got := hex.EncodeToString(r.Signature); got != v.sigHex {
				t.Errorf("signature\n got %s\nwant %s", got, v.sigHex)
			}
			if got := r.Name.DNS(""); got != v.nameDNS {
				t.Errorf("name %s, want %s", got, v.nameDNS)
			}
			if got := r.Key().String(); got != v.keyHex {
				t.Errorf("key %s, want %s", got, v.keyHex)
			}
			published, _ := hex.DecodeString(v.encHex + v.sigHex)
			dec, err := Decode(published)
			if err != nil {
				t.Fatal(err)
			}
			if err := Verify(dec, dec.Issued); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestReadmeVectors keeps README.md's published vectors equal to the ones
// TestVectors checks.
func TestReadmeVectors(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	flat := strings.Join(strings.Fields(string(readme)), "")
	for _, v := range vectors {
		for _, h := range []string{v.encHex, v.sigHex, v.keyHex, v.nameDNS} {
			if !strings.Contains(flat, h) {
				t.Errorf("README.md lacks %s of vector %q", h, v.name)
			}
		}
	}
}

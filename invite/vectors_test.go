package invite

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/records"
)

// The vector code and inviter (docs/invitations.md, "Test vectors").
const vectorCode = 0x0123456789abcdef

func vectorInviter() *identity.Identity {
	var seed [32]byte
	for i := range seed {
		seed[i] = byte(i)
	}
	return identity.FromSeed(seed)
}

// vectorInvitation is the invitation of the vectors and the bytes its
// encryption nonce is read from.
func vectorInvitation() (*Invitation, *bytes.Reader) {
	issued := time.Unix(1764072000, 0).UTC()
	inv := &Invitation{Card: Card{
		Name:      identity.Name{Classifier: "alice"},
		Issued:    issued,
		Expires:   issued.Add(30 * time.Minute),
		Endpoints: []netip.Addr{netip.MustParseAddr("192.0.2.1")},
		Services:  []records.Service{{Service: "ssh", Proto: "tcp", Port: 22}},
		Payload:   []byte{0xde, 0xad, 0xbe, 0xef},
	}}
	for i := range inv.Nonce {
		inv.Nonce[i] = 0x10 + byte(i)
	}
	var xnonce [24]byte
	for i := range xnonce {
		xnonce[i] = 0x20 + byte(i)
	}
	return inv, bytes.NewReader(xnonce[:])
}

// TestVectors pins the derivation, the plaintext and the ciphertext. Run with
// PEERNAME_PRINT_VECTORS=1 and -v to print them.
func TestVectors(t *testing.T) {
	t.Parallel()
	code := CodeFromUint64(vectorCode)
	k := Derive(code)
	inv, rnd := vectorInvitation()
	rec, err := k.SealInvitation(inv, vectorInviter(), 1764072000000, rnd)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := records.Encode(rec)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := decrypt(k.InvitationKey, aad(invitationAADDomain, k.Invitation.Key()), rec.Payload)
	if err != nil {
		t.Fatal(err)
	}
	got := []struct{ what, got, want string }{
		{"code", code.String(), "28T5-CY4T-QKFF4"},
		{"signing public key", hex.EncodeToString(k.Signer.PublicKey()), vecSignerPub},
		{"authority", k.Signer.Authority().String(), vecAuthority},
		{"invitation overlay key", k.Invitation.Key().String(), vecInvitationKey},
		{"acceptance overlay key", k.Acceptance.Key().String(), vecAcceptanceKey},
		{"invitation encryption key", hex.EncodeToString(k.InvitationKey[:]), vecInvitationEnc},
		{"acceptance encryption key", hex.EncodeToString(k.AcceptanceKey[:]), vecAcceptanceEnc},
		{"plaintext", hex.EncodeToString(plain), vecPlaintext},
		{"payload", hex.EncodeToString(rec.Payload), vecPayload},
		{"record", hex.EncodeToString(enc), vecRecord},
	}
	for _, g := range got {
		if os.Getenv("PEERNAME_PRINT_VECTORS") != "" {
			t.Logf("%s: %s", g.what, g.got)
		}
		if g.got != g.want {
			t.Errorf("%s = %s, want %s", g.what, g.got, g.want)
		}
	}
	opened, err := k.OpenInvitation(rec, inv.Issued.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if opened.Name.String() != "alice."+vectorInviter().Authority().String() || opened.Nonce != inv.Nonce {
		t.Fatalf("opened %+v", opened)
	}
}

// The values below were computed independently by testdata/vectors.py
// (Python's hashlib and the cryptography package).
const (
	vecSignerPub     = "7ec2def2f8f6d519e2229517ba0b2cdae5886dbf6e8e90149035af28e2b233a7"
	vecAuthority     = "5fwt2bguec2hm3um3kpgrokht4rgjxr2"
	vecInvitationKey = "f2dc7ad22efa06b58d22b20e5f18d988153c9c555f567dd0d7257ac5bd0e86d0"
	vecAcceptanceKey = "79a39087703570439af12993f43b53e43a6547a0042c7e7a769f1a8a75beb3c5"
	vecInvitationEnc = "d52874927016242cf83042614110cd3d9c85688d1e59aaca63b0bf152b6a6ad4"
	vecAcceptanceEnc = "7e4e1794d694f8737949945859db323535893a997a93f331b7fec7d6711a8462"
	vecPlaintext     = "01101112131415161718191a1b1c1d1e1f01013daa76eda8fde7091eb9b732126cde049a50ebb705616c69636503a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b800000000000000000000000069259a40000000006925a1480104c0000201010373736803746370001600000000000004deadbeef8665abd19b21c374150893b195b6c079d9a9e127e75f3ab5b8168ae9b9d9a66bb226c994dd23e5dc40b05429a84e5d222e00b449557f190c23f0c175334ed305"
	vecPayload       = "01202122232425262728292a2b2c2d2e2f303132333435363722a8f2dcfb3e6b2e0b2225b578a6c9a33ae900c17c9745ef4d8869addad48c19efa366dbeb44dbe9b265b22d75b06c83fc7e47a001bcec4ff1fdd34e2a04432208fbb04d81037512d7ed15dab9f22c66fa123f494a05edb01edfe80db252af8cae482c073fad9eb7fbb7524d932158baf80d1e0eab1235f924c2beea2ae50defebe468fc88b436b6c6ab072d29f84a4a91cefa9226ef233d3245a3ee82dd67dddb829ca27467576ac30d33220ccfe4e3f190b2d659885d76175b2da5a4d398c77191f398ae3a70155d0a4dc65fb5c72e41"
	vecRecord        = "0101e96d3d04d420b4766e8cda9e68b9479f2264de3a0a696e7669746174696f6e7ec2def2f8f6d519e2229517ba0b2cdae5886dbf6e8e90149035af28e2b233a70000019abae28a000000000069259a40000000006925a14800000000ea01202122232425262728292a2b2c2d2e2f303132333435363722a8f2dcfb3e6b2e0b2225b578a6c9a33ae900c17c9745ef4d8869addad48c19efa366dbeb44dbe9b265b22d75b06c83fc7e47a001bcec4ff1fdd34e2a04432208fbb04d81037512d7ed15dab9f22c66fa123f494a05edb01edfe80db252af8cae482c073fad9eb7fbb7524d932158baf80d1e0eab1235f924c2beea2ae50defebe468fc88b436b6c6ab072d29f84a4a91cefa9226ef233d3245a3ee82dd67dddb829ca27467576ac30d33220ccfe4e3f190b2d659885d76175b2da5a4d398c77191f398ae3a70155d0a4dc65fb5c72e41ceb7645051a50ed54d5dc11888026d9c489032d44031116b51c843240b5f7ab518d604b2a51ccfa7d11af2d481e83906e045b37e03bc7c01e59370b065f5ca0c"
)

// BenchmarkDerive measures the Argon2id cost a code guess costs an attacker
// (and each side once).
func BenchmarkDerive(b *testing.B) {
	for i := 0; b.Loop(); i++ {
		Derive(CodeFromUint64(uint64(i)))
	}
}

package invite

import (
	"bytes"
	"testing"
)

// FuzzDecodePlaintext checks that the invitation decoder never panics on
// what a code holder might have encrypted, and that whatever it accepts
// re-encodes to the same bytes.
func FuzzDecodePlaintext(f *testing.F) {
	inv, _ := vectorInvitation()
	k := fromMaster(make([]byte, 32))
	p, err := sealPlaintext(invitationCardDomain, k.Signer.Authority(), inv.Nonce, &inv.Card, vectorInviter())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(p)
	f.Add(p[:len(p)-1])
	f.Add([]byte{1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, nonce, sig, err := DecodePlaintext(b)
		if err != nil {
			return
		}
		back, err := EncodePlaintext(c, nonce, sig)
		if err != nil {
			t.Fatalf("accepted %x but cannot encode it: %v", b, err)
		}
		if !bytes.Equal(back, b) {
			t.Fatalf("round trip %x -> %x", b, back)
		}
		_, _, _ = openPlaintext(invitationCardDomain, k.Signer.Authority(), b)
	})
}

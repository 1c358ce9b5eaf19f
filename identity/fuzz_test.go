package identity

import (
	"bytes"
	"encoding/pem"
	"testing"

	"golang.org/x/crypto/ssh"
)

// FuzzParseName checks that any string either parses to a valid name that
// formats back to an equivalent DNS name, or fails with an error; never a
// panic.
func FuzzParseName(f *testing.F) {
	auth := seedID().Authority().String()
	for _, s := range []string{
		"alice." + auth + ".peer.alt.", "printer.0.peer.alt", "_ssh._tcp.a.0.peer.alt.",
		"peer.alt.", "", ".", "..", "a..peer.alt", "A.0.PEER.ALT.",
	} {
		f.Add(s, "")
		f.Add(s, "example.com")
	}
	f.Fuzz(func(t *testing.T, in, zone string) {
		n, err := ParseName(in, zone)
		if err != nil {
			return
		}
		if !n.Valid() {
			t.Fatalf("ParseName(%q) returned invalid %+v", in, n)
		}
		back, err := ParseName(n.DNS(zone), zone)
		if err != nil || back != n {
			t.Fatalf("round trip %q -> %+v -> %q -> %+v, %v", in, n, n.DNS(zone), back, err)
		}
		if _, _, _, err := ParseServiceName(in, zone); err == nil {
			t.Fatalf("%q parsed as both a name and a service name", in)
		}
	})
}

// FuzzParseKey checks that no key file content panics the parser, and that
// whatever it accepts is a working key pair.
func FuzzParseKey(f *testing.F) {
	id := seedID()
	pkcs8, _ := id.MarshalPKCS8()
	f.Add(pkcs8)
	if b, err := ssh.MarshalPrivateKey(id.PrivateKey(), ""); err == nil {
		f.Add(pem.EncodeToMemory(b))
	}
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := ParseKey(data)
		if err != nil {
			return
		}
		msg := []byte("peername fuzz")
		sig := got.Sign(msg)
		if len(sig) != 64 || bytes.Equal(got.PublicKey(), make([]byte, 32)) {
			t.Fatal("accepted key does not sign")
		}
	})
}

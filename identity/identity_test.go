package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// seedID is the identity of the test vectors: the seed 00 01 02 ... 1f.
func seedID() *Identity {
	var seed [32]byte
	for i := range seed {
		seed[i] = byte(i)
	}
	return FromSeed(seed)
}

// Test vectors, also given in records/README.md. They pin the hashes and the
// authority encoding so that a change to either is caught.
func TestVectors(t *testing.T) {
	t.Parallel()
	id := seedID()
	pub := hex.EncodeToString(id.PublicKey())
	if want := "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"; pub != want {
		t.Fatalf("public key %s, want %s", pub, want)
	}
	n, err := NewSecuredName("alice", id.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	u, _ := NewUnsecuredName("printer")
	for _, tc := range []struct{ what, got, want string }{
		{"node ID", id.NodeID().String(), vecNodeID},
		{"authority", id.Authority().String(), vecAuthority},
		{"secured DNS name", n.DNS(""), "alice." + vecAuthority + ".peer.alt."},
		{"secured key", n.Key().String(), vecSecuredKey},
		{"unsecured key", u.Key().String(), vecUnsecuredKey},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %s, want %s", tc.what, tc.got, tc.want)
		}
	}
}

// The expected values were computed independently with Python's hashlib and
// base64.b32encode (see records/README.md).
const (
	vecNodeID       = "dfb9af52f3c8e46fd34a1498db28dbe7bdf600a84eefcf0c46c7106f167cb4d8"
	vecAuthority    = "hwvhn3ni7xtqshvzw4zbe3g6asnfb25x"
	vecSecuredKey   = "9d052831d04a394e8f7ab24f7c69304287a0879d56ab2ab9dc089603428b5ef7"
	vecUnsecuredKey = "e7e6ab8fdb3e1137320331739e257666110777c8a4b68b4fed61b973106dc56d"
)

func TestAuthorityRoundTrip(t *testing.T) {
	t.Parallel()
	for range 100 {
		id, err := Generate(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		a := id.Authority()
		s := a.String()
		if len(s) != 32 || strings.ToLower(s) != s || strings.ContainsAny(s, "=01") {
			t.Fatalf("authority %q: want 32 lowercase base32 characters", s)
		}
		for _, in := range []string{s, strings.ToUpper(s)} {
			b, err := ParseAuthority(in)
			if err != nil || b != a {
				t.Fatalf("ParseAuthority(%q) = %v, %v; want %v", in, b, err, a)
			}
		}
	}
}

func TestParseName(t *testing.T) {
	t.Parallel()
	id := seedID()
	auth := id.Authority().String()
	secured := Name{Classifier: "alice", Secured: true, Authority: id.Authority()}
	tests := []struct {
		in, zone string
		want     Name
		err      error
	}{
		{in: "alice." + auth + ".peer.alt.", want: secured},
		{in: "alice." + auth + ".peer.alt", want: secured},
		{in: "ALICE." + strings.ToUpper(auth) + ".Peer.Alt.", want: secured},
		{in: "alice." + auth + ".example.com.", zone: "example.com", want: secured},
		{in: "alice." + auth + ".example.com.", zone: "Example.COM.", want: secured},
		{in: "printer.0.peer.alt.", want: Name{Classifier: "printer"}},
		{in: "a-1.0.peer.alt", want: Name{Classifier: "a-1"}},
		{in: "alice." + auth + ".example.com.", err: ErrNotInZone},
		{in: "alice." + auth + ".xpeer.alt.", err: ErrNotInZone},
		{in: "peer.alt.", err: ErrBadName},
		{in: auth + ".peer.alt.", err: ErrBadName},
		{in: "x.alice." + auth + ".peer.alt.", err: ErrBadName},
		{in: "alice..peer.alt.", err: ErrBadName},
		{in: strings.Repeat("a", 64) + "." + auth + ".peer.alt.", err: ErrLabelTooLong},
		{in: strings.Repeat("a", 63) + ".0.peer.alt.", want: Name{Classifier: strings.Repeat("a", 63)}},
		{in: "al_ice." + auth + ".peer.alt.", err: ErrBadClassifier},
		{in: "-alice.0.peer.alt.", err: ErrBadClassifier},
		{in: "alice-.0.peer.alt.", err: ErrBadClassifier},
		{in: "al\\065ice.0.peer.alt.", err: ErrBadClassifier},
		{in: "alice." + auth[:31] + ".peer.alt.", err: ErrBadAuthority},
		{in: "alice." + auth + "a.peer.alt.", err: ErrBadAuthority},
		{in: "alice." + auth[:31] + "1.peer.alt.", err: ErrBadAuthority},
		{in: "alice." + strings.Repeat("a", 64) + ".peer.alt.", err: ErrLabelTooLong},
		{in: strings.Repeat("abcdefghij.", 23) + "0.peer.alt.", err: ErrBadName},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseName(tc.in, tc.zone)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("ParseName(%q) error = %v, want %v", tc.in, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseName(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
			// Formatting back gives the lowercase fully qualified form.
			if back, err := ParseName(got.DNS(tc.zone), tc.zone); err != nil || back != got {
				t.Fatalf("round trip of %q: %+v, %v", got.DNS(tc.zone), back, err)
			}
		})
	}
}

func TestParseServiceName(t *testing.T) {
	t.Parallel()
	auth := seedID().Authority().String()
	svc, proto, n, err := ParseServiceName("_SSH._tcp.alice."+auth+".peer.alt", "")
	if err != nil || svc != "ssh" || proto != "tcp" || n.Classifier != "alice" || !n.Secured {
		t.Fatalf("got %q %q %+v %v", svc, proto, n, err)
	}
	for _, in := range []string{
		"ssh._tcp.alice." + auth + ".peer.alt.",
		"_._tcp.alice." + auth + ".peer.alt.",
		"_ssh.alice." + auth + ".peer.alt.",
		"_ssh._t_p.alice.0.peer.alt.",
	} {
		if _, _, _, err := ParseServiceName(in, ""); !errors.Is(err, ErrBadName) {
			t.Errorf("ParseServiceName(%q) error = %v, want ErrBadName", in, err)
		}
	}
}

func TestNameKeysDiffer(t *testing.T) {
	t.Parallel()
	a, b := seedID(), mustGenerate(t)
	na, _ := NewSecuredName("x", a.PublicKey())
	nb, _ := NewSecuredName("x", b.PublicKey())
	nu, _ := NewUnsecuredName("x")
	ny, _ := NewSecuredName("y", a.PublicKey())
	keys := map[Key]string{}
	for _, n := range []Name{na, nb, nu, ny} {
		if prev, dup := keys[n.Key()]; dup {
			t.Fatalf("%s and %s share a key", prev, n)
		}
		keys[n.Key()] = n.String()
	}
	if na.Key() == a.NodeID() {
		t.Fatal("name key equals node ID: domains not separated")
	}
}

func mustGenerate(t *testing.T) *Identity {
	t.Helper()
	id, err := Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestKeyFileRoundTrip(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "node.key")
	id := mustGenerate(t)
	if err := id.SaveFile(path); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %04o, want 0600", st.Mode().Perm())
	}
	got, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !got.PublicKey().Equal(id.PublicKey()) {
		t.Fatal("loaded a different key")
	}
	// SaveFile never overwrites.
	if err := mustGenerate(t).SaveFile(path); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second SaveFile error = %v, want ErrExist", err)
	}
	if again, _ := LoadFile(path); !again.PublicKey().Equal(id.PublicKey()) {
		t.Fatal("key file was replaced")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".peername-key-*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

func TestLoadFileRefusesReadableKey(t *testing.T) {
	t.Parallel()
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		path := filepath.Join(t.TempDir(), "node.key")
		if err := mustGenerate(t).SaveFile(path); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadFile(path)
		if !errors.Is(err, ErrKeyFilePermissions) {
			t.Fatalf("mode %04o: error = %v, want ErrKeyFilePermissions", mode, err)
		}
		if !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("error %q does not say how to fix it", err)
		}
	}
}

func TestLoadOrCreate(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sub.key")
	id, created, err := LoadOrCreate(path)
	if err != nil || !created {
		t.Fatalf("first LoadOrCreate: created=%v err=%v", created, err)
	}
	id2, created, err := LoadOrCreate(path)
	if err != nil || created || !id2.PublicKey().Equal(id.PublicKey()) {
		t.Fatalf("second LoadOrCreate: created=%v err=%v", created, err)
	}
	if _, _, err := LoadOrCreate(filepath.Join(t.TempDir(), "missing", "dir", "x.key")); err == nil {
		t.Fatal("LoadOrCreate in a missing directory succeeded")
	}
}

func TestParseKeyOpenSSH(t *testing.T) {
	t.Parallel()
	id := mustGenerate(t)
	block, err := ssh.MarshalPrivateKey(id.PrivateKey(), "test key")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseKey(pem.EncodeToMemory(block))
	if err != nil {
		t.Fatal(err)
	}
	if !got.PublicKey().Equal(id.PublicKey()) {
		t.Fatal("OpenSSH key parsed to a different key")
	}
	enc, err := ssh.MarshalPrivateKeyWithPassphrase(id.PrivateKey(), "", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseKey(pem.EncodeToMemory(enc)); !errors.Is(err, ErrBadKeyFile) || !strings.Contains(err.Error(), "encrypted") {
		t.Fatalf("encrypted OpenSSH key: error = %v", err)
	}
}

func TestParseKeyRejects(t *testing.T) {
	t.Parallel()
	good, _ := mustGenerate(t).MarshalPKCS8()
	ecKey := "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgmyF0ZR6h4ZWzbdMz\nq6b0K6V+4V8ptDr7mHXi5lWiaBGhRANCAAQLHw7UgkUNdrJ6ls9EsAdkL0L0qvPh\nmcZ5Uz1SGyp4RAW5tjGn58JUpAbd3lJvwjMsgeJz6KHaA0a5Nb0JdU4X\n-----END PRIVATE KEY-----\n"
	der, _ := x509.MarshalPKCS8PrivateKey(ed25519.NewKeyFromSeed(make([]byte, 32)))
	cases := map[string][]byte{
		"empty":         nil,
		"not PEM":       []byte("hello"),
		"wrong type":    pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}),
		"garbage DER":   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{0x30, 0x03, 1, 2, 3}}),
		"trailing data": append(append([]byte{}, good...), "junk"...),
		"two keys":      append(append([]byte{}, good...), good...),
		"EC key":        []byte(ecKey),
		"headers":       pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: der}),
		"bad OpenSSH":   pem.EncodeToMemory(&pem.Block{Type: "OPENSSH PRIVATE KEY", Bytes: []byte("openssh-key-v1\x00junk")}),
		"truncated PEM": good[:len(good)/2],
	}
	for name, data := range cases {
		if _, err := ParseKey(data); !errors.Is(err, ErrBadKeyFile) {
			t.Errorf("%s: error = %v, want ErrBadKeyFile", name, err)
		}
	}
}

func TestCloser(t *testing.T) {
	t.Parallel()
	var target, a, b Key
	target[0], a[0], b[0] = 0x80, 0x81, 0x90 // a differs from target in a lower bit than b
	tests := []struct {
		a, b Key
		want bool
	}{{a, b, true}, {b, a, false}, {a, a, false}, {target, a, true}}
	for _, tt := range tests {
		if got := Closer(tt.a, tt.b, target); got != tt.want {
			t.Errorf("Closer(%x.., %x.., %x..) = %v, want %v", tt.a[0], tt.b[0], target[0], got, tt.want)
		}
	}
}

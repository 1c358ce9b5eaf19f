package main

import (
	"errors"
	"testing"

	"github.com/miekg/dns"
)

func TestParseTSIGKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		name string
		err  bool
	}{
		{in: "key \"registrar.\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0\";\n};\n", name: "registrar."},
		{in: "# made by tsig-keygen\nkey \"App.Example\" { algorithm HMAC-SHA512; secret \"c2VjcmV0\"; };", name: "app.example."},
		{in: "key registrar { algorithm hmac-sha256; secret \"c2VjcmV0\"; };", name: "registrar."},
		{in: "key \"r.\" { algorithm hmac-md5; secret \"c2VjcmV0\"; };", err: true},
		{in: "key \"r.\" { algorithm hmac-sha256; secret \"!!\"; };", err: true},
		{in: "key \"r.\" { secret \"c2VjcmV0\"; };", err: true},
		{in: "", err: true},
		{in: "key \"a..b\" { algorithm hmac-sha256; secret \"c2VjcmV0\"; };", err: true},
	}
	for _, tt := range tests {
		k, err := parseTSIGKey([]byte(tt.in))
		switch {
		case tt.err && !errors.Is(err, ErrBadTSIGKey):
			t.Errorf("%q: err = %v, want ErrBadTSIGKey", tt.in, err)
		case !tt.err && (err != nil || k.Name != tt.name):
			t.Errorf("%q: %+v, %v; want name %s", tt.in, k, err, tt.name)
		}
	}
	k := tsigKey{Name: "registrar.", Algorithm: dns.HmacSHA256, Secret: "c2VjcmV0"}
	if again, err := parseTSIGKey(k.format()); err != nil || again != k {
		t.Errorf("format round trip: %+v, %v", again, err)
	}
}

func FuzzParseTSIGKey(f *testing.F) {
	f.Add([]byte("key \"registrar.\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0\";\n};\n"))
	f.Add([]byte("key x { algorithm hmac-sha1; secret \"=\"; };"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := parseTSIGKey(data)
		if err != nil {
			return
		}
		if again, err := parseTSIGKey(k.format()); err != nil || again != k {
			t.Fatalf("accepted %q as %+v, which does not round-trip: %+v %v", data, k, again, err)
		}
	})
}

package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/miekg/dns"
)

// tsigKey is a TSIG key (RFC 8945) as BIND's key files hold it, the format
// tsig-keygen writes and nsupdate -k reads:
//
//	key "registrar." {
//		algorithm hmac-sha256;
//		secret "base64...";
//	};
type tsigKey struct {
	Name      string // fully qualified, lowercase
	Algorithm string // miekg/dns name, e.g. dns.HmacSHA256
	Secret    string // base64, as the file holds it
}

// ErrBadTSIGKey is wrapped by every error of parseTSIGKey.
var ErrBadTSIGKey = errors.New("bad TSIG key file")

// tsigAlgorithms maps the algorithm names of BIND key files to miekg/dns's.
var tsigAlgorithms = map[string]string{
	"hmac-sha1":   dns.HmacSHA1,
	"hmac-sha224": dns.HmacSHA224,
	"hmac-sha256": dns.HmacSHA256,
	"hmac-sha384": dns.HmacSHA384,
	"hmac-sha512": dns.HmacSHA512,
}

var tsigKeyRE = regexp.MustCompile(`^\s*key\s+"?([A-Za-z0-9._-]+)"?\s*\{\s*algorithm\s+"?([A-Za-z0-9-]+)"?\s*;\s*secret\s+"([A-Za-z0-9+/=]+)"\s*;\s*\}\s*;\s*$`)

// parseTSIGKey reads one key statement (comments, // # and /* */ on their
// own lines, are allowed around it).
func parseTSIGKey(data []byte) (tsigKey, error) {
	if len(data) > 4096 {
		return tsigKey{}, fmt.Errorf("%w: %d bytes, one key statement is far less", ErrBadTSIGKey, len(data))
	}
	var body []string
	for _, line := range strings.Split(string(data), "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "#") || strings.HasPrefix(t, "//") || (strings.HasPrefix(t, "/*") && strings.HasSuffix(t, "*/")) {
			continue
		}
		body = append(body, t)
	}
	m := tsigKeyRE.FindStringSubmatch(strings.Join(body, " "))
	if m == nil {
		return tsigKey{}, fmt.Errorf(`%w: want key "NAME" { algorithm ALG; secret "BASE64"; };`, ErrBadTSIGKey)
	}
	alg, ok := tsigAlgorithms[strings.ToLower(m[2])]
	if !ok {
		return tsigKey{}, fmt.Errorf("%w: algorithm %q (want hmac-sha1, -sha224, -sha256, -sha384 or -sha512)", ErrBadTSIGKey, m[2])
	}
	secret, err := base64.StdEncoding.DecodeString(m[3])
	if err != nil || len(secret) == 0 {
		return tsigKey{}, fmt.Errorf("%w: secret is not base64", ErrBadTSIGKey)
	}
	if _, valid := dns.IsDomainName(m[1]); !valid {
		return tsigKey{}, fmt.Errorf("%w: key name %q", ErrBadTSIGKey, m[1])
	}
	return tsigKey{Name: dns.CanonicalName(m[1]), Algorithm: alg, Secret: m[3]}, nil
}

// loadTSIGKey reads a key file.
func loadTSIGKey(path string) (tsigKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return tsigKey{}, err
	}
	k, err := parseTSIGKey(data)
	if err != nil {
		return tsigKey{}, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// format writes k in BIND's syntax.
func (k tsigKey) format() []byte {
	alg := "hmac-sha256"
	for name, a := range tsigAlgorithms {
		if a == k.Algorithm {
			alg = name
		}
	}
	return fmt.Appendf(nil, "key \"%s\" {\n\talgorithm %s;\n\tsecret \"%s\";\n};\n", k.Name, alg, k.Secret)
}

package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/miekg/dns"
	"github.com/peername/peername/identity"
)

func init() {
	register("keygen", command{"create an Ed25519 identity key file (mode 0600)", runKeygen})
}

func runKeygen(_ context.Context, e *env, args []string) error {
	fset := newFlagSet(e, "keygen", "FILE | -tsig FILE [-tsig-name NAME]",
		"Creates a new Ed25519 identity and writes it to FILE as a PKCS#8 PEM private key\n"+
			"with mode 0600. An existing FILE is never overwritten. Prints the identity's\n"+
			"authority (the label of its secured names) and its overlay node ID.\n"+
			"With -tsig, writes a new TSIG key (HMAC-SHA256, 256 random bits) in BIND's\n"+
			"key-file format instead, for the Corefile's tsig block, nsupdate -k and\n"+
			"peername register.")
	tsigFile := fset.String("tsig", "", "write a TSIG key to `FILE` (mode 0600) instead of an identity")
	tsigName := fset.String("tsig-name", "registrar.", "the TSIG key's `NAME`")
	minPos, maxPos := 1, 1
	if hasFlag(args, "tsig") {
		minPos, maxPos = 0, 0
	}
	pos, err := parseArgs(fset, args, minPos, maxPos)
	if err != nil {
		return err
	}
	r := e.rand
	if r == nil {
		r = rand.Reader
	}
	if *tsigFile != "" {
		return writeTSIGKey(e, r, *tsigFile, *tsigName)
	}
	path := pos[0]
	id, err := identity.Generate(r)
	if err != nil {
		return err
	}
	if err := id.SaveFile(path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s already exists; refusing to overwrite it: %w", path, err)
		}
		return err
	}
	fmt.Fprintf(e.stdout, "wrote %s\nauthority %s\nnode-id   %s\n", path, id.Authority(), id.NodeID())
	return nil
}

// hasFlag reports whether args set the flag name (-name, --name, -name=V).
func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

// writeTSIGKey writes a new HMAC-SHA256 key named name to path, never over
// an existing file.
func writeTSIGKey(e *env, r io.Reader, path, name string) error {
	if _, ok := dns.IsDomainName(name); !ok || name == "" {
		return fmt.Errorf("-tsig-name %q is not a domain name", name)
	}
	secret := make([]byte, 32)
	if _, err := io.ReadFull(r, secret); err != nil {
		return err
	}
	k := tsigKey{Name: dns.CanonicalName(name), Algorithm: dns.HmacSHA256, Secret: base64.StdEncoding.EncodeToString(secret)}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s already exists; refusing to overwrite it: %w", path, err)
		}
		return err
	}
	if _, err := f.Write(k.format()); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "wrote %s\ntsig key  %s (hmac-sha256)\nCorefile  tsig { secret %s %s }\n", path, k.Name, k.Name, k.Secret)
	return nil
}

package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"

	"github.com/peername/peername/identity"
)

func init() {
	register("keygen", command{"create an Ed25519 identity key file (mode 0600)", runKeygen})
}

func runKeygen(_ context.Context, e *env, args []string) error {
	fset := newFlagSet(e, "keygen", "FILE",
		"Creates a new Ed25519 identity and writes it to FILE as a PKCS#8 PEM private key\n"+
			"with mode 0600. An existing FILE is never overwritten. Prints the identity's\n"+
			"authority (the label of its secured names) and its overlay node ID.")
	pos, err := parseArgs(fset, args, 1, 1)
	if err != nil {
		return err
	}
	path := pos[0]
	r := e.rand
	if r == nil {
		r = rand.Reader
	}
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

package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/peername/peername/identity"
)

func init() {
	register("name", command{"print the fully qualified DNS name of a classifier", runName})
}

func runName(_ context.Context, e *env, args []string) error {
	fset := newFlagSet(e, "name", "-key FILE [-zone ZONE] CLASSIFIER",
		"Prints the fully qualified DNS name under which the holder of the key in FILE\n"+
			"publishes CLASSIFIER (<classifier>.<authority>.<zone>), or with -unsecured the\n"+
			"unsecured name <classifier>.0.<zone> that anyone may publish.")
	keyFile := fset.String("key", "", "identity key `FILE` (as written by peername keygen, or an OpenSSH ed25519 key)")
	zone := fset.String("zone", identity.DefaultZone, "DNS `ZONE` the cloud's names live under")
	unsecured := fset.Bool("unsecured", false, "print the unsecured name (no key needed)")
	pos, err := parseArgs(fset, args, 1, 1)
	if err != nil {
		return err
	}
	if (*keyFile == "") == !*unsecured {
		fmt.Fprintln(fset.Output(), "peername name: give exactly one of -key FILE and -unsecured")
		fset.Usage()
		return errUsage
	}
	z, err := canonicalZone(*zone)
	if err != nil {
		return err
	}
	var n identity.Name
	if *unsecured {
		n, err = identity.NewUnsecuredName(pos[0])
	} else {
		id, lerr := identity.LoadFile(*keyFile)
		if lerr != nil {
			return lerr
		}
		n, err = identity.NewSecuredName(pos[0], id.PublicKey())
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, n.DNS(z))
	return nil
}

// errBadZone reports a -zone that is not a usable DNS name.
var errBadZone = errors.New("bad zone")

// canonicalZone lower-cases zone and makes it fully qualified.
func canonicalZone(zone string) (string, error) {
	z := []byte(zone)
	for i, c := range z {
		switch {
		case c >= 'A' && c <= 'Z':
			z[i] = c + 'a' - 'A'
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '.', c == '_':
		default:
			return "", fmt.Errorf("zone %q: character %q: %w", zone, c, errBadZone)
		}
	}
	s := string(z)
	if s == "" || s == "." {
		return "", fmt.Errorf("zone %q: empty: %w", zone, errBadZone)
	}
	if s[len(s)-1] != '.' {
		s += "."
	}
	if s[0] == '.' || containsEmptyLabel(s) {
		return "", fmt.Errorf("zone %q: empty label: %w", zone, errBadZone)
	}
	return s, nil
}

func containsEmptyLabel(fqdn string) bool {
	for i := 1; i < len(fqdn); i++ {
		if fqdn[i] == '.' && fqdn[i-1] == '.' {
			return true
		}
	}
	return false
}

package main

import (
	"context"
	"fmt"

	"github.com/peername/peername/contacts"
	"github.com/peername/peername/identity"
)

func init() {
	register("contacts", command{"list, add and remove contacts (petname -> secured name)", runContacts})
}

func runContacts(_ context.Context, e *env, args []string) error {
	fset := newFlagSet(e, "contacts", "[-state DIR] list | add PETNAME NAME | remove PETNAME",
		"Manages the contacts file: petnames for other peers' secured names, such as\n"+
			"those saved by \"peername accept -save\" and \"peername invite -save\". NAME is\n"+
			"CLASSIFIER.AUTHORITY, with or without the zone. The file is DIR/contacts for\n"+
			"-state DIR, else ~/.config/peername/contacts.")
	stateDir := fset.String("state", "", "the contacts of the state `DIR`")
	file := fset.String("file", "", "the contacts `FILE` (overrides -state)")
	zone := fset.String("zone", identity.DefaultZone, "DNS `ZONE` the names are printed under")
	pos, err := parseArgs(fset, args, 1, 3)
	if err != nil {
		return err
	}
	z, err := canonicalZone(*zone)
	if err != nil {
		return err
	}
	path := *file
	if path == "" {
		if path, err = contacts.DefaultPath(*stateDir); err != nil {
			return err
		}
	}
	book, err := contacts.Load(path)
	if err != nil {
		return err
	}
	want := map[string]int{"list": 1, "add": 3, "remove": 2}
	n, ok := want[pos[0]]
	if !ok || len(pos) != n {
		fmt.Fprintf(fset.Output(), "peername contacts: want list, add PETNAME NAME or remove PETNAME\n")
		fset.Usage()
		return errUsage
	}
	switch pos[0] {
	case "list":
		for _, c := range book.List() {
			fmt.Fprintf(e.stdout, "%-16s %s\n", c.Petname, c.Name.DNS(z))
		}
		return nil
	case "add":
		c, err := contacts.NewContact(pos[1], pos[2])
		if err != nil {
			return err
		}
		if err := book.Add(c.Petname, c.Name); err != nil {
			return err
		}
	case "remove":
		if err := book.Remove(pos[1]); err != nil {
			return err
		}
	}
	return book.Save()
}

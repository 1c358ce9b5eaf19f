package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/peername/peername/contacts"
	"github.com/peername/peername/identity"
	"github.com/peername/peername/invite"
)

func init() {
	register("accept", command{"find the invitation of a one-time code, check it and print the inviter's addresses", runAccept})
}

func runAccept(ctx context.Context, e *env, args []string) error {
	fset := newFlagSet(e, "accept", "-bootstrap ADDR [-save PETNAME] [-json] CODE",
		"Finds the invitation of CODE on the overlay (case, spaces and dashes do not\n"+
			"matter; a typo is caught before any lookup), checks who signed it, decrypts it\n"+
			"and prints the inviter's secured name, addresses, services, TXT and payload.\n"+
			"It tells the inviter you accepted (with your secured name, -name under -key),\n"+
			"after which the code cannot be used again. Exits 1 with a message for a\n"+
			"mistyped, unknown, expired or already used code.")
	cf := addCloudFlags(fset)
	uf := addUserFlags(fset, "your acceptance")
	timeout := fset.Duration("timeout", 20*time.Second, "give up after `D` (joining and searching together)")
	save := fset.String("save", "", "save the inviter as contact `PETNAME`")
	zone := fset.String("zone", identity.DefaultZone, "DNS `ZONE` the names live under")
	jsonOut := fset.Bool("json", false, "print the invitation as one JSON object")
	pos, err := parseArgs(fset, args, 1, -1)
	if err != nil {
		return err
	}
	if err := cf.check(fset, "accept"); err != nil {
		return err
	}
	z, err := canonicalZone(*zone)
	if err != nil {
		return err
	}
	if *save != "" {
		if _, err := contacts.CheckPetname(*save); err != nil {
			return fmt.Errorf("-save: %w", err)
		}
	}
	// A code read aloud may have been typed as several arguments.
	var typed string
	for _, p := range pos {
		typed += p
	}
	code, err := invite.Parse(typed)
	if err != nil {
		if errors.Is(err, invite.ErrCodeCheck) {
			return fmt.Errorf("%s: mistyped code: %w; nothing was looked up, ask for the code again", typed, err)
		}
		return fmt.Errorf("%s: mistyped code: %w", typed, err)
	}
	id, err := uf.load(e, *cf.stateDir)
	if err != nil {
		return err
	}
	if _, err := identity.NewSecuredName(*uf.name, id.PublicKey()); err != nil {
		return fmt.Errorf("-name: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	ov, err := cf.joinCloud(ctx, e)
	if err != nil {
		return err
	}
	defer ov.Close()
	inv, err := invite.Accept(ctx, ov, code, id, invite.Card{Name: identity.Name{Classifier: *uf.name}}, invite.Options{Rand: e.rand})
	switch {
	case err == nil:
	case errors.Is(err, invite.ErrUnknown):
		return fmt.Errorf("%s: %w: check the code with the inviter (an invitation that expired or was used is gone too)", code, err)
	case errors.Is(err, invite.ErrExpired):
		return fmt.Errorf("%s: %w: ask the inviter for a new one", code, err)
	case errors.Is(err, invite.ErrUsed):
		return fmt.Errorf("%s: %w: it works once; ask the inviter for a new one", code, err)
	case errors.Is(err, invite.ErrForged):
		return fmt.Errorf("%s: %w (what is stored under it fails verification)", code, err)
	default:
		return fmt.Errorf("%s: %w", code, err)
	}
	var saved string
	if *save != "" {
		if err := saveContact(*cf.stateDir, *save, inv.Name); err != nil {
			return err
		}
		saved = *save
	}
	if *jsonOut {
		out := struct {
			Inviter   string        `json:"inviter"`
			Authority string        `json:"authority"`
			PublicKey string        `json:"public_key"`
			Expires   time.Time     `json:"expires"`
			Addresses []netip.Addr  `json:"addresses"`
			Services  []jsonService `json:"services"`
			TXT       []string      `json:"txt"`
			Payload   []byte        `json:"payload,omitempty"`
			SavedAs   string        `json:"saved_as,omitempty"`
		}{
			Inviter: inv.Name.DNS(z), Authority: inv.Name.Authority.String(), PublicKey: hex.EncodeToString(inv.Key),
			Expires: inv.Expires, Addresses: nonNil(inv.Endpoints), Services: []jsonService{}, TXT: nonNil(inv.TXT),
			Payload: inv.Payload, SavedAs: saved,
		}
		for _, s := range inv.Services {
			out.Services = append(out.Services, jsonService(s))
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	fmt.Fprintf(e.stdout, "inviter    %s (signature verified)\n", inv.Name.DNS(z))
	fmt.Fprintf(e.stdout, "public key %s\n", hex.EncodeToString(inv.Key))
	fmt.Fprintf(e.stdout, "expires    %s\n", inv.Expires.Format(time.RFC3339))
	for _, a := range inv.Endpoints {
		fmt.Fprintf(e.stdout, "address    %s\n", a)
	}
	for _, s := range inv.Services {
		fmt.Fprintf(e.stdout, "service    _%s._%s port %d\n", s.Service, s.Proto, s.Port)
	}
	for _, t := range inv.TXT {
		fmt.Fprintf(e.stdout, "txt        %q\n", t)
	}
	if len(inv.Payload) > 0 {
		fmt.Fprintf(e.stdout, "payload    %d bytes: %s\n", len(inv.Payload), hex.EncodeToString(inv.Payload))
	}
	if saved != "" {
		fmt.Fprintf(e.stdout, "saved as contact %s (%s.contacts.%s)\n", saved, saved, z)
	}
	return nil
}

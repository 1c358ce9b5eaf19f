package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/peername/peername/contacts"
	"github.com/peername/peername/identity"
	"github.com/peername/peername/invite"
	"github.com/peername/peername/records"
)

func init() {
	register("invite", command{"publish a one-time invitation code and wait until a helper accepts it", runInvite})
}

// stringList is a repeatable flag whose values may also be comma-separated.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	for part := range strings.SplitSeq(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*s = append(*s, part)
		}
	}
	return nil
}

// repeated is a repeatable flag taken verbatim (TXT strings may hold commas).
type repeated []string

func (s *repeated) String() string     { return strings.Join(*s, " ") }
func (s *repeated) Set(v string) error { *s = append(*s, v); return nil }

// userFlags name the user's own identity and the secured name it offers.
type userFlags struct {
	key, name *string
}

func addUserFlags(fset *flag.FlagSet, what string) *userFlags {
	return &userFlags{
		key:  fset.String("key", "", "the identity key `FILE` that signs "+what+" (default peername.key in -state DIR, else ./peername.key; created if missing)"),
		name: fset.String("name", "node", "`CLASSIFIER` of your secured name, as your node publishes it"),
	}
}

// load returns the identity, creating its key file if needed.
func (u *userFlags) load(e *env, stateDir string) (*identity.Identity, error) {
	path := *u.key
	if path == "" {
		path = "peername.key"
		if stateDir != "" {
			if err := os.MkdirAll(stateDir, 0o700); err != nil {
				return nil, fmt.Errorf("-state: %w", err)
			}
			path = filepath.Join(stateDir, "peername.key")
		}
	}
	id, created, err := identity.LoadOrCreate(path)
	if err != nil {
		return nil, err
	}
	if created {
		fmt.Fprintf(e.stderr, "created identity %s (authority %s)\n", path, id.Authority())
	}
	return id, nil
}

func parseServiceFlag(s string) (records.Service, error) {
	f := strings.Split(s, "/")
	if len(f) != 3 {
		return records.Service{}, fmt.Errorf("-service %q: want SERVICE/PROTO/PORT, e.g. ssh/tcp/22", s)
	}
	port, err := strconv.ParseUint(f[2], 10, 16)
	if err != nil || port == 0 {
		return records.Service{}, fmt.Errorf("-service %q: port must be 1 to 65535", s)
	}
	svc, err := identity.CheckServiceLabel(strings.TrimPrefix(f[0], "_"))
	if err != nil {
		return records.Service{}, fmt.Errorf("-service %q: %w", s, err)
	}
	proto, err := identity.CheckServiceLabel(strings.TrimPrefix(f[1], "_"))
	if err != nil {
		return records.Service{}, fmt.Errorf("-service %q: %w", s, err)
	}
	return records.Service{Service: svc, Proto: proto, Port: uint16(port)}, nil
}

// readPayload reads -payload: the bytes of the string, or of FILE for @FILE.
func readPayload(s string) ([]byte, error) {
	if f, ok := strings.CutPrefix(s, "@"); ok {
		return os.ReadFile(f)
	}
	return []byte(s), nil
}

func runInvite(ctx context.Context, e *env, args []string) error {
	fset := newFlagSet(e, "invite", "-bootstrap ADDR [-service SVC/PROTO/PORT]... [-addr IP]... [-txt S]... [-payload DATA] [-for D] [-json]",
		"Publishes an encrypted invitation on the overlay and prints its one-time code,\n"+
			"to be read to the helper (who runs \"peername accept CODE\"). The invitation\n"+
			"offers your secured name (-name under -key), the addresses, services, TXT and\n"+
			"payload given here; only code holders can find or read it. It waits,\n"+
			"republishing, until a helper accepts (exit 0, printing who did) or the time\n"+
			"is up (exit 1), and withdraws the invitation either way, also on Ctrl-C.")
	cf := addCloudFlags(fset)
	uf := addUserFlags(fset, "the invitation")
	var addrs stringList
	var services stringList
	var txt repeated
	fset.Var(&addrs, "addr", "an `IP` address to offer (repeatable, or comma-separated)")
	fset.Var(&services, "service", "a service to offer as `SVC/PROTO/PORT`, e.g. ssh/tcp/22 (repeatable)")
	fset.Var(&txt, "txt", "a TXT `STRING` to offer (repeatable)")
	payloadFlag := fset.String("payload", "", "opaque `DATA` for the helper's application, or @FILE (encrypted, about 3.8 KiB at most)")
	life := fset.Duration("for", invite.DefaultLifetime, fmt.Sprintf("how long the code is valid, up to %v", invite.MaxLifetime))
	poll := fset.Duration("poll", invite.DefaultPoll, "how often to look for the helper's acceptance")
	save := fset.String("save", "", "save the helper as contact `PETNAME` once they accept")
	zone := fset.String("zone", identity.DefaultZone, "DNS `ZONE` the names live under")
	jsonOut := fset.Bool("json", false, "print one JSON object per line: the code when published, the outcome at the end")
	if _, err := parseArgs(fset, args, 0, 0); err != nil {
		return err
	}
	if err := cf.check(fset, "invite"); err != nil {
		return err
	}
	if *life <= 0 || *life > invite.MaxLifetime {
		fmt.Fprintf(fset.Output(), "peername invite: -for must be positive and at most %v\n", invite.MaxLifetime)
		return errUsage
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
	card := invite.Card{Name: identity.Name{Classifier: *uf.name}, TXT: txt}
	for _, a := range addrs {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return fmt.Errorf("-addr %q: %w", a, err)
		}
		card.Endpoints = append(card.Endpoints, ip.Unmap())
	}
	for _, s := range services {
		svc, err := parseServiceFlag(s)
		if err != nil {
			return err
		}
		card.Services = append(card.Services, svc)
	}
	if card.Payload, err = readPayload(*payloadFlag); err != nil {
		return fmt.Errorf("-payload: %w", err)
	}
	id, err := uf.load(e, *cf.stateDir)
	if err != nil {
		return err
	}
	if _, err := identity.NewSecuredName(*uf.name, id.PublicKey()); err != nil {
		return fmt.Errorf("-name: %w", err)
	}

	jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	ov, err := cf.joinCloud(jctx, e)
	cancel()
	if err != nil {
		return err
	}
	defer ov.Close()
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	p, err := invite.Offer(pctx, ov, id, card, invite.Options{Lifetime: *life, Poll: *poll, Rand: e.rand})
	cancel()
	if err != nil {
		return err
	}
	inviter := p.Invitation.Name.DNS(z)
	if *jsonOut {
		writeJSONLine(e.stdout, map[string]any{
			"code": p.Code.String(), "expires": p.Invitation.Expires, "inviter": inviter,
		})
	} else {
		fmt.Fprintf(e.stdout, "code      %s\n", p.Code)
		fmt.Fprintf(e.stdout, "inviter   %s\n", inviter)
		fmt.Fprintf(e.stdout, "expires   %s (in %s)\n", p.Invitation.Expires.Format(time.RFC3339), life.Round(time.Second))
		fmt.Fprintf(e.stdout, "Read the code to your helper; they run: peername accept %s\n", p.Code)
		fmt.Fprintln(e.stdout, "Waiting for them (Ctrl-C withdraws the invitation)...")
	}

	acc, err := p.Wait(ctx)
	if err != nil {
		if acc == nil {
			if *jsonOut {
				writeJSONLine(e.stdout, map[string]any{"accepted": false, "error": err.Error()})
			}
			if errors.Is(err, context.Canceled) {
				return fmt.Errorf("interrupted; invitation withdrawn")
			}
			if errors.Is(err, invite.ErrExpired) {
				return fmt.Errorf("nobody accepted the invitation before it expired at %s", p.Invitation.Expires.Format(time.RFC3339))
			}
			return err
		}
		fmt.Fprintf(e.stderr, "peername invite: %v (the acceptance is valid; the invitation expires on its own)\n", err)
	}
	helper := acc.Name.DNS(z)
	var saved string
	if *save != "" {
		if err := saveContact(*cf.stateDir, *save, acc.Name); err != nil {
			return err
		}
		saved = *save
	}
	if *jsonOut {
		writeJSONLine(e.stdout, map[string]any{
			"accepted": true, "helper": helper, "public_key": hex.EncodeToString(acc.Key), "saved_as": saved,
			"addresses": nonNil(acc.Endpoints),
		})
		return nil
	}
	fmt.Fprintf(e.stdout, "accepted by %s\n", helper)
	fmt.Fprintf(e.stdout, "public key  %s\n", hex.EncodeToString(acc.Key))
	for _, a := range acc.Endpoints {
		fmt.Fprintf(e.stdout, "address     %s\n", a)
	}
	fmt.Fprintln(e.stdout, "invitation withdrawn")
	if saved != "" {
		fmt.Fprintf(e.stdout, "saved as contact %s\n", saved)
	}
	return nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func writeJSONLine(w io.Writer, v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(w, "%s\n", b)
}

// saveContact adds petname -> name to the contacts file of stateDir (or the
// user's).
func saveContact(stateDir, petname string, name identity.Name) error {
	path, err := contacts.DefaultPath(stateDir)
	if err != nil {
		return err
	}
	book, err := contacts.Load(path)
	if err != nil {
		return err
	}
	if err := book.Add(petname, name); err != nil {
		return err
	}
	return book.Save()
}

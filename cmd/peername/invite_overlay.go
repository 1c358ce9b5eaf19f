package main

// This file is the only place the invite, accept and contacts commands touch
// the overlay API: the flags they share with resolve, starting a temporary
// node, and the adapter that makes it an invite.Overlay.

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/invite"
	"github.com/peername/peername/overlay"
	"github.com/peername/peername/overlay/node"
	"github.com/peername/peername/records"
)

// cloudFlags are the flags of a command that joins a cloud with a temporary
// node, as resolve does.
type cloudFlags struct {
	seeds    seedList
	cloud    *string
	listen   *string
	puzzle   *int
	mode     *string
	stateDir *string
	verbose  *bool
}

func addCloudFlags(fset *flag.FlagSet) *cloudFlags {
	c := &cloudFlags{}
	fset.Var(&c.seeds, "bootstrap", "seed node `ADDR`: IP:port, host:port, or dns:DOMAIN for the SRV records of _peername._udp.DOMAIN (repeatable, or comma-separated)")
	c.cloud = fset.String("cloud", "global", "`NAME` of the cloud to join")
	c.listen = fset.String("listen", "", "local overlay UDP `ADDR` (default 127.0.0.1:0 for loopback seeds, else 0.0.0.0:0 and/or [::]:0)")
	c.mode = fset.String("mode", "client", "the temporary node's overlay `MODE`: client (in no routing table, stores nothing for others: it lives for one command), auto or server")
	c.puzzle = fset.Int("puzzle", overlay.DefaultPuzzleBits, fmt.Sprintf("the cloud's identity puzzle difficulty in `BITS`, 0 (none) to %d", overlay.MaxPuzzleBits))
	c.stateDir = fset.String("state", "", "keep the node's state, identity and contacts in `DIR`, so later runs rejoin without -bootstrap")
	c.verbose = fset.Bool("v", false, "log the temporary node's activity on stderr")
	return c
}

// check validates the flags; cmd names the command in messages.
func (c *cloudFlags) check(fset *flag.FlagSet, cmd string) error {
	if len(c.seeds) == 0 && *c.stateDir == "" {
		fmt.Fprintf(fset.Output(), "peername %s: at least one -bootstrap seed (or a -state directory from an earlier run) is needed to reach a cloud\n", cmd)
		fset.Usage()
		return errUsage
	}
	if _, err := overlay.ParseMode(*c.mode); err != nil || *c.mode == "" {
		fmt.Fprintf(fset.Output(), "peername %s: -mode must be auto, server or client, not %q\n", cmd, *c.mode)
		return errUsage
	}
	if *c.puzzle < 0 || *c.puzzle > overlay.MaxPuzzleBits {
		fmt.Fprintf(fset.Output(), "peername %s: -puzzle must be 0 to %d bits\n", cmd, overlay.MaxPuzzleBits)
		return errUsage
	}
	return nil
}

// inviteOverlay is a temporary overlay node seen as an invite.Overlay.
type inviteOverlay struct{ node *node.Node }

// joinCloud starts a temporary node (its own identity, never the user's) and
// joins the cloud.
func (c *cloudFlags) joinCloud(ctx context.Context, e *env) (*inviteOverlay, error) {
	boots, err := bootstrappers(c.seeds)
	if err != nil {
		return nil, err
	}
	var listenAddrs []netip.AddrPort
	switch {
	case *c.listen != "":
		ap, err := netip.ParseAddrPort(*c.listen)
		if err != nil {
			return nil, fmt.Errorf("-listen %q: %w", *c.listen, err)
		}
		listenAddrs = []netip.AddrPort{ap}
	case len(c.seeds) == 0:
		listenAddrs = []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:0")}
	default:
		listenAddrs = listenFor(c.seeds)
	}
	var id *identity.Identity
	if *c.stateDir != "" {
		if err := os.MkdirAll(*c.stateDir, 0o700); err != nil {
			return nil, fmt.Errorf("-state: %w", err)
		}
		// The same node key as resolve's: the state is bound to it.
		if id, _, err = identity.LoadOrCreate(filepath.Join(*c.stateDir, "resolve.key")); err != nil {
			return nil, fmt.Errorf("-state: %w", err)
		}
	} else if id, err = identity.Generate(rand.Reader); err != nil {
		return nil, err
	}
	level := slog.LevelError
	if *c.verbose {
		level = slog.LevelDebug
	}
	puzzle := *c.puzzle
	if puzzle == 0 {
		puzzle = -1
	}
	node, err := node.New(node.Config{
		Identity:  id,
		Listen:    listenAddrs,
		Bootstrap: boots,
		Cloud:     *c.cloud,
		Logger:    slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level})),
		StateDir:  *c.stateDir,
		Core:      overlay.Config{PuzzleBits: puzzle, Mode: mustMode(*c.mode)},
	})
	if err != nil {
		return nil, err
	}
	if err := node.Prepare(ctx); err != nil {
		return nil, fmt.Errorf("join cloud %q: %w", *c.cloud, err)
	}
	if err := node.Start(ctx); err != nil {
		return nil, fmt.Errorf("join cloud %q: %w", *c.cloud, err)
	}
	if why := node.NetStats().AloneReason; why != "" {
		node.Close()
		return nil, fmt.Errorf("cloud %q: %s: %w", *c.cloud, why, errNotJoined)
	}
	return &inviteOverlay{node: node}, nil
}

func (o *inviteOverlay) Store(ctx context.Context, rec *records.Record) error {
	return o.node.Store(ctx, rec)
}

func (o *inviteOverlay) Resolve(ctx context.Context, key identity.Key) ([]*records.Record, error) {
	recs, _, err := o.node.Resolve(ctx, key)
	if errors.Is(err, overlay.ErrWithdrawn) {
		return nil, fmt.Errorf("%w: %w", invite.ErrWithdrawn, err)
	}
	if errors.Is(err, overlay.ErrNotFound) {
		return nil, nil
	}
	return recs, err
}

func (o *inviteOverlay) Close() error { return o.node.Close() }

// mustMode is the mode of a -mode flag already checked by the flag parser.
func mustMode(s string) overlay.Mode {
	m, _ := overlay.ParseMode(s)
	return m
}

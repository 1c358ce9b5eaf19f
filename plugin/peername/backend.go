package peername

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/overlay"
	"github.com/peername/peername/overlay/bootstrap"
	"github.com/peername/peername/overlay/node"
	"github.com/peername/peername/records"
	"github.com/peername/peername/resolver"
)

// netNode adapts an *node.Node to overlayNode.
type netNode struct {
	*node.Node
}

// newOverlayNode creates the real UDP overlay node for cfg.
func newOverlayNode(cfg nodeConfig) (overlayNode, error) {
	var boots []bootstrap.Provider
	var static []string
	for _, b := range cfg.Bootstrap {
		if b.SRVDomain != "" {
			boots = append(boots, bootstrap.DNSSRV{Domain: b.SRVDomain})
			continue
		}
		static = append(static, b.String())
	}
	if len(static) > 0 {
		boots = append(boots, bootstrap.Static{Addrs: static})
	}
	var ll *bootstrap.LinkLocalConfig
	if cfg.LinkLocal {
		ll = &bootstrap.LinkLocalConfig{Interface: cfg.LinkLocalIface}
		boots = append(boots, bootstrap.LinkLocal{Interface: cfg.LinkLocalIface, Cloud: cfg.Cloud})
	}
	puzzle := cfg.PuzzleBits
	if puzzle == 0 {
		puzzle = -1 // the Corefile's 0 is "no puzzle"; the node's 0 is its default
	}
	defence := overlay.DefaultDefence(0)
	defence.PrefixCap = cfg.PrefixCap
	n, err := node.New(node.Config{
		Identity:  cfg.Identity,
		Listen:    cfg.Listen,
		Bootstrap: boots,
		Cloud:     cfg.Cloud,
		Core: overlay.Config{RecordLifetime: cfg.RecordLifetime, PuzzleBits: puzzle,
			Defence: defence, Mode: cfg.Mode},
		Logger:    slog.New(clogHandler{}),
		StateDir:  cfg.StateDir,
		LinkLocal: ll,
	})
	if err != nil {
		return nil, err
	}
	return &netNode{Node: n}, nil
}

// Search implements overlayNode.
func (n *netNode) Search(ctx context.Context, key identity.Key) ([]*records.Record, error) {
	recs, _, err := n.Node.Resolve(ctx, key)
	if err != nil {
		return nil, searchErr(err, n.knowinglyAlone)
	}
	return recs, nil
}

// searchErr maps an overlay search error to the resolver's: only a
// conclusive "not found" (the closest nodes answered and hold nothing), or
// a node that never had a peer and has nobody to find, becomes
// resolver.ErrNotFound (NXDOMAIN). An inconclusive lookup, including a node
// that lost the peers it had, stays an error: SERVFAIL, cached by nobody
// (RFC 2308 section 7).
func searchErr(err error, knowinglyAlone func() bool) error {
	switch {
	case errors.Is(err, overlay.ErrInconclusive):
		return err
	case errors.Is(err, overlay.ErrNotFound):
		return fmt.Errorf("%w: %w", resolver.ErrNotFound, err)
	case errors.Is(err, overlay.ErrAlone) && knowinglyAlone():
		return fmt.Errorf("%w: %w", resolver.ErrNotFound, err)
	}
	return err
}

// knowinglyAlone reports whether the node is alone because there is nobody
// to find (no seeds configured, or its providers found none), rather than
// because the seeds it knows did not answer. Only then does "nobody has
// this name" mean the name does not exist.
func (n *netNode) knowinglyAlone() bool {
	switch n.Node.NetStats().AloneReason {
	case node.AloneNoSeedsConfigured, node.AloneNoSeedsFound:
		return true
	}
	return false
}

// Ready implements overlayNode: the node has joined (it has peers) or is
// knowingly alone as its cloud's first node. A node whose seeds did not
// answer is not ready; it keeps trying to join.
func (n *netNode) Ready() bool {
	return n.Node.Ready() && (n.Node.Stats().RoutingTableSize > 0 || n.knowinglyAlone())
}

// Publish implements overlayNode. A node with no peer yet stores its record
// locally and keeps republishing it; that is reported as errOnlyLocal.
func (n *netNode) Publish(ctx context.Context, tmpl *records.Record) (*records.Record, error) {
	rec, err := n.Node.Publish(ctx, tmpl)
	if errors.Is(err, overlay.ErrAlone) {
		return nil, fmt.Errorf("%w: %w", errOnlyLocal, err)
	}
	return rec, err
}

// Unpublish implements overlayNode. With no peer to tell, the withdrawal
// stored locally is all there is to do; a name whose publication never
// reached the node (a shutdown right after start-up) has nothing to
// withdraw.
func (n *netNode) Unpublish(ctx context.Context, name identity.Name) error {
	err := n.Node.Unpublish(ctx, name)
	if errors.Is(err, overlay.ErrAlone) || errors.Is(err, overlay.ErrNotOwned) {
		return nil
	}
	return err
}

// Stats implements overlayNode.
func (n *netNode) Stats() nodeStats {
	st := n.Node.Stats()
	ns := n.Node.NetStats()
	r := n.Node.Reach()
	return nodeStats{RoutingTableSize: st.RoutingTableSize, RecordsStored: st.RecordsStored,
		JoinTries: ns.JoinTries, Joined: ns.Joined || n.knowinglyAlone(),
		Retransmits: st.Retransmits, HandshakesResent: st.HandshakesResent, RequestTimeouts: st.RequestTimeouts,
		Client: r.Client, Reachability: r.Reachability, External: r.External,
		Dropped: map[string]uint64{
			dropAuth:            st.DroppedAuth - st.DroppedPuzzle,
			dropPuzzle:          st.DroppedPuzzle,
			dropMalformed:       st.DroppedMalformed,
			dropRecordsRejected: st.RecordsRejected,
			dropRateLimited:     st.RateLimited + st.StoresRateLimited + st.HandshakesRateLimited,
			dropPrefixCap:       st.PrefixRefused,
			dropInboxFull:       ns.InboxDrops,
			dropInboxStale:      ns.InboxStale,
			dropHalfOpenEvicted: st.HalfOpenEvicted,
		}}
}

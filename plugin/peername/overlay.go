package peername

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/overlay"
	"github.com/peername/peername/records"
	"github.com/peername/peername/resolver"
)

// netNode adapts an *overlay.Node to overlayNode.
type netNode struct {
	*overlay.Node
	// alone: no bootstrap configured, so this node is knowingly a cloud's
	// first node and a name it cannot find does not exist.
	alone bool
}

// newOverlayNode creates the real UDP overlay node for cfg.
func newOverlayNode(cfg nodeConfig) (overlayNode, error) {
	var boots []overlay.Bootstrapper
	var static []string
	for _, b := range cfg.Bootstrap {
		if b.SRVDomain != "" {
			boots = append(boots, overlay.DNSSRVBootstrap{Domain: b.SRVDomain})
			continue
		}
		static = append(static, b.String())
	}
	if len(static) > 0 {
		boots = append(boots, overlay.StaticBootstrap{Addrs: static})
	}
	n, err := overlay.NewNode(overlay.NodeConfig{
		Identity:  cfg.Identity,
		Listen:    cfg.Listen,
		Bootstrap: boots,
		Cloud:     cfg.Cloud,
		Core:      overlay.Config{RecordLifetime: cfg.RecordLifetime},
		Logger:    slog.New(clogHandler{}),
	})
	if err != nil {
		return nil, err
	}
	return &netNode{Node: n, alone: len(cfg.Bootstrap) == 0}, nil
}

// Search implements overlayNode.
func (n *netNode) Search(ctx context.Context, key identity.Key) ([]*records.Record, error) {
	recs, _, err := n.Node.Resolve(ctx, key)
	switch {
	case errors.Is(err, overlay.ErrNotFound):
		return nil, fmt.Errorf("%w: %w", resolver.ErrNotFound, err)
	case errors.Is(err, overlay.ErrAlone) && n.alone:
		return nil, fmt.Errorf("%w: %w", resolver.ErrNotFound, err)
	}
	return recs, err
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
// stored locally is all there is to do.
func (n *netNode) Unpublish(ctx context.Context, name identity.Name) error {
	err := n.Node.Unpublish(ctx, name)
	if errors.Is(err, overlay.ErrAlone) {
		return nil
	}
	return err
}

// Stats implements overlayNode.
func (n *netNode) Stats() nodeStats {
	st := n.Node.Stats()
	return nodeStats{RoutingTableSize: st.RoutingTableSize, RecordsStored: st.RecordsStored}
}

package sim

import "github.com/peername/peername/overlay"

// Reacher is implemented by cores that report their mode and reachability
// (overlay.Core does), for the NAT figures of the report.
type Reacher interface {
	Reach() overlay.ReachInfo
}

// reachReport counts, at the end of a run, the live honest nodes behind NAT
// (Network.NAT) and what mode every live node runs in.
func (w *World) reachReport() {
	r := &w.rep
	r.NATFiltered = w.e.Counters().NATFiltered
	for i, n := range w.nodes {
		if !w.e.Alive(i) || w.hostile(i) || n.Core == nil {
			continue
		}
		behind := w.e.Behind(i)
		if behind {
			r.NATNodes++
		}
		rc, ok := n.Core.(Reacher)
		if !ok {
			continue
		}
		info := rc.Reach()
		switch {
		case info.Client && behind:
			r.NATClients++
		case info.Client:
			r.PublicClients++
		case behind:
			r.NATServing++
		}
		if info.Reachability == overlay.ReachPublic && !behind {
			r.PublicConfirmed++
		}
	}
}

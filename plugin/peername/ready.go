package peername

// Ready implements the ready plugin's Readiness interface: true once the
// overlay node has joined its cloud (or knows it is the cloud's first node:
// no seed configured or found) and this block's names have been published.
func (p *Peername) Ready() bool { return p.ready != nil && p.ready() }

package overlay

// Defence holds the switches of the overlay's defences against hostile
// nodes (docs/security.md, "Hostile nodes (simulator)"). The zero value is
// the protocol as it was before them; DefaultDefence turns them on.
type Defence struct {
	// Quorum: a Resolve that found a record does not stop at the first
	// answers (ValueGrace): it goes on until Quorum distinct nodes returned a
	// valid record for the key, or until its K closest candidates have all
	// answered or failed, and takes the newest valid record seen. A stale
	// replica held back by colluders then loses to the current one held by
	// any honest storer among the K closest. 0 = off.
	Quorum int
}

// DefaultDefence is what `peername sim -defence on` runs with.
func DefaultDefence(k int) Defence {
	if k <= 0 {
		k = DefaultK
	}
	return Defence{Quorum: max(1, k/2)}
}

// quorumMet reports whether a Resolve that found a record may end now.
func (c *Core) quorumMet(op *operation) bool {
	return c.cfg.Defence.Quorum <= 0 || op.foundFrom >= c.cfg.Defence.Quorum
}

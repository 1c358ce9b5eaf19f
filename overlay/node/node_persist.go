package node

// Node persistence: with Config.StateDir set, a node keeps its state in
// a state.DB and comes back from a crash with it. The rules:
//   - The highest Seq the node signed for each of its names is fsynced
//     before any datagram leaves the node after the signing (flush), so a
//     record can be on the network, or a Publish acknowledged, only once its
//     Seq is on disk; a restarted node publishes above it. While that write
//     fails, nothing is sent and Publish/Unpublish report ErrPersist.
//   - Records stored for other publishers and the routing table are saved
//     every StateSaveInterval (off the event loop) and at Close.
//   - Start restores the records (each verified again), the floors, the
//     names the node was publishing (republished once joined, above their
//     floors), and joins through the saved contacts as well as the seeds.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/peername/peername/overlay/bootstrap"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/overlay/state"
	"github.com/peername/peername/records"
)

// DefaultStateSaveInterval is how often a node with a StateDir saves the
// records it stores and its routing table.
const DefaultStateSaveInterval = 30 * time.Second

// ErrPersist reports that the node could not write its state; the
// operation's record was not sent.
var ErrPersist = errors.New("overlay: state not persisted")

// StateStats describes a node's persistence (zero without a StateDir).
type StateStats struct {
	Path             string // the database file
	NamesRestored    int    // own names whose Seq floor was loaded
	NamesResumed     int    // own names republished from the state at Start
	RecordsRestored  int    // records for others loaded back into the store
	RecordsDropped   int    // saved records that no longer verified (expired, damaged) or did not fit
	ContactsRestored int    // saved routing-table contacts used as seeds
	FloorWrites      uint64 // fsynced writes of own-name floors
	Saves            uint64 // completed saves of records and contacts
	LastSave         time.Time
	LastSaveRecords  int
	LastSaveContacts int
	Errors           uint64 // failed writes
	LastError        string
	HeldSends        uint64 // datagrams not sent because a floor could not be written
	PuzzleRestored   bool   // the identity puzzle's solution came from the state, not a search
}

// persister is a node's link to its state database.
type persister struct {
	db *state.DB

	// Loop-owned.
	floors    map[identity.Key]uint64        // durable Seq floors
	withdrawn map[identity.Key]identity.Name // unpublished names whose withdrawal Seq is not durable yet
	dirty     bool                           // own records may have been signed since the last sync
	err       error                          // the last floor write failed: sends are held
	saveAt    time.Time

	// Set at Start, read after.
	resume []*records.Record
	seeds  []netip.AddrPort

	saves chan stateSnapshot // to the saver goroutine
	mu    sync.Mutex         // guards st
	st    StateStats
}

type stateSnapshot struct {
	recs     []state.Stored
	contacts []state.Contact
}

// snapshotBootstrap offers the saved routing table's addresses as seeds.
type snapshotBootstrap struct{ addrs []netip.AddrPort }

func (s snapshotBootstrap) Seeds(context.Context) ([]netip.AddrPort, error) {
	return s.addrs, nil
}

// openState opens the state directory and loads what Start needs before
// the loop runs. Called by Prepare, before the core exists.
func (n *Node) openState(ctx context.Context) error {
	if n.cfg.StateDir == "" {
		return nil
	}
	if n.cfg.StateSaveInterval <= 0 {
		n.cfg.StateSaveInterval = DefaultStateSaveInterval
	}
	limits := n.cfg.Core
	if err := limits.ApplyDefaults(); err != nil { // checked by New: cannot fail here
		return fmt.Errorf("overlay: start: %w", err)
	}
	db, err := state.Open(ctx, n.cfg.StateDir, state.Options{
		NodeID:     n.id,
		MaxRecords: limits.MaxRecords,
		Logger:     n.log,
	})
	if err != nil {
		return fmt.Errorf("overlay: start: %w", err)
	}
	p := &persister{
		db:        db,
		floors:    make(map[identity.Key]uint64),
		withdrawn: make(map[identity.Key]identity.Name),
		saves:     make(chan stateSnapshot, 1),
	}
	p.st.Path = db.Path()
	owned, err := db.Owned(n.cfg.Identity.PublicKey())
	if err != nil {
		db.Close()
		return fmt.Errorf("overlay: start: %w", err)
	}
	for _, o := range owned {
		p.floors[o.Key] = o.Seq
		if o.Record != nil && !o.Record.Withdrawn {
			p.resume = append(p.resume, o.Record)
		}
	}
	contacts, _, err := db.LoadContacts()
	if err != nil {
		db.Close()
		return fmt.Errorf("overlay: start: %w", err)
	}
	for _, c := range contacts {
		p.seeds = bootstrap.AppendSeeds(p.seeds, c.Addr)
	}
	p.st.NamesRestored = len(owned)
	p.st.ContactsRestored = len(p.seeds)
	if len(p.seeds) > 0 {
		// Appended before the loop starts: the loop reads cfg.Bootstrap.
		n.cfg.Bootstrap = append(n.cfg.Bootstrap, snapshotBootstrap{addrs: p.seeds})
	}
	n.mu.Lock()
	n.ps = p
	n.mu.Unlock()
	return nil
}

// restoreRecords loads the saved records into the core (on the loop).
func (n *Node) restoreRecords(ctx context.Context) error {
	p := n.ps
	if p == nil {
		return nil
	}
	var restored, dropped int
	var loadErr error
	err := n.exec(ctx, func(now time.Time) {
		var recs []state.Stored
		recs, dropped, loadErr = p.db.LoadRecords(now)
		for _, s := range recs {
			if err := n.core.RestoreRecord(now, s.Record, s.Enc); err != nil {
				dropped++
				n.log.Debug("saved record not restored", "err", err)
				continue
			}
			restored++
		}
		p.saveAt = now.Add(n.cfg.StateSaveInterval)
	})
	if err == nil {
		err = loadErr
	}
	if err != nil {
		return fmt.Errorf("overlay: start: %w", err)
	}
	p.mu.Lock()
	p.st.RecordsRestored, p.st.RecordsDropped = restored, dropped
	p.mu.Unlock()
	n.wg.Go(n.saver)
	n.log.Info("state restored", "path", p.db.Path(), "names", p.st.NamesRestored,
		"records", restored, "dropped", dropped, "contacts", p.st.ContactsRestored)
	return nil
}

// resumePublishing republishes, above their floors, the names the node was
// publishing when it stopped.
func (n *Node) resumePublishing() {
	p := n.ps
	if p == nil || len(p.resume) == 0 {
		return
	}
	tmpls := p.resume
	p.resume = nil
	n.wg.Go(func() {
		for _, r := range tmpls {
			tmpl := r.Clone()
			tmpl.Seq = 0 // the floor is applied by Publish
			rec, err := n.Publish(n.ctx, tmpl)
			if err != nil {
				if errors.Is(err, ErrClosed) || n.ctx.Err() != nil {
					return
				}
				n.log.Info("resumed name not stored on peers yet; it is republished", "name", tmpl.Name, "err", err)
				continue
			}
			p.mu.Lock()
			p.st.NamesResumed++
			p.mu.Unlock()
			n.log.Info("resumed publishing", "name", rec.Name, "seq", rec.Seq)
		}
	})
}

// ownKey is the overlay key of one of the node's own names.
func (n *Node) ownKey(name identity.Name) identity.Key {
	if name.Secured {
		name.Authority = n.cfg.Identity.Authority()
	}
	return name.Key()
}

// checkOwn refuses to publish a new name once the state holds as many as
// it may (on the loop).
func (n *Node) checkOwn(name identity.Name) error {
	p := n.ps
	if p == nil {
		return nil
	}
	if _, ok := p.floors[n.ownKey(name)]; !ok && len(p.floors) >= state.DefaultMaxOwned {
		return fmt.Errorf("%w: %w: %d names", ErrPersist, state.ErrBounds, len(p.floors))
	}
	return nil
}

// floor returns the Seq floor of one of the node's names (on the loop).
func (n *Node) floor(name identity.Name) uint64 {
	if n.ps == nil {
		return 0
	}
	return n.ps.floors[n.ownKey(name)]
}

// ownSigned notes that the core may have signed records of the node's own
// (on the loop); withdrawn names a withdrawal.
func (n *Node) ownSigned(withdrawn *identity.Name) {
	if n.ps == nil {
		return
	}
	n.ps.dirty = true
	if withdrawn != nil {
		n.ps.withdrawn[n.ownKey(*withdrawn)] = *withdrawn
	}
}

// syncOwn makes the Seq of every record the node signed durable (on the
// loop, before the loop sends anything). It reports whether the node may
// send.
func (n *Node) syncOwn() bool {
	p := n.ps
	if p == nil {
		return true
	}
	if !p.dirty {
		return p.err == nil
	}
	var batch []state.Own
	for _, rec := range n.core.OwnedRecords() {
		if k := rec.Key(); rec.Seq > p.floors[k] {
			batch = append(batch, state.Own{Key: k, Seq: rec.Seq, Record: rec})
		}
	}
	for k, name := range p.withdrawn {
		seq := max(n.core.OwnSeq(name), p.floors[k])
		if _, known := p.floors[k]; !known && seq == 0 {
			continue // never published here
		}
		if n.core.Published(name) == nil {
			batch = append(batch, state.Own{Key: k, Seq: seq})
		}
	}
	if len(batch) > 0 {
		if err := p.db.PutOwn(batch...); err != nil {
			if p.err == nil {
				n.log.Error("cannot persist sequence numbers; holding datagrams until it can", "err", err)
			}
			p.err = err
			p.mu.Lock()
			p.st.Errors++
			p.st.LastError = err.Error()
			p.mu.Unlock()
			return false
		}
		for _, o := range batch {
			p.floors[o.Key] = max(p.floors[o.Key], o.Seq)
		}
		p.mu.Lock()
		p.st.FloorWrites++
		p.mu.Unlock()
	}
	if p.err != nil {
		n.log.Info("sequence numbers persisted again")
	}
	clear(p.withdrawn)
	p.dirty, p.err = false, nil
	return true
}

// heldSends counts datagrams dropped while a floor could not be written.
func (n *Node) heldSends(count int) {
	n.ps.mu.Lock()
	n.ps.st.HeldSends += uint64(count)
	n.ps.mu.Unlock()
}

// persistErr is the error an own-record operation completes with while the
// node cannot persist its floors (on the loop).
func (n *Node) persistErr() error {
	if n.ps == nil || n.ps.err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrPersist, n.ps.err)
}

// snapshot collects what a periodic save writes (on the loop, or after it
// stopped). Encodings are shared with the store, which never modifies them.
func (n *Node) snapshot(now time.Time) stateSnapshot {
	var s stateSnapshot
	n.core.ForEachStored(now, func(rec *records.Record, enc []byte) bool {
		s.recs = append(s.recs, state.Stored{Record: rec, Enc: enc})
		return true
	})
	for _, c := range n.core.Contacts(state.DefaultMaxContacts) {
		s.contacts = append(s.contacts, state.Contact{ID: c.ID, Addr: c.Addr, LastSeen: c.LastSeen.Truncate(time.Second)})
	}
	return s
}

// maybeSave hands a snapshot to the saver when a save is due (on the loop).
func (n *Node) maybeSave(now time.Time) {
	p := n.ps
	if p == nil || p.saveAt.IsZero() || now.Before(p.saveAt) {
		return
	}
	p.saveAt = now.Add(n.cfg.StateSaveInterval)
	select {
	case p.saves <- n.snapshot(now):
	default: // the previous save is still being written
	}
}

// saver writes snapshots off the event loop until the node stops.
func (n *Node) saver() {
	for {
		select {
		case s := <-n.ps.saves:
			n.save(s)
		case <-n.stop:
			return
		}
	}
}

// save writes one snapshot.
func (n *Node) save(s stateSnapshot) {
	p := n.ps
	skipped, err := p.db.SaveRecords(s.recs)
	if err == nil {
		err = p.db.SaveContacts(s.contacts)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.st.Errors++
		p.st.LastError = err.Error()
		n.log.Warn("state save failed", "err", err)
		return
	}
	p.st.Saves++
	p.st.LastSave = time.Now()
	p.st.LastSaveRecords = len(s.recs) - skipped
	p.st.LastSaveContacts = len(s.contacts)
}

// closeState saves a last time (graceful) and closes the database; called
// by shutdown once the loop and the saver have stopped.
func (n *Node) closeState(graceful bool) {
	p := n.ps
	if p == nil {
		return
	}
	if graceful && !p.saveAt.IsZero() {
		now := n.now()
		n.syncOwn()
		n.save(n.snapshot(now))
	}
	if err := p.db.Close(); err != nil {
		n.log.Warn("state close", "err", err)
	}
}

// StateStats returns the node's persistence figures.
func (n *Node) StateStats() StateStats {
	n.mu.Lock()
	p := n.ps
	n.mu.Unlock()
	if p == nil {
		return StateStats{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

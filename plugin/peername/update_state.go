package peername

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/peername/peername/identity"
	"github.com/peername/peername/records"
)

// registrationsFile is where runtime names are kept in a `state` directory.
const registrationsFile = "registrations.json"

// runtimeReg is one name registered by UPDATE.
type runtimeReg struct {
	Classifier string            `json:"classifier"`
	Secured    bool              `json:"secured"`
	Key        string            `json:"key"` // the TSIG key that registered it
	Endpoints  []netip.Addr      `json:"addrs,omitempty"`
	Services   []records.Service `json:"services,omitempty"`
	TXT        []string          `json:"txt,omitempty"`
	Lease      time.Duration     `json:"lease,omitempty"`  // 0: until deleted
	Expires    time.Time         `json:"expires,omitzero"` // end of the lease

	timer *time.Timer
}

func (r *runtimeReg) clone() *runtimeReg {
	c := *r
	c.Endpoints = append([]netip.Addr(nil), r.Endpoints...)
	c.Services = append([]records.Service(nil), r.Services...)
	c.TXT = append([]string(nil), r.TXT...)
	c.timer = nil
	return &c
}

func (r *runtimeReg) empty() bool {
	return len(r.Endpoints)+len(r.Services)+len(r.TXT) == 0
}

// runtimeSet holds the runtime names of one shared node.
type runtimeSet struct {
	s    *sharedNode
	path string // "" without a state directory

	mu     sync.Mutex
	regs   map[identity.Name]*runtimeReg
	loaded bool
	forget func(identity.Name) // the newest instance's resolver cache
}

// runtime returns the node's runtime names, created on first use.
func (s *sharedNode) runtime() *runtimeSet {
	s.rtOnce.Do(func() {
		s.rt = &runtimeSet{s: s, regs: map[identity.Name]*runtimeReg{}}
		if s.cfg.StateDir != "" {
			s.rt.path = filepath.Join(s.cfg.StateDir, registrationsFile)
		}
	})
	return s.rt
}

// name returns the identity name of reg on this node.
func (rt *runtimeSet) name(reg *runtimeReg) identity.Name {
	if reg.Secured {
		n, _ := identity.NewSecuredName(reg.Classifier, rt.s.id.PublicKey())
		return n
	}
	n, _ := identity.NewUnsecuredName(reg.Classifier)
	return n
}

// configured reports whether a Corefile publish line holds name (claims
// that are not runtime names); rt.mu is held.
func (rt *runtimeSet) configured(n identity.Name) bool {
	if _, ok := rt.regs[n]; ok {
		return false
	}
	rt.s.mu.Lock()
	defer rt.s.mu.Unlock()
	return rt.s.claims[n] > 0
}

// commit publishes or withdraws the changed names and saves the set; rt.mu
// is held. The checks are done: only the overlay or the disk can fail now.
func (rt *runtimeSet) commit(ctx context.Context, changed map[identity.Name]*runtimeReg, zone string, forget func(identity.Name)) error {
	var errs []error
	for n, reg := range changed {
		old := rt.regs[n]
		if old != nil && old.timer != nil {
			old.timer.Stop()
		}
		if reg.empty() {
			if old == nil {
				continue
			}
			delete(rt.regs, n)
			rt.s.unclaim(n)
			if err := rt.unpublish(n); err != nil {
				errs = append(errs, err)
			} else {
				log.Infof("withdrew runtime name %s", n.DNS(zone))
			}
		} else {
			if old == nil {
				rt.s.claim(n)
			}
			rt.regs[n] = reg
			if err := rt.publish(ctx, n, reg); err != nil {
				errs = append(errs, err)
			} else {
				log.Infof("published runtime name %s %v (key %s, lease %s)", n.DNS(zone), reg.Endpoints, reg.Key, reg.Lease)
			}
			rt.arm(n, reg)
		}
		if forget != nil {
			forget(n)
		}
	}
	if err := rt.save(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// publish signs and publishes reg; rt.mu is held.
func (rt *runtimeSet) publish(ctx context.Context, n identity.Name, reg *runtimeReg) error {
	tmpl := &records.Record{Name: n, Endpoints: reg.Endpoints, Services: reg.Services, TXT: reg.TXT}
	pctx, cancel := context.WithTimeout(ctx, updatePublishTO)
	defer cancel()
	_, err := rt.s.node.Publish(pctx, tmpl)
	if errors.Is(err, errOnlyLocal) {
		// Stored here; push it to the peers once there are some.
		go func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				select {
				case <-rt.s.stop:
					cancel()
				case <-ctx.Done():
				}
			}()
			if waitForPeers(ctx, rt.s.node) {
				rt.mu.Lock()
				defer rt.mu.Unlock()
				if cur := rt.regs[n]; cur == reg {
					_ = rt.publish(ctx, n, reg)
				}
			}
		}()
		err = nil
	}
	if err != nil {
		publishCount.WithLabelValues("publish", "error").Inc()
		return fmt.Errorf("publish %s: %w", n, err)
	}
	publishCount.WithLabelValues("publish", "ok").Inc()
	return nil
}

func (rt *runtimeSet) unpublish(n identity.Name) error {
	ctx, cancel := context.WithTimeout(context.Background(), unpublishTimeout)
	defer cancel()
	if err := rt.s.node.Unpublish(ctx, n); err != nil {
		publishCount.WithLabelValues("unpublish", "error").Inc()
		return fmt.Errorf("unpublish %s: %w", n, err)
	}
	publishCount.WithLabelValues("unpublish", "ok").Inc()
	return nil
}

// arm starts reg's lease timer; rt.mu is held.
func (rt *runtimeSet) arm(n identity.Name, reg *runtimeReg) {
	if reg.Expires.IsZero() {
		return
	}
	reg.timer = time.AfterFunc(time.Until(reg.Expires), func() { rt.expire(n, reg) })
}

// expire withdraws reg when its lease ran out without a renewal.
func (rt *runtimeSet) expire(n identity.Name, reg *runtimeReg) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.regs[n] != reg {
		return // renewed, changed or deleted meanwhile
	}
	delete(rt.regs, n)
	if !rt.s.unclaim(n) {
		return // released: the node withdraws it
	}
	if err := rt.unpublish(n); err != nil {
		log.Warningf("lease of %s expired; withdrawing: %v", n, err)
	} else {
		log.Infof("lease of %s expired; withdrawn", n)
	}
	if rt.forget != nil {
		rt.forget(n)
	}
	if err := rt.save(); err != nil {
		log.Warningf("%v", err)
	}
	updateCount.WithLabelValues("", "expired").Inc()
}

// save writes the set to the state directory (atomically, mode 0600).
func (rt *runtimeSet) save() error {
	if rt.path == "" {
		return nil
	}
	list := make([]*runtimeReg, 0, len(rt.regs))
	for _, r := range rt.regs {
		list = append(list, r)
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	tmp := rt.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("save runtime names: %w", err)
	}
	if err := os.Rename(tmp, rt.path); err != nil {
		return fmt.Errorf("save runtime names: %w", err)
	}
	return nil
}

// resume loads the saved runtime names once per node and publishes them
// again; names whose lease ended while the node was down are withdrawn
// (the node itself may have resumed them from its state).
func (rt *runtimeSet) resume(forget func(identity.Name)) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.forget = forget
	if rt.loaded || rt.path == "" {
		rt.loaded = true
		return
	}
	rt.loaded = true
	b, err := os.ReadFile(rt.path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var list []*runtimeReg
	if err == nil {
		err = json.Unmarshal(b, &list)
	}
	if err != nil {
		log.Warningf("runtime names in %s not restored: %v", rt.path, err)
		return
	}
	now := time.Now()
	var live []*runtimeReg
	for _, reg := range list {
		n := rt.name(reg)
		if !n.Valid() || checkBounds(reg) != nil {
			continue
		}
		if !reg.Expires.IsZero() && !reg.Expires.After(now) {
			go func() { _ = rt.unpublish(n) }()
			continue
		}
		live = append(live, reg)
	}
	for _, reg := range live {
		n := rt.name(reg)
		rt.regs[n] = reg
		rt.s.claim(n)
		rt.arm(n, reg)
	}
	go func() {
		rt.mu.Lock()
		defer rt.mu.Unlock()
		for n, reg := range rt.regs {
			if err := rt.publish(context.Background(), n, reg); err != nil {
				log.Warningf("resuming runtime name: %v", err)
				continue
			}
			// A query that came before the publish cached "no such
			// name" (for negative_ttl): drop it, as an UPDATE does.
			if rt.forget != nil {
				rt.forget(n)
			}
		}
		log.Infof("resumed %d runtime names from %s", len(rt.regs), rt.path)
	}()
}

// stopLeases stops the lease timers of a node being released (its names
// are withdrawn by release).
func (s *sharedNode) stopLeases() {
	rt := s.runtime()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for _, reg := range rt.regs {
		if reg.timer != nil {
			reg.timer.Stop()
		}
	}
}

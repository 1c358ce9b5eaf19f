package resolver

import (
	"container/list"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peername/peername/identity"
)

// cache is a bounded cache of answers (positive) and errors (negative)
// keyed by overlay key. Each entry carries its own expiry. Eviction is
// CLOCK (second chance), an approximation of LRU: a hit only sets the
// entry's referenced flag under the read lock, so concurrent hits of
// cached names do not serialise on moving list elements; the evictor
// passes over referenced entries once, clearing the flag, and evicts the
// first unreferenced one.
type cache struct {
	mu    sync.RWMutex
	max   int
	ll    *list.List // front = most recently inserted or given a second chance
	items map[identity.Key]*list.Element
}

type cacheEntry struct {
	key        identity.Key
	ans        *Answer
	err        error
	expires    time.Time
	referenced atomic.Bool // hit since it was inserted or last passed over
}

func newCache(max int) *cache {
	return &cache{max: max, ll: list.New(), items: make(map[identity.Key]*list.Element)}
}

// get returns the live entry for key, if any. Expired entries are dropped.
func (c *cache) get(key identity.Key, now time.Time) (*Answer, error, bool) {
	c.mu.RLock()
	el, ok := c.items[key]
	if !ok {
		c.mu.RUnlock()
		return nil, nil, false
	}
	e := el.Value.(*cacheEntry)
	if now.Before(e.expires) {
		if !e.referenced.Load() {
			e.referenced.Store(true)
		}
		c.mu.RUnlock()
		return e.ans, e.err, true
	}
	c.mu.RUnlock()
	c.mu.Lock()
	if el, ok := c.items[key]; ok && !now.Before(el.Value.(*cacheEntry).expires) {
		c.ll.Remove(el)
		delete(c.items, key)
	}
	c.mu.Unlock()
	return nil, nil, false
}

// put stores an entry, evicting one when full.
func (c *cache) put(key identity.Key, ans *Answer, err error, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		el.Value = &cacheEntry{key: key, ans: ans, err: err, expires: expires}
		c.ll.MoveToFront(el)
		return
	}
	for c.ll.Len() >= c.max {
		old := c.ll.Back()
		if e := old.Value.(*cacheEntry); e.referenced.Load() {
			e.referenced.Store(false) // its second chance
			c.ll.MoveToFront(old)
			continue
		}
		c.ll.Remove(old)
		delete(c.items, old.Value.(*cacheEntry).key)
	}
	c.items[key] = c.ll.PushFront(&cacheEntry{key: key, ans: ans, err: err, expires: expires})
}

func (c *cache) remove(key identity.Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.ll.Remove(el)
		delete(c.items, key)
	}
}

func (c *cache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.ll.Len()
}

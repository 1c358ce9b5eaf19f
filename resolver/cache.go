package resolver

import (
	"container/list"
	"sync"
	"time"

	"github.com/peername/peername/identity"
)

// cache is a bounded LRU cache of answers (positive) and errors (negative)
// keyed by overlay key. Each entry carries its own expiry.
type cache struct {
	mu    sync.Mutex
	max   int
	ll    *list.List // front = most recently used
	items map[identity.Key]*list.Element
}

type cacheEntry struct {
	key     identity.Key
	ans     *Answer
	err     error
	expires time.Time
}

func newCache(max int) *cache {
	return &cache{max: max, ll: list.New(), items: make(map[identity.Key]*list.Element)}
}

// get returns the live entry for key, if any. Expired entries are dropped.
func (c *cache) get(key identity.Key, now time.Time) (*Answer, error, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil, nil, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.ll.Remove(el)
		delete(c.items, key)
		return nil, nil, false
	}
	c.ll.MoveToFront(el)
	return e.ans, e.err, true
}

// put stores an entry, evicting the least recently used one when full.
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
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

package peername

import (
	"sync"

	"github.com/peername/peername/resolver"
)

// queryCacheSize bounds the parsed names a handler keeps.
const queryCacheSize = 4096

// queryCache remembers how recent query names parse. resolver.ParseQuery is
// a pure function of the name (label syntax, the authority's base32, the
// name's overlay key, a SHA-256) and was a third of a cached answer's CPU
// time; a repeated name now costs one map lookup. Only names that parse are
// kept, and the map is emptied when full, so a flood of random names costs
// memory bounded by queryCacheSize. Each entry also holds the name's packed
// replies (packed.go).
type queryCache struct {
	mu sync.RWMutex
	m  map[string]*parsedName
}

// parsedName is a cached parse of one lowercase query name.
type parsedName struct {
	q resolver.Query
	packed
}

// parse is resolver.ParseQuery(qname, zone), from the cache when it can be.
// qname is lowercase; the zone a name falls in is a function of the name.
func (c *queryCache) parse(qname, zone string) (*parsedName, error) {
	c.mu.RLock()
	pn, ok := c.m[qname]
	c.mu.RUnlock()
	if ok {
		return pn, nil
	}
	q, err := resolver.ParseQuery(qname, zone)
	if err != nil {
		return nil, err
	}
	pn = &parsedName{q: q}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= queryCacheSize {
		c.m = make(map[string]*parsedName, min(queryCacheSize, 2*len(c.m)+16))
	}
	c.m[qname] = pn
	c.mu.Unlock()
	return pn, nil
}

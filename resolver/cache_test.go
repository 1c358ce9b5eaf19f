package resolver

import (
	"testing"
	"time"

	"github.com/peername/peername/identity"
)

// TestCacheSecondChance checks the eviction order: an entry hit since it
// was stored survives the next eviction, the oldest unreferenced one goes,
// and a referenced entry passed over once is evicted later if not hit again.
func TestCacheSecondChance(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	k := func(b byte) identity.Key { return identity.Key{b} }
	tests := []struct {
		name    string
		hits    []byte // keys hit after a, b, c are stored
		puts    []byte // keys stored afterwards, one eviction each
		present []byte
		absent  []byte
	}{
		{"no hits: oldest first", nil, []byte{4}, []byte{2, 3, 4}, []byte{1}},
		{"hit oldest survives", []byte{1}, []byte{4}, []byte{1, 3, 4}, []byte{2}},
		{"two evictions", []byte{1}, []byte{4, 5}, []byte{1, 4, 5}, []byte{2, 3}},
		{"second chance used up", []byte{1}, []byte{4, 5, 6}, []byte{4, 5, 6}, []byte{1, 2, 3}},
		{"all hit", []byte{1, 2, 3}, []byte{4}, []byte{2, 3, 4}, []byte{1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newCache(3)
			for _, b := range []byte{1, 2, 3} {
				c.put(k(b), &Answer{}, nil, now.Add(time.Hour))
			}
			for _, b := range tc.hits {
				if _, _, ok := c.get(k(b), now); !ok {
					t.Fatalf("%d not cached", b)
				}
			}
			for _, b := range tc.puts {
				c.put(k(b), &Answer{}, nil, now.Add(time.Hour))
			}
			if c.len() != 3 {
				t.Fatalf("%d entries", c.len())
			}
			for _, b := range tc.present {
				if _, ok := c.items[k(b)]; !ok {
					t.Errorf("%d evicted", b)
				}
			}
			for _, b := range tc.absent {
				if _, ok := c.items[k(b)]; ok {
					t.Errorf("%d still cached", b)
				}
			}
		})
	}
}

// TestCacheExpiry checks that get drops an expired entry.
func TestCacheExpiry(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	c := newCache(3)
	c.put(identity.Key{1}, &Answer{}, nil, now.Add(time.Second))
	if _, _, ok := c.get(identity.Key{1}, now); !ok {
		t.Fatal("live entry not returned")
	}
	if _, _, ok := c.get(identity.Key{1}, now.Add(time.Second)); ok || c.len() != 0 {
		t.Fatalf("expired entry returned or kept (%d entries)", c.len())
	}
}

package status

import (
	"sync"

	"github.com/recordsync/record-sync/shared/status"
)

// cache keeps the last value written for recently changed records and its
// KV revision, in two generations: when the current one is full it becomes
// the previous one and the oldest is dropped. A stale entry costs one
// rejected write and a read, never a wrong state, since every write names
// the revision it is based on.
type cache struct {
	mu        sync.Mutex
	size      int
	cur, prev map[string]cached
}

type cached struct {
	rec status.Record // as written; never changed, only cloned
	rev uint64
}

func newCache(size int) *cache {
	return &cache{size: max(size/2, 1), cur: map[string]cached{}, prev: map[string]cached{}}
}

// get returns a copy of the cached record and its revision, or an empty
// record and 0 (a key not yet written) when it is not cached.
func (c *cache) get(key string) (status.Record, uint64) {
	c.mu.Lock()
	e, ok := c.cur[key]
	if !ok {
		if e, ok = c.prev[key]; ok {
			c.putLocked(key, e)
		}
	}
	c.mu.Unlock()
	if !ok {
		return status.Record{}, 0
	}
	return e.rec.Clone(), e.rev
}

// view calls f with the cached record of key, if any; f must not change it
// or keep it.
func (c *cache) view(key string, f func(*status.Record)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.cur[key]
	if !ok {
		e, ok = c.prev[key]
	}
	if ok {
		f(&e.rec)
	}
}

// put caches rec, written at revision rev. The caller must not change rec
// afterwards.
func (c *cache) put(key string, rec status.Record, rev uint64) {
	c.mu.Lock()
	c.putLocked(key, cached{rec: rec, rev: rev})
	c.mu.Unlock()
}

func (c *cache) putLocked(key string, e cached) {
	if len(c.cur) >= c.size {
		c.prev, c.cur = c.cur, make(map[string]cached, c.size)
	}
	c.cur[key] = e
}

func (c *cache) drop(key string) {
	c.mu.Lock()
	delete(c.cur, key)
	delete(c.prev, key)
	c.mu.Unlock()
}

package status

import (
	"sync"

	"github.com/recordsync/record-sync/shared/status"
)

// cache keeps the last value written for recently changed records and its
// KV revision, in two generations: when the current one holds its share of
// the bound, it becomes the previous one and the oldest is dropped. The
// bound is on the records' encoded size, which the status service knows
// from writing them: a record decoded takes about twice its JSON in
// memory, so the cache's memory is about twice the bound at most. A stale
// or missing entry costs one rejected write and a read, never a wrong
// state, since every write names the revision it is based on.
type cache struct {
	mu        sync.Mutex
	limit     int64 // bytes per generation
	curBytes  int64
	cur, prev map[string]cached
}

type cached struct {
	rec  status.Record // as written; never changed, only cloned
	rev  uint64
	size int64 // its encoded size
}

// newCache returns a cache of records whose encoded sizes add up to at
// most bytes.
func newCache(bytes int64) *cache {
	return &cache{limit: max(bytes/2, 1), cur: map[string]cached{}, prev: map[string]cached{}}
}

// get returns a copy of the cached record and its revision, or an empty
// record and 0 (a key not yet written) when it is not cached.
func (c *cache) get(key string) (status.Record, uint64) {
	c.mu.Lock()
	e, ok := c.cur[key]
	if !ok {
		if e, ok = c.prev[key]; ok {
			delete(c.prev, key)
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

// put caches rec, written at revision rev, size bytes encoded. The caller
// must not change rec afterwards.
func (c *cache) put(key string, rec status.Record, rev uint64, size int) {
	c.mu.Lock()
	c.putLocked(key, cached{rec: rec, rev: rev, size: int64(size) + int64(len(key))})
	c.mu.Unlock()
}

func (c *cache) putLocked(key string, e cached) {
	if old, ok := c.cur[key]; ok {
		c.curBytes -= old.size
	}
	if c.curBytes+e.size > c.limit && len(c.cur) > 0 {
		c.prev, c.cur, c.curBytes = c.cur, make(map[string]cached, len(c.cur)), 0
	}
	c.cur[key] = e
	c.curBytes += e.size
}

func (c *cache) drop(key string) {
	c.mu.Lock()
	if old, ok := c.cur[key]; ok {
		c.curBytes -= old.size
		delete(c.cur, key)
	}
	delete(c.prev, key)
	c.mu.Unlock()
}

// bytes is the encoded size of what the cache holds.
func (c *cache) bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.curBytes
	for _, e := range c.prev {
		n += e.size
	}
	return n
}

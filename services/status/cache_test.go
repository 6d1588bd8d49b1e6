package status

import (
	"strconv"
	"testing"

	"github.com/recordsync/record-sync/shared/status"
)

// TestCacheBoundedByBytes: the cache holds at most its bound of encoded
// records, keeps the most recent ones, and a record read from the older
// generation moves to the newer one.
func TestCacheBoundedByBytes(t *testing.T) {
	c := newCache(10_000)
	for i := range 1000 {
		c.put("k"+strconv.Itoa(i), status.Record{}, uint64(i+1), 98)
		if n := c.bytes(); n > 10_000 {
			t.Fatalf("after %d puts the cache holds %d bytes, bound 10000", i+1, n)
		}
	}
	if _, rev := c.get("k999"); rev != 1000 {
		t.Fatalf("the last record put is not cached (rev %d)", rev)
	}
	if _, rev := c.get("k0"); rev != 0 {
		t.Fatal("the first record put is still cached")
	}
	// k950 is in the older generation: reading it keeps it past the next turn.
	if _, rev := c.get("k950"); rev != 951 {
		t.Fatalf("k950: rev %d", rev)
	}
	for i := 1000; i < 1040; i++ {
		c.put("k"+strconv.Itoa(i), status.Record{}, uint64(i+1), 98)
	}
	if _, rev := c.get("k950"); rev != 951 {
		t.Fatal("a record read from the older generation was dropped at the next turn")
	}
}

package mesh

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Follow hands every update of w to fn until ctx ends or w closes, and
// closes ready (when not nil) once the values present at the start have
// been handed over. It stops w before it returns.
func Follow(ctx context.Context, w jetstream.KeyWatcher, ready chan<- struct{}, fn func(jetstream.KeyValueEntry)) {
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil { // the initial values are all delivered
				if ready != nil {
					close(ready)
					ready = nil
				}
				continue
			}
			fn(e)
		}
	}
}

// ErrStaleRevision is returned when a KV value is written in place of a
// revision that is no longer the current one.
var ErrStaleRevision = errors.New("revision is not the current one")

// PutRevision writes value at key in place of revision rev (0: the key must
// not exist yet) and returns the new revision; ErrStaleRevision means
// another writer got there first.
func PutRevision(ctx context.Context, kv jetstream.KeyValue, key string, value []byte, rev uint64) (uint64, error) {
	var err error
	var n uint64
	if rev == 0 {
		n, err = kv.Create(ctx, key, value)
	} else {
		n, err = kv.Update(ctx, key, value, rev)
	}
	if IsConflict(err) {
		return 0, ErrStaleRevision
	}
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", key, err)
	}
	return n, nil
}

package status

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/shared/fastjson"
)

// ErrNotFound is returned for a record that has no status.
var ErrNotFound = errors.New("record not found")

// Reader reads records' statuses from KV sync_status.
type Reader struct {
	kv jetstream.KeyValue
}

// NewReader returns a Reader over kv.
func NewReader(kv jetstream.KeyValue) *Reader { return &Reader{kv: kv} }

// Get returns the status of recordID, or ErrNotFound.
func (r *Reader) Get(ctx context.Context, recordID string) (Record, error) {
	e, err := r.kv.Get(ctx, Key(recordID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Record{}, ErrNotFound
	}
	if err != nil {
		return Record{}, fmt.Errorf("read status: %w", err)
	}
	var rec Record
	if err := fastjson.Unmarshal(e.Value(), &rec); err != nil {
		return Record{}, fmt.Errorf("decode status: %w", err)
	}
	return rec, nil
}

// Walk calls fn with the status of every record, as the bucket holds
// them when the walk starts: one pass over the bucket's stream in its
// write order, not a read per key. An error of fn ends the walk with it.
func (r *Reader) Walk(ctx context.Context, fn func(Record) error) error {
	w, err := r.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("walk status: %w", err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("walk status: the watch ended early")
			}
			if e == nil { // every value held at the start has come
				return nil
			}
			var rec Record
			if err := fastjson.Unmarshal(e.Value(), &rec); err != nil {
				return fmt.Errorf("walk status: decode %s: %w", e.Key(), err)
			}
			if err := fn(rec); err != nil {
				return err
			}
		}
	}
}

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

// Package status is the status service, the only writer of KV sync_status:
// it consumes the status changes every other service publishes and folds
// them into each record's status, using the KV revision so that two status
// processes, or a late change of an older event, never overwrite a newer
// state.
package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/status"
)

// Config configures the status service.
type Config struct {
	// FetchBatch is how many change messages are taken at once.
	FetchBatch int
	// Workers is how many records are written concurrently.
	Workers int
}

// Service writes status changes to KV.
type Service struct {
	js  jetstream.JetStream
	kv  jetstream.KeyValue
	cfg Config
	log *slog.Logger
}

// New returns the status service writing to kv.
func New(js jetstream.JetStream, kv jetstream.KeyValue, cfg Config, log *slog.Logger) *Service {
	if cfg.FetchBatch == 0 {
		cfg.FetchBatch = 256
	}
	if cfg.Workers == 0 {
		cfg.Workers = 16
	}
	return &Service{js: js, kv: kv, cfg: cfg, log: log}
}

// Run consumes status changes until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	cons, err := s.js.CreateOrUpdateConsumer(ctx, mesh.StreamStatus, jetstream.ConsumerConfig{
		Durable:       mesh.ConsumerStatus,
		Description:   "The status service: folds status changes into KV sync_status.",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 8192,
	})
	if err != nil {
		return fmt.Errorf("status consumer: %w", err)
	}
	return mesh.Consume(ctx, cons, mesh.ConsumeOptions{Batch: s.cfg.FetchBatch, Wait: 10 * time.Millisecond}, s.log, s.handle)
}

// handle groups the changes of the fetched messages by record, writes each
// record once, and fails exactly the messages whose records could not be
// written.
func (s *Service) handle(ctx context.Context, msgs []jetstream.Msg) []error {
	errs := make([]error, len(msgs))
	byRecord := map[string][]status.Change{}
	from := map[string][]int{} // record -> indexes of the messages holding its changes
	var order []string
	for i, m := range msgs {
		var b mesh.StatusBatch
		if err := json.Unmarshal(m.Data(), &b); err != nil {
			errs[i] = fmt.Errorf("%w: undecodable status batch: %w", mesh.ErrTerminal, err)
			continue
		}
		for _, c := range b.Changes {
			if _, ok := byRecord[c.RecordID]; !ok {
				order = append(order, c.RecordID)
			}
			byRecord[c.RecordID] = append(byRecord[c.RecordID], c)
			from[c.RecordID] = append(from[c.RecordID], i)
		}
	}
	var mu sync.Mutex
	sem := make(chan struct{}, s.cfg.Workers)
	var wg sync.WaitGroup
	for _, id := range order {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := s.write(ctx, id, byRecord[id]); err != nil {
				s.log.Warn("status_write_failed", "record_id", id, "error", err.Error())
				mu.Lock()
				for _, i := range from[id] {
					errs[i] = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errs
}

// write applies changes to a record's stored status with compare-and-set,
// reading again when another writer got there first.
func (s *Service) write(ctx context.Context, recordID string, changes []status.Change) error {
	key := status.Key(recordID)
	for attempt := 0; attempt < 10; attempt++ {
		var rec status.Record
		var rev uint64
		e, err := s.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("read status: %w", err)
		default:
			rev = e.Revision()
			if err := json.Unmarshal(e.Value(), &rec); err != nil {
				s.log.Error("status_value_corrupt", "record_id", recordID, "error", err.Error())
				rec = status.Record{}
			}
		}
		changed := false
		for _, c := range changes {
			if rec.Apply(c) {
				changed = true
				s.log.Info("status_changed", "record_id", c.RecordID, "event_id", c.EventID, "target", c.Target,
					"state", string(c.State), "attempt", c.Attempts)
			}
		}
		if !changed {
			return nil
		}
		raw, err := json.Marshal(&rec)
		if err != nil {
			return fmt.Errorf("encode status: %w", err)
		}
		if rev == 0 {
			_, err = s.kv.Create(ctx, key, raw)
		} else {
			_, err = s.kv.Update(ctx, key, raw, rev)
		}
		if mesh.IsConflict(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write status: %w", err)
		}
		return nil
	}
	return fmt.Errorf("write status %s: too many concurrent writers", recordID)
}

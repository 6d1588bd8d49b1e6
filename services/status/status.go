// Package status is the status service, the only writer of KV sync_status:
// it consumes the status changes every other service publishes and folds
// them into each record's status, using the KV revision so that two status
// processes, or a late change of an older event, never overwrite a newer
// state.
package status

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/recordsync/record-sync/shared/fastjson"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/status"
	"github.com/recordsync/record-sync/shared/telemetry"
)

// Config configures the status service.
type Config struct {
	// CacheSize is how many records' last written value and revision are
	// kept, so that a write needs no read first.
	CacheSize int
	// Linger is how long changes are gathered before they are written, so
	// that the changes of one record (queued, then synced; several
	// targets) become one KV write. In the durable profile every write is a
	// fsync, so fewer writes are more records per second.
	Linger time.Duration
	// MaxChanges bounds the changes gathered in one round.
	MaxChanges int
	// Hold is how long a record with a target still "queued" waits for the
	// final states of all its targets before what it has is written: a
	// record pushed to every target within Hold costs one KV write instead
	// of one per change, and shows "queued" at most Hold late.
	Hold time.Duration
	// BusyHold replaces Hold in a backlog, from when more than BusyAt
	// records are held until fewer than a tenth of that are: records then
	// wait in the CRMs' queues for longer than Hold, and writing each
	// one's "queued" first would double the KV writes just when capacity
	// counts most. A record then shows "queued" at most BusyHold late. The
	// tenth keeps the tail of a backlog (the records of its slowest
	// target) from being written twice.
	BusyHold time.Duration
	// BusyAt is how many held records make a backlog (see BusyHold).
	BusyAt int
	// AckDelay is how long a change waits, once written, before it is
	// acked: longer than the server takes to sync KV sync_status to disk
	// (its sync_interval). Zero picks DefaultAckDelay when the bucket is
	// written asynchronously and none otherwise; negative is none.
	AckDelay time.Duration
	// Meter records writes and conflicts (none when nil).
	Meter metric.Meter
}

// DefaultAckDelay is Config.AckDelay for a bucket written asynchronously:
// the server's default sync_interval (2m, the one both profiles use) and
// a margin.
const DefaultAckDelay = 2*time.Minute + 10*time.Second

// DefaultHold is Config.Hold when unset.
const DefaultHold = 2 * time.Second

// DefaultBusyHold and DefaultBusyAt are Config.BusyHold and Config.BusyAt
// when unset: a pipeline that keeps up holds its last half second or so of
// records (the pushers' flush interval and a CRM round trip); 10,000 held
// is that at 20,000 records/s, or a backlog.
const (
	DefaultBusyHold = 15 * time.Second
	DefaultBusyAt   = 10_000
)

// DefaultLinger is Config.Linger when unset.
const DefaultLinger = 250 * time.Millisecond

// Service writes status changes to KV.
type Service struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	cfg    Config
	log    *slog.Logger
	cache  *cache
	acks   *delayedAcks
	writes metric.Int64Counter
}

// New returns the status service writing to kv.
func New(js jetstream.JetStream, kv jetstream.KeyValue, cfg Config, log *slog.Logger) (*Service, error) {
	if cfg.Linger == 0 {
		cfg.Linger = DefaultLinger
	}
	if cfg.MaxChanges == 0 {
		cfg.MaxChanges = 20_000
	}
	if cfg.Hold == 0 {
		cfg.Hold = DefaultHold
	}
	if cfg.BusyHold == 0 {
		cfg.BusyHold = DefaultBusyHold
	}
	if cfg.BusyAt == 0 {
		cfg.BusyAt = DefaultBusyAt
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = 400_000
	}
	s := &Service{js: js, kv: kv, cfg: cfg, log: log, cache: newCache(cfg.CacheSize)}
	var err error
	s.writes, err = telemetry.Or(cfg.Meter).Int64Counter("recordsync_status_writes",
		metric.WithDescription("KV writes of record statuses, by result (ok, conflict, error)"))
	return s, err
}

// Run consumes status changes until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	delay, err := s.ackDelay(ctx)
	if err != nil {
		return err
	}
	// Changes wait for their ack for delay: they must not be redelivered
	// meanwhile, nor stop the flow.
	cons, err := s.js.CreateOrUpdateConsumer(ctx, mesh.StreamStatus, jetstream.ConsumerConfig{
		Durable:       mesh.ConsumerStatus,
		Description:   "The status service: folds status changes into KV sync_status.",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait(delay),
		MaxAckPending: 500_000,
	})
	if err != nil {
		return fmt.Errorf("status consumer: %w", err)
	}
	s.acks = &delayedAcks{nc: s.js.Conn(), delay: delay}
	return s.consume(ctx, cons)
}

// ackWait is how long a status process may hold a change unacked before
// another gets it: long enough for the ack delay and a round of writes.
func ackWait(delay time.Duration) time.Duration {
	if delay == 0 {
		return 30 * time.Second
	}
	return max(2*delay, 2*time.Second)
}

// ackDelay returns how long written changes wait for their ack: none when
// KV sync_status syncs every write.
func (s *Service) ackDelay(ctx context.Context) (time.Duration, error) {
	if s.cfg.AckDelay != 0 {
		return max(s.cfg.AckDelay, 0), nil
	}
	st, err := s.js.Stream(ctx, "KV_"+mesh.BucketStatus)
	if err != nil {
		return 0, fmt.Errorf("status bucket: %w", err)
	}
	if st.CachedInfo().Config.PersistMode == jetstream.AsyncPersistMode {
		return DefaultAckDelay, nil
	}
	return 0, nil
}

// pendingWrite is one record's new value on its way to KV.
type pendingWrite struct {
	key     string
	rec     status.Record
	changes []*status.Change
	msgs    []jetstream.Msg // the messages holding its changes
	since   time.Time       // when its first change arrived
	base    uint64
	counts  status.Delta // how this write moves the counters
	future  jetstream.PubAckFuture
}

// write writes each record of writes once, all in flight together, and
// returns the error of each write that failed.
func (s *Service) write(ctx context.Context, writes []*pendingWrite) map[*pendingWrite]error {
	failed := map[*pendingWrite]error{}
	fail := func(w *pendingWrite, err error) {
		s.log.Warn("status_write_failed", "record_key", w.key, "error", err.Error())
		failed[w] = err
	}
	// Optimistic: start from the cached value (or an absent key) and let the
	// revision check catch anything newer; read only for what it catches.
	for _, w := range writes {
		w.rec, w.base = s.cache.get(w.key)
	}
	counts := status.Delta{}
	results := map[string]int64{} // writes by result, for the metric
	defer func() {
		for r, n := range results {
			s.writes.Add(ctx, n, metric.WithAttributes(attribute.String("result", r)))
		}
	}()
	todo := writes
	for attempt := 1; len(todo) > 0; attempt++ {
		var inFlight []*pendingWrite
		for _, w := range todo {
			if err := s.publish(w); err != nil {
				fail(w, err)
			} else if w.future != nil {
				inFlight = append(inFlight, w)
			}
		}
		todo = nil
		for _, w := range inFlight {
			select {
			case ack := <-w.future.Ok():
				s.cache.put(w.key, w.rec, ack.Sequence)
				s.logChanges(w)
				counts.Merge(w.counts)
				results["ok"]++
			case err := <-w.future.Err():
				s.cache.drop(w.key)
				result := "error"
				if isWrongRevision(err) {
					result = "conflict"
				}
				results[result]++
				if !isWrongRevision(err) || attempt == maxAttempts {
					fail(w, fmt.Errorf("write status: %w", err))
				} else if err := s.reload(ctx, w); err != nil {
					fail(w, err)
				} else {
					todo = append(todo, w)
				}
			case <-ctx.Done():
				fail(w, ctx.Err())
			}
		}
	}
	// The counters move with the writes that succeeded. Should this fail,
	// the messages are redelivered, but their changes are already in KV and
	// apply as no-ops: the counters then stay behind by this round.
	if err := mesh.PublishCounts(ctx, s.js, counts, ""); err != nil {
		s.log.Error("counters_not_updated", "error", err.Error())
	}
	return failed
}

// maxAttempts bounds the writes of one record in one batch when other
// writers keep changing it.
const maxAttempts = 10

// publish applies w's changes to its base value and, if anything changed,
// publishes the result with the base revision as the expected one.
func (s *Service) publish(w *pendingWrite) error {
	w.counts = status.Delta{}
	changed := false
	for _, c := range w.changes {
		if w.counts.Apply(&w.rec, *c) {
			changed = true
		}
	}
	w.future = nil
	if !changed {
		return nil
	}
	raw, err := fastjson.Marshal(&w.rec)
	if err != nil {
		return fmt.Errorf("encode status: %w", err)
	}
	m := nats.NewMsg("$KV." + mesh.BucketStatus + "." + w.key)
	m.Data = raw
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(w.base, 10))
	f, err := s.js.PublishMsgAsync(m)
	if err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	w.future = f
	return nil
}

// reload reads w's record from KV after another writer changed it.
func (s *Service) reload(ctx context.Context, w *pendingWrite) error {
	w.rec, w.base = status.Record{}, 0
	e, err := s.kv.Get(ctx, w.key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		// Absent, or deleted (by an operator, say): a write must then name
		// the delete marker's revision.
		if h, err := s.kv.History(ctx, w.key); err == nil && len(h) > 0 {
			w.base = h[len(h)-1].Revision()
		}
		return nil
	case err != nil:
		return fmt.Errorf("read status: %w", err)
	}
	w.base = e.Revision()
	if err := fastjson.Unmarshal(e.Value(), &w.rec); err != nil {
		s.log.Error("status_value_corrupt", "record_key", w.key, "error", err.Error())
		w.rec = status.Record{}
	}
	return nil
}

// logChanges logs each change that w's write applied (at info level only:
// building the lines is a cost per record).
func (s *Service) logChanges(w *pendingWrite) {
	if !s.log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	for _, c := range w.changes {
		if t := w.rec.Targets[c.Target]; t != nil && t.EventID == c.EventID && t.State == c.State {
			s.log.Info("status_changed", "record_id", c.RecordID, "event_id", c.EventID, "target", c.Target,
				"state", string(c.State), "attempt", c.Attempts, "trace_id", c.TraceID)
		}
	}
}

// isWrongRevision reports whether a KV write failed because the key had
// moved on from the revision it was based on.
func isWrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

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
	"github.com/nats-io/nuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/sync/errgroup"

	"github.com/recordsync/record-sync/shared/fastjson"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/status"
	"github.com/recordsync/record-sync/shared/telemetry"
)

// Config configures the status service.
type Config struct {
	// CacheBytes bounds the records whose last written value and revision
	// are kept, so that a write needs no read first, by their encoded size
	// (DefaultCacheBytes when zero); the cache takes about twice that in
	// memory at most.
	CacheBytes int64
	// Linger is how long changes are gathered before they are written, so
	// that the changes of one record that come together (several targets)
	// become one KV write; Hold keeps a record whose targets are still
	// queued. It is most of how late synced shows (DefaultLinger).
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
	// MaxHeld bounds the records held (DefaultMaxHeld when zero): beyond
	// it the one held longest is written as it is, so that a burst larger
	// than it costs a second KV write for some records instead of memory
	// that grows with the burst (about 1.1 KB per held record).
	MaxHeld int
	// AckDelay is how long a change waits, once written, before it is
	// acked: longer than the server takes to sync KV sync_status to disk
	// (its sync_interval). Zero picks DefaultAckDelay when the bucket is
	// written asynchronously and none otherwise; negative is none.
	AckDelay time.Duration
	// AckWait is how long a change handed to a status process may go
	// without news before JetStream hands it to another (or to the same
	// process restarted): the process tells JetStream every third of it
	// that the changes it holds, and those written and waiting for their
	// ack (AckDelay), are still in hand. So a process that dies leaves its
	// unwritten changes for at most AckWait. Zero is DefaultAckWait.
	AckWait time.Duration
	// Waits receives the consumer's waits for JetStream (none when nil).
	Waits *mesh.Waits
	// Meter records writes and conflicts (none when nil).
	Meter metric.Meter
}

// DefaultAckWait is Config.AckWait when unset: longer than a round of
// writes takes under load, short enough that statuses are current again
// within seconds after a status process died.
const DefaultAckWait = 10 * time.Second

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

// DefaultMaxHeld is Config.MaxHeld when unset: about 55 MB, so that the
// status service takes a 100,000-record burst in a 512 MB container (make
// bench-services with an 80% soft limit: peak 399 MB at 43 µs per record;
// at 100,000 held, 520 MB at 76 µs, the collector running most of the
// time). Past it a record is written early and its second write usually
// misses the cache (a read first): that burst makes 1.09-1.25 writes per
// record instead of 1.00, at about the same CPU; at 20,000 the CPU
// doubled. A backlog reaches it within seconds, where BusyHold writes the
// records early anyway.
const DefaultMaxHeld = 50_000

// DefaultLinger is Config.Linger when unset: at 3,000 records/s, synced
// showed at p99 322 ms after the CRM's confirmation at 250 ms, 160 ms at
// 100 ms, for the same CPU and writes per record.
const DefaultLinger = 100 * time.Millisecond

// DefaultCacheBytes is the cache's bound (Config.CacheBytes): 32 MiB of
// records as encoded, about 64 MB of memory, 25,000 records of three
// targets with full histories, or more of one; a record not cached costs
// a read when its next change is written.
const DefaultCacheBytes = 32 << 20

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

// ErrInvalidConfig is wrapped by every error Config.Validate returns.
var ErrInvalidConfig = errors.New("status: invalid config")

// withDefaults fills each zero field with its default: the one place the
// defaults are written.
func (c Config) withDefaults() Config {
	set := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setD := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setD(&c.Linger, DefaultLinger)
	set(&c.MaxChanges, 20_000)
	setD(&c.Hold, DefaultHold)
	setD(&c.BusyHold, DefaultBusyHold)
	set(&c.BusyAt, DefaultBusyAt)
	set(&c.MaxHeld, DefaultMaxHeld)
	if c.CacheBytes == 0 {
		c.CacheBytes = DefaultCacheBytes
	}
	return c
}

// Validate checks c once its defaults are filled in, and reports every bad
// field at once. A negative AckDelay is valid: no delay.
func (c Config) Validate() error {
	var errs []error
	positive := func(name string, ok bool) {
		if !ok {
			errs = append(errs, fmt.Errorf("%w: %s must be positive", ErrInvalidConfig, name))
		}
	}
	positive("CacheBytes", c.CacheBytes > 0)
	positive("Linger", c.Linger > 0)
	positive("MaxChanges", c.MaxChanges > 0)
	positive("Hold", c.Hold > 0)
	positive("BusyHold", c.BusyHold > 0)
	positive("BusyAt", c.BusyAt > 0)
	positive("MaxHeld", c.MaxHeld > 0)
	return errors.Join(errs...)
}

// New returns the status service writing to kv.
func New(js jetstream.JetStream, kv jetstream.KeyValue, cfg Config, log *slog.Logger) (*Service, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.AckWait == 0 {
		cfg.AckWait = DefaultAckWait
	}
	s := &Service{js: js, kv: kv, cfg: cfg, log: log, cache: newCache(cfg.CacheBytes)}
	var err error
	s.writes, err = telemetry.Or(cfg.Meter).Int64Counter("recordsync_status_writes",
		metric.WithDescription("KV writes of record statuses, by result (ok, conflict, error)"))
	return s, err
}

// Run consumes status changes, from the consumer `recordsync setup`
// created, until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	delay, err := s.ackDelay(ctx)
	if err != nil {
		return err
	}
	// Changes wait for their ack for delay, kept in hand meanwhile by
	// progress reports (see keepAlive), so that AckWait stays short.
	cons, err := mesh.Bind(ctx, s.js, mesh.StreamStatus, mesh.ConsumerStatus)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	// The progress reports follow the AckWait setup gave the consumer.
	s.cfg.AckWait = cons.CachedInfo().Config.AckWait
	s.acks = &delayedAcks{nc: s.js.Conn(), delay: delay}
	return s.consume(ctx, cons)
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
	msgs    []*inHand // the messages holding its changes
	since   time.Time // when its first change arrived
	base    uint64
	counts  status.Delta // how this write moves the counters
	future  jetstream.PubAckFuture
	size    int // the encoded size of rec, as published
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
		var stale []*pendingWrite
		for _, w := range inFlight {
			select {
			case ack := <-w.future.Ok():
				s.cache.put(w.key, w.rec, ack.Sequence, w.size)
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
				} else {
					stale = append(stale, w)
				}
			case <-ctx.Done():
				fail(w, ctx.Err())
			}
		}
		for i, err := range s.reloadAll(ctx, stale) {
			if err != nil {
				fail(stale[i], err)
			} else {
				todo = append(todo, stale[i])
			}
		}
	}
	s.publishCounts(ctx, counts)
	return failed
}

// countsRetryFor is how long a round retries its counters while NATS is
// away (a server restart takes seconds).
const countsRetryFor = 30 * time.Second

// publishCounts moves the counters by the writes that succeeded. The
// messages are acked after it, but their changes are already in KV: were
// they redelivered, they would apply as no-ops and the counters would stay
// behind. So it retries, under one message id that JetStream deduplicates,
// until NATS takes it or countsRetryFor passes. (A process killed in
// between still loses the round's counts.)
func (s *Service) publishCounts(ctx context.Context, counts status.Delta) {
	id := nuid.Next()
	deadline := time.Now().Add(countsRetryFor)
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 2*time.Second) {
		// An ack lost with its server never comes: each try is bounded.
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := mesh.PublishCounts(actx, s.js, counts, id)
		cancel()
		if err == nil {
			return
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			s.log.Error("counters_not_updated", "error", err.Error())
			return
		}
		mesh.Sleep(ctx, backoff)
	}
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
	m.Data, w.size = raw, len(raw)
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(w.base, 10))
	f, err := s.js.PublishMsgAsync(m)
	if err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	w.future = f
	return nil
}

// reload reads w's record from KV after another writer changed it.
// reloadConcurrency is how many records reloadAll reads at once: a round
// that missed the cache (a backlog draining, a restart) would otherwise
// wait for one round trip per record.
const reloadConcurrency = 32

// reloadAll reloads each of ws, reloadConcurrency at a time, and returns
// the error of each.
func (s *Service) reloadAll(ctx context.Context, ws []*pendingWrite) []error {
	errs := make([]error, len(ws))
	var g errgroup.Group
	g.SetLimit(reloadConcurrency)
	for i, w := range ws {
		g.Go(func() error {
			errs[i] = s.reload(ctx, w)
			return nil
		})
	}
	_ = g.Wait() // the errors are in errs
	return errs
}

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

// Package pusher is the pusher service: one worker per target pulls that
// target's work from JetStream, coalesces changes to the same record,
// pushes batches through the target's CRM plugin within its rate limit, and
// settles each record: synced, retried later with backoff, or failed and
// dead-lettered.
package pusher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/recordsync/record-sync/crm"
	"github.com/recordsync/record-sync/shared/config"
	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/mapping"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/ratelimit"
	"github.com/recordsync/record-sync/shared/status"
	"github.com/recordsync/record-sync/shared/telemetry"
)

// Worker pushes the work of one target.
type Worker struct {
	push      mesh.PushOptions
	slots     *slots       // CRM requests in flight in this process
	owned     atomic.Int64 // partitions pinned to this process
	pushers   atomic.Int64 // pusher processes of the target, as last counted
	released  atomic.Int64 // when this process last released a partition (unix ns)
	counted   atomic.Int64 // when it last counted the pushers (unix ns)
	js        jetstream.JetStream
	natsWaits *mesh.Waits // the partitions' waits for JetStream
	crm       crm.CRM
	configs   *config.Store
	mappings  *mapping.Store
	status    *status.Reader
	log       *slog.Logger
	now       func() time.Time

	limiter *rate.Limiter // this process's share, spread evenly
	pause   pause         // set by a 429, a Retry-After or a spent quota

	results  metric.Int64Counter
	deferred metric.Int64Counter
	retries  metric.Int64Counter
	dead     metric.Int64Counter
	batches  metric.Int64Histogram
	duration metric.Float64Histogram
	waits    metric.Float64Histogram
	tracer   trace.Tracer
	tracing  bool // tracer records: each item gets a span of its own
	breaker  *breaker
	shared   *ratelimit.Shared
}

// Options tunes a Worker; zero values take the defaults.
type Options struct {
	// Push is the partition count, AckWait and PinnedTTL of the target's
	// consumers (mesh.PushOptions defaults). The partition count must be
	// the one the rules service splits the work by.
	Push mesh.PushOptions
	// OpenFor is how long the circuit stays open (DefaultOpenFor).
	OpenFor time.Duration
	Meter   metric.Meter
	Tracing trace.TracerProvider
	// Waits receives the partitions' waits for JetStream: a fetch or a
	// round's outcome that NATS did not take (none when nil).
	Waits *mesh.Waits
}

// ErrInvalidOptions is wrapped by every error Options.Validate returns.
var ErrInvalidOptions = errors.New("pusher: invalid options")

// Validate checks o: zero values take the defaults, negative ones are an
// error.
func (o Options) Validate() error {
	var errs []error
	if o.OpenFor < 0 {
		errs = append(errs, fmt.Errorf("%w: OpenFor may not be negative, got %s", ErrInvalidOptions, o.OpenFor))
	}
	if err := o.Push.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrInvalidOptions, err))
	}
	return errors.Join(errs...)
}

// NewWorker returns the worker of the target c.Name().
func NewWorker(js jetstream.JetStream, c crm.CRM, configs *config.Store, mappings *mapping.Store, st *status.Reader, o Options, log *slog.Logger) (*Worker, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("pusher %s: %w", c.Name(), err)
	}
	w := &Worker{push: o.Push.WithDefaults(), slots: newSlots(), js: js, natsWaits: o.Waits, crm: c, configs: configs, mappings: mappings, status: st, log: log.With("target", c.Name()), now: time.Now,
		tracer: telemetry.Tracer(o.Tracing, "pusher"), tracing: telemetry.Recording(o.Tracing), breaker: newBreaker(c.Name(), o.OpenFor, log.With("target", c.Name())), shared: ratelimit.NewShared(js, c.Name(), log.With("target", c.Name())),
		limiter: rate.NewLimiter(rate.Inf, 1)}
	m := telemetry.Or(o.Meter)
	var err error
	if w.results, err = m.Int64Counter("recordsync_push_results", metric.WithDescription("Pushed records by target, result class and CRM code")); err != nil {
		return nil, err
	}
	if w.deferred, err = m.Int64Counter("recordsync_push_deferred", metric.WithDescription("Items deferred to a later round because their CRM identity was already in this one, by target")); err != nil {
		return nil, err
	}
	owned, err := m.Int64ObservableGauge("recordsync_partitions_owned", metric.WithDescription("Work partitions pinned to this pusher process, by target"))
	if err != nil {
		return nil, err
	}
	if _, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(owned, w.owned.Load(), metric.WithAttributes(attribute.String("target", c.Name())))
		return nil
	}, owned); err != nil {
		return nil, err
	}
	if w.retries, err = m.Int64Counter("recordsync_retries", metric.WithDescription("Events scheduled for another push attempt, by target and class")); err != nil {
		return nil, err
	}
	if w.dead, err = m.Int64Counter("recordsync_dead_letters", metric.WithDescription("Events dead-lettered by target and class")); err != nil {
		return nil, err
	}
	if w.batches, err = m.Int64Histogram("recordsync_push_batch_size", metric.WithDescription("Records per CRM request"),
		metric.WithExplicitBucketBoundaries(1, 5, 10, 25, 50, 75, 99, 100, 150, 199, 200)); err != nil {
		return nil, err
	}
	if w.waits, err = m.Float64Histogram("recordsync_rate_limit_wait_seconds", metric.WithUnit("s"),
		metric.WithDescription("Time a CRM request waited for the target's rate limit or a Retry-After")); err != nil {
		return nil, err
	}
	if w.duration, err = m.Float64Histogram("recordsync_push_duration_seconds", metric.WithUnit("s"), metric.WithDescription("CRM request latency by target")); err != nil {
		return nil, err
	}
	circuit, err := m.Int64ObservableGauge("recordsync_circuit_state", metric.WithDescription("Circuit breaker per target: 0 closed, 1 half-open, 2 open"))
	if err != nil {
		return nil, err
	}
	if _, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(circuit, int64(w.breaker.cb.State()), metric.WithAttributes(attribute.String("target", c.Name())))
		return nil
	}, circuit); err != nil {
		return nil, err
	}
	return w, nil
}

// Run pushes the target's work until ctx ends: one loop per partition,
// each taking rounds only while JetStream has the partition pinned to this
// process. The batches in hand are finished first.
func (w *Worker) Run(ctx context.Context) error {
	cs, err := w.consumers(ctx)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	for n, c := range cs {
		p := newPartition(n, c)
		g.Go(func() error { return w.runPartition(gctx, p) })
	}
	return g.Wait()
}

// runPartition takes rounds of one partition until ctx ends.
func (w *Worker) runPartition(ctx context.Context, p *partition) error {
	target := w.crm.Name()
	for ctx.Err() == nil {
		tc, ok := w.configs.Get(target)
		if !ok {
			return fmt.Errorf("pusher %s: %w", target, config.ErrUnknownTarget)
		}
		if !tc.Enabled {
			// Take no work: it waits in the stream. The config is read
			// again each second. (The pin lapses: another pusher of a
			// target enabled there may take the partition.)
			mesh.Sleep(ctx, time.Second)
			continue
		}
		w.balance(ctx, p)
		if !w.mayPull(ctx, p, time.Now()) {
			// Be counted without taking the partition: a pull request
			// for at most one byte is never pinned nor given a message.
			if b, err := p.cons.Fetch(1, jetstream.FetchMaxBytes(1), jetstream.FetchMaxWait(250*time.Millisecond), jetstream.FetchPriorityGroup(mesh.PushGroup)); err == nil {
				for range b.Messages() {
				}
			} else {
				mesh.Sleep(ctx, 250*time.Millisecond)
			}
			continue
		}
		// An open circuit takes no work; a half-open one takes one message
		// as a probe, pushed one request at a time.
		want := roundItems(tc)
		switch w.breaker.state(ctx, w.configs, target) {
		case gobreaker.StateOpen:
			mesh.Sleep(ctx, 250*time.Millisecond)
			continue
		case gobreaker.StateHalfOpen:
			want, tc.Concurrency = 1, 1
		}
		// One fetch is one round: it ends at enough work for concurrency
		// full batches or after flush_interval (at most a third of the
		// PinnedTTL, so that an idle owner keeps its pin), and every
		// message it delivers is handled, so nothing sits in a client
		// buffer when the target is disabled or the process stops.
		wait := min(time.Duration(tc.FlushInterval), w.push.PinnedTTL/3)
		msgs, err := p.pull(want, wait)
		name := mesh.ConsumerPusher(target, p.n)
		if len(msgs) > 0 && !w.round(ctx, tc, p, msgs) {
			// Its messages are due again at once, before any later
			// message of the partition; give NATS a moment first.
			w.natsWaits.Begin(name, "the outcome of a round could not be stored", w.log)
			mesh.Sleep(ctx, time.Second)
			continue
		}
		switch {
		case err == nil, errors.Is(err, jetstream.ErrNoMessages), errors.Is(err, nats.ErrTimeout):
			w.natsWaits.End(name, w.log)
		case ctx.Err() != nil:
		case errors.Is(err, jetstream.ErrPinIDMismatch):
			// Another pusher owns the partition now.
			w.natsWaits.End(name, w.log)
			if p.pin != "" {
				w.log.Info("partition_lost", "partition", p.n)
				p.pin = ""
				w.owned.Add(-1)
			}
		default:
			w.log.Warn("fetch_failed", "partition", p.n, "error", err.Error())
			w.natsWaits.Begin(name, "fetch: "+err.Error(), w.log)
			mesh.Sleep(ctx, time.Second)
		}
	}
	return nil
}

// round handles the messages of one fetch and settles them. It reports
// false when their outcome could not be stored (nor the partition's blocks
// read): then they are all given back at once, and the partition's next
// round takes them again first (JetStream serves redeliveries before new
// messages), so that no later event of their records overtakes them.
func (w *Worker) round(ctx context.Context, tc config.Target, p *partition, msgs []jetstream.Msg) bool {
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	if pin := msgs[0].Headers().Get(mesh.HeaderPinID); pin != "" && pin != p.pin {
		if err := w.takeOver(hctx, p, pin); err != nil {
			// Without the partition's blocks this owner could overtake
			// a retry: give the messages back.
			w.log.Warn("partition_takeover_failed", "partition", p.n, "error", err.Error())
			mesh.Settle(msgs, fill(len(msgs), err), 0, w.log)
			return false
		}
		msgs = w.gatherRedeliveries(tc, p, msgs)
	}
	p.learnItemsPerMsg(msgs)
	stop := w.keepAlive(p, msgs)
	errs := w.handle(hctx, tc, p, msgs)
	stop()
	if p.lost.Load() {
		w.log.Warn("partition_pin_lost", "partition", p.n, "messages", len(msgs))
	}
	// A message given back is due again at once (no delay): a delay
	// would let the later messages of the partition go first.
	mesh.Settle(msgs, errs, 0, w.log)
	for _, err := range errs {
		if err != nil && !errors.Is(err, mesh.ErrSettled) && !errors.Is(err, mesh.ErrTerminal) {
			return false
		}
	}
	return true
}

// gatherRedeliveries takes, on top of msgs, the first round of a new
// owner, every message JetStream still redelivers: the previous owner's
// in-flight work, all due by now (the PinnedTTL is longer than the
// AckWait) and served before new messages. They are handled in one round,
// so that their items are folded together as the previous owner folded
// them, and a record's older event never follows a newer one that the
// previous owner may have pushed before it died.
func (w *Worker) gatherRedeliveries(tc config.Target, p *partition, msgs []jetstream.Msg) []jetstream.Msg {
	redelivered := func(ms []jetstream.Msg) bool {
		for _, m := range ms {
			if meta, err := m.Metadata(); err == nil && meta.NumDelivered > 1 {
				return true
			}
		}
		return false
	}
	for more := msgs; redelivered(more) && len(msgs) < 20*mesh.MaxWorkItems; {
		var err error
		more, err = p.pull(roundItems(tc), 100*time.Millisecond)
		msgs = append(msgs, more...)
		if err != nil {
			break
		}
	}
	return msgs
}

func fill(n int, err error) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// keepAlive tells JetStream every third of AckWait that msgs are still
// being worked on (a push waiting for its rate limit can take long), and
// renews the partition's pin with a pull request that can take nothing (at
// most one byte), until the returned stop is called.
func (w *Worker) keepAlive(p *partition, msgs []jetstream.Msg) (stop func()) {
	return mesh.Every(min(w.push.AckWait, w.push.PinnedTTL)/3, func() {
		for _, m := range msgs {
			_ = m.InProgress() // a lost one only risks a harmless redelivery
		}
		b, err := p.cons.Fetch(1, jetstream.FetchMaxBytes(1), jetstream.FetchMaxWait(100*time.Millisecond), jetstream.FetchPriorityGroup(mesh.PushGroup))
		if err != nil {
			return
		}
		for range b.Messages() {
		}
		if errors.Is(b.Error(), jetstream.ErrPinIDMismatch) {
			p.lost.Store(true)
		}
	})
}

// pending is one item in hand and the message it came in.
type pending struct {
	item mesh.Item
	msg  int
	// recheck: the item comes from a record subject or a redelivery, so
	// a newer event of its record may have been pushed meanwhile.
	recheck bool
	// record: it comes from its record's own subject.
	record bool
}

// outcome collects what settling a batch publishes.
type outcome struct {
	changes []status.Change
	records map[string]*recordWork // by record key: the record subjects to write
	ids     map[string]string      // record key to record id
	unblock map[string]bool        // record keys whose record message is settled
	applied map[string]time.Time   // record id to the occurred_at pushed
	dlq     []deadLetter
	results *telemetry.Tally // by target, class and code
}

type deadLetter struct {
	item mesh.Item
	err  status.Error
}

// handle pushes the items of msgs and returns one error per message.
func (w *Worker) handle(ctx context.Context, tc config.Target, p *partition, msgs []jetstream.Msg) []error {
	errs := make([]error, len(msgs))
	now := w.now()
	n := 0
	for _, m := range msgs {
		n += mesh.Count(m)
	}
	items := make([]pending, 0, n)
	inHand := map[string]bool{} // record keys whose record message is due in this round
	for i, m := range msgs {
		record, key := isRecordSubject(m.Subject()), ""
		if record {
			key = recordKeyOf(m.Subject())
			replaced, err := w.replaced(ctx, p, key, m)
			if err != nil {
				return failUnsettled(errs, err)
			}
			if replaced {
				continue // acked unread: errs[i] is nil
			}
		}
		if nb := m.Headers().Get(mesh.HeaderNotBefore); nb != "" {
			if t, err := time.Parse(time.RFC3339Nano, nb); err == nil && t.After(now) {
				// Not due yet: JetStream redelivers it when it is.
				if err := m.NakWithDelay(t.Sub(now)); err != nil {
					w.log.Warn("nak_failed", "error", err.Error())
				}
				if rw := p.blocked[key]; record && rw != nil {
					rw.held = m
				}
				errs[i] = mesh.ErrSettled
				continue
			}
		}
		var work mesh.Work
		if err := mesh.DecodeWork(m.Data(), &work); err != nil {
			errs[i] = fmt.Errorf("%w: undecodable work: %w", mesh.ErrTerminal, err)
			continue
		}
		if record {
			inHand[key] = true
		}
		recheck := record
		if meta, err := m.Metadata(); err == nil && meta.NumDelivered > 1 {
			recheck = true
		}
		for _, it := range work.Items {
			items = append(items, pending{item: it, msg: i, recheck: recheck, record: record})
		}
	}
	out := outcome{records: map[string]*recordWork{}, ids: map[string]string{}, unblock: map[string]bool{}, applied: map[string]time.Time{},
		results: telemetry.NewTally("target", "class", "code"), changes: make([]status.Change, 0, len(items))}
	defer out.results.AddTo(ctx, w.results)
	// A blocked record's new items wait behind its record message: they
	// join it, unless that message is in this round.
	kept := items[:0]
	for _, it := range items {
		key := status.Key(it.item.RecordID)
		if _, blocked := p.blocked[key]; blocked && !inHand[key] && !it.record {
			rw := out.records[key]
			if rw == nil {
				cur, err := w.recordWorkOf(ctx, p, key)
				if err != nil {
					return failUnsettled(errs, err)
				}
				if cur == nil { // gone meanwhile: not blocked after all
					kept = append(kept, it)
					continue
				}
				rw = &recordWork{items: slices.Clone(cur.items), notBefore: cur.notBefore, known: true}
				out.records[key], out.ids[key] = rw, it.item.RecordID
			}
			// Folded at once: the message stays one item long however
			// many events join it.
			rw.items = fold(append(rw.items, it.item))
			continue
		}
		kept = append(kept, it)
	}
	// Each item is checked before it is folded with the others of its
	// record: an old item folded into a fresh one would carry its old
	// fields past the newer event already pushed.
	items = coalesce(w.dropSuperseded(ctx, p, kept, &out))
	w.pushItems(ctx, tc, items, &out)
	if err := w.publish(ctx, p, out); err != nil {
		return failUnsettled(errs, err)
	}
	return errs
}

// failUnsettled sets err for every message of errs not yet settled, and
// returns errs.
func failUnsettled(errs []error, err error) []error {
	for i := range errs {
		if errs[i] == nil {
			errs[i] = err
		}
	}
	return errs
}

// coalesce folds the items of one record into one write with its final
// state, keeping the order of first appearance. A delete replaces what came
// before it (carrying its data, to identify the record by); a create or
// update after a delete starts afresh; updates merge their data, later
// fields winning.
func coalesce(items []pending) []pending {
	idx := make(map[string]int, len(items))
	out := items[:0] // in place: out never passes the item being read
	for _, p := range items {
		i, seen := idx[p.item.RecordID]
		if !seen {
			idx[p.item.RecordID] = len(out)
			out = append(out, p)
			continue
		}
		cur := &out[i]
		older, newer := cur.item, p.item
		if newer.OccurredAt.Before(older.OccurredAt) {
			older, newer = newer, older
		}
		merged := newer
		if older.Operation != event.OpDelete {
			// Updates merge their data. A delete keeps what came before it
			// as well: not to write it, but so that the CRM can be told
			// which record to delete (a delete without data after a create
			// in the same round has no email of its own).
			data := make(map[string]any, len(older.Data)+len(newer.Data))
			for k, v := range older.Data {
				data[k] = v
			}
			for k, v := range newer.Data {
				data[k] = v
			}
			merged.Data = data
			if older.Operation == event.OpCreate && newer.Operation != event.OpDelete {
				merged.Operation = event.OpCreate
			}
		}
		merged.Attempt = max(older.Attempt, newer.Attempt)
		cur.item = merged
		// The merged write settles with the later message.
		cur.msg = max(cur.msg, p.msg)
		cur.recheck = cur.recheck || p.recheck
		cur.record = cur.record || p.record
	}
	return out
}

// fold folds the items of one record into one (see coalesce).
func fold(items []mesh.Item) []mesh.Item {
	ps := make([]pending, len(items))
	for i, it := range items {
		ps[i] = pending{item: it}
	}
	ps = coalesce(ps)
	out := items[:0]
	for _, p := range ps {
		out = append(out, p.item)
	}
	return out
}

// statusOf reads the status of recordID within apiTimeout.
func (w *Worker) statusOf(ctx context.Context, recordID string) (status.Record, error) {
	ctx, cancel := apiContext(ctx)
	defer cancel()
	return w.status.Get(ctx, recordID)
}

// dropSuperseded drops the items to recheck (retried, deferred, manually
// re-enqueued or redelivered) whose record has since seen a newer event
// attempted for this target, by this owner or, per the status, by any, so
// that a late write never overwrites a newer state in the CRM; and those
// whose event the status shows already synced or dead-lettered in this
// generation (a copy left behind).
func (w *Worker) dropSuperseded(ctx context.Context, p *partition, items []pending, out *outcome) []pending {
	kept := items[:0]
	statuses := map[string]*status.Target{} // read once per record and round
	for _, it := range items {
		if it.recheck || it.item.Attempt > 0 || it.item.Generation > 0 {
			newer := ""
			if t, ok := p.applied[it.item.RecordID]; ok && t.After(it.item.OccurredAt) {
				newer = "pushed here"
			} else {
				t, seen := statuses[it.item.RecordID]
				if !seen {
					if rec, err := w.statusOf(ctx, it.item.RecordID); err == nil {
						t = rec.Targets[w.crm.Name()]
					}
					statuses[it.item.RecordID] = t
				}
				switch {
				case t == nil:
				case t.OccurredAt.After(it.item.OccurredAt) && t.State != status.StateQueued && t.State != status.StateAccepted:
					newer = t.EventID
				case t.EventID == it.item.EventID && t.Generation == it.item.Generation && (t.State == status.StateSynced || t.State == status.StateFailed):
					newer = "itself, " + string(t.State)
				}
			}
			if newer != "" {
				w.log.Info("retry_superseded", "record_id", it.item.RecordID, "event_id", it.item.EventID, "newer_event_id", newer)
				if it.record {
					out.unblock[status.Key(it.item.RecordID)] = true
				}
				continue
			}
		}
		kept = append(kept, it)
	}
	return kept
}

// pushItems sends the round's first wave: each CRM identity once, in
// requests of the batch size, up to tc.Concurrency of them in flight in
// this process at once, and records each outcome. The records beyond it
// that share an identity with one pushed (waves) are deferred, spread over
// the next rounds, so that a hot identity holds up no other record.
func (w *Worker) pushItems(ctx context.Context, tc config.Target, items []pending, out *outcome) {
	recs := make([]crm.Record, 0, len(items))
	sent := make([]pending, 0, len(items))
	for _, p := range items {
		ev := p.item.Event
		rec, res := crm.PrepareKnown(ctx, w.crm, w.mappings, w.status, &ev)
		if res != nil {
			w.settle(tc, p, *res, out)
			continue
		}
		recs = append(recs, rec)
		sent = append(sent, p)
	}
	ws := waves(recs, min(tc.BatchSize, w.crm.MaxBatch()))
	if len(ws) == 0 {
		return
	}
	start := time.Now()
	wave := ws[0]
	results := make([][]crm.Result, len(wave))
	var g errgroup.Group
	for k, chunk := range wave {
		batch := make([]crm.Record, len(chunk))
		for i, j := range chunk {
			batch[i] = recs[j]
		}
		g.Go(func() error {
			if err := w.slots.acquire(ctx, tc.Concurrency); err != nil {
				results[k] = crm.All(len(batch), crm.Result{Class: crm.Transient, Code: "CANCELLED", Message: err.Error()})
				return nil
			}
			defer w.slots.release()
			results[k] = w.request(ctx, tc, batch, sent, chunk)
			return nil
		})
	}
	_ = g.Wait()
	for k, chunk := range wave {
		for i, j := range chunk {
			w.settle(tc, sent[j], results[k][i], out)
		}
	}
	// The k-th later wave is due k rounds (as long as this one took) from
	// now: about one item per identity per round.
	took := max(time.Since(start), 10*time.Millisecond)
	for k, later := range ws[1:] {
		for _, chunk := range later {
			for _, j := range chunk {
				w.deferItem(sent[j], w.now().Add(time.Duration(k+1)*took), out)
			}
		}
	}
}

// request sends one batch, the records sent[j] of chunk, and returns a
// result per record. Each API request the plugin sends for it waits for
// the rate limit first (the Endpoint's permits).
func (w *Worker) request(ctx context.Context, tc config.Target, batch []crm.Record, sent []pending, chunk []int) []crm.Result {
	// Each event's trace gets a span for its push; the CRM request is one
	// span linked to all of them, and its trace context goes with the
	// request.
	var links []trace.Link
	var spans []trace.Span
	for _, j := range chunk {
		if !w.tracing {
			break
		}
		it := sent[j].item
		_, sp := w.tracer.Start(it.Context(ctx), "push "+w.crm.Name(), trace.WithAttributes(
			attribute.String("record_id", it.RecordID), attribute.String("event_id", it.EventID), attribute.Int("attempt", it.Attempt+1)))
		spans = append(spans, sp)
		links = append(links, trace.Link{SpanContext: sp.SpanContext()})
	}
	pctx, pspan := w.tracer.Start(ctx, "crm request "+w.crm.Name(), trace.WithSpanKind(trace.SpanKindClient), trace.WithLinks(links...),
		trace.WithAttributes(attribute.Int("records", len(batch))))
	var waited time.Duration // the plugin's requests are sequential
	noPermit := false
	ep := crm.Endpoint{Host: tc.APIHost, Permits: crm.LimiterFunc(func(ctx context.Context) error {
		start := time.Now()
		err := w.waitTurn(ctx, tc)
		waited += time.Since(start)
		noPermit = noPermit || err != nil
		return err
	})}
	start := time.Now()
	// A result the plugin left unset (or did not return) is a transient
	// NO_RESULT, never a success.
	results := crm.Settle(w.breaker.push(len(batch), func() []crm.Result { return notSent(w.crm.Push(pctx, ep, batch), noPermit) }), len(batch))
	took := time.Since(start) - waited
	pspan.End()
	for i, sp := range spans {
		sp.SetAttributes(attribute.String("result", results[i].Class.String()), attribute.String("code", results[i].Code))
		sp.AddLink(trace.Link{SpanContext: pspan.SpanContext()})
		sp.End()
	}
	if w.log.Enabled(ctx, slog.LevelInfo) {
		ids := make([]string, len(batch))
		for i, r := range batch {
			ids[i] = r.Event.RecordID
		}
		w.log.Info("crm_push", "records", len(batch), "record_ids", ids, "duration_ms", took.Milliseconds(), "trace_id", pspan.SpanContext().TraceID().String())
	}
	target := metric.WithAttributes(attribute.String("target", w.crm.Name()))
	w.batches.Record(ctx, int64(len(batch)), target)
	w.duration.Record(ctx, took.Seconds(), target)
	if qr, ok := w.crm.(crm.QuotaReporter); ok {
		// The CRM's own count says its window is used up: wait until it
		// resets (a tenth of the window when it does not say when)
		// instead of drawing a 429.
		if q := qr.Quota(); q.Known && q.Remaining <= 0 {
			until := w.now().Add(min(q.Window/10, 10*time.Second))
			if !q.Reset.IsZero() {
				until = q.Reset
			}
			w.pause.until(until)
		}
	}
	for _, res := range results {
		if res.Class == crm.RateLimited {
			w.pause.until(w.now().Add(max(res.RetryAfter, time.Second)))
		}
	}
	return results
}

// waves splits recs into requests of at most size records, in order: a
// wave holds each identity at most once, so its requests may run
// concurrently, and a record whose identity is already in the wave goes to
// the next one. Two records of System A that share an email are one
// HubSpot contact: a batch naming it twice is refused whole, and two
// concurrent requests would race on it.
func waves(recs []crm.Record, size int) [][][]int {
	var out [][][]int
	next := make([]int, len(recs))
	for i := range next {
		next[i] = i
	}
	for len(next) > 0 {
		var wave [][]int
		var cur, deferred []int
		seen := make(map[string]bool, len(next))
		for _, i := range next {
			if seen[recs[i].Key()] {
				deferred = append(deferred, i)
				continue
			}
			seen[recs[i].Key()] = true
			if len(cur) == size {
				wave = append(wave, cur)
				cur = nil
			}
			cur = append(cur, i)
		}
		out = append(out, append(wave, cur))
		next = deferred
	}
	return out
}

// waitTurn waits for the rate limit (this process's, then all pushers'
// together) and for any Retry-After the CRM gave. Concurrent requests of
// one worker may wait together. The limit is read anew for each request,
// so that a change applies within a round too.
func (w *Worker) waitTurn(ctx context.Context, tc config.Target) error {
	if cur, ok := w.configs.Get(w.crm.Name()); ok {
		tc.RateLimitPerMinute = cur.RateLimitPerMinute
	}
	if l := rate.Limit(float64(tc.RateLimitPerMinute) / 60); w.limiter.Limit() != l {
		w.limiter.SetLimit(l)
	}
	start := time.Now()
	defer func() {
		w.waits.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(attribute.String("target", w.crm.Name())))
	}()
	if d := w.pause.left(w.now()); d > 0 {
		w.log.Warn("rate_limited_pause", "wait_ms", d.Milliseconds())
		mesh.Sleep(ctx, d)
	}
	// The local limiter spreads this process's requests evenly; the shared
	// permit keeps all pushers of the target within the limit together.
	if err := w.limiter.Wait(ctx); err != nil {
		return err
	}
	return w.shared.Wait(ctx, tc.RateLimitPerMinute, tc.Concurrency)
}

// deferItem puts p on its record's subject, due at due, without spending
// an attempt.
func (w *Worker) deferItem(p pending, due time.Time, out *outcome) {
	key := status.Key(p.item.RecordID)
	out.records[key] = &recordWork{items: []mesh.Item{p.item}, notBefore: due, known: true}
	out.ids[key] = p.item.RecordID
	w.deferred.Add(context.Background(), 1, metric.WithAttributes(attribute.String("target", w.crm.Name())))
}

// settle turns the result of one pushed item into its status change and,
// when it must be tried again or given up, a retry or a dead letter.
func (w *Worker) settle(tc config.Target, p pending, res crm.Result, out *outcome) {
	out.results.Inc(w.crm.Name(), res.Class.String(), res.Code)
	it := p.item
	key := status.Key(it.RecordID)
	attempt := it.Attempt + 1
	if notACRMFailure(res) {
		attempt = it.Attempt // not sent: no attempt spent
	}
	c := status.Change{RecordID: it.RecordID, Target: w.crm.Name(), EventID: it.EventID, Operation: string(it.Operation),
		OccurredAt: it.OccurredAt, Generation: it.Generation, Attempts: attempt, At: w.now().UTC()}
	if sc := trace.SpanContextFromContext(it.Context(context.Background())); sc.IsValid() {
		c.TraceID = sc.TraceID().String()
	}
	if res.Class == crm.OK || (res.Whole && res.Class == crm.Transient && res.Code != codeCircuitOpen) {
		// The CRM has (or, after a request that failed as a whole, may
		// have) applied it: nothing older goes after it. An item the CRM
		// refused on its own was not applied; a redelivery of older events
		// of its record must still be pushed.
		out.applied[it.RecordID] = it.OccurredAt
	}
	if res.Class == crm.OK {
		c.State, c.CRMID = status.StateSynced, res.CRMID
		data, err := status.DataOf(it.Data)
		if err != nil { // it was decoded from JSON: it encodes
			w.log.Warn("push_data_not_kept", "record_id", it.RecordID, "target", w.crm.Name(), "error", err)
		}
		c.Pushed = &status.Pushed{EventID: it.EventID, Operation: string(it.Operation), ObjectType: it.ObjectType,
			OccurredAt: it.OccurredAt, Data: data, At: c.At}
		out.changes = append(out.changes, c)
		if p.record {
			out.unblock[key] = true
		}
		return
	}
	e := &status.Error{Class: res.Class.String(), Code: res.Code, Message: res.Message, Excerpt: res.Excerpt}
	c.Error = e
	if res.Class != crm.Permanent && attempt < tc.MaxAttempts {
		c.State = status.StateRetrying
		delay := max(tc.BackoffFor(attempt), res.RetryAfter)
		it.Attempt = attempt
		// The retry blocks the record: its later events join it.
		out.records[key] = &recordWork{items: []mesh.Item{it}, notBefore: w.now().Add(delay), known: true}
		out.ids[key] = it.RecordID
		w.retries.Add(context.Background(), 1, metric.WithAttributes(attribute.String("target", w.crm.Name()), attribute.String("class", e.Class)))
		w.log.Warn("push_retry", "record_id", it.RecordID, "event_id", it.EventID, "attempt", attempt, "class", e.Class, "code", e.Code,
			"retry_in", delay.String(), "trace_id", c.TraceID)
		out.changes = append(out.changes, c)
		return
	}
	c.State = status.StateFailed
	e.DeadLettered = true
	it.Attempt = attempt
	out.dlq = append(out.dlq, deadLetter{item: it, err: *e})
	if p.record {
		out.unblock[key] = true
	}
	w.log.Error("push_failed", "record_id", it.RecordID, "event_id", it.EventID, "attempt", attempt, "class", e.Class, "code", e.Code,
		"message", e.Message, "trace_id", c.TraceID)
	out.changes = append(out.changes, c)
}

// maxInFlightPublishes bounds the publishes of one round awaiting their
// acks.
const maxInFlightPublishes = 256

// publishTimeout bounds the wait for the acks of at most
// maxInFlightPublishes publishes.
const publishTimeout = 10 * time.Second

// publish stores the outcome: dead letters and record messages (retries,
// deferrals) first, then the status changes, all acknowledged by JetStream
// before the messages are acked. Then it updates what the owner knows.
func (w *Worker) publish(ctx context.Context, p *partition, out outcome) error {
	target := w.crm.Name()
	var fs []jetstream.PubAckFuture
	for _, d := range out.dlq {
		h := nats.Header{}
		h.Set(mesh.HeaderReason, d.err.Class+" "+d.err.Code+": "+d.err.Message)
		h.Set(mesh.HeaderClass, d.err.Class)
		h.Set(mesh.HeaderCode, d.err.Code)
		key := status.Key(d.item.RecordID)
		id := "dlq:" + d.item.EventID + ":" + strconv.Itoa(d.item.Generation) + ":" + strconv.Itoa(d.item.Attempt)
		f, err := mesh.PublishJSONAsync(w.js, mesh.SubjectDLQ(target, key), id, d.item, h)
		if err != nil {
			return err
		}
		fs = append(fs, f)
		w.dead.Add(ctx, 1, metric.WithAttributes(attribute.String("target", target), attribute.String("class", d.err.Class)))
	}
	// keys[i] is the record key of the record message fs[i] (else ""):
	// its stream sequence is the record's last.
	keys := make([]string, len(fs), len(fs)+len(out.records)+1)
	wait := func() error {
		// An ack lost with its server (a restart, a closed connection)
		// never comes: bounded, the round fails and is taken again.
		actx, cancel := context.WithTimeout(ctx, publishTimeout)
		defer cancel()
		seqs, err := mesh.WaitAckSeqs(actx, fs)
		if err != nil {
			return err
		}
		for i, key := range keys {
			if key != "" {
				out.records[key].last = seqs[i]
			}
		}
		fs, keys = fs[:0], keys[:0]
		return nil
	}
	var held []jetstream.Msg // replaced by the record messages written now
	for key, rw := range out.records {
		if old := p.blocked[key]; old != nil && old.held != nil {
			held = append(held, old.held)
		}
		// Until the outcome is stored, what the stream holds for these
		// records is unknown.
		p.blocked[key] = &recordWork{}
		f, err := mesh.PublishRecordWorkAsync(w.js, target, p.n, key, &mesh.Work{Items: rw.items}, rw.notBefore)
		if err != nil {
			return err
		}
		fs, keys = append(fs, f), append(keys, key)
		if len(fs) >= maxInFlightPublishes {
			// A hot identity defers hundreds of records per round, in
			// every partition at once: stay below the client's limit
			// of pending asynchronous publishes.
			if err := wait(); err != nil {
				return err
			}
		}
	}
	if len(out.changes) > 0 {
		// A round of thousands of synced records, each change with the
		// data pushed, may take several messages.
		sf, err := mesh.PublishStatusAsync(w.js, "pusher", "", out.changes)
		if err != nil {
			return err
		}
		for _, f := range sf {
			fs, keys = append(fs, f), append(keys, "")
		}
	}
	// What was attempted is known to the CRM whether or not the outcome
	// is stored: a redelivery of anything older must not follow it.
	if len(p.applied)+len(out.applied) > maxApplied {
		p.applied = map[string]time.Time{} // the status has them
	}
	for id, t := range out.applied {
		if t.After(p.applied[id]) {
			p.applied[id] = t
		}
	}
	if err := wait(); err != nil {
		return err
	}
	for _, m := range held {
		_ = m.Ack() // a lost one is acked unread when it comes (replaced)
	}
	if len(p.done) > maxApplied {
		p.done = map[string]uint64{}
	}
	for key := range out.unblock {
		if _, again := out.records[key]; !again {
			if rw := p.blocked[key]; rw != nil && rw.last > 0 {
				p.done[key] = rw.last
			}
			delete(p.blocked, key)
		}
	}
	for key, rw := range out.records {
		p.blocked[key] = rw
	}
	return nil
}

// pause is the time before which a target takes no request, safe for
// concurrent requests.
type pause struct {
	mu sync.Mutex
	at time.Time
}

// until extends the pause to t.
func (p *pause) until(t time.Time) {
	p.mu.Lock()
	p.at = maxTime(p.at, t)
	p.mu.Unlock()
}

// left returns how long the pause still lasts at now.
func (p *pause) left(now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.at.Sub(now)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

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
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/recordsync/record-sync/services/pusher/crm"
	"github.com/recordsync/record-sync/shared/config"
	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/mapping"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/status"
	"github.com/recordsync/record-sync/shared/telemetry"
)

// DefaultAckWait is how long a pusher may hold work without a sign of life
// before JetStream gives it to another pusher: the time a crashed pusher's
// work waits to be redelivered.
const DefaultAckWait = 30 * time.Second

// Worker pushes the work of one target.
type Worker struct {
	ackWait  time.Duration
	js       jetstream.JetStream
	crm      crm.CRM
	configs  *config.Store
	mappings *mapping.Store
	status   *status.Reader
	log      *slog.Logger
	now      func() time.Time

	limiter *rate.Limiter // this process's share, spread evenly
	pause   pause         // set by a 429, a Retry-After or a spent quota

	itemsPerMsg float64 // in the last round's messages

	results  metric.Int64Counter
	retries  metric.Int64Counter
	dead     metric.Int64Counter
	batches  metric.Int64Histogram
	duration metric.Float64Histogram
	waits    metric.Float64Histogram
	tracer   trace.Tracer
	tracing  bool // tracer records: each item gets a span of its own
	breaker  *breaker
	shared   *sharedLimit
}

// Options tunes a Worker; zero values take the defaults.
type Options struct {
	// AckWait is how long held work waits before JetStream redelivers it
	// to another pusher (DefaultAckWait).
	AckWait time.Duration
	// OpenFor is how long the circuit stays open (DefaultOpenFor).
	OpenFor time.Duration
	Meter   metric.Meter
	Tracing trace.TracerProvider
}

// NewWorker returns the worker of the target c.Name(). ackWait is
// DefaultAckWait when zero.
func NewWorker(js jetstream.JetStream, c crm.CRM, configs *config.Store, mappings *mapping.Store, st *status.Reader, o Options, log *slog.Logger) (*Worker, error) {
	if o.AckWait <= 0 {
		o.AckWait = DefaultAckWait
	}
	w := &Worker{ackWait: o.AckWait, js: js, crm: c, configs: configs, mappings: mappings, status: st, log: log.With("target", c.Name()), now: time.Now,
		tracer: telemetry.Tracer(o.Tracing, "pusher"), tracing: telemetry.Recording(o.Tracing), breaker: newBreaker(c.Name(), o.OpenFor), shared: &sharedLimit{js: js, target: c.Name()},
		limiter: rate.NewLimiter(rate.Inf, 1)}
	m := telemetry.Or(o.Meter)
	var err error
	if w.results, err = m.Int64Counter("recordsync_push_results", metric.WithDescription("Pushed records by target, result class and CRM code")); err != nil {
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

// Run pushes the target's work until ctx ends; the batch in hand is
// finished first.
func (w *Worker) Run(ctx context.Context) error {
	target := w.crm.Name()
	cons, err := w.js.CreateOrUpdateConsumer(ctx, mesh.StreamPush, jetstream.ConsumerConfig{
		Durable:       mesh.ConsumerPusher(target),
		Description:   "The pusher of " + target + ", shared by all pusher processes.",
		FilterSubject: mesh.SubjectPush(target),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       w.ackWait,
		MaxAckPending: 20000,
	})
	if err != nil {
		return fmt.Errorf("pusher consumer %s: %w", target, err)
	}
	for ctx.Err() == nil {
		tc, ok := w.configs.Get(target)
		if !ok {
			return fmt.Errorf("pusher %s: %w", target, config.ErrUnknownTarget)
		}
		if !tc.Enabled {
			// Take no work: it waits in the stream. The config is read
			// again each second.
			mesh.Sleep(ctx, time.Second)
			continue
		}
		// An open circuit takes no work; a half-open one takes one message
		// as a probe, pushed one request at a time.
		size := w.fetchSize(tc)
		switch w.breaker.state(ctx, w.configs, target) {
		case gobreaker.StateOpen:
			mesh.Sleep(ctx, 250*time.Millisecond)
			continue
		case gobreaker.StateHalfOpen:
			size, tc.Concurrency = 1, 1
		}
		// One fetch is one round: it ends at enough messages for
		// concurrency full batches or after flush_interval, and every
		// message it delivers is handled, so nothing sits in a client
		// buffer when the target is disabled or the process stops.
		batch, err := cons.Fetch(size, jetstream.FetchMaxWait(time.Duration(tc.FlushInterval)))
		var msgs []jetstream.Msg
		if err == nil {
			for m := range batch.Messages() {
				msgs = append(msgs, m)
			}
			err = batch.Error()
		}
		if len(msgs) > 0 {
			w.learnItemsPerMsg(msgs)
			hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
			stop := w.keepAlive(msgs)
			errs := w.handle(hctx, tc, msgs)
			stop()
			cancel()
			mesh.Settle(msgs, errs, time.Second, w.log)
		}
		if err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			w.log.Warn("fetch_failed", "error", err.Error())
			mesh.Sleep(ctx, time.Second)
		}
	}
	return nil
}

// fetchSize is how many messages make a round of tc.Concurrency full
// batches, given how many items recent messages carried: one each from a
// trickle of single events, up to mesh.MaxWorkItems under a backlog.
func (w *Worker) fetchSize(tc config.Target) int {
	want := tc.BatchSize * max(tc.Concurrency, 1)
	return min(max(int(math.Ceil(float64(want)/max(w.itemsPerMsg, 1))), 1), want)
}

// learnItemsPerMsg remembers how many items msgs carried on average.
func (w *Worker) learnItemsPerMsg(msgs []jetstream.Msg) {
	n := 0
	for _, m := range msgs {
		n += mesh.Count(m)
	}
	w.itemsPerMsg = float64(n) / float64(len(msgs))
}

// keepAlive tells JetStream every third of AckWait that msgs are still
// being worked on (a push waiting for its rate limit can take long), until
// the returned stop is called.
func (w *Worker) keepAlive(msgs []jetstream.Msg) (stop func()) {
	return mesh.Every(w.ackWait/3, func() {
		for _, m := range msgs {
			_ = m.InProgress() // a lost one only risks a harmless redelivery
		}
	})
}

// pending is one item in hand and the message it came in.
type pending struct {
	item mesh.Item
	msg  int
}

// outcome collects what settling a batch publishes.
type outcome struct {
	changes []status.Change
	retries map[int]*mesh.Work // by message index
	retryAt map[int]time.Time  // when each retry message is due
	dlq     []deadLetter
	results *telemetry.Tally // by target, class and code
}

type deadLetter struct {
	item mesh.Item
	err  status.Error
}

// handle pushes the items of msgs and returns one error per message.
func (w *Worker) handle(ctx context.Context, tc config.Target, msgs []jetstream.Msg) []error {
	errs := make([]error, len(msgs))
	now := w.now()
	n := 0
	for _, m := range msgs {
		n += mesh.Count(m)
	}
	items := make([]pending, 0, n)
	for i, m := range msgs {
		if nb := m.Headers().Get(mesh.HeaderNotBefore); nb != "" {
			if t, err := time.Parse(time.RFC3339Nano, nb); err == nil && t.After(now) {
				// Not due yet: JetStream redelivers it when it is.
				if err := m.NakWithDelay(t.Sub(now)); err != nil {
					w.log.Warn("nak_failed", "error", err.Error())
				}
				errs[i] = mesh.ErrSettled
				continue
			}
		}
		var work mesh.Work
		if err := mesh.DecodeStrict(m.Data(), &work); err != nil {
			errs[i] = fmt.Errorf("%w: undecodable work: %w", mesh.ErrTerminal, err)
			continue
		}
		for _, it := range work.Items {
			items = append(items, pending{item: it, msg: i})
		}
	}
	out := outcome{retries: map[int]*mesh.Work{}, retryAt: map[int]time.Time{}, results: telemetry.NewTally("target", "class", "code"),
		changes: make([]status.Change, 0, len(items))}
	defer out.results.AddTo(ctx, w.results)
	items = w.dropSuperseded(ctx, coalesce(items))
	w.push(ctx, tc, items, &out)
	if err := w.publish(ctx, msgs, out); err != nil {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
	}
	return errs
}

// coalesce folds the items of one record into one write with its final
// state, keeping the order of first appearance. A delete replaces what came
// before it; a create or update after a delete starts afresh; updates merge
// their data, later fields winning.
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
		if newer.Operation != event.OpDelete && older.Operation != event.OpDelete {
			data := make(map[string]any, len(older.Data)+len(newer.Data))
			for k, v := range older.Data {
				data[k] = v
			}
			for k, v := range newer.Data {
				data[k] = v
			}
			merged.Data = data
			if older.Operation == event.OpCreate {
				merged.Operation = event.OpCreate
			}
		}
		merged.Attempt = max(older.Attempt, newer.Attempt)
		cur.item = merged
		// The merged write settles with the later message.
		cur.msg = max(cur.msg, p.msg)
	}
	return out
}

// dropSuperseded drops retried items whose record has since moved on to a
// newer event for this target, so that a late retry never overwrites a
// newer state in the CRM.
func (w *Worker) dropSuperseded(ctx context.Context, items []pending) []pending {
	out := items[:0]
	for _, p := range items {
		if p.item.Attempt > 0 || p.item.Generation > 0 {
			rec, err := w.status.Get(ctx, p.item.RecordID)
			if err == nil {
				if t, ok := rec.Targets[w.crm.Name()]; ok && t.OccurredAt.After(p.item.OccurredAt) {
					w.log.Info("retry_superseded", "record_id", p.item.RecordID, "event_id", p.item.EventID, "newer_event_id", t.EventID)
					continue
				}
			}
		}
		out = append(out, p)
	}
	return out
}

// push sends items in requests of the batch size, up to tc.Concurrency of
// them in flight at once, and records each outcome. Records that share an
// identity in the CRM go in successive waves, in their order, so that
// concurrent requests never race on one CRM record.
func (w *Worker) push(ctx context.Context, tc config.Target, items []pending, out *outcome) {
	recs := make([]crm.Record, 0, len(items))
	sent := make([]pending, 0, len(items))
	for _, p := range items {
		ev := p.item.Event
		rec, res := PrepareKnown(ctx, w.crm, w.mappings, w.status, &ev)
		if res != nil {
			w.settle(tc, p, *res, out)
			continue
		}
		recs = append(recs, rec)
		sent = append(sent, p)
	}
	for _, wave := range waves(recs, min(tc.BatchSize, w.crm.MaxBatch())) {
		results := make([][]crm.Result, len(wave))
		var g errgroup.Group
		g.SetLimit(max(tc.Concurrency, 1))
		for k, chunk := range wave {
			batch := make([]crm.Record, len(chunk))
			for i, j := range chunk {
				batch[i] = recs[j]
			}
			g.Go(func() error {
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
	}
}

// request sends one batch, the records sent[j] of chunk, and returns a
// result per record. Each API request the plugin sends for it waits for
// the rate limit first (crm.WithPermits).
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
	pctx = crm.WithPermits(pctx, func(ctx context.Context) error {
		start := time.Now()
		err := w.waitTurn(ctx, tc)
		waited += time.Since(start)
		return err
	})
	start := time.Now()
	results := w.breaker.push(len(batch), func() []crm.Result { return w.crm.Push(pctx, tc.APIHost, batch) })
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

// Prepare maps ev with the target's mapping in force and identifies it in
// the CRM. When it cannot be pushed, the result says why (a permanent
// failure: retrying cannot help); with MISSING_IDENTITY the mapped record
// comes too. The preview uses it too, so it shows exactly what a push
// would send.
func Prepare(c crm.CRM, mappings *mapping.Store, ev *event.Event) (crm.Record, *crm.Result) {
	ot := ev.ObjectType
	if ot == "" {
		ot = event.ObjectContact
	}
	m := mappings.Get(c.Name(), ot)
	if m == nil {
		return crm.Record{}, &crm.Result{Class: crm.Permanent, Code: "UNMAPPABLE", Message: c.Name() + " has no mapping for object type " + ot}
	}
	fields, err := m.Apply(ev.Data)
	if err != nil {
		return crm.Record{}, &crm.Result{Class: crm.Permanent, Code: "MAPPING_FAILED", Message: err.Error()}
	}
	id, err := c.Identify(ev, fields)
	if err != nil {
		// The mapped record goes with the failure: the pusher may know the
		// record by its CRM id instead.
		return crm.Record{Event: ev, Fields: fields}, &crm.Result{Class: crm.Permanent, Code: codeMissingIdentity, Message: err.Error()}
	}
	return crm.Record{Event: ev, Identity: id, Fields: fields}, nil
}

// codeMissingIdentity is the result of an event that names no record the
// CRM can match.
const codeMissingIdentity = "MISSING_IDENTITY"

// PrepareKnown is Prepare and, for an update or delete that lacks the
// field the CRM matches records by (an email), the CRM id the record's
// last push to c got, as its status holds it: the plugin then writes by
// that id.
func PrepareKnown(ctx context.Context, c crm.CRM, mappings *mapping.Store, st *status.Reader, ev *event.Event) (crm.Record, *crm.Result) {
	rec, res := Prepare(c, mappings, ev)
	if res == nil || res.Code != codeMissingIdentity || ev.Operation == event.OpCreate {
		return rec, res
	}
	if known, err := st.Get(ctx, ev.RecordID); err == nil {
		if t, ok := known.Targets[c.Name()]; ok && t.CRMID != nil {
			rec.CRMID, res = *t.CRMID, nil
		}
	}
	return rec, res
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
	return w.shared.wait(ctx, tc.RateLimitPerMinute, tc.Concurrency)
}

// settle turns the result of one pushed item into its status change and,
// when it must be tried again or given up, a retry or a dead letter.
func (w *Worker) settle(tc config.Target, p pending, res crm.Result, out *outcome) {
	out.results.Inc(w.crm.Name(), res.Class.String(), res.Code)
	it := p.item
	attempt := it.Attempt + 1
	if res.Code == codeCircuitOpen {
		attempt = it.Attempt // not sent: no attempt spent
	}
	c := status.Change{RecordID: it.RecordID, Target: w.crm.Name(), EventID: it.EventID, Operation: string(it.Operation),
		OccurredAt: it.OccurredAt, Generation: it.Generation, Attempts: attempt, At: w.now().UTC()}
	if sc := trace.SpanContextFromContext(it.Context(context.Background())); sc.IsValid() {
		c.TraceID = sc.TraceID().String()
	}
	if res.Class == crm.OK {
		c.State, c.CRMID = status.StateSynced, res.CRMID
		out.changes = append(out.changes, c)
		return
	}
	e := &status.Error{Class: res.Class.String(), Code: res.Code, Message: res.Message, Excerpt: res.Excerpt}
	c.Error = e
	if res.Class != crm.Permanent && attempt < tc.MaxAttempts {
		c.State = status.StateRetrying
		delay := max(tc.BackoffFor(attempt), res.RetryAfter)
		it.Attempt = attempt
		r := out.retries[p.msg]
		if r == nil {
			r = &mesh.Work{}
			out.retries[p.msg] = r
		}
		r.Items = append(r.Items, it)
		out.retryAt[p.msg] = maxTime(out.retryAt[p.msg], w.now().Add(delay))
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
	w.log.Error("push_failed", "record_id", it.RecordID, "event_id", it.EventID, "attempt", attempt, "class", e.Class, "code", e.Code,
		"message", e.Message, "trace_id", c.TraceID)
	out.changes = append(out.changes, c)
}

// publish stores the outcome: dead letters and retries first, then the
// status changes, all acknowledged by JetStream before the messages are
// acked.
func (w *Worker) publish(ctx context.Context, msgs []jetstream.Msg, out outcome) error {
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
	for i, r := range out.retries {
		meta, err := msgs[i].Metadata()
		if err != nil {
			return err
		}
		h := nats.Header{}
		h.Set(mesh.HeaderNotBefore, out.retryAt[i].UTC().Format(time.RFC3339Nano))
		id := "retry:" + strconv.FormatUint(meta.Sequence.Stream, 10) + ":" + strconv.Itoa(r.Items[0].Attempt)
		f, err := mesh.PublishWorkAsync(w.js, target, id, r, h)
		if err != nil {
			return err
		}
		fs = append(fs, f)
	}
	if len(out.changes) > 0 {
		f, err := mesh.PublishStatusAsync(w.js, "pusher", "", out.changes)
		if err != nil {
			return err
		}
		fs = append(fs, f)
	}
	return mesh.WaitAcks(ctx, fs)
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

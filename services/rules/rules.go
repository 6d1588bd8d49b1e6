// Package rules is the rules service: it consumes sync.in, validates each
// event as the HTTP edge does (an invalid one goes to sync.rejected with the
// reason), evaluates the rule set per target, and routes what passes to the
// targets' work subjects, recording queued, skipped_by_rule or failed.
package rules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/rules"
	"github.com/recordsync/record-sync/shared/status"
	"github.com/recordsync/record-sync/shared/telemetry"
)

// Config configures the rules service.
type Config struct {
	// Limits are the event limits, as the HTTP edge enforces them.
	Limits event.Limits
	// DefaultTargets receive an event that names none.
	DefaultTargets []string
	// BatchEvents is about how many inbound events are handled together
	// (a message's events are never split): enough to publish few, large
	// messages, few enough that the pushers get work while the rest is
	// routed.
	BatchEvents int
	// Meter records decisions and rejections (none when nil).
	Meter metric.Meter
	// Tracing traces routing (nothing recorded when nil).
	Tracing trace.TracerProvider
	// Waits receives the consumer's waits for JetStream (none when nil).
	Waits *mesh.Waits
	// Partitions is the partition count of every target's work
	// (mesh.DefaultPushPartitions when 0): each target's work is split by
	// record over that many subjects. It must match the pushers'; Run
	// refuses to start when the pushers' consumers say otherwise.
	Partitions int
	// Targets are the targets whose consumers Run checks for Partitions.
	Targets []string
}

// Service routes inbound events.
type Service struct {
	js        jetstream.JetStream
	rules     *rules.Store
	cfg       Config
	log       *slog.Logger
	now       func() time.Time
	decisions metric.Int64Counter
	rejected  metric.Int64Counter
	tracer    trace.Tracer
}

// ErrInvalidConfig is wrapped by every error Config.Validate returns.
var ErrInvalidConfig = errors.New("rules: invalid config")

// withDefaults fills each zero field with its default.
func (c Config) withDefaults() Config {
	if c.BatchEvents == 0 {
		c.BatchEvents = 1000
	}
	return c
}

// Validate checks c once its defaults are filled in.
func (c Config) Validate() error {
	if c.BatchEvents < 1 {
		return fmt.Errorf("%w: BatchEvents must be positive, got %d", ErrInvalidConfig, c.BatchEvents)
	}
	return nil
}

// New returns the rules service.
func New(js jetstream.JetStream, store *rules.Store, cfg Config, log *slog.Logger) (*Service, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = mesh.DefaultPushPartitions
	}
	if err := (mesh.PushOptions{Partitions: cfg.Partitions}).Validate(); err != nil {
		return nil, fmt.Errorf("rules config: %w", err)
	}
	s := &Service{js: js, rules: store, cfg: cfg, log: log, now: time.Now, tracer: telemetry.Tracer(cfg.Tracing, "rules")}
	m := telemetry.Or(cfg.Meter)
	var err error
	if s.decisions, err = m.Int64Counter("recordsync_rule_decisions", metric.WithDescription("Rule decisions by target, action and deciding rule")); err != nil {
		return nil, err
	}
	if s.rejected, err = m.Int64Counter("recordsync_events_rejected", metric.WithDescription("Messages on sync.in kept on sync.rejected as invalid")); err != nil {
		return nil, err
	}
	return s, nil
}

// Run consumes SYNC_IN (sync.in, sync.in.batch) and SYNC_GATHER (the
// edge's gathered single events), from the consumers `recordsync setup`
// created, and trims SYNC_GATHER, until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	in, err := mesh.Bind(ctx, s.js, mesh.StreamIn, mesh.ConsumerRules)
	if err != nil {
		return fmt.Errorf("rules: %w", err)
	}
	gathered, err := mesh.Bind(ctx, s.js, mesh.StreamGather, mesh.ConsumerRules)
	if err != nil {
		return fmt.Errorf("rules: %w", err)
	}
	for _, t := range s.cfg.Targets {
		if err := mesh.CheckPushPartitions(ctx, s.js, t, s.cfg.Partitions); err != nil {
			return fmt.Errorf("rules: %w", err)
		}
	}
	g, ctx := errgroup.WithContext(ctx)
	consume := func(cons jetstream.Consumer, name, source string) {
		g.Go(func() error {
			return mesh.Consume(ctx, cons, mesh.ConsumeOptions{Batch: s.cfg.BatchEvents, Size: mesh.Count, Buffer: 64, Wait: 2 * time.Millisecond,
				Name: name, Waits: s.cfg.Waits}, s.log, func(ctx context.Context, msgs []jetstream.Msg) []error { return s.handle(ctx, source, msgs) })
		})
	}
	consume(in, mesh.ConsumerRules, "in")
	consume(gathered, mesh.StreamGather+"/"+mesh.ConsumerRules, "gather")
	g.Go(func() error { s.trimLoop(ctx, gathered); return nil })
	return g.Wait()
}

// handle routes a batch of inbound messages of one stream (source names
// it in the ids of what is derived). Everything derived from them
// (status changes, work per target, rejections) is published and
// acknowledged by JetStream before the messages are acked; a failure naks
// them all, and the message ids derived from their stream sequences make
// the redelivery publish nothing twice.
func (s *Service) handle(ctx context.Context, source string, msgs []jetstream.Msg) []error {
	compiled, _ := s.rules.Current()
	now := s.now().UTC()
	errs := make([]error, len(msgs))
	work := map[string]*mesh.Work{}
	accepted := status.Delta{}
	inbound := 0 // events, as the messages' headers count them
	for _, msg := range msgs {
		inbound += mesh.Count(msg)
	}
	changes := make([]status.Change, 0, 3*inbound) // a change per target: room for three
	decisions := telemetry.NewTally("target", "action", "rule_id")
	defer decisions.AddTo(ctx, s.decisions)
	var futures []jetstream.PubAckFuture
	var first, last uint64
	for i, msg := range msgs {
		meta, err := msg.Metadata()
		if err != nil {
			errs[i] = fmt.Errorf("metadata: %w", err)
			continue
		}
		if first == 0 {
			first = meta.Sequence.Stream
		}
		last = meta.Sequence.Stream
		events, traces, bad := s.decode(msg)
		// The message's trace (from the HTTP edge or the publisher) goes on
		// with each event, inside its work item.
		tctx, span := s.tracer.Start(mesh.ExtractTrace(ctx, msg.Headers()), "rules route", trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("messaging.destination.name", msg.Subject()), attribute.Int("events", len(events))))
		traceCtx := mesh.TraceOf(tctx)
		traceID := ""
		if sc := span.SpanContext(); sc.IsValid() {
			traceID = sc.TraceID().String()
		}
		span.End()
		for j := range events {
			ev := &events[j]
			// An event published without an id or a time gets ones derived
			// from its message, so that a redelivery yields the same event.
			if ev.EventID == "" {
				ev.EventID = fmt.Sprintf("in-%d-%d", meta.Sequence.Stream, j)
			}
			ev.Normalize(s.cfg.DefaultTargets, meta.Timestamp)
			for _, target := range ev.Targets {
				c, item := s.route(compiled, ev, target, now, decisions)
				c.TraceID = traceID
				changes = append(changes, c)
				accepted.Add(target, status.CountAccepted, 1)
				if item != nil {
					item.Trace = traceCtx
					if traces != nil && traces[j] != nil {
						item.Trace = traces[j] // the request's own, in a gathered message
					}
					w := work[target]
					if w == nil {
						w = &mesh.Work{Items: make([]mesh.Item, 0, inbound)}
						work[target] = w
					}
					w.Items = append(w.Items, *item)
				}
			}
		}
		if bad != "" {
			f, err := s.reject(msg, source, meta.Sequence.Stream, bad)
			if err != nil {
				errs[i] = err
				continue
			}
			futures = append(futures, f)
		}
	}
	id := fmt.Sprintf("%s:%d-%d", source, first, last)
	// Status first, so that "queued" is stored before a push can report
	// "synced".
	if len(changes) > 0 {
		sf, err := mesh.PublishStatusAsync(s.js, "rules", id+":status", changes)
		if err != nil {
			return failAll(errs, err)
		}
		futures = append(futures, sf...)
		if err := mesh.WaitAcks(ctx, futures); err != nil {
			return failAll(errs, err)
		}
		futures = futures[:0]
	}
	// Each target's work goes to the partitions of its records, in the
	// order routed, so that one pusher owns all the events of a record.
	for target, w := range work {
		for p, items := range mesh.SplitWork(w.Items, s.cfg.Partitions) {
			for k, part := range slices.Collect(slices.Chunk(items, mesh.MaxWorkItems)) {
				msgID := id + ":" + target + ":" + strconv.Itoa(p) + ":" + strconv.Itoa(k)
				f, err := mesh.PublishWorkAsync(s.js, target, p, msgID, &mesh.Work{Items: part}, nil)
				if err != nil {
					return failAll(errs, err)
				}
				futures = append(futures, f)
			}
		}
	}
	if err := mesh.WaitAcks(ctx, futures); err != nil {
		return failAll(errs, err)
	}
	if err := mesh.PublishCounts(ctx, s.js, accepted, id+":accepted"); err != nil {
		return failAll(errs, err)
	}
	return errs
}

// route decides what happens to ev for target: the status change, and the
// work item when the event passes.
func (s *Service) route(c *rules.Compiled, ev *event.Event, target string, now time.Time, decisions *telemetry.Tally) (status.Change, *mesh.Item) {
	ch := status.Change{RecordID: ev.RecordID, Target: target, EventID: ev.EventID, Operation: string(ev.Operation), OccurredAt: ev.OccurredAt, At: now}
	d := c.Evaluate(ev, target)
	decisions.Inc(target, string(d.Action), d.RuleID)
	switch d.Action {
	case rules.Skip:
		ch.State, ch.RuleID = status.StateSkippedByRule, d.RuleID
		return ch, nil
	case rules.Reject:
		ch.State, ch.RuleID = status.StateFailed, d.RuleID
		code := "RULE_REJECTED"
		if d.Error {
			code = "RULE_ERROR"
		}
		ch.Error = &status.Error{Class: status.ClassPermanent, Code: code, Message: d.Reason}
		return ch, nil
	}
	ch.State = status.StateQueued
	item := &mesh.Item{Event: *ev}
	item.Data = d.StripData(ev.Data)
	item.Targets = nil // the work is for target alone
	return ch, item
}

func failAll(errs []error, err error) []error {
	for i := range errs {
		errs[i] = err
	}
	return errs
}

func joinReasons(r []string) string {
	b, _ := json.Marshal(r)
	return string(b)
}

// decode returns the valid events of msg, the trace context of each when
// the message has them (nil otherwise), and, when some or all events are
// invalid, why.
func (s *Service) decode(msg jetstream.Msg) ([]event.Event, []map[string]string, string) {
	var events []event.Event
	var traces []map[string]string
	batch := msg.Subject() == mesh.SubjectInBatch || msg.Subject() == mesh.SubjectInGathered
	if batch {
		var b mesh.Batch
		if err := event.DecodeStrict(msg.Data(), "body", &b); err != nil {
			return nil, nil, event.Reason("body", err)
		}
		if len(b.Events) == 0 {
			return nil, nil, "body.events: a batch needs at least one event"
		}
		events = b.Events
		if len(b.Traces) == len(b.Events) {
			traces = b.Traces
		}
	} else {
		var ev event.Event
		if err := event.DecodeStrict(msg.Data(), "body", &ev); err != nil {
			return nil, nil, event.Reason("body", err)
		}
		events = []event.Event{ev}
	}
	// occurred_at is judged from the time the event was stored, as the
	// HTTP edge judged it, however long it waited to be routed.
	stored := s.now()
	if meta, err := msg.Metadata(); err == nil {
		stored = meta.Timestamp
	}
	var bad []string
	ok := events[:0]
	okTraces := traces[:0]
	for i := range events {
		prefix := "body"
		if batch {
			prefix = "body.events[" + strconv.Itoa(i) + "]"
		}
		if errs := events[i].ValidateAt(prefix, s.cfg.Limits, stored); len(errs) > 0 {
			bad = append(bad, errs.Error())
			continue
		}
		ok = append(ok, events[i])
		if traces != nil {
			okTraces = append(okTraces, traces[i])
		}
	}
	if traces == nil {
		okTraces = nil
	}
	if len(bad) == 0 {
		return ok, okTraces, ""
	}
	return ok, okTraces, joinReasons(bad)
}

// reject keeps msg on sync.rejected with the reason. A batch with some
// invalid events is kept whole; its valid events go on as usual.
func (s *Service) reject(msg jetstream.Msg, source string, seq uint64, reason string) (jetstream.PubAckFuture, error) {
	out := nats.NewMsg(mesh.SubjectRejected)
	out.Data = msg.Data()
	out.Header.Set(mesh.HeaderReason, reason)
	out.Header.Set(mesh.HeaderSubject, msg.Subject())
	id := "rej:" + strconv.FormatUint(seq, 10)
	if source != "in" {
		id = "rej:" + source + ":" + strconv.FormatUint(seq, 10)
	}
	out.Header.Set(mesh.HeaderMsgID, id)
	f, err := s.js.PublishMsgAsync(out)
	if err != nil {
		return nil, fmt.Errorf("publish rejected: %w", err)
	}
	s.log.Warn("event_rejected", "subject", msg.Subject(), "reason", reason)
	s.rejected.Add(context.Background(), 1)
	return f, nil
}

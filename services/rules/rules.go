// Package rules is the rules service: it consumes sync.in, validates each
// event as the HTTP edge does (an invalid one goes to sync.rejected with the
// reason), evaluates the rule set per target, and routes what passes to the
// targets' work subjects, recording queued, skipped_by_rule or failed.
package rules

import (
	"context"
	"encoding/json"
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

// New returns the rules service.
func New(js jetstream.JetStream, store *rules.Store, cfg Config, log *slog.Logger) (*Service, error) {
	if cfg.BatchEvents == 0 {
		cfg.BatchEvents = 1000
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

// Run consumes sync.in until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	cons, err := s.js.CreateOrUpdateConsumer(ctx, mesh.StreamIn, jetstream.ConsumerConfig{
		Durable:       mesh.ConsumerRules,
		Description:   "The rules service: validates, evaluates rules, routes to targets.",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 4096,
	})
	if err != nil {
		return fmt.Errorf("rules consumer: %w", err)
	}
	return mesh.Consume(ctx, cons, mesh.ConsumeOptions{Batch: s.cfg.BatchEvents, Size: mesh.Count, Buffer: 64, Wait: 2 * time.Millisecond}, s.log, s.handle)
}

// handle routes a batch of inbound messages. Everything derived from them
// (status changes, work per target, rejections) is published and
// acknowledged by JetStream before the messages are acked; a failure naks
// them all, and the message ids derived from their stream sequences make
// the redelivery publish nothing twice.
func (s *Service) handle(ctx context.Context, msgs []jetstream.Msg) []error {
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
		events, bad := s.decode(msg)
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
			f, err := s.reject(msg, meta.Sequence.Stream, bad)
			if err != nil {
				errs[i] = err
				continue
			}
			futures = append(futures, f)
		}
	}
	id := fmt.Sprintf("in:%d-%d", first, last)
	// Status first, so that "queued" is stored before a push can report
	// "synced".
	if len(changes) > 0 {
		f, err := mesh.PublishStatusAsync(s.js, "rules", id+":status", changes)
		if err != nil {
			return failAll(errs, err)
		}
		futures = append(futures, f)
		if err := mesh.WaitAcks(ctx, futures); err != nil {
			return failAll(errs, err)
		}
		futures = futures[:0]
	}
	for target, w := range work {
		for k, part := range slices.Collect(slices.Chunk(w.Items, mesh.MaxWorkItems)) {
			f, err := mesh.PublishWorkAsync(s.js, target, id+":"+target+":"+strconv.Itoa(k), &mesh.Work{Items: part}, nil)
			if err != nil {
				return failAll(errs, err)
			}
			futures = append(futures, f)
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

// decode returns the valid events of msg and, when some or all are
// invalid, why.
func (s *Service) decode(msg jetstream.Msg) ([]event.Event, string) {
	var events []event.Event
	batch := msg.Subject() == mesh.SubjectInBatch
	if batch {
		var b mesh.Batch
		if err := mesh.DecodeStrict(msg.Data(), &b); err != nil {
			return nil, "body: " + err.Error()
		}
		if len(b.Events) == 0 {
			return nil, "body.events: a batch needs at least one event"
		}
		events = b.Events
	} else {
		var ev event.Event
		if err := mesh.DecodeStrict(msg.Data(), &ev); err != nil {
			return nil, "body: " + err.Error()
		}
		events = []event.Event{ev}
	}
	var bad []string
	ok := events[:0]
	for i := range events {
		prefix := "body"
		if batch {
			prefix = "body.events[" + strconv.Itoa(i) + "]"
		}
		if errs := events[i].Validate(prefix, s.cfg.Limits); len(errs) > 0 {
			bad = append(bad, errs.Error())
			continue
		}
		ok = append(ok, events[i])
	}
	if len(bad) == 0 {
		return ok, ""
	}
	return ok, joinReasons(bad)
}

// reject keeps msg on sync.rejected with the reason. A batch with some
// invalid events is kept whole; its valid events go on as usual.
func (s *Service) reject(msg jetstream.Msg, seq uint64, reason string) (jetstream.PubAckFuture, error) {
	out := nats.NewMsg(mesh.SubjectRejected)
	out.Data = msg.Data()
	out.Header.Set(mesh.HeaderReason, reason)
	out.Header.Set(mesh.HeaderSubject, msg.Subject())
	out.Header.Set(mesh.HeaderMsgID, "rej:"+strconv.FormatUint(seq, 10))
	f, err := s.js.PublishMsgAsync(out)
	if err != nil {
		return nil, fmt.Errorf("publish rejected: %w", err)
	}
	s.log.Warn("event_rejected", "subject", msg.Subject(), "reason", reason)
	s.rejected.Add(context.Background(), 1)
	return f, nil
}

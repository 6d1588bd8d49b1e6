package ingest

import (
	"context"
	"strconv"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/recordsync/record-sync/shared/telemetry"
)

// metricsMiddleware counts every request by operation and status, and
// times it.
func metricsMiddleware(m metric.Meter) (func(huma.Context, func(huma.Context)), error) {
	requests, err := m.Int64Counter("recordsync_http_requests", metric.WithDescription("HTTP requests by operation and status"))
	if err != nil {
		return nil, err
	}
	latency, err := m.Float64Histogram("recordsync_http_request_duration_seconds", metric.WithUnit("s"),
		metric.WithDescription("HTTP request latency by operation"))
	if err != nil {
		return nil, err
	}
	return func(ctx huma.Context, next func(huma.Context)) {
		start := time.Now()
		next(ctx)
		op := attribute.String("operation", ctx.Operation().OperationID)
		requests.Add(ctx.Context(), 1, metric.WithAttributes(op, attribute.String("status", strconv.Itoa(ctx.Status()))))
		latency.Record(ctx.Context(), time.Since(start).Seconds(), metric.WithAttributes(op))
	}, nil
}

// observe exports the backlog per target as a gauge.
func (b *backlog) observe(m metric.Meter) error {
	_, err := m.Int64ObservableGauge("recordsync_backlog", metric.WithDescription("Work messages not yet settled per target, inbound messages not yet routed included"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			for _, t := range b.targets {
				o.Observe(int64(b.of(t)), metric.WithAttributes(attribute.String("target", t)))
			}
			return nil
		}))
	return err
}

// traceMiddleware starts a server span per request, joining the caller's
// trace when the request carries a traceparent header.
func traceMiddleware(tracer trace.Tracer) func(huma.Context, func(huma.Context)) {
	return func(ctx huma.Context, next func(huma.Context)) {
		parent := telemetry.Propagator.Extract(ctx.Context(), headerCarrier{ctx})
		c, span := tracer.Start(parent, ctx.Method()+" "+ctx.Operation().Path, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.route", ctx.Operation().Path)))
		defer span.End()
		next(huma.WithContext(ctx, c))
		span.SetAttributes(attribute.Int("http.response.status_code", ctx.Status()))
	}
}

// headerCarrier reads trace context from a request's headers.
type headerCarrier struct{ ctx huma.Context }

func (h headerCarrier) Get(key string) string { return h.ctx.Header(key) }
func (h headerCarrier) Set(string, string)    {}
func (h headerCarrier) Keys() []string        { return []string{"traceparent", "tracestate"} }

// gatherMetrics describe the gatherer's messages.
type gatherMetrics struct {
	events    metric.Int64Histogram
	conflicts metric.Int64Counter
	caught    metric.Int64Counter
	latency   metric.Float64Histogram
}

func newGatherMetrics(m metric.Meter) (*gatherMetrics, error) {
	g := &gatherMetrics{}
	var err error
	if g.events, err = m.Int64Histogram("recordsync_ingest_gathered_events", metric.WithDescription("Single events per gathered message"),
		metric.WithExplicitBucketBoundaries(1, 2, 5, 10, 20, 50, 100, 200, 500)); err != nil {
		return nil, err
	}
	if g.conflicts, err = m.Int64Counter("recordsync_ingest_gather_conflicts", metric.WithDescription("Gathered publishes refused because another edge stored a message first")); err != nil {
		return nil, err
	}
	if g.caught, err = m.Int64Counter("recordsync_ingest_gather_caught_up", metric.WithDescription("Messages of other edges read after a refused publish")); err != nil {
		return nil, err
	}
	if g.latency, err = m.Float64Histogram("recordsync_ingest_gather_publish_seconds", metric.WithUnit("s"),
		metric.WithDescription("Time from a gathered message's first publish to its acknowledgement")); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *gatherMetrics) record(ctx context.Context, events, conflicts int, took time.Duration) {
	g.events.Record(ctx, int64(events))
	if conflicts > 0 {
		g.conflicts.Add(ctx, int64(conflicts))
	}
	g.latency.Record(ctx, took.Seconds())
}

func (g *gatherMetrics) caughtUp(ctx context.Context, n int) {
	if n > 0 {
		g.caught.Add(ctx, int64(n))
	}
}

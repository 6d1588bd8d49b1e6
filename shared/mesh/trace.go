package mesh

import (
	"context"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"

	"github.com/recordsync/record-sync/shared/telemetry"
)

// headerCarrier carries trace context in NATS headers, which are case
// sensitive: it writes the lowercase W3C names and reads either spelling.
type headerCarrier nats.Header

func (c headerCarrier) Get(key string) string {
	for _, k := range []string{strings.ToLower(key), key} {
		if v := nats.Header(c)[k]; len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

func (c headerCarrier) Set(key, value string) { nats.Header(c)[strings.ToLower(key)] = []string{value} }

func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// InjectTrace writes the trace context of ctx into h.
func InjectTrace(ctx context.Context, h nats.Header) {
	telemetry.Propagator.Inject(ctx, headerCarrier(h))
}

// ExtractTrace returns ctx with the trace context of h, if any.
func ExtractTrace(ctx context.Context, h nats.Header) context.Context {
	if h == nil {
		return ctx
	}
	return telemetry.Propagator.Extract(ctx, headerCarrier(h))
}

// TraceOf returns the trace context of ctx as an Item carries it.
func TraceOf(ctx context.Context) map[string]string {
	c := propagation.MapCarrier{}
	telemetry.Propagator.Inject(ctx, c)
	if len(c) == 0 {
		return nil
	}
	return c
}

// Context returns ctx with the trace context the item carries.
func (it *Item) Context(ctx context.Context) context.Context {
	if len(it.Trace) == 0 {
		return ctx
	}
	return telemetry.Propagator.Extract(ctx, propagation.MapCarrier(it.Trace))
}

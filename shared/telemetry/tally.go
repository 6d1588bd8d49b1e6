package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Tally gathers the increments of a counter by three attribute values, to
// add them with one call per distinct triple at the end of a batch instead
// of one call (and one attribute set) per record.
type Tally struct {
	names  [3]string
	counts map[[3]string]int64
}

// NewTally returns a Tally over the attributes named a, b and c.
func NewTally(a, b, c string) *Tally {
	return &Tally{names: [3]string{a, b, c}, counts: map[[3]string]int64{}}
}

// Inc counts one for the values a, b and c.
func (t *Tally) Inc(a, b, c string) { t.counts[[3]string{a, b, c}]++ }

// AddTo adds what was counted to counter and starts again from zero.
func (t *Tally) AddTo(ctx context.Context, counter metric.Int64Counter) {
	for v, n := range t.counts {
		counter.Add(ctx, n, metric.WithAttributes(attribute.String(t.names[0], v[0]),
			attribute.String(t.names[1], v[1]), attribute.String(t.names[2], v[2])))
	}
	clear(t.counts)
}

// Package telemetry sets up the process's metrics: an OpenTelemetry meter
// provider whose instruments are exported in the Prometheus text format at
// /metrics.
package telemetry

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// Metrics is the process's meter provider and its Prometheus registry.
type Metrics struct {
	provider *sdkmetric.MeterProvider
	registry *prometheus.Registry
}

// NewMetrics returns a meter provider exported through a new Prometheus
// registry, which also holds the Go runtime and process collectors.
func NewMetrics() (*Metrics, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	return &Metrics{provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp)), registry: reg}, nil
}

// Meter returns the meter of a component.
func (m *Metrics) Meter(name string) metric.Meter { return m.provider.Meter("recordsync/" + name) }

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// Noop returns a meter that records nothing, for tests and tools.
func Noop() metric.Meter { return noop.NewMeterProvider().Meter("") }

// Or returns m, or a meter that records nothing when m is nil.
func Or(m metric.Meter) metric.Meter {
	if m == nil {
		return Noop()
	}
	return m
}

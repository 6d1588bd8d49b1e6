package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/telemetry"
)

// ServeMetrics serves /metrics, /healthz and /readyz on addr until ctx
// ends. /readyz is 503, naming them, while consumers of the process wait
// for JetStream (waits may be nil).
func ServeMetrics(ctx context.Context, addr string, m *telemetry.Metrics, waits *mesh.Waits) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		cur := waits.Current()
		if len(cur) == 0 {
			_, _ = w.Write([]byte("ready\n"))
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		for _, wt := range cur {
			_, _ = fmt.Fprintf(w, "consumer %s waits for JetStream since %s: %s\n", wt.Consumer, wt.Since.UTC().Format(time.RFC3339), wt.Reason)
		}
	})
	return serve(ctx, addr, mux)
}

// ServePprof serves Go's runtime profiles (net/http/pprof, under
// /debug/pprof/) on addr until ctx ends: `go tool pprof
// http://addr/debug/pprof/heap` shows what a running process holds.
func ServePprof(ctx context.Context, addr string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return serve(ctx, addr, mux)
}

// serve serves h on addr until ctx ends.
func serve(ctx context.Context, addr string, h http.Handler) error {
	ln, err := new(net.ListenConfig).Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ObserveWaits exports waits: recordsync_consumer_waiting (1 while a
// consumer waits for JetStream, else 0) and recordsync_consumer_waits (how
// many waits it has had), by consumer.
func ObserveWaits(metrics *telemetry.Metrics, waits *mesh.Waits) error {
	meter := metrics.Meter("mesh")
	waiting, err := meter.Int64ObservableGauge("recordsync_consumer_waiting",
		metric.WithDescription("1 while a consumer waits for JetStream (no leader, no server, missed heartbeats), by consumer"))
	if err != nil {
		return err
	}
	total, err := meter.Int64ObservableCounter("recordsync_consumer_waits",
		metric.WithDescription("Waits for JetStream each consumer has had, by consumer"))
	if err != nil {
		return err
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		now := map[string]bool{}
		for _, w := range waits.Current() {
			now[w.Consumer] = true
		}
		for c, n := range waits.Totals() {
			at := metric.WithAttributes(attribute.String("consumer", c))
			o.ObserveInt64(total, n, at)
			v := int64(0)
			if now[c] {
				v = 1
			}
			o.ObserveInt64(waiting, v, at)
		}
		return nil
	}, waiting, total)
	return err
}

// Tracing returns env.Tracing, or the provider the OTEL_* variables
// configure, and the function that flushes it.
func Tracing(ctx context.Context, env Env, service string) (trace.TracerProvider, func(), error) {
	if env.Tracing != nil {
		return env.Tracing, func() {}, nil
	}
	tp, shutdown, err := telemetry.NewTracing(ctx, service)
	if err != nil {
		return nil, nil, err
	}
	return tp, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdown(sctx)
	}, nil
}

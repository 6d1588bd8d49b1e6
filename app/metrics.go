package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/recordsync/record-sync/shared/telemetry"
)

// ServeMetrics serves /metrics (and /healthz) on addr until ctx ends.
func ServeMetrics(ctx context.Context, addr string, m *telemetry.Metrics) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	ln, err := new(net.ListenConfig).Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listen: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
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

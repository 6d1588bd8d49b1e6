// Package ingest is the HTTP edge of record-sync: a Huma v2 API that
// authenticates System A and operators, validates events, publishes them to
// sync.in and answers 202 once JetStream has acknowledged them; it also
// serves status, manual retry, rules, config and preview.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path"
	"reflect"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/recordsync/record-sync/services/pusher/crm"
	"github.com/recordsync/record-sync/shared/config"
	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/mapping"
	"github.com/recordsync/record-sync/shared/rules"
	"github.com/recordsync/record-sync/shared/status"
	"github.com/recordsync/record-sync/shared/telemetry"
)

// Config configures the HTTP edge.
type Config struct {
	// Addr is where the HTTP server listens.
	Addr string
	// APIKeys may call the sync operations; AdminKeys every operation.
	APIKeys, AdminKeys []string
	// MaxBodyBytes bounds a single event's body; MaxBatchBodyBytes a batch's.
	MaxBodyBytes, MaxBatchBodyBytes int64
	// MaxBatch is the most events in one batch request.
	MaxBatch int
	// Limits bound each event.
	Limits event.Limits
	// BacklogInterval is how often the backlog per target is refreshed.
	BacklogInterval time.Duration
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if len(c.APIKeys) == 0 && len(c.AdminKeys) == 0 {
		return errors.New("ingest: no API keys configured (RECORDSYNC_API_KEYS, RECORDSYNC_ADMIN_KEYS)")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 256 << 10
	}
	if c.MaxBatchBodyBytes == 0 {
		c.MaxBatchBodyBytes = 8 << 20
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 500
	}
	if c.BacklogInterval == 0 {
		c.BacklogInterval = time.Second
	}
	return c
}

// Deps are the stores and clients the edge uses.
type Deps struct {
	NC       *nats.Conn
	JS       jetstream.JetStream
	Configs  *config.Store
	Rules    *rules.Store
	Mappings *mapping.Store
	Status   *status.Reader
	Registry *crm.Registry
	// Meter records the edge's metrics (none when nil).
	Meter metric.Meter
	// Metrics serves /metrics (not served when nil).
	Metrics http.Handler
	// Tracing traces each request (nothing recorded when nil).
	Tracing trace.TracerProvider
	// LogLevel is the process's log level, changed by PUT
	// /v1/sync/log-level (a private one when nil).
	LogLevel *slog.LevelVar
}

// Service is the HTTP edge.
type Service struct {
	cfg      Config
	deps     Deps
	log      *slog.Logger
	keys     *keyring
	backlog  *backlog
	api      huma.API
	mux      *http.ServeMux
	now      func() time.Time
	accepted metric.Int64Counter
}

// New builds the edge and its routes.
func New(cfg Config, deps Deps, log *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if deps.LogLevel == nil {
		deps.LogLevel = new(slog.LevelVar)
	}
	s := &Service{
		cfg:     cfg,
		deps:    deps,
		log:     log,
		keys:    newKeyring(cfg.APIKeys, cfg.AdminKeys),
		backlog: newBacklog(deps.JS, deps.Configs.Targets(), log),
		mux:     http.NewServeMux(),
		now:     time.Now,
	}
	hc := huma.DefaultConfig("record-sync", "1.0.0")
	hc.Components.Schemas = huma.NewMapRegistry("#/components/schemas/", schemaName)
	hc.Info.Description = "Keeps Salesforce, HubSpot and Outreach in step with System A's records."
	hc.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		"apiKey": {Type: "apiKey", In: "header", Name: "X-API-Key", Description: "A sync key (RECORDSYNC_API_KEYS) or an admin key (RECORDSYNC_ADMIN_KEYS)."},
	}
	s.api = humago.New(s.mux, hc)
	mw, err := metricsMiddleware(telemetry.Or(deps.Meter))
	if err != nil {
		return nil, err
	}
	s.api.UseMiddleware(traceMiddleware(telemetry.Tracer(deps.Tracing, "ingest")), mw, authMiddleware(s.api, s.keys))
	s.register()
	if err := s.backlog.observe(telemetry.Or(deps.Meter)); err != nil {
		return nil, err
	}
	if s.accepted, err = telemetry.Or(deps.Meter).Int64Counter("recordsync_events_accepted",
		metric.WithDescription("Events accepted (202) by the HTTP edge, duplicates included, by endpoint")); err != nil {
		return nil, err
	}
	if deps.Metrics != nil {
		s.mux.Handle("GET /metrics", deps.Metrics)
	}
	return s, nil
}

// schemaName names schemas as Huma does, prefixed with the package for the
// packages whose type names would otherwise collide (status.Target and
// config.Target).
func schemaName(t reflect.Type, hint string) string {
	name := huma.DefaultSchemaNamer(t, hint)
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	switch path.Base(t.PkgPath()) {
	case "status":
		return "Status" + name
	case "config":
		return "Config" + name
	}
	return name
}

// Handler returns the HTTP handler of the edge.
func (s *Service) Handler() http.Handler { return s.mux }

// API returns the Huma API, for its OpenAPI description.
func (s *Service) API() huma.API { return s.api }

// Run serves HTTP on ln (or cfg.Addr when ln is nil) until ctx ends, then
// shuts down gracefully.
func (s *Service) Run(ctx context.Context, ln net.Listener) error {
	if ln == nil {
		var err error
		if ln, err = new(net.ListenConfig).Listen(ctx, "tcp", s.cfg.Addr); err != nil {
			return fmt.Errorf("ingest listen: %w", err)
		}
	}
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go s.backlog.run(bctx, s.cfg.BacklogInterval)
	srv := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("ingest serve: %w", err)
	case <-ctx.Done():
	}
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("ingest shutdown: %w", err)
	}
	return nil
}

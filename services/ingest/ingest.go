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
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/recordsync/record-sync/crm"
	"github.com/recordsync/record-sync/shared/config"
	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/mapping"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/ratelimit"
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
	// AdminReadOnly says that the stores write with the ingest user, which
	// may not write rules, mappings or config: their admin endpoints then
	// answer 503. Without it the stores must write through a connection as
	// the admin user (UseWriter).
	AdminReadOnly bool
	// BodyReadTimeout bounds the reading of a single event's body (10s
	// when zero), BatchBodyReadTimeout a batch's (30s): a body slower
	// than that is answered 408.
	BodyReadTimeout, BatchBodyReadTimeout time.Duration
	// StatusTTL is how long the status receipt of an accepted event (the
	// status_url's accepted token) is honoured: the status TTL of KV
	// sync_status (mesh.DefaultStatusTTL when zero).
	StatusTTL time.Duration
	// MaxMessageBytes bounds the NATS messages the edge publishes (NATS's
	// max_payload less 1 KiB for headers when zero or larger); a batch
	// whose encoding is larger travels in several messages.
	MaxMessageBytes int
	// MaxHeaderBytes bounds a request's headers (64 KiB when zero); past
	// it the answer is a 431.
	MaxHeaderBytes int
	// GatherOff publishes each single event alone on sync.in, deduplicated
	// by JetStream (Nats-Msg-Id = event_id), instead of gathering
	// concurrent ones into one message on sync.in.gathered (see
	// gather.go). Every edge must agree: each dedupes only against the
	// events published its way.
	GatherOff bool
	// GatherWait is how long, under load, the gatherer waits for more
	// events before it publishes. Zero (the default) is no wait: the
	// events that arrived while the previous message was being stored
	// share the next one, which is as many as the store is slow.
	GatherWait time.Duration
}

// ErrInvalidConfig is wrapped by every error Config.Validate returns.
var ErrInvalidConfig = errors.New("ingest: invalid config")

// Validate checks the configuration and reports every problem at once;
// zero sizes and intervals are valid (withDefaults fills them in).
func (c Config) Validate() error {
	var errs []error
	if len(c.APIKeys) == 0 && len(c.AdminKeys) == 0 {
		errs = append(errs, fmt.Errorf("%w: no API keys configured (RECORDSYNC_API_KEYS, RECORDSYNC_ADMIN_KEYS)", ErrInvalidConfig))
	}
	if c.MaxBodyBytes < 0 || c.MaxBatchBodyBytes < 0 || c.MaxBatch < 0 || c.BacklogInterval < 0 {
		errs = append(errs, fmt.Errorf("%w: MaxBodyBytes, MaxBatchBodyBytes, MaxBatch and BacklogInterval may not be negative", ErrInvalidConfig))
	}
	return errors.Join(errs...)
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
	if c.BodyReadTimeout == 0 {
		c.BodyReadTimeout = 10 * time.Second
	}
	if c.BatchBodyReadTimeout == 0 {
		c.BatchBodyReadTimeout = 30 * time.Second
	}
	if c.StatusTTL == 0 {
		c.StatusTTL = mesh.DefaultStatusTTL
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 64 << 10
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
	// Waits are the waits for JetStream of the consumers of this process
	// (in dev, all services'), which /readyz reports (none when nil).
	Waits *mesh.Waits
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
	verifyM  verifyMetrics
	// gather stores single events in gathered messages (nil: GatherOff).
	gather *gatherer

	readsMu sync.Mutex
	reads   map[string]*ratelimit.Permits // by target and rate: reads' share of the CRM's limit
	// receiptKey signs the status receipts of accepted events; macs holds
	// HMACs keyed with it, for reuse.
	receiptKey []byte
	macs       sync.Pool
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
		// Every replica derives the same key from the same keys.
		receiptKey: receiptKey(cfg.APIKeys, cfg.AdminKeys),
	}
	hc := huma.DefaultConfig("record-sync", "1.0.0")
	hc.DocsPath = "" // served by serveDocs, from the binary
	hc.Components.Schemas = huma.NewMapRegistry("#/components/schemas/", schemaName)
	// A pushed event's data is kept encoded (status.Data) and answered as
	// the object it is.
	hc.Components.Schemas.RegisterTypeAlias(reflect.TypeFor[status.Data](), reflect.TypeFor[map[string]any]())
	hc.Info.Description = "Keeps Salesforce, HubSpot and Outreach in step with System A's records. Every error is an RFC 9457 problem (application/problem+json) naming each bad field; a request that gets an error enqueues nothing."
	hc.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		"apiKey": {Type: "apiKey", In: "header", Name: "X-API-Key", Description: "A sync key (RECORDSYNC_API_KEYS) or an admin key (RECORDSYNC_ADMIN_KEYS)."},
	}
	s.api = humago.New(s.mux, hc)
	mw, err := metricsMiddleware(telemetry.Or(deps.Meter))
	if err != nil {
		return nil, err
	}
	s.api.UseMiddleware(traceMiddleware(telemetry.Tracer(deps.Tracing, "ingest")), mw, authMiddleware(s.api, s.keys), contentTypeMiddleware(s.api))
	s.register()
	s.finishOpenAPI()
	s.serveDocs()
	if err := s.backlog.observe(telemetry.Or(deps.Meter)); err != nil {
		return nil, err
	}
	if s.accepted, err = telemetry.Or(deps.Meter).Int64Counter("recordsync_events_accepted",
		metric.WithDescription("Events accepted (202) by the HTTP edge, duplicates included, by endpoint")); err != nil {
		return nil, err
	}
	if s.verifyM, err = newVerifyMetrics(telemetry.Or(deps.Meter)); err != nil {
		return nil, err
	}
	if deps.Metrics != nil {
		s.mux.Handle("GET /metrics", deps.Metrics)
	}
	if !cfg.GatherOff {
		gm, err := newGatherMetrics(telemetry.Or(deps.Meter))
		if err != nil {
			return nil, err
		}
		s.gather = startGatherer(deps.JS, log, cfg.MaxBatch, s.maxMessage, cfg.GatherWait, gm)
		if _, err := telemetry.Or(deps.Meter).Int64ObservableGauge("recordsync_ingest_gather_waiting",
			metric.WithDescription("Single-event requests waiting for their gathered message to be stored"),
			metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
				o.Observe(s.gather.waiting.Load())
				return nil
			})); err != nil {
			s.gather.close()
			return nil, err
		}
	}
	return s, nil
}

// Close stops what New started: single events not yet being published are
// answered as not accepted. Run calls it once the HTTP server has shut
// down; an edge served without Run is closed by its owner.
func (s *Service) Close() {
	if s.gather != nil {
		s.gather.close()
	}
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
func (s *Service) Handler() http.Handler { return handler{mux: s.mux} }

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
	defer s.Close() // after the HTTP server's shutdown, which waits for its requests
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go s.backlog.run(bctx, s.cfg.BacklogInterval)
	// A request's headers must arrive within ReadHeaderTimeout; its body
	// within the operation's body read timeout (BodyReadTimeout, a 408
	// past it), all of it within ReadTimeout; the answer is written before
	// WriteTimeout, which is longer, so that a 408 still gets out.
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       s.cfg.BatchBodyReadTimeout + 15*time.Second,
		WriteTimeout:      s.cfg.BatchBodyReadTimeout + 30*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(problemListener{Listener: ln, log: s.log}) }()
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

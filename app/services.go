package app

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	recordsync "github.com/recordsync/record-sync"
	"github.com/recordsync/record-sync/crm"
	"github.com/recordsync/record-sync/services/ingest"
	"github.com/recordsync/record-sync/services/pusher"
	rulesvc "github.com/recordsync/record-sync/services/rules"
	statussvc "github.com/recordsync/record-sync/services/status"
	"github.com/recordsync/record-sync/shared/config"
	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/mapping"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/rules"
	"github.com/recordsync/record-sync/shared/status"
	"github.com/recordsync/record-sync/shared/telemetry"
)

// Mesh is what every service shares: its JetStream handle, the stores over
// the KV buckets, and the CRM registry.
type Mesh struct {
	NC       *nats.Conn
	JS       jetstream.JetStream
	Configs  *config.Store
	Rules    *rules.Store
	Mappings *mapping.Store
	Status   *status.Reader
	StatusKV jetstream.KeyValue
	Registry *crm.Registry
	Log      *slog.Logger
	// Push is the work partitioning: partition count, the pushers'
	// AckWait and PinnedTTL.
	Push mesh.PushOptions
	// CircuitOpenFor is how long a target's circuit stays open.
	CircuitOpenFor time.Duration
	// Metrics is the process's metrics.
	Metrics *telemetry.Metrics
	// Tracing is the process's tracer provider (nil: nothing recorded).
	Tracing trace.TracerProvider
	// Waits are the process's consumers waiting for JetStream (shared by
	// the services of one process; nil records nothing).
	Waits *mesh.Waits
	// OccurredAtMaxFuture and OccurredAtMaxAge bound occurred_at (see
	// event.Limits).
	OccurredAtMaxFuture, OccurredAtMaxAge time.Duration
	// StatusMaxHeld and StatusCacheBytes bound the status service's
	// memory (statussvc.Config.MaxHeld and CacheBytes; 0: the defaults).
	StatusMaxHeld    int
	StatusCacheBytes int64
	service          string
	// adminWrites: the stores write through a connection as the admin
	// user (UseAdmin).
	adminWrites bool
}

// PublishAckTimeout bounds the wait for JetStream's ack of an
// asynchronous publish.
const PublishAckTimeout = 5 * time.Second

// OpenMesh checks that the streams, buckets and consumers service needs
// exist (`recordsync setup` creates them: a service user may not) and opens
// the stores. service is the service the connection belongs to; the
// error of a missing piece names it and says to run setup.
func OpenMesh(ctx context.Context, nc *nats.Conn, service string, env Env, reg *crm.Registry, metrics *telemetry.Metrics, log *slog.Logger) (*Mesh, error) {
	// An ack lost with a server (its request sent, the server gone before
	// it answered) fails the publish after PublishAckTimeout rather than
	// at the end of whatever deadline the caller's context has: the caller
	// then retries, through a server that answers.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(PublishAckTimeout))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	need, err := mesh.Needs(service, reg.Names(), MeshOptions(env))
	if err != nil {
		return nil, err
	}
	push, err := env.Push()
	if err != nil {
		return nil, err
	}
	if err := mesh.Check(ctx, js, need); err != nil {
		return nil, fmt.Errorf("%s: %w", service, err)
	}
	m := &Mesh{NC: nc, JS: js, Registry: reg, Log: log, Push: push, CircuitOpenFor: env.CircuitOpenFor, Metrics: metrics, service: service,
		OccurredAtMaxFuture: env.OccurredAtMaxFuture, OccurredAtMaxAge: env.OccurredAtMaxAge, StatusMaxHeld: env.StatusMaxHeld, StatusCacheBytes: env.StatusCacheBytes}
	defaults, err := config.LoadDefaults(env.CRMSimAddr, reg.Defaults(), reg.MaxBatch)
	if err != nil {
		return nil, err
	}
	cfgKV, err := js.KeyValue(ctx, mesh.BucketConfig)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", mesh.BucketConfig, err)
	}
	m.Configs = config.NewStore(cfgKV, defaults, log)
	if err := m.Configs.Load(ctx, reg.MaxBatch); err != nil {
		return nil, err
	}
	rulesKV, err := js.KeyValue(ctx, mesh.BucketRules)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", mesh.BucketRules, err)
	}
	seed, err := rules.Parse(recordsync.RulesJSON, reg.Targets())
	if err != nil {
		return nil, fmt.Errorf("rules.json: %w", err)
	}
	m.Rules = rules.NewStore(rulesKV, seed, reg.Targets(), log)
	if m.Mappings, err = mapping.NewStore(rulesKV, reg.Schemas(), log); err != nil {
		return nil, err
	}
	m.StatusKV, err = js.KeyValue(ctx, mesh.BucketStatus)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", mesh.BucketStatus, err)
	}
	m.Status = status.NewReader(m.StatusKV)
	if err := m.observeProblems(); err != nil {
		return nil, err
	}
	go watchJetStream(nc, js, log.With("service", service))
	return m, nil
}

// UseAdmin makes the rules, mappings and config stores write through nc, a
// connection as the admin NATS user (the ingest user may not write them):
// the HTTP edge's admin endpoints then change them.
func (m *Mesh) UseAdmin(ctx context.Context, nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cfgKV, err := js.KeyValue(ctx, mesh.BucketConfig)
	if err != nil {
		return fmt.Errorf("open %s as admin: %w", mesh.BucketConfig, err)
	}
	rulesKV, err := js.KeyValue(ctx, mesh.BucketRules)
	if err != nil {
		return fmt.Errorf("open %s as admin: %w", mesh.BucketRules, err)
	}
	m.Configs.UseWriter(cfgKV)
	m.Rules.UseWriter(rulesKV)
	m.Mappings.UseWriter(rulesKV)
	m.adminWrites = true
	return nil
}

// observeProblems exports, per service, how many stored rule sets,
// mappings and target configs are not applied (0 when all is well).
func (m *Mesh) observeProblems() error {
	meter := m.Metrics.Meter("stores")
	gauge, err := meter.Int64ObservableGauge("recordsync_config_not_applied",
		metric.WithDescription("Values in KV that did not validate and are not applied (the last good one is in force), by kind and service"))
	if err != nil {
		return err
	}
	// Every service of a dev process registers its own callback on the one
	// instrument; the service attribute tells them apart.
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		svc := attribute.String("service", m.service)
		rulesBad := int64(0)
		if m.Rules.Problem() != "" {
			rulesBad = 1
		}
		o.ObserveInt64(gauge, rulesBad, metric.WithAttributes(svc, attribute.String("kind", "rules")))
		o.ObserveInt64(gauge, int64(len(m.Mappings.Problems())), metric.WithAttributes(svc, attribute.String("kind", "mapping")))
		o.ObserveInt64(gauge, int64(len(m.Configs.Problems())), metric.WithAttributes(svc, attribute.String("kind", "target_config")))
		return nil
	}, gauge)
	return err
}

// watch follows rules and config in g until ctx ends, and waits until the
// stored rule set has been read.
func (m *Mesh) watch(ctx context.Context, g *errgroup.Group) error {
	ready := make(chan struct{})
	g.Go(func() error { return m.Rules.Watch(ctx, ready) })
	g.Go(func() error { return m.Configs.Watch(ctx, m.Registry.MaxBatch) })
	g.Go(func() error { return m.Mappings.Watch(ctx) })
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *Mesh) limits() event.Limits {
	lim := event.DefaultLimits(m.Registry.Targets())
	lim.MaxFuture, lim.MaxAge = m.OccurredAtMaxFuture, m.OccurredAtMaxAge
	return lim
}

// RunIngest runs the HTTP edge on ln (env.HTTPAddr when nil) until ctx
// ends; serving is called once requests are taken.
func RunIngest(ctx context.Context, m *Mesh, env Env, ln net.Listener, serving func()) error {
	closeLn := func() {
		if ln != nil {
			_ = ln.Close()
		}
	}
	g, ctx := errgroup.WithContext(ctx)
	if err := m.watch(ctx, g); err != nil {
		closeLn()
		return err
	}
	if !m.adminWrites {
		m.Log.Warn("admin_read_only", "detail", "no admin NATS user: rules, mappings and config cannot be changed through this edge (RECORDSYNC_NATS_ADMIN_PASSWORD)")
	}
	svc, err := ingest.New(ingest.Config{Addr: env.HTTPAddr, APIKeys: env.APIKeys, AdminKeys: env.AdminKeys, Limits: m.limits(), AdminReadOnly: !m.adminWrites,
		GatherOff: env.GatherOff, GatherWait: env.GatherWait},
		ingest.Deps{NC: m.NC, JS: m.JS, Configs: m.Configs, Rules: m.Rules, Mappings: m.Mappings, Status: m.Status, Registry: m.Registry,
			Meter: m.Metrics.Meter("ingest"), Metrics: m.Metrics.Handler(), Tracing: m.Tracing, LogLevel: env.Level, Waits: m.Waits}, m.Log.With("service", "ingest"))
	if err != nil {
		closeLn()
		return err
	}
	if ln == nil {
		if ln, err = new(net.ListenConfig).Listen(ctx, "tcp", env.HTTPAddr); err != nil {
			return fmt.Errorf("http listen: %w", err)
		}
	}
	g.Go(func() error { return svc.Run(ctx, ln) })
	if serving != nil {
		serving()
	}
	return g.Wait()
}

// RunRules runs the rules service until ctx ends.
func RunRules(ctx context.Context, m *Mesh) error {
	g, ctx := errgroup.WithContext(ctx)
	if err := m.watch(ctx, g); err != nil {
		return err
	}
	svc, err := rulesvc.New(m.JS, m.Rules, rulesvc.Config{Limits: m.limits(), DefaultTargets: m.Configs.DefaultTargets(),
		Partitions: m.Push.Partitions, Targets: m.Registry.Names(), Meter: m.Metrics.Meter("rules"), Tracing: m.Tracing, Waits: m.Waits}, m.Log.With("service", "rules"))
	if err != nil {
		return err
	}
	g.Go(func() error { return svc.Run(ctx) })
	return g.Wait()
}

// RunPusher runs one worker per registered target until ctx ends.
func RunPusher(ctx context.Context, m *Mesh) error {
	g, ctx := errgroup.WithContext(ctx)
	if err := m.watch(ctx, g); err != nil {
		return err
	}
	log := m.Log.With("service", "pusher")
	for _, name := range m.Registry.Names() {
		// The api_host this pusher calls is the one every process reports.
		if err := m.Configs.AnnounceAPIHost(ctx, name); err != nil {
			return err
		}
		c, _ := m.Registry.Get(name)
		w, err := pusher.NewWorker(m.JS, c, m.Configs, m.Mappings, m.Status,
			pusher.Options{Push: m.Push, OpenFor: m.CircuitOpenFor, Meter: m.Metrics.Meter("pusher"), Tracing: m.Tracing, Waits: m.Waits}, log)
		if err != nil {
			return err
		}
		g.Go(func() error { return w.Run(ctx) })
	}
	return g.Wait()
}

// RunStatus runs the status service until ctx ends.
func RunStatus(ctx context.Context, m *Mesh) error {
	svc, err := statussvc.New(m.JS, m.StatusKV, statussvc.Config{Meter: m.Metrics.Meter("status"), Waits: m.Waits,
		MaxHeld: m.StatusMaxHeld, CacheBytes: m.StatusCacheBytes}, m.Log.With("service", "status"))
	if err != nil {
		return err
	}
	return svc.Run(ctx)
}

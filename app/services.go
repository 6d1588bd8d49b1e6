package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	recordsync "github.com/recordsync/record-sync"
	"github.com/recordsync/record-sync/services/ingest"
	"github.com/recordsync/record-sync/services/pusher"
	"github.com/recordsync/record-sync/services/pusher/crm"
	"github.com/recordsync/record-sync/services/pusher/crm/hubspot"
	"github.com/recordsync/record-sync/services/pusher/crm/outreach"
	"github.com/recordsync/record-sync/services/pusher/crm/salesforce"
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

// credentials is the credentials file the emulator writes, and that a
// deployment can provide the same way (RECORDSYNC_CRM_CREDENTIALS).
type credentials struct {
	HubSpot struct {
		Token        string `json:"token"`
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
		RefreshToken string `json:"refresh_token"`
	} `json:"hubspot"`
	Salesforce struct {
		ConsumerKey string `json:"consumer_key"`
		Username    string `json:"username"`
		PrivateKey  string `json:"private_key"`
		Audience    string `json:"audience"`
		LoginURL    string `json:"login_url"`
	} `json:"salesforce"`
	Outreach struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
		RefreshToken string `json:"refresh_token"`
	} `json:"outreach"`
}

// Registry builds the CRM plugins. With needCreds (the pusher), a plugin
// without credentials is left out and named in the returned list, so its
// work waits in its stream; the other services register every plugin, as
// they only use names, limits and schemas.
func Registry(env Env, needCreds bool) (*crm.Registry, []string, error) {
	var creds credentials
	if b, err := os.ReadFile(env.CRMCredentials); err == nil {
		if err := json.Unmarshal(b, &creds); err != nil {
			return nil, nil, fmt.Errorf("crm credentials %s: %w", env.CRMCredentials, err)
		}
	}
	if env.HubSpotToken != "" {
		creds.HubSpot.Token = env.HubSpotToken
	}
	timeout := env.CRMTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	r := crm.NewRegistry()
	var missing []string
	add := func(c crm.CRM, have bool) error {
		if needCreds && !have {
			missing = append(missing, c.Name())
			return nil
		}
		return r.Register(c)
	}
	// HubSpot: a private app token, or else an OAuth app's refresh token.
	h := creds.HubSpot
	var err error
	if h.Token == "" && h.ClientID != "" && h.RefreshToken != "" {
		err = add(hubspot.NewOAuth(hubspot.OAuthCredentials{ClientID: h.ClientID, ClientSecret: h.ClientSecret, RefreshToken: h.RefreshToken}, timeout), true)
	} else {
		err = add(hubspot.New(h.Token, timeout), h.Token != "")
	}
	if err != nil {
		return nil, nil, err
	}
	sf := salesforce.Credentials{ConsumerKey: creds.Salesforce.ConsumerKey, Username: creds.Salesforce.Username,
		Audience: creds.Salesforce.Audience, LoginURL: creds.Salesforce.LoginURL}
	if creds.Salesforce.PrivateKey != "" {
		key, err := jwt.ParseRSAPrivateKeyFromPEM([]byte(creds.Salesforce.PrivateKey))
		if err != nil {
			return nil, nil, fmt.Errorf("salesforce private key: %w", err)
		}
		sf.Key = key
	}
	if err := add(salesforce.New(sf, timeout), sf.Key != nil && sf.ConsumerKey != ""); err != nil {
		return nil, nil, err
	}
	o := creds.Outreach
	if err := add(outreach.New(outreach.Credentials{ClientID: o.ClientID, ClientSecret: o.ClientSecret, RefreshToken: o.RefreshToken}, timeout),
		o.ClientID != "" && o.RefreshToken != ""); err != nil {
		return nil, nil, err
	}
	return r, missing, nil
}

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
	// PushAckWait is the pushers' AckWait (pusher.DefaultAckWait when 0).
	PushAckWait time.Duration
	// CircuitOpenFor is how long a target's circuit stays open.
	CircuitOpenFor time.Duration
	// Metrics is the process's metrics.
	Metrics *telemetry.Metrics
	// Tracing is the process's tracer provider (nil: nothing recorded).
	Tracing trace.TracerProvider
	service string
}

// OpenMesh creates the streams and buckets if needed and opens the stores.
// service is the service the connection belongs to; ingest and rules seed
// the rule set from rules.json when KV holds none (the others may not write
// it).
func OpenMesh(ctx context.Context, nc *nats.Conn, service string, env Env, reg *crm.Registry, metrics *telemetry.Metrics, log *slog.Logger) (*Mesh, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := mesh.Ensure(ctx, js, mesh.Options{StatusTTL: env.StatusTTL}); err != nil {
		return nil, err
	}
	m := &Mesh{NC: nc, JS: js, Registry: reg, Log: log, PushAckWait: env.PushAckWait, CircuitOpenFor: env.CircuitOpenFor, Metrics: metrics, service: service}
	defaults, err := config.LoadDefaults(env.CRMSimAddr)
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
	seed, err := rules.Parse(recordsync.RulesJSON, reg.Names())
	if err != nil {
		return nil, fmt.Errorf("rules.json: %w", err)
	}
	if service == "ingest" || service == "rules" {
		if err := rules.Seed(ctx, rulesKV, recordsync.RulesJSON); err != nil {
			return nil, err
		}
	}
	m.Rules = rules.NewStore(rulesKV, seed, reg.Names(), log)
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
	return m, nil
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
	return event.DefaultLimits(m.Registry.Names())
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
	svc, err := ingest.New(ingest.Config{Addr: env.HTTPAddr, APIKeys: env.APIKeys, AdminKeys: env.AdminKeys, Limits: m.limits()},
		ingest.Deps{NC: m.NC, JS: m.JS, Configs: m.Configs, Rules: m.Rules, Mappings: m.Mappings, Status: m.Status, Registry: m.Registry,
			Meter: m.Metrics.Meter("ingest"), Metrics: m.Metrics.Handler(), Tracing: m.Tracing, LogLevel: env.Level}, m.Log.With("service", "ingest"))
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
	svc, err := rulesvc.New(m.JS, m.Rules, rulesvc.Config{Limits: m.limits(), DefaultTargets: m.Configs.DefaultTargets(), Meter: m.Metrics.Meter("rules"), Tracing: m.Tracing}, m.Log.With("service", "rules"))
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
		c, _ := m.Registry.Get(name)
		w, err := pusher.NewWorker(m.JS, c, m.Configs, m.Mappings, m.Status,
			pusher.Options{AckWait: m.PushAckWait, OpenFor: m.CircuitOpenFor, Meter: m.Metrics.Meter("pusher"), Tracing: m.Tracing}, log)
		if err != nil {
			return err
		}
		g.Go(func() error { return w.Run(ctx) })
	}
	return g.Wait()
}

// RunStatus runs the status service until ctx ends.
func RunStatus(ctx context.Context, m *Mesh) error {
	svc, err := statussvc.New(m.JS, m.StatusKV, statussvc.Config{Meter: m.Metrics.Meter("status")}, m.Log.With("service", "status"))
	if err != nil {
		return err
	}
	return svc.Run(ctx)
}

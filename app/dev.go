package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"

	recordsync "github.com/recordsync/record-sync"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/natsrv"
	"github.com/recordsync/record-sync/shared/telemetry"
)

// DevInfo tells where a running `dev` can be reached.
type DevInfo struct {
	HTTPURL     string
	APIKey      string
	AdminKey    string
	NATSURL     string
	NATSEnv     string
	CRMSimURL   string
	Credentials string
	KeysFile    string
}

// RunDev runs everything in one process: an embedded NATS server from
// nats.conf, the CRM emulator (unless env.CRMSim is false), and the four
// services. ready is called once the HTTP edge accepts requests. When ctx
// ends it stops taking requests, lets the services settle what they hold,
// drains the NATS connections and stops the server.
func RunDev(ctx context.Context, env Env, log *slog.Logger, ready func(DevInfo)) error {
	if err := os.MkdirAll(env.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	info := DevInfo{}
	keysFile, err := devKeys(&env)
	if err != nil {
		return err
	}
	info.KeysFile = keysFile
	info.APIKey, info.AdminKey = first(env.APIKeys), first(env.AdminKeys)

	servers, err := startDevNATS(env, log.With("service", "nats"))
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range servers {
			s.Shutdown()
			s.WaitForShutdown()
		}
	}()
	srv := servers[0]
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = s.ClientURL()
	}
	info.NATSURL = strings.Join(urls, ",")
	info.NATSEnv = filepath.Join(env.DataDir, "nats.env")
	if err := srv.WriteEnv(info.NATSEnv, info.NATSURL); err != nil {
		return err
	}

	if env.CRMSim {
		sim, err := StartCRMSim(env.CRMSimAddr, env.DataDir, log.With("service", "crmsim"))
		if err != nil {
			return err
		}
		defer func() { _ = sim.Stop() }()
		env.CRMSimAddr = sim.Addr
		env.CRMCredentials = sim.Credentials
	}
	info.CRMSimURL = "http://" + env.CRMSimAddr
	info.Credentials = env.CRMCredentials

	ln, err := new(net.ListenConfig).Listen(ctx, "tcp", env.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	info.HTTPURL = "http://" + ln.Addr().String()

	conns := map[string]*nats.Conn{}
	defer func() {
		for _, nc := range conns {
			_ = nc.Drain()
		}
	}()
	metrics, err := telemetry.NewMetrics()
	if err != nil {
		_ = ln.Close()
		return err
	}
	tracing, stopTracing, err := Tracing(ctx, env, "dev")
	if err != nil {
		_ = ln.Close()
		return err
	}
	defer stopTracing()
	waits := mesh.NewWaits()
	if err := ObserveWaits(metrics, waits); err != nil {
		_ = ln.Close()
		return err
	}
	// `recordsync setup`, as the operator: the service users may create
	// nothing.
	if err := devSetup(ctx, srv, env, log); err != nil {
		_ = ln.Close()
		return err
	}
	meshes := map[string]*Mesh{}
	for _, user := range []string{"ingest", "rules", "pusher", "status"} {
		// Each service on a connection of its own, as its own user.
		nc, err := srv.Connect(user, natsrv.ErrorLog(log.With("service", user)))
		if err != nil {
			_ = ln.Close()
			return err
		}
		conns[user] = nc
		reg, missing, err := Registry(env, user == "pusher")
		if err != nil {
			_ = ln.Close()
			return err
		}
		LogMissingCredentials(log, env, missing)
		m, err := OpenMesh(ctx, nc, user, env, reg, metrics, log)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("%s: %w", user, err)
		}
		m.Tracing, m.Waits = tracing, waits
		meshes[user] = m
	}
	// The admin endpoints of the edge write as the admin user.
	adminNC, err := srv.Connect("admin", natsrv.ErrorLog(log.With("service", "ingest")))
	if err != nil {
		_ = ln.Close()
		return err
	}
	conns["admin"] = adminNC
	if err := meshes["ingest"].UseAdmin(ctx, adminNC); err != nil {
		_ = ln.Close()
		return err
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return RunRules(gctx, meshes["rules"]) })
	for range env.DevPushers {
		g.Go(func() error { return RunPusher(gctx, meshes["pusher"]) })
	}
	g.Go(func() error { return RunStatus(gctx, meshes["status"]) })
	g.Go(func() error {
		return RunIngest(gctx, meshes["ingest"], env, ln, func() {
			if ready != nil {
				ready(info)
			}
		})
	})
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	log.Info("dev_stopped")
	return err
}

// devSetup runs Setup on the embedded server as the operator, for every
// target.
func devSetup(ctx context.Context, srv *natsrv.Server, env Env, log *slog.Logger) error {
	nc, err := srv.Connect("operator")
	if err != nil {
		return err
	}
	return setupOn(ctx, nc, env, log)
}

// startDevNATS starts dev's embedded server, or with env.DevCluster a
// cluster of natsrv.ClusterSize servers from nats-cluster.conf (the first
// on env.NATSListen, the others on free ports, stores in
// <data dir>/nats-<n>), and waits until JetStream has a meta leader.
func startDevNATS(env Env, log *slog.Logger) ([]*natsrv.Server, error) {
	base := natsrv.Config{Conf: recordsync.NATSConf, Listen: env.NATSListen, StoreDir: filepath.Join(env.DataDir, "nats"), Profile: env.Profile, Passwords: env.NATSPasswords, Log: log}
	if env.DevCluster <= 1 {
		s, err := natsrv.Start(base)
		if err != nil {
			return nil, err
		}
		return []*natsrv.Server{s}, nil
	}
	n := env.DevCluster
	listens, routes := make([]string, n), make([]string, n)
	for i := range n {
		ln, err := new(net.ListenConfig).Listen(context.Background(), "tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("cluster port: %w", err)
		}
		listens[i], routes[i] = ln.Addr().String(), "nats-route://"+ln.Addr().String()
		_ = ln.Close()
	}
	pw := map[string]string{} // one password per user on every server
	for _, u := range natsrv.Users {
		if pw[u] = env.NATSPasswords[u]; pw[u] == "" {
			pw[u] = natsrv.RandomSecret()
		}
	}
	servers := make([]*natsrv.Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		cfg := base
		cfg.ClusterConf, cfg.Passwords = recordsync.NATSClusterConf, pw
		cfg.StoreDir = filepath.Join(env.DataDir, fmt.Sprintf("nats-%d", i+1))
		cfg.Log = log.With("server", fmt.Sprintf("dev-%d", i+1))
		if i > 0 {
			cfg.Listen = "127.0.0.1:-1"
		}
		cfg.Cluster = natsrv.Cluster{Name: "recordsync-dev", ServerName: fmt.Sprintf("dev-%d", i+1), Listen: listens[i], Routes: routes}
		wg.Go(func() { servers[i], errs[i] = natsrv.Start(cfg) })
	}
	wg.Wait()
	raw := make([]*server.Server, 0, n)
	for _, s := range servers {
		if s != nil {
			raw = append(raw, s.Server)
		}
	}
	err := errors.Join(errs...)
	if err == nil {
		err = natsrv.WaitMetaLeader(raw, time.Minute)
	}
	if err != nil {
		for _, s := range raw {
			s.Shutdown()
		}
		return nil, fmt.Errorf("dev cluster: %w", err)
	}
	return servers, nil
}

// devKeys fills missing API keys with keys generated for this session and
// writes them, readable by the owner only, to <data dir>/api-keys.json.
func devKeys(env *Env) (string, error) {
	if len(env.APIKeys) > 0 && len(env.AdminKeys) > 0 {
		return "", nil
	}
	if len(env.APIKeys) == 0 {
		env.APIKeys = []string{"sync-" + natsrv.RandomSecret()}
	}
	if len(env.AdminKeys) == 0 {
		env.AdminKeys = []string{"admin-" + natsrv.RandomSecret()}
	}
	path := filepath.Join(env.DataDir, "api-keys.json")
	b, _ := json.MarshalIndent(map[string]any{"api_keys": env.APIKeys, "admin_keys": env.AdminKeys,
		"generated_at": time.Now().UTC()}, "", "  ")
	_ = os.Remove(path) // so the new file is created 0600 whatever the old one was
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return "", fmt.Errorf("write api keys: %w", err)
	}
	return path, nil
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

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
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"

	recordsync "github.com/recordsync/record-sync"
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

	srv, err := natsrv.Start(natsrv.Config{Conf: recordsync.NATSConf, Listen: env.NATSListen,
		StoreDir: filepath.Join(env.DataDir, "nats"), Profile: env.Profile, Log: log.With("service", "nats")})
	if err != nil {
		return err
	}
	defer func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	}()
	info.NATSURL = srv.ClientURL()
	info.NATSEnv = filepath.Join(env.DataDir, "nats.env")
	if err := srv.WriteEnv(info.NATSEnv); err != nil {
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
	meshes := map[string]*Mesh{}
	for _, user := range []string{"ingest", "rules", "pusher", "status"} {
		nc, err := srv.Connect(user)
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
		for _, name := range missing {
			log.Warn("crm_without_credentials", "target", name, "detail", "no pusher for this target: its work waits in SYNC_PUSH")
		}
		m, err := OpenMesh(ctx, nc, user, env, reg, metrics, log)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("%s: %w", user, err)
		}
		m.Tracing = tracing
		meshes[user] = m
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

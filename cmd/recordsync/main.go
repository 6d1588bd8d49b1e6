// Command recordsync runs record-sync: `dev` runs everything in one process
// with an embedded NATS server and the CRM emulator; `ingest`, `rules`,
// `pusher` and `status` run one service each against an external NATS;
// `crmsim` runs the CRM emulator alone.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/recordsync/record-sync/app"
	"github.com/recordsync/record-sync/shared/logging"
	"github.com/recordsync/record-sync/shared/natsrv"
	"github.com/recordsync/record-sync/shared/telemetry"
)

const usage = `usage: recordsync <command> [flags]

commands:
  dev      everything in one process: embedded NATS, the four services, the CRM emulator
  ingest   the HTTP edge, against --nats-url
  rules    the rules service, against --nats-url
  pusher   the pushers of every target, against --nats-url
  status   the status service, against --nats-url
  crmsim   the CRM emulator alone
  dlq      list or replay dead letters: dlq list|replay --target T [--code C] [--since 24h] [--dry-run]

Settings come from RECORDSYNC_* environment variables (see README); flags override them.
`

func main() {
	app.TuneGC()
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1], os.Args[2:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "recordsync:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	env := app.LoadEnvFromOS()
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&env.NATSURL, "nats-url", env.NATSURL, "NATS server URL (RECORDSYNC_NATS_URL)")
	fs.StringVar(&env.HTTPAddr, "http-addr", env.HTTPAddr, "HTTP listen address (RECORDSYNC_HTTP_ADDR)")
	fs.StringVar(&env.DataDir, "data-dir", env.DataDir, "data directory (RECORDSYNC_DATA_DIR)")
	fs.StringVar(&env.Profile, "profile", env.Profile, "durability profile of the embedded server: fast or durable (RECORDSYNC_PROFILE)")
	fs.StringVar(&env.CRMSimAddr, "crmsim-addr", env.CRMSimAddr, "CRM emulator address (RECORDSYNC_CRMSIM_ADDR)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	out, closeLog, err := logging.Open(stdout, env.LogFile)
	if err != nil {
		return err
	}
	defer func() { _ = closeLog() }()
	log, level := logging.New(out, env.LogLevel)
	env.Level = level
	log = log.With("command", cmd)
	if cmd != "dlq" {
		log.Info("starting", "config", env.String())
	}

	switch cmd {
	case "dev":
		return app.RunDev(ctx, env, log, func(i app.DevInfo) { printDev(stderr, i) })
	case "crmsim":
		return app.RunCRMSim(ctx, env, log)
	case "dlq":
		return app.RunDLQ(ctx, env, fs.Args(), stdout, stderr)
	case "ingest", "rules", "pusher", "status":
		return runService(ctx, cmd, env, log)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

// runService runs one service against an external NATS server.
func runService(ctx context.Context, name string, env app.Env, log *slog.Logger) error {
	if env.NATSURL == "" {
		return errors.New("--nats-url (RECORDSYNC_NATS_URL) is required outside dev")
	}
	user := env.NATSUser
	if user == "" {
		user = name
	}
	nc, err := natsrv.Dial(env.NATSURL, name, user, env.NATSPassword)
	if err != nil {
		return err
	}
	defer func() { _ = nc.Drain() }()
	reg, missing, err := app.Registry(env, name == "pusher")
	if err != nil {
		return err
	}
	for _, t := range missing {
		log.Warn("crm_without_credentials", "target", t, "detail", "no pusher for this target: its work waits in SYNC_PUSH")
	}
	metrics, err := telemetry.NewMetrics()
	if err != nil {
		return err
	}
	m, err := app.OpenMesh(ctx, nc, name, env, reg, metrics, log)
	if err != nil {
		return err
	}
	tracing, stopTracing, err := app.Tracing(ctx, env, name)
	if err != nil {
		return err
	}
	defer stopTracing()
	m.Tracing = tracing
	if name != "ingest" && env.MetricsAddr != "" {
		// The HTTP edge serves /metrics itself; the others on their own port.
		go func() {
			if err := app.ServeMetrics(ctx, env.MetricsAddr, metrics); err != nil {
				log.Error("metrics_server_failed", "error", err.Error())
			}
		}()
	}
	switch name {
	case "ingest":
		if len(env.APIKeys) == 0 && len(env.AdminKeys) == 0 {
			return errors.New("no API keys: set RECORDSYNC_API_KEYS and RECORDSYNC_ADMIN_KEYS")
		}
		return app.RunIngest(ctx, m, env, nil, func() { log.Info("http_listening", "addr", env.HTTPAddr) })
	case "rules":
		return app.RunRules(ctx, m)
	case "pusher":
		return app.RunPusher(ctx, m)
	default:
		return app.RunStatus(ctx, m)
	}
}

func printDev(w io.Writer, i app.DevInfo) {
	fmt.Fprintf(w, `
record-sync dev is running. Ctrl-C stops it cleanly.

  HTTP edge     %[1]s      (POST /v1/sync/, GET /v1/sync/status/{record_id}, ...)
  API docs      %[1]s/docs   OpenAPI: %[1]s/openapi.json
  sync key      %[2]s
  admin key     %[3]s
  keys file     %[4]s
  NATS          %[5]s   (set -a; . %[6]s; nats stream ls)
  CRM emulator  %[7]s   credentials: %[8]s

Try:
  curl -s -X POST %[1]s/v1/sync/ -H 'X-API-Key: %[2]s' -H 'Content-Type: application/json' \
    -d '{"record_id":"c-1","operation":"create","data":{"email":"ada@example.com","first_name":"Ada"}}'
  curl -s %[1]s/v1/sync/status/c-1 -H 'X-API-Key: %[2]s'

`, i.HTTPURL, i.APIKey, i.AdminKey, orNone(i.KeysFile), i.NATSURL, i.NATSEnv, i.CRMSimURL, i.Credentials)
}

func orNone(s string) string {
	if s == "" {
		return "(keys from the environment)"
	}
	return s
}

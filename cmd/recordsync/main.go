// Command recordsync runs record-sync: `dev` runs everything in one process
// with an embedded NATS server and the CRM emulator; `ingest`, `rules`,
// `pusher` and `status` run one service each against an external NATS;
// `setup` creates what they need there; `crmsim` runs the CRM emulator
// alone; `dlq` lists and replays dead
// letters; `version` and `help` explain the binary itself.
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

	"github.com/nats-io/nats.go"

	"github.com/recordsync/record-sync/app"
	"github.com/recordsync/record-sync/shared/logging"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/natsrv"
	"github.com/recordsync/record-sync/shared/telemetry"
)

func main() {
	app.TuneGC()
	if len(os.Args) < 2 {
		printUsage(os.Stderr)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1], os.Args[2:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "recordsync:", err)
		var usage usageError
		if errors.As(err, &usage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError is a command line that names no known command or a bad flag.
type usageError struct{ error }

func run(ctx context.Context, cmd string, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	switch cmd {
	case "help", "-h", "-help", "--help":
		if len(args) > 0 {
			if c, ok := lookup(args[0]); ok {
				printHelp(stdout, c)
				return nil
			}
			printUsage(stderr)
			return usageError{fmt.Errorf("help: unknown command %q", args[0])}
		}
		printUsage(stdout)
		return nil
	case "version", "-version", "--version":
		_, err := fmt.Fprint(stdout, versionText())
		return err
	}
	c, ok := lookup(cmd)
	if !ok {
		printUsage(stderr)
		return usageError{fmt.Errorf("unknown command %q", cmd)}
	}
	env, envErr := app.LoadEnv(getenv)
	envErr = app.ErrorsFor(envErr, cmd)
	if cmd == "verify" { // a client of the HTTP edge: its flags are its own
		if envErr != nil {
			return envErr
		}
		return app.RunVerify(ctx, env, args, stdout, stderr)
	}
	fs := c.flagSet(&env)
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(stdout, c)
			return err
		}
		return usageError{fmt.Errorf("%w (recordsync %s --help lists its flags)", err, cmd)}
	}
	if cmd == "dlq" {
		// dlq's verb and its own flags follow; --help after the verb is
		// answered there, before anything connects.
		if envErr != nil {
			return envErr
		}
		return app.RunDLQ(ctx, env, fs.Args(), stdout, stderr)
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("%s takes no arguments, got %q (recordsync %s --help)", cmd, fs.Args(), cmd)}
	}
	if err := errors.Join(envErr, env.Validate(cmd)); err != nil {
		return fmt.Errorf("%s: the settings are not valid (recordsync %s --help lists them):\n%w", cmd, cmd, err)
	}

	out, closeLog, err := logging.Open(stdout, env.LogFile)
	if err != nil {
		return err
	}
	defer func() { _ = closeLog() }()
	log, level := logging.New(out, env.LogLevel)
	env.Level = level
	log = log.With("command", cmd)
	log.Info("starting", "version", version().Version, "config", env.String())
	limit, from := app.SetMemoryLimit(env.MemoryLimit)
	log.Info("memory_limit", "bytes", limit, "from", from)
	if env.PprofAddr != "" {
		go func() {
			if err := app.ServePprof(ctx, env.PprofAddr); err != nil {
				log.Error("pprof_server_failed", "error", err.Error())
			}
		}()
	}

	switch cmd {
	case "dev":
		return app.RunDev(ctx, env, log, func(i app.DevInfo) { printDev(stderr, i) })
	case "crmsim":
		return app.RunCRMSim(ctx, env, log)
	case "setup":
		return app.RunSetup(ctx, env, log)
	default:
		return runService(ctx, cmd, env, log)
	}
}

// runService runs one service against an external NATS server.
func runService(ctx context.Context, name string, env app.Env, log *slog.Logger) error {
	user := env.NATSUser
	if user == "" {
		user = name
	}
	nc, err := natsrv.Dial(env.NATSURL, name, user, env.NATSPassword, natsrv.ErrorLog(log))
	if err != nil {
		return err
	}
	defer func() { _ = nc.Drain() }()
	var adminNC *nats.Conn // the edge's admin endpoints write as the admin user
	if p := env.NATSPasswords["admin"]; name == "ingest" && p != "" {
		if adminNC, err = natsrv.Dial(env.NATSURL, "ingest-admin", "admin", p, natsrv.ErrorLog(log)); err != nil {
			return fmt.Errorf("admin connection (RECORDSYNC_NATS_ADMIN_PASSWORD): %w", err)
		}
		defer func() { _ = adminNC.Drain() }()
	}
	reg, missing, err := app.Registry(env, name == "pusher")
	if err != nil {
		return err
	}
	if name == "pusher" {
		app.LogMissingCredentials(log, env, missing)
	}
	metrics, err := telemetry.NewMetrics()
	if err != nil {
		return err
	}
	m, err := app.OpenMesh(ctx, nc, name, env, reg, metrics, log)
	if err != nil {
		return err
	}
	if adminNC != nil {
		if err := m.UseAdmin(ctx, adminNC); err != nil {
			return err
		}
	}
	tracing, stopTracing, err := app.Tracing(ctx, env, name)
	if err != nil {
		return err
	}
	defer stopTracing()
	m.Tracing, m.Waits = tracing, mesh.NewWaits()
	if err := app.ObserveWaits(metrics, m.Waits); err != nil {
		return err
	}
	if name != "ingest" && env.MetricsAddr != "" {
		// The HTTP edge serves /metrics itself; the others on their own port.
		go func() {
			if err := app.ServeMetrics(ctx, env.MetricsAddr, metrics, m.Waits); err != nil {
				log.Error("metrics_server_failed", "error", err.Error())
			}
		}()
	}
	switch name {
	case "ingest":
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

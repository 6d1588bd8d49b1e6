package main

import (
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/recordsync/record-sync/app"
)

// command is one subcommand: what it does, and the flags it takes (each
// mirrors a RECORDSYNC_* variable).
type command struct {
	name    string
	summary string
	usage   string
	about   string
	flags   []string
}

var commands = []command{
	{name: "dev", summary: "everything in one process: embedded NATS (nats.conf), the four services, the CRM emulator; what make run runs",
		usage: "recordsync dev [flags]",
		about: "Writes <data dir>/nats.env (NATS_URL, NATS_USER, NATS_PASSWORD of the operator) and, when no\nkeys are set, <data dir>/api-keys.json with a sync key and an admin key made for the session.",
		flags: []string{"http-addr", "data-dir", "profile", "crmsim-addr", "replicas"}},
	{name: "ingest", summary: "the HTTP edge: /v1/sync (API key), admin endpoints, /healthz, /readyz, /metrics; against --nats-url",
		usage: "recordsync ingest --nats-url URL [flags]",
		flags: []string{"nats-url", "http-addr"}},
	{name: "rules", summary: "routes each event on sync.in to its targets by the rule set in KV sync_rules; against --nats-url",
		usage: "recordsync rules --nats-url URL",
		flags: []string{"nats-url"}},
	{name: "pusher", summary: "pushes each target's work to its CRM: batches, rate limits, retries, dead letters; against --nats-url",
		usage: "recordsync pusher --nats-url URL [flags]",
		about: "A pusher needs each CRM's credentials (RECORDSYNC_CRM_CREDENTIALS, RECORDSYNC_HUBSPOT_TOKEN): a target\nwithout them gets no worker, and its work waits in its stream. With the emulator, the api_host of a\ntarget without an api_host override is http://<RECORDSYNC_CRMSIM_ADDR>/<target>.",
		flags: []string{"nats-url", "data-dir", "crmsim-addr"}},
	{name: "status", summary: "keeps each record's status and history per target in KV sync_status; against --nats-url",
		usage: "recordsync status --nats-url URL",
		flags: []string{"nats-url"}},
	{name: "setup", summary: "creates or updates the streams, consumers and KV buckets, and seeds the rule set, as the operator; before the services start",
		usage: "recordsync setup [--nats-url URL]",
		about: "Idempotent, safe while the services run: run it on every install and upgrade. The services only check\nthat it was done. Without RECORDSYNC_NATS_URL it uses NATS_URL, NATS_USER and NATS_PASSWORD, or\n<data dir>/nats.env of a running dev.",
		flags: []string{"nats-url", "data-dir", "replicas"}},
	{name: "crmsim", summary: "the CRM emulator alone: Salesforce, HubSpot and Outreach under /salesforce, /hubspot, /outreach",
		usage: "recordsync crmsim [flags]",
		about: "Writes the sandbox credentials to <data dir>/crmsim/credentials.json; test controls under /_sim/{crm}/.",
		flags: []string{"data-dir", "crmsim-addr"}},
	{name: "dlq", summary: "list or replay dead letters, as the operator: dlq list|replay --target T (recordsync dlq --help)",
		usage: "recordsync dlq [--nats-url URL] [--data-dir DIR] list|replay --target T [...]",
		flags: []string{"nats-url", "data-dir"}},
	{name: "verify", summary: "reads a target's synced records back from its CRM through the edge and reports drift (--repair re-enqueues)",
		usage: "recordsync verify --target T [--since 24h] [--sample N] [--repair] (recordsync verify --help)",
		about: "A client of the HTTP edge's admin endpoint POST /v1/sync/verify: RECORDSYNC_HTTP_ADDR and an admin key\n(RECORDSYNC_ADMIN_KEYS, or <data dir>/api-keys.json of a running dev)."},
}

func lookup(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// flagSet returns the flags of c, each defaulting to env's value and
// writing into env.
func (c command) flagSet(env *app.Env) *flag.FlagSet {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	for _, f := range c.flags {
		switch f {
		case "nats-url":
			fs.StringVar(&env.NATSURL, f, env.NATSURL, "NATS server URLs, comma-separated (RECORDSYNC_NATS_URL)")
		case "http-addr":
			fs.StringVar(&env.HTTPAddr, f, env.HTTPAddr, "HTTP listen address (RECORDSYNC_HTTP_ADDR)")
		case "data-dir":
			fs.StringVar(&env.DataDir, f, env.DataDir, "data directory (RECORDSYNC_DATA_DIR)")
		case "profile":
			fs.StringVar(&env.Profile, f, env.Profile, "durability of the embedded NATS: fast or durable (RECORDSYNC_PROFILE)")
		case "replicas":
			fs.IntVar(&env.Replicas, f, env.Replicas, "replicas of every stream and bucket, 1 to 5 (RECORDSYNC_REPLICAS)")
		case "crmsim-addr":
			fs.StringVar(&env.CRMSimAddr, f, env.CRMSimAddr, "CRM emulator address (RECORDSYNC_CRMSIM_ADDR)")
		}
	}
	return fs
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, "recordsync keeps Salesforce, HubSpot and Outreach in step with System A's records.\n\nusage: recordsync <command> [flags]\n\ncommands:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	fmt.Fprintf(tw, "  %s\t%s\n", "version", "version and commit of this binary, its Go and NATS versions (also --version)")
	fmt.Fprintf(tw, "  %s\t%s\n", "help", "this text; help <command> (or <command> --help): its flags and environment variables")
	_ = tw.Flush()
	fmt.Fprint(w, "\nSettings come from RECORDSYNC_* environment variables; a flag overrides its variable.\nEvery setting is checked at start-up, and every bad one is reported at once.\n")
}

func printHelp(w io.Writer, c command) {
	if c.name == "dlq" {
		app.DLQUsage(w)
		return
	}
	fmt.Fprintf(w, "recordsync %s: %s\n\nusage: %s\n", c.name, c.summary, c.usage)
	if c.about != "" {
		fmt.Fprintf(w, "\n%s\n", c.about)
	}
	defaults, _ := app.LoadEnv(func(string) string { return "" })
	if fs := c.flagSet(&defaults); len(c.flags) > 0 {
		fmt.Fprint(w, "\nflags:\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
	settings := app.SettingsFor(c.name)
	if len(settings) == 0 {
		return
	}
	fmt.Fprint(w, "\nenvironment:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, s := range settings {
		def := s.Default
		if def == "" {
			def = "(none)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", s.Name, def, s.Usage)
	}
	_ = tw.Flush()
	if c.name != "crmsim" {
		fmt.Fprintln(w, "  OTEL_EXPORTER_OTLP_ENDPOINT and the other OTEL_* variables turn on tracing (off when unset).")
	}
}

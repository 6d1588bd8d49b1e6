// Package app wires the record-sync services together: the settings from
// the environment, the CRM plugins, and each subcommand of the recordsync
// binary (dev, ingest, rules, pusher, status, crmsim).
package app

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/recordsync/record-sync/crm"
	"github.com/recordsync/record-sync/shared/logging"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/natsrv"
)

// Env is the process configuration, read from RECORDSYNC_* variables. The
// variables, their defaults and the commands that read them are listed in
// Settings; LoadEnv reads and checks them all.
type Env struct {
	HTTPAddr     string
	NATSURL      string
	NATSUser     string
	NATSPassword string
	NATSListen   string
	// NATSPasswords are the passwords of the NATS users by user, from the
	// RECORDSYNC_NATS_<USER>_PASSWORD variables nats.conf reads: dev gives
	// them to its embedded server (a random one for each unset), and a
	// standalone ingest connects its admin endpoints as the admin user
	// with NATSPasswords["admin"].
	NATSPasswords map[string]string
	DataDir       string
	APIKeys       []string
	AdminKeys     []string
	CRMSimAddr    string
	CRMSim        bool
	Profile       string
	LogLevel      string
	// CRMCredentials is the credentials.json the CRM plugins read their
	// credentials from, each under its target's name.
	CRMCredentials string
	// Getenv is the environment a CRM plugin reads the variables it
	// documents from (RECORDSYNC_HUBSPOT_TOKEN); LoadEnv sets it, nil reads
	// none.
	Getenv func(string) string
	// CRMs are the CRM plugins the process is built with (CRMs() when nil).
	CRMs []crm.Factory
	// PushAckWait is how long held work waits before it is redelivered to
	// another pusher (RECORDSYNC_PUSH_ACK_WAIT, default 5s).
	PushAckWait time.Duration
	// PushPartitions is the partition count of each target's work
	// (RECORDSYNC_PUSH_PARTITIONS, default 16), the same in every service;
	// see docs/operators/partitions.md. PushPinnedTTL is how long a
	// partition stays with a pusher that stopped pulling
	// (RECORDSYNC_PUSH_PINNED_TTL, default 6s, longer than the ack wait).
	// Push returns them with the ack wait as mesh.PushOptions.
	PushPartitions int
	PushPinnedTTL  time.Duration
	// MetricsAddr is where rules, pusher and status serve /metrics when run
	// as their own processes (RECORDSYNC_METRICS_ADDR; off when empty).
	MetricsAddr string
	// StatusMaxHeld and StatusCacheBytes bound the status service's memory
	// (RECORDSYNC_STATUS_MAX_HELD, RECORDSYNC_STATUS_CACHE; 0: the
	// defaults, status.DefaultMaxHeld and status.DefaultCacheBytes).
	StatusMaxHeld    int
	StatusCacheBytes int64
	// PprofAddr is where a process serves Go's runtime profiles
	// (RECORDSYNC_PPROF_ADDR; off when empty).
	PprofAddr string
	// Tracing, when set, replaces the tracer provider built from the
	// OTEL_* variables (tests record spans in memory with it).
	Tracing trace.TracerProvider
	// DevPushers is how many pusher instances dev runs (RECORDSYNC_DEV_PUSHERS,
	// default 1; 0 to run pushers as separate processes against dev's NATS).
	DevPushers int
	// CRMTimeout bounds each CRM request (RECORDSYNC_CRM_TIMEOUT, default
	// 30s).
	CRMTimeout time.Duration
	// CircuitOpenFor is how long a target's circuit stays open before a
	// probe (RECORDSYNC_CIRCUIT_OPEN_FOR, default 30s).
	CircuitOpenFor time.Duration
	// StatusTTL is how long a record's status is kept after its last change
	// (RECORDSYNC_STATUS_TTL, default 168h).
	StatusTTL time.Duration
	// LogFile also receives the logs (RECORDSYNC_LOG_FILE).
	LogFile string
	// Replicas is the replica count of every stream and bucket
	// (RECORDSYNC_REPLICAS, 1 to 5; 0 reads as 1, or as the size of dev's
	// cluster). Services never lower the replicas of what exists.
	Replicas int
	// DevCluster is how many embedded servers dev runs as a cluster
	// (RECORDSYNC_DEV_CLUSTER: 0 or 1 for one server, 3 for a cluster).
	DevCluster int
	// OccurredAtMaxFuture is how far after its acceptance an event's
	// occurred_at may be (RECORDSYNC_OCCURRED_AT_MAX_FUTURE, default 5m);
	// OccurredAtMaxAge how far before (RECORDSYNC_OCCURRED_AT_MAX_AGE,
	// default none: only 2000-01-01 bounds it).
	OccurredAtMaxFuture, OccurredAtMaxAge time.Duration
	// GatherOff says that the edge stores each single event as its own
	// message (RECORDSYNC_INGEST_GATHER=off) instead of gathering
	// concurrent ones into one; GatherWait is how long it waits for more
	// under load (RECORDSYNC_INGEST_GATHER_WAIT, default 0s: no wait).
	GatherOff  bool
	GatherWait time.Duration
	// MemoryLimit is the soft memory limit (RECORDSYNC_MEMORY_LIMIT): a
	// size in bytes, MemoryLimitAuto (0, the default) or MemoryLimitOff.
	MemoryLimit int64
	// Level is the process's log level, which PUT /v1/sync/log-level
	// changes at runtime (set by main; nil: the edge cannot change it).
	Level *slog.LevelVar
}

// Setting is one environment variable: its name, its default, what it sets
// and the commands that read it. `recordsync help <command>` prints the
// settings of that command from this table.
type Setting struct {
	Name    string
	Default string
	Usage   string
	// Commands are the commands that read the variable.
	Commands []string
}

// Command groups for Settings.
var (
	services   = []string{"ingest", "rules", "pusher", "status"}
	running    = []string{"dev", "ingest", "rules", "pusher", "status", "crmsim", "setup"}
	natsUsers  = []string{"ingest", "rules", "pusher", "status", "dlq", "setup"}
	pushers    = []string{"dev", "pusher"}
	devAndEdge = []string{"dev", "ingest"}
)

// Settings lists every RECORDSYNC_* variable, with the default each takes
// when unset or empty. It is the one place defaults are written.
var Settings = []Setting{
	{"RECORDSYNC_HTTP_ADDR", "127.0.0.1:8080", "HTTP listen address of the edge (/v1/sync, /healthz, /readyz, /metrics)", devAndEdge},
	{"RECORDSYNC_API_KEYS", "", "sync keys, comma-separated (dev generates one when empty)", devAndEdge},
	{"RECORDSYNC_ADMIN_KEYS", "", "admin keys, comma-separated (dev generates one when empty)", devAndEdge},
	{"RECORDSYNC_NATS_URL", "", "NATS server URLs, comma-separated (nats://host:4222); required outside dev; dlq reads <data dir>/nats.env when empty", natsUsers},
	{"RECORDSYNC_NATS_USER", "", "NATS user (default: the command's name for ingest, rules, pusher, status; operator for dlq and setup)", natsUsers},
	{"RECORDSYNC_NATS_PASSWORD", "", "password of RECORDSYNC_NATS_USER", natsUsers},
	{"RECORDSYNC_NATS_ADMIN_PASSWORD", "", "password of the NATS admin user: the edge's admin endpoints change rules, mappings and config through it (read-only without)", []string{"dev", "ingest"}},
	{"RECORDSYNC_NATS_<USER>_PASSWORD", "(random)", "passwords of dev's embedded NATS users (ingest, admin, rules, pusher, status, operator), as nats.conf reads them", []string{"dev"}},
	{"RECORDSYNC_NATS_LISTEN", "127.0.0.1:4222", "where dev's embedded NATS listens", []string{"dev"}},
	{"RECORDSYNC_DATA_DIR", "./data", "data directory: embedded NATS store, nats.env, api-keys.json, the emulator's records", []string{"dev", "crmsim", "dlq", "setup", "pusher"}},
	{"RECORDSYNC_PROFILE", "fast", "durability of dev's embedded NATS: fast (fsync every 2m) or durable (fsync every write)", []string{"dev"}},
	{"RECORDSYNC_CRMSIM", "on", "off: dev starts no emulator and expects one at RECORDSYNC_CRMSIM_ADDR", []string{"dev"}},
	{"RECORDSYNC_CRMSIM_ADDR", "127.0.0.1:8090", "the CRM emulator: where crmsim listens, and the api_host of a target with no api_host override (http://<addr>/<target>)", []string{"dev", "crmsim", "pusher"}},
	{"RECORDSYNC_CRM_CREDENTIALS", "<data dir>/crmsim/credentials.json", "JSON file with each CRM's credentials (the emulator writes its sandbox ones there)", pushers},
	{"RECORDSYNC_HUBSPOT_TOKEN", "", "HubSpot private app token (replaces the one in the credentials file)", pushers},
	{"RECORDSYNC_PUSH_PARTITIONS", "", "partitions of each target's work, 1 to 256 (empty: 16); the same in every process; change only with SYNC_PUSH drained (docs/operators/partitions.md)", []string{"dev", "setup", "rules", "pusher"}},
	{"RECORDSYNC_PUSH_PINNED_TTL", "", "how long a partition stays with a pusher that stopped pulling (empty: 6s, or the ack wait + 1s); longer than RECORDSYNC_PUSH_ACK_WAIT", []string{"dev", "setup", "pusher"}},
	{"RECORDSYNC_PUSH_ACK_WAIT", "5s", "how long work a pusher holds waits before it is redelivered to another pusher (the pusher consumers' AckWait, which setup sets)", []string{"dev", "setup", "pusher"}},
	{"RECORDSYNC_CRM_TIMEOUT", "30s", "bound of each CRM request", pushers},
	{"RECORDSYNC_CIRCUIT_OPEN_FOR", "30s", "how long a failing target's circuit stays open before a probe", pushers},
	{"RECORDSYNC_DEV_PUSHERS", "1", "pusher instances in dev (0: run pushers as their own processes against dev's NATS)", []string{"dev"}},
	{"RECORDSYNC_REPLICAS", "", "replicas of every stream and KV bucket, 1 to 5 (3 on a 3-node cluster; empty: 1, or dev's cluster size); services never lower what exists", append([]string{"dev", "setup"}, services...)},
	{"RECORDSYNC_DEV_CLUSTER", "", "dev runs an embedded cluster of this many servers: 3 (empty or 1: one server)", []string{"dev"}},
	{"RECORDSYNC_INGEST_GATHER", "on", "on: concurrent single events share one stored message (group commit, deduplicated by the edge); off: each is its own message; the same on every edge (docs/operators/performance.md)", devAndEdge},
	{"RECORDSYNC_INGEST_GATHER_WAIT", "0s", "under load, how long the edge waits for more single events to share a message (0s: none; those that arrived while the last message was stored share the next); an idle edge never waits", devAndEdge},
	{"RECORDSYNC_OCCURRED_AT_MAX_FUTURE", "5m", "how far in the future an event's occurred_at may be, from its acceptance", devAndEdge},
	{"RECORDSYNC_OCCURRED_AT_MAX_AGE", "", "how far in the past an event's occurred_at may be (empty: no bound but 2000-01-01)", devAndEdge},
	{"RECORDSYNC_STATUS_TTL", "168h", "how long a record's status is kept after its last change (KV sync_status)", append([]string{"dev", "setup"}, services...)},
	{"RECORDSYNC_STATUS_MAX_HELD", "50000", "records the status service holds at most while they wait for their other targets' final states (about 1.1 KB each); past it the one held longest is written as it is", []string{"dev", "status"}},
	{"RECORDSYNC_STATUS_CACHE", "32MiB", "the status service's cache of the records it last wrote, as encoded (about twice that in memory): a record not cached costs a read at its next write", []string{"dev", "status"}},
	{"RECORDSYNC_METRICS_ADDR", "", "where rules, pusher and status serve /metrics (off when empty; the edge serves it on RECORDSYNC_HTTP_ADDR)", []string{"rules", "pusher", "status"}},
	{"RECORDSYNC_PPROF_ADDR", "", "where the process serves Go's runtime profiles, /debug/pprof/ (off when empty; a loopback address: a profile shows the process's internals)", running},
	{"RECORDSYNC_MEMORY_LIMIT", "auto", "the Go runtime's soft memory limit: auto (80% of the container's memory limit, none outside one), off, or a size (400MiB, 2GiB); GOMEMLIMIT, when set, wins", running},
	{"RECORDSYNC_LOG_LEVEL", "info", "debug, info, warn or error", running},
	{"RECORDSYNC_LOG_FILE", "", "a file that also receives the JSON logs", running},
}

// SettingsFor returns the settings the command reads.
func SettingsFor(cmd string) []Setting {
	var out []Setting
	for _, s := range Settings {
		if slices.Contains(s.Commands, cmd) {
			out = append(out, s)
		}
	}
	return out
}

// ErrInvalidSetting is wrapped by every error LoadEnv and Env.Validate
// return for a bad value.
var ErrInvalidSetting = errors.New("invalid setting")

// envReader reads variables through getenv, with the defaults of Settings,
// and collects every problem instead of stopping at the first.
type envReader struct {
	getenv func(string) string
	errs   []error
}

// SettingError is one variable with a bad value.
type SettingError struct {
	Name, Value, Why string
}

// Error implements error.
func (e *SettingError) Error() string {
	return fmt.Sprintf("%s: %s=%q: %s", ErrInvalidSetting, e.Name, e.Value, e.Why)
}

// Unwrap makes errors.Is(err, ErrInvalidSetting) true.
func (e *SettingError) Unwrap() error { return ErrInvalidSetting }

func (r *envReader) bad(name, value, why string) {
	r.errs = append(r.errs, &SettingError{Name: name, Value: value, Why: why})
}

// ErrorsFor keeps, of the errors LoadEnv returned, those about variables
// cmd reads: a bad RECORDSYNC_PUSH_ACK_WAIT stops a pusher, not the CRM
// emulator.
func ErrorsFor(err error, cmd string) error {
	if err == nil {
		return nil
	}
	all := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		all = j.Unwrap()
	}
	var keep []error
	for _, e := range all {
		var se *SettingError
		if errors.As(e, &se) {
			if i := slices.IndexFunc(Settings, func(s Setting) bool { return s.Name == se.Name }); i >= 0 && !slices.Contains(Settings[i].Commands, cmd) {
				continue
			}
		}
		keep = append(keep, e)
	}
	return errors.Join(keep...)
}

// str returns the variable, or its default when unset or empty.
func (r *envReader) str(name string) string {
	if v := strings.TrimSpace(r.getenv(name)); v != "" {
		return v
	}
	for _, s := range Settings {
		if s.Name == name {
			return s.Default
		}
	}
	// A programming error, which every test that loads the environment
	// reports: each variable read is listed in Settings.
	r.errs = append(r.errs, fmt.Errorf("%s is not listed in app.Settings", name))
	return ""
}

func (r *envReader) addr(name string) string {
	v := r.str(name)
	if _, port, err := net.SplitHostPort(v); err != nil {
		r.bad(name, v, "must be host:port (127.0.0.1:8080, :8080)")
	} else if n, err := strconv.Atoi(port); err != nil || n < -1 || n > 65535 {
		r.bad(name, v, "the port must be a number from 0 to 65535")
	}
	return v
}

func (r *envReader) optionalAddr(name string) string {
	if r.str(name) == "" {
		return ""
	}
	return r.addr(name)
}

func (r *envReader) duration(name string, lo, hi time.Duration) time.Duration {
	v := r.str(name)
	d, err := time.ParseDuration(v)
	switch {
	case err != nil && isDigits(v):
		r.bad(name, v, "a duration needs its unit: "+v+"s, "+v+"ms, "+v+"m")
	case err != nil:
		r.bad(name, v, "not a duration (30s, 500ms, 2m, 168h)")
	case d < lo || d > hi:
		r.bad(name, v, fmt.Sprintf("must be %s to %s", lo, hi))
	}
	return d
}

// optionalDuration is duration for a variable without a default: 0 when
// unset.
func (r *envReader) optionalDuration(name string, lo, hi time.Duration) time.Duration {
	if r.str(name) == "" {
		return 0
	}
	return r.duration(name, lo, hi)
}

func (r *envReader) integer(name string, lo, hi int) int {
	v := r.str(name)
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		r.bad(name, v, fmt.Sprintf("must be a whole number from %d to %d", lo, hi))
	}
	return n
}

// optionalInt is integer for a variable whose default is empty (0).
func (r *envReader) optionalInt(name string, lo, hi int) int {
	if r.str(name) == "" {
		return 0
	}
	return r.integer(name, lo, hi)
}

func (r *envReader) oneOf(name string, values ...string) string {
	v := strings.ToLower(r.str(name))
	if !slices.Contains(values, v) {
		r.bad(name, v, "must be one of "+strings.Join(values, ", "))
	}
	return v
}

// size reads a size in bytes (B, KiB, MiB, GiB or TiB, as GOMEMLIMIT
// takes it) from lo to hi.
func (r *envReader) size(name string, lo, hi int64) int64 {
	v := r.str(name)
	n, err := parseSize(v)
	if err == nil && (n < lo || n > hi) {
		err = fmt.Errorf("from %s to %s", formatSize(lo), formatSize(hi))
	}
	if err != nil {
		r.bad(name, v, err.Error())
	}
	return n
}

// memoryLimit reads a RECORDSYNC_MEMORY_LIMIT value (see parseMemoryLimit).
func (r *envReader) memoryLimit(name string) int64 {
	v := r.str(name)
	n, err := parseMemoryLimit(v)
	if err != nil {
		r.bad(name, v, err.Error())
	}
	return n
}

func (r *envReader) natsURL(name string) string {
	v := r.str(name)
	for _, u := range splitList(v) {
		p, err := url.Parse(u)
		if err != nil || p.Host == "" || !slices.Contains([]string{"nats", "tls", "ws", "wss"}, p.Scheme) {
			r.bad(name, v, "each URL must be nats://host:port (or tls://, ws://, wss://)")
			break
		}
	}
	return v
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// LoadEnv reads the environment through getenv and checks every value: the
// error joins one error per bad variable, so that all of them are reported
// at once. The Env returned is complete (bad values are zero) either way.
func LoadEnv(getenv func(string) string) (Env, error) {
	r := &envReader{getenv: getenv}
	e := Env{
		HTTPAddr:       r.addr("RECORDSYNC_HTTP_ADDR"),
		NATSURL:        r.natsURL("RECORDSYNC_NATS_URL"),
		NATSUser:       r.str("RECORDSYNC_NATS_USER"),
		NATSPassword:   getenv("RECORDSYNC_NATS_PASSWORD"),
		NATSListen:     r.addr("RECORDSYNC_NATS_LISTEN"),
		DataDir:        r.str("RECORDSYNC_DATA_DIR"),
		APIKeys:        splitList(getenv("RECORDSYNC_API_KEYS")),
		AdminKeys:      splitList(getenv("RECORDSYNC_ADMIN_KEYS")),
		CRMSimAddr:     r.addr("RECORDSYNC_CRMSIM_ADDR"),
		CRMSim:         r.oneOf("RECORDSYNC_CRMSIM", "on", "off") != "off",
		Profile:        r.oneOf("RECORDSYNC_PROFILE", "fast", "durable"),
		LogLevel:       r.oneOf("RECORDSYNC_LOG_LEVEL", append(slices.Clone(logging.Levels), "warning")...),
		Getenv:         getenv,
		MetricsAddr:    r.optionalAddr("RECORDSYNC_METRICS_ADDR"),
		PprofAddr:      r.optionalAddr("RECORDSYNC_PPROF_ADDR"),
		LogFile:        getenv("RECORDSYNC_LOG_FILE"),
		PushAckWait:    r.duration("RECORDSYNC_PUSH_ACK_WAIT", time.Second, 12*time.Hour),
		StatusTTL:      r.duration("RECORDSYNC_STATUS_TTL", time.Minute, 24*365*time.Hour),
		CircuitOpenFor: r.duration("RECORDSYNC_CIRCUIT_OPEN_FOR", 100*time.Millisecond, time.Hour),
		CRMTimeout:     r.duration("RECORDSYNC_CRM_TIMEOUT", 100*time.Millisecond, 10*time.Minute),
		DevPushers:     r.integer("RECORDSYNC_DEV_PUSHERS", 0, 64),
		Replicas:       r.optionalInt("RECORDSYNC_REPLICAS", 1, 5),
		DevCluster:     r.optionalInt("RECORDSYNC_DEV_CLUSTER", 0, natsrv.ClusterSize),
		PushPartitions: r.optionalInt("RECORDSYNC_PUSH_PARTITIONS", 1, mesh.MaxPushPartitions),
		PushPinnedTTL:  r.optionalDuration("RECORDSYNC_PUSH_PINNED_TTL", time.Second, time.Hour),

		GatherOff:           r.oneOf("RECORDSYNC_INGEST_GATHER", "on", "off") == "off",
		GatherWait:          r.duration("RECORDSYNC_INGEST_GATHER_WAIT", 0, time.Second),
		MemoryLimit:         r.memoryLimit("RECORDSYNC_MEMORY_LIMIT"),
		StatusMaxHeld:       r.integer("RECORDSYNC_STATUS_MAX_HELD", 1, 10_000_000),
		StatusCacheBytes:    r.size("RECORDSYNC_STATUS_CACHE", 1<<20, 16<<30),
		OccurredAtMaxFuture: r.duration("RECORDSYNC_OCCURRED_AT_MAX_FUTURE", 0, 24*time.Hour),
		OccurredAtMaxAge:    r.optionalDuration("RECORDSYNC_OCCURRED_AT_MAX_AGE", time.Minute, 100*365*24*time.Hour),
	}
	for _, u := range natsrv.Users {
		if p := getenv("RECORDSYNC_NATS_" + strings.ToUpper(u) + "_PASSWORD"); p != "" {
			if e.NATSPasswords == nil {
				e.NATSPasswords = map[string]string{}
			}
			e.NATSPasswords[u] = p
		}
	}
	e.CRMCredentials = getenv("RECORDSYNC_CRM_CREDENTIALS")
	if e.CRMCredentials == "" {
		e.CRMCredentials = filepath.Join(e.DataDir, "crmsim", "credentials.json")
	}
	return e, errors.Join(r.errs...)
}

// Push returns the work partitioning the environment sets, validated.
func (e Env) Push() (mesh.PushOptions, error) {
	o := mesh.PushOptions{Partitions: e.PushPartitions, AckWait: e.PushAckWait, PinnedTTL: e.PushPinnedTTL}
	if err := o.Validate(); err != nil {
		return o, fmt.Errorf("%w: RECORDSYNC_PUSH_*: %w", ErrInvalidSetting, err)
	}
	return o.WithDefaults(), nil
}

// LoadEnvFromOS reads the process environment.
func LoadEnvFromOS() (Env, error) { return LoadEnv(os.Getenv) }

// Validate checks what the command needs beyond well-formed values: a NATS
// URL outside dev, API keys for a separate edge. Like LoadEnv it reports
// every problem at once.
func (e Env) Validate(cmd string) error {
	var errs []error
	if _, err := e.Push(); err != nil {
		errs = append(errs, err)
	}
	if slices.Contains(services, cmd) {
		if e.NATSURL == "" {
			errs = append(errs, fmt.Errorf("%w: RECORDSYNC_NATS_URL (--nats-url) is required for %s: the NATS cluster's URLs, nats://nats-0:4222,nats://nats-1:4222", ErrInvalidSetting, cmd))
		}
	}
	if cmd == "ingest" && len(e.APIKeys) == 0 && len(e.AdminKeys) == 0 {
		errs = append(errs, fmt.Errorf("%w: no API keys: set RECORDSYNC_API_KEYS and RECORDSYNC_ADMIN_KEYS (comma-separated)", ErrInvalidSetting))
	}
	if e.Replicas < 0 || e.Replicas > 5 {
		errs = append(errs, fmt.Errorf("%w: RECORDSYNC_REPLICAS=%d: want 1 to 5 (3 on a 3-node cluster)", ErrInvalidSetting, e.Replicas))
	}
	if cmd == "dev" {
		if e.DevCluster != 0 && e.DevCluster != 1 && e.DevCluster != natsrv.ClusterSize {
			errs = append(errs, fmt.Errorf("%w: RECORDSYNC_DEV_CLUSTER=%d: want 1 (one server) or %d (a cluster)", ErrInvalidSetting, e.DevCluster, natsrv.ClusterSize))
		}
		if e.DevCluster <= 1 && e.Replicas > 1 {
			errs = append(errs, fmt.Errorf("%w: RECORDSYNC_REPLICAS=%d needs a cluster: set RECORDSYNC_DEV_CLUSTER=%d", ErrInvalidSetting, e.Replicas, natsrv.ClusterSize))
		}
	}
	return errors.Join(errs...)
}

// replicas is the replica count streams and buckets are asked for.
func (e Env) replicas() int {
	switch {
	case e.Replicas > 0:
		return e.Replicas
	case e.NATSURL == "" && e.DevCluster > 1:
		return e.DevCluster
	}
	return 1
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// String describes e for logs, with every secret masked.
func (e Env) String() string {
	return fmt.Sprintf("http=%s nats=%q data=%s crmsim=%s(%v) profile=%s replicas=%d dev_cluster=%d api_keys=%d admin_keys=%d",
		e.HTTPAddr, maskURL(e.NATSURL), e.DataDir, e.CRMSimAddr, e.CRMSim, e.Profile, e.replicas(), e.DevCluster, len(e.APIKeys), len(e.AdminKeys))
}

func maskURL(u string) string {
	if at := strings.LastIndex(u, "@"); at >= 0 {
		if scheme := strings.Index(u, "://"); scheme >= 0 && scheme < at {
			return u[:scheme+3] + "***" + u[at:]
		}
	}
	return u
}

// Package app wires the record-sync services together: the settings from
// the environment, the CRM plugins, and each subcommand of the recordsync
// binary (dev, ingest, rules, pusher, status, crmsim).
package app

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Env is the process configuration, read from RECORDSYNC_* variables.
type Env struct {
	HTTPAddr     string
	NATSURL      string
	NATSUser     string
	NATSPassword string
	NATSListen   string
	DataDir      string
	APIKeys      []string
	AdminKeys    []string
	CRMSimAddr   string
	CRMSim       bool
	Profile      string
	LogLevel     string
	// CRMCredentials is the credentials.json the CRM plugins read when no
	// per-CRM variable is set.
	CRMCredentials string
	HubSpotToken   string
	// PushAckWait is how long held work waits before it is redelivered to
	// another pusher (RECORDSYNC_PUSH_ACK_WAIT, default 30s).
	PushAckWait time.Duration
	// MetricsAddr is where rules, pusher and status serve /metrics when run
	// as their own processes (RECORDSYNC_METRICS_ADDR; off when empty).
	MetricsAddr string
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
	// Level is the process's log level, which PUT /v1/sync/log-level
	// changes at runtime (set by main; nil: the edge cannot change it).
	Level *slog.LevelVar
}

// LoadEnv reads the environment through getenv.
func LoadEnv(getenv func(string) string) Env {
	get := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	e := Env{
		HTTPAddr:     get("RECORDSYNC_HTTP_ADDR", "127.0.0.1:8080"),
		NATSURL:      getenv("RECORDSYNC_NATS_URL"),
		NATSUser:     getenv("RECORDSYNC_NATS_USER"),
		NATSPassword: getenv("RECORDSYNC_NATS_PASSWORD"),
		NATSListen:   get("RECORDSYNC_NATS_LISTEN", "127.0.0.1:4222"),
		DataDir:      get("RECORDSYNC_DATA_DIR", "./data"),
		APIKeys:      splitList(getenv("RECORDSYNC_API_KEYS")),
		AdminKeys:    splitList(getenv("RECORDSYNC_ADMIN_KEYS")),
		CRMSimAddr:   get("RECORDSYNC_CRMSIM_ADDR", "127.0.0.1:8090"),
		CRMSim:       !strings.EqualFold(getenv("RECORDSYNC_CRMSIM"), "off"),
		Profile:      get("RECORDSYNC_PROFILE", "fast"),
		LogLevel:     get("RECORDSYNC_LOG_LEVEL", "info"),
		HubSpotToken: getenv("RECORDSYNC_HUBSPOT_TOKEN"),
		MetricsAddr:  getenv("RECORDSYNC_METRICS_ADDR"),
		LogFile:      getenv("RECORDSYNC_LOG_FILE"),
	}
	e.PushAckWait, _ = time.ParseDuration(getenv("RECORDSYNC_PUSH_ACK_WAIT"))
	e.StatusTTL, _ = time.ParseDuration(getenv("RECORDSYNC_STATUS_TTL"))
	e.CircuitOpenFor, _ = time.ParseDuration(getenv("RECORDSYNC_CIRCUIT_OPEN_FOR"))
	e.CRMTimeout, _ = time.ParseDuration(getenv("RECORDSYNC_CRM_TIMEOUT"))
	e.DevPushers = 1
	if n, err := strconv.Atoi(getenv("RECORDSYNC_DEV_PUSHERS")); err == nil && n >= 0 {
		e.DevPushers = n
	}
	e.CRMCredentials = get("RECORDSYNC_CRM_CREDENTIALS", filepath.Join(e.DataDir, "crmsim", "credentials.json"))
	return e
}

// LoadEnvFromOS reads the process environment.
func LoadEnvFromOS() Env { return LoadEnv(os.Getenv) }

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
	return fmt.Sprintf("http=%s nats=%q data=%s crmsim=%s(%v) profile=%s api_keys=%d admin_keys=%d",
		e.HTTPAddr, maskURL(e.NATSURL), e.DataDir, e.CRMSimAddr, e.CRMSim, e.Profile, len(e.APIKeys), len(e.AdminKeys))
}

func maskURL(u string) string {
	if at := strings.LastIndex(u, "@"); at >= 0 {
		if scheme := strings.Index(u, "://"); scheme >= 0 && scheme < at {
			return u[:scheme+3] + "***" + u[at:]
		}
	}
	return u
}

// Package natsrv runs the embedded NATS server of `recordsync dev` and of
// the tests from nats.conf, the same file a standalone nats-server runs
// with, and connects the services to a NATS server as their own users.
package natsrv

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Users are the NATS users nats.conf defines: one per service, admin (the
// admin endpoints of the HTTP edge that change rules and config) and
// operator (the nats CLI and `recordsync setup`).
var Users = []string{"ingest", "admin", "rules", "pusher", "status", "operator"}

// InboxPrefix is the private inbox prefix of user: nats.conf lets each
// service user subscribe to its own inbox only, so that no user can read
// the replies (JetStream deliveries among them) another one gets.
func InboxPrefix(user string) string { return "_INBOX_" + user }

// userOptions are the options that connect as user: its credentials and
// its private inbox prefix.
func userOptions(user, password string) []nats.Option {
	return []nats.Option{nats.UserInfo(user, password), nats.CustomInboxPrefix(InboxPrefix(user))}
}

// Durability profiles.
const (
	// ProfileFast acknowledges before the store is fsynced; fsync runs every
	// two minutes. Survives a killed process, not a power loss.
	ProfileFast = "fast"
	// ProfileDurable fsyncs before every acknowledgement. Survives a power
	// loss; each stored message costs a fsync.
	ProfileDurable = "durable"
)

// SyncInterval returns the JetStream sync_interval of a profile.
func SyncInterval(profile string) (string, error) {
	switch profile {
	case "", ProfileFast:
		return "2m0s", nil // "2m" would read as 2,000,000 in a nats.conf variable
	case ProfileDurable:
		return "always", nil
	}
	return "", fmt.Errorf("unknown durability profile %q: want %s or %s", profile, ProfileFast, ProfileDurable)
}

// Config is what the embedded server needs beyond nats.conf.
type Config struct {
	// Conf is the text of nats.conf.
	Conf []byte
	// Listen is host:port for clients; port -1 picks a free one.
	Listen string
	// StoreDir is the JetStream store directory.
	StoreDir string
	// Profile is ProfileFast or ProfileDurable.
	Profile string
	// Passwords per user; users missing here get a random password.
	Passwords map[string]string
	// Log receives the server's warnings and errors (none when nil).
	Log *slog.Logger
	// Cluster, when its Name is set, makes the server one of a cluster,
	// from ClusterConf.
	Cluster Cluster
	// ClusterConf is the text of nats-cluster.conf; its include of
	// nats.conf is replaced by Conf.
	ClusterConf []byte
}

// Cluster places a server in a cluster of ClusterSize servers.
type Cluster struct {
	// Name is the cluster's name, the same on every server.
	Name string
	// ServerName is this server's name, unique in the cluster.
	ServerName string
	// Listen is host:port the other servers connect to.
	Listen string
	// Routes are the nats-route:// URLs of all ClusterSize servers, this
	// one included.
	Routes []string
}

// ClusterSize is the number of servers nats-cluster.conf names routes for.
const ClusterSize = 3

// Validate reports a cluster setting nats-cluster.conf cannot take.
func (c Cluster) Validate() error {
	switch {
	case c.Name == "":
		return nil
	case c.ServerName == "" || c.Listen == "":
		return errors.New("cluster: a server name and a listen address are required")
	case len(c.Routes) != ClusterSize:
		return fmt.Errorf("cluster: %d routes, want %d (every server's, this one's included)", len(c.Routes), ClusterSize)
	}
	return nil
}

// vars returns the nats-cluster.conf variables of c.
func (c Cluster) vars() map[string]string {
	v := map[string]string{
		"RECORDSYNC_NATS_SERVER_NAME":    c.ServerName,
		"RECORDSYNC_NATS_CLUSTER_NAME":   c.Name,
		"RECORDSYNC_NATS_CLUSTER_LISTEN": c.Listen,
	}
	for i, r := range c.Routes {
		v["RECORDSYNC_NATS_ROUTE_"+strconv.Itoa(i+1)] = r
	}
	return v
}

var includeLine = regexp.MustCompile(`(?m)^\s*include\s+\S+\s*$`)

// Server is a running embedded NATS server and the passwords of its users.
type Server struct {
	*server.Server
	Passwords map[string]string
}

var varRef = regexp.MustCompile(`\$(RECORDSYNC_[A-Z0-9_]+)`)

// Render substitutes the $RECORDSYNC_* references of nats.conf with vars,
// quoted, leaving the environment untouched; a reference missing from vars
// is an error, as it is for nats-server.
func Render(conf []byte, vars map[string]string) (string, error) {
	var missing []string
	out := varRef.ReplaceAllStringFunc(string(conf), func(ref string) string {
		name := ref[1:]
		v, ok := vars[name]
		if !ok {
			missing = append(missing, name)
			return ref
		}
		return strconv.Quote(v)
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("nats.conf: no value for %s", strings.Join(missing, ", "))
	}
	return out, nil
}

// Start runs an embedded server from cfg and waits until it accepts
// connections.
func Start(cfg Config) (*Server, error) {
	interval, err := SyncInterval(cfg.Profile)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StoreDir, 0o700); err != nil {
		return nil, fmt.Errorf("nats store dir: %w", err)
	}
	vars := map[string]string{
		"RECORDSYNC_NATS_LISTEN":        cfg.Listen,
		"RECORDSYNC_NATS_STORE_DIR":     cfg.StoreDir,
		"RECORDSYNC_NATS_SYNC_INTERVAL": interval,
	}
	pw := make(map[string]string, len(Users))
	for _, u := range Users {
		p := cfg.Passwords[u]
		if p == "" {
			p = RandomSecret()
		}
		pw[u] = p
		vars["RECORDSYNC_NATS_"+strings.ToUpper(u)+"_PASSWORD"] = p
	}
	conf := cfg.Conf
	if cfg.Cluster.Name != "" {
		if err := cfg.Cluster.Validate(); err != nil {
			return nil, err
		}
		// nats.conf, then the cluster's part, whose settings (the server
		// name) take the place of nats.conf's: the last value wins.
		conf = append(append(slices.Clip(cfg.Conf), '\n'), includeLine.ReplaceAll(cfg.ClusterConf, nil)...)
		maps.Copy(vars, cfg.Cluster.vars())
	}
	text, err := Render(conf, vars)
	if err != nil {
		return nil, err
	}
	opts := &server.Options{}
	if err := opts.ProcessConfigString(text); err != nil {
		return nil, fmt.Errorf("nats.conf: %w", err)
	}
	opts.NoSigs = true
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	if cfg.Log != nil {
		s.SetLoggerV2(serverLog{cfg.Log}, false, false, false)
	}
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("nats server not ready after 15s (is %s in use? see the nats_server log lines)", cfg.Listen)
	}
	return &Server{Server: s, Passwords: pw}, nil
}

// Connect connects to the embedded server in-process as user, with the
// user's private inbox prefix.
func (s *Server) Connect(user string, opts ...nats.Option) (*nats.Conn, error) {
	opts = append(append(userOptions(user, s.Passwords[user]),
		nats.InProcessServer(s.Server),
		nats.Name("recordsync-"+user),
	), opts...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("connect nats as %s: %w", user, err)
	}
	return nc, nil
}

// WriteEnv writes the file that lets the stock nats CLI reach the server as
// the operator: `set -a; . data/nats.env; nats stream ls`. url is the
// server's client URL, or those of all servers of its cluster,
// comma-separated (empty: the server's own).
func (s *Server) WriteEnv(path, url string) error {
	if url == "" {
		url = s.ClientURL()
	}
	body := fmt.Sprintf("NATS_URL=%s\nNATS_USER=operator\nNATS_PASSWORD=%s\n", url, s.Passwords["operator"])
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(body), 0o600)
}

// RandomSecret returns 24 random bytes, hex-encoded: for passwords and API
// keys.
func RandomSecret() string {
	var b [24]byte
	_, _ = rand.Read(b[:]) // never fails since Go 1.24
	return hex.EncodeToString(b[:])
}

// WaitMetaLeader waits until one of servers is the JetStream meta leader
// of their cluster (a single server is its own), for at most timeout:
// before that no stream can be created.
func WaitMetaLeader(servers []*server.Server, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		for _, s := range servers {
			if s != nil && s.Running() && (s.JetStreamIsLeader() || !s.JetStreamIsClustered() && s.JetStreamEnabled()) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no JetStream meta leader after %s", timeout)
		}
		time.Sleep(20 * time.Millisecond) // polling the servers' state, not synchronising a test
	}
}

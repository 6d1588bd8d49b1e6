// Package natsrv runs the embedded NATS server of `recordsync dev` and of
// the tests from nats.conf, the same file a standalone nats-server runs
// with, and connects the services to a NATS server as their own users.
package natsrv

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Users are the NATS users nats.conf defines, one per service and one for
// operators.
var Users = []string{"ingest", "rules", "pusher", "status", "operator"}

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
}

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
	text, err := Render(cfg.Conf, vars)
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
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("nats server not ready after 15s (is %s in use? see the nats_server log lines)", cfg.Listen)
	}
	return &Server{Server: s, Passwords: pw}, nil
}

// Connect connects to the embedded server in-process as user.
func (s *Server) Connect(user string, opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{
		nats.UserInfo(user, s.Passwords[user]),
		nats.InProcessServer(s.Server),
		nats.Name("recordsync-" + user),
	}, opts...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("connect nats as %s: %w", user, err)
	}
	return nc, nil
}

// WriteEnv writes the file that lets the stock nats CLI reach the server as
// the operator: `set -a; . data/nats.env; nats stream ls`.
func (s *Server) WriteEnv(path string) error {
	body := fmt.Sprintf("NATS_URL=%s\nNATS_USER=operator\nNATS_PASSWORD=%s\n", s.ClientURL(), s.Passwords["operator"])
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

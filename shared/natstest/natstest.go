// Package natstest runs a real embedded NATS server with JetStream for
// tests, from the project's nats.conf, so tests see the same users and
// permissions as production.
package natstest

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	recordsync "github.com/recordsync/record-sync"
	"github.com/recordsync/record-sync/shared/natsrv"
)

// RunServer starts a server on a free port with its store in a temporary
// directory, and shuts it down when the test ends.
func RunServer(t testing.TB) *natsrv.Server {
	t.Helper()
	return RunServerAt(t, t.TempDir())
}

// RunServerAt is RunServer with the store in dir, so that a test can stop a
// server and start another on the same store.
func RunServerAt(t testing.TB, dir string) *natsrv.Server {
	t.Helper()
	return RunServerWith(t, natsrv.Config{StoreDir: dir})
}

// RunServerWith is RunServer with cfg's profile and store; the rest of cfg
// is filled in.
func RunServerWith(t testing.TB, cfg natsrv.Config) *natsrv.Server {
	t.Helper()
	cfg.Conf, cfg.Listen = recordsync.NATSConf, "127.0.0.1:-1"
	if cfg.StoreDir == "" {
		cfg.StoreDir = t.TempDir()
	}
	s, err := natsrv.Start(cfg)
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// Connect connects to s as user, closing the connection when the test ends.
func Connect(t testing.TB, s *natsrv.Server, user string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := s.Connect(user)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// jetStreamWatch settings: how often the connection's server is asked
// whether JetStream answers, and after how many failed asks in a row the
// connection moves to another server of the cluster.
const (
	jetStreamProbeEvery = time.Second
	jetStreamMoveAfter  = 4
)

// watchJetStream moves nc to another server of its cluster when JetStream
// does not answer through the one it is connected to for several seconds,
// until nc is closed. A server cut off from the others keeps its clients
// connected, and without a meta leader nothing they ask of JetStream is
// answered: moving to another server is what ends their wait. With a
// single server URL there is nowhere to move, and nothing is done.
func watchJetStream(nc *nats.Conn, js jetstream.JetStream, log *slog.Logger) {
	if len(nc.Servers()) < 2 {
		return
	}
	tick := time.NewTicker(jetStreamProbeEvery)
	defer tick.Stop()
	failed := 0
	for range tick.C {
		if nc.IsClosed() {
			return
		}
		if !nc.IsConnected() {
			failed = 0 // reconnecting by itself
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), jetStreamProbeEvery)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			failed = 0
			continue
		}
		if failed++; failed < jetStreamMoveAfter {
			continue
		}
		failed = 0
		log.Warn("nats_server_changed", "server", nc.ConnectedServerName(), "error", err.Error(),
			"detail", "JetStream does not answer through this server: reconnecting to another")
		if err := nc.ForceReconnect(); err != nil {
			log.Warn("nats_reconnect_failed", "error", err.Error())
		}
	}
}

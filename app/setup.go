package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	recordsync "github.com/recordsync/record-sync"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/rules"
)

// MeshOptions returns the mesh options of env: `recordsync setup` creates
// the streams, buckets and consumers with them, and the services check
// for the same names.
func MeshOptions(env Env) mesh.Options {
	push, _ := env.Push() // LoadEnv and Validate report a bad one
	return mesh.Options{StatusTTL: env.StatusTTL, Push: push, Replicas: env.replicas()}
}

// Setup creates or updates every stream, bucket and durable consumer of
// the mesh, for every target of the registry, and seeds the rule set from
// rules.json when KV sync_rules holds none. js must be a user allowed to
// (the operator): the service users may only check that it was done. It
// is idempotent, and safe to run while the services run.
func Setup(ctx context.Context, js jetstream.JetStream, env Env, targets []string, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	o := MeshOptions(env)
	o.Log = log
	if err := mesh.Ensure(ctx, js, o); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	if err := mesh.EnsureConsumers(ctx, js, targets, o); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	if _, err := rules.Parse(recordsync.RulesJSON, targets); err != nil {
		return fmt.Errorf("setup: rules.json: %w", err)
	}
	kv, err := js.KeyValue(ctx, mesh.BucketRules)
	if err != nil {
		return fmt.Errorf("setup: open %s: %w", mesh.BucketRules, err)
	}
	if err := rules.Seed(ctx, kv, recordsync.RulesJSON); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	log.Info("setup_done", "streams", len(mesh.Streams(o))+1, "buckets", len(mesh.Buckets(o))+1,
		"consumers", len(mesh.Consumers(targets, o)), "targets", targets)
	return nil
}

// RunSetup is `recordsync setup`: it connects as the operator (NATS_URL,
// NATS_USER and NATS_PASSWORD as data/nats.env holds them, or
// RECORDSYNC_NATS_URL with RECORDSYNC_NATS_USER, default operator, and
// RECORDSYNC_NATS_PASSWORD) and runs Setup for every target record-sync
// knows.
func RunSetup(ctx context.Context, env Env, log *slog.Logger) error {
	if env.NATSURL != "" && env.NATSUser == "" {
		env.NATSUser = "operator"
	}
	nc, err := operatorConn(env, "setup")
	if err != nil {
		return err
	}
	return setupOn(ctx, nc, env, log)
}

// setupOn runs Setup through nc, a connection as the operator, for every
// target record-sync knows, and closes nc.
func setupOn(ctx context.Context, nc *nats.Conn, env Env, log *slog.Logger) error {
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	reg, _, err := Registry(env, false)
	if err != nil {
		return err
	}
	return Setup(ctx, js, env, reg.Targets(), log)
}

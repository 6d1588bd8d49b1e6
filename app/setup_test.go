package app_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/recordsync/record-sync/app"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/natstest"
	"github.com/recordsync/record-sync/shared/rules"
	"github.com/recordsync/record-sync/shared/telemetry"
)

// TestServicesNeedSetup starts each service, as its own user, against a
// server where `recordsync setup` has not run: each refuses to start and
// names what is missing and the step to run. After setup (run twice: it
// is idempotent) each opens, and the rule set is seeded.
func TestServicesNeedSetup(t *testing.T) {
	srv := natstest.RunServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	env := app.Env{CRMSimAddr: "127.0.0.1:1", NATSURL: srv.ClientURL(), NATSPassword: srv.Passwords["operator"]}
	reg, _, err := app.Registry(env, false)
	if err != nil {
		t.Fatal(err)
	}
	open := func(service string) error {
		t.Helper()
		nc, _ := natstest.Connect(t, srv, service)
		metrics, err := telemetry.NewMetrics()
		if err != nil {
			t.Fatal(err)
		}
		_, err = app.OpenMesh(ctx, nc, service, env, reg, metrics, slog.New(slog.DiscardHandler))
		return err
	}
	want := map[string][]string{
		"ingest": {"stream SYNC_IN", "stream SYNC_DLQ", "bucket sync_rules", "bucket sync_status"},
		"rules":  {"stream SYNC_IN", "stream SYNC_REJECTED", "bucket sync_config"},
		"pusher": {"stream SYNC_PUSH", "stream SYNC_RATELIMIT", "bucket sync_config"},
		"status": {"stream SYNC_STATUS", "stream SYNC_STATS", "bucket sync_status"},
	}
	for service, names := range want {
		err := open(service)
		if !errors.Is(err, mesh.ErrNotSetUp) {
			t.Fatalf("%s before setup: %v, want ErrNotSetUp", service, err)
		}
		for _, n := range append(names, "recordsync setup") {
			if !strings.Contains(err.Error(), n) {
				t.Errorf("%s before setup says %q: it does not name %s", service, err, n)
			}
		}
	}

	// Streams and buckets, but no consumers: the consuming services name
	// theirs.
	_, jsOp := natstest.Connect(t, srv, "operator")
	if err := mesh.Ensure(ctx, jsOp, app.MeshOptions(env)); err != nil {
		t.Fatal(err)
	}
	for service, c := range map[string]string{
		"rules":  "consumer rules of stream SYNC_IN",
		"status": "consumer status of stream SYNC_STATUS",
		"pusher": "consumer pusher_hubspot_0 of stream SYNC_PUSH",
	} {
		if err := open(service); !errors.Is(err, mesh.ErrNotSetUp) || !strings.Contains(err.Error(), c) {
			t.Errorf("%s without its consumer: %v, want it named: %s", service, err, c)
		}
	}

	for range 2 {
		if err := app.RunSetup(ctx, env, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatalf("recordsync setup: %v", err)
		}
	}
	for service := range want {
		if err := open(service); err != nil {
			t.Errorf("%s after setup: %v", service, err)
		}
	}
	kv, err := jsOp.KeyValue(ctx, mesh.BucketRules)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, rules.Key); err != nil || e.Revision() != 1 {
		t.Fatalf("rules.json seeded once: %v", err)
	}
	for _, c := range mesh.Consumers(reg.Names(), app.MeshOptions(env)) {
		info, err := jsOp.Consumer(ctx, c.Stream, c.Config.Durable)
		if err != nil {
			t.Fatalf("consumer %s: %v", c.Config.Durable, err)
		}
		// The status service keeps written changes in hand by progress
		// reports, so its AckWait stays short whatever the bucket's
		// persistence: a dead process's work is taken up within it.
		if c.Config.Durable == mesh.ConsumerStatus && info.CachedInfo().Config.AckWait != mesh.DefaultStatusAckWait {
			t.Errorf("status consumer AckWait %s, want %s", info.CachedInfo().Config.AckWait, mesh.DefaultStatusAckWait)
		}
	}
}

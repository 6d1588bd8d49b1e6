package mesh

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/shared/natstest"
)

// TestEnsureLeavesCurrentStreamsAlone checks that after Ensure every stream
// and bucket reads back as configured, so that the next Ensure (every
// service's start) updates nothing: an update races in nats-server with
// consumers being created on the stream.
func TestEnsureLeavesCurrentStreamsAlone(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv, "operator")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := Options{MaxInBytes: 1 << 30}
	if err := Ensure(ctx, js, o); err != nil {
		t.Fatal(err)
	}
	for _, want := range append(Streams(o), StatusBucketStream(o)) {
		st, err := js.Stream(ctx, want.Name)
		if err != nil {
			t.Fatal(err)
		}
		if have := st.CachedInfo().Config; !sameStream(want, have) {
			t.Errorf("stream %s would be updated again:\nwant %+v\nhave %+v", want.Name, want, have)
		}
	}
	for _, want := range Buckets(o) {
		st, err := js.Stream(ctx, "KV_"+want.Bucket)
		if err != nil {
			t.Fatal(err)
		}
		if !sameBucket(want, st.CachedInfo().Config) {
			t.Errorf("bucket %s would be updated again: %+v", want.Bucket, st.CachedInfo().Config)
		}
	}
	// A changed setting is applied.
	o.StatusTTL = time.Hour
	if err := Ensure(ctx, js, o); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, "KV_"+BucketStatus)
	if err != nil || st.CachedInfo().Config.MaxAge != time.Hour {
		t.Fatalf("the new status TTL was not applied: %v", err)
	}
}

// TestEnsureNeverLowersReplicas creates the mesh at R3 on a cluster, then
// ensures it at R1, as a service started without RECORDSYNC_REPLICAS
// would: every stream and bucket keeps its three replicas.
func TestEnsureNeverLowersReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("three servers")
	}
	c := natstest.RunCluster(t)
	_, js := c.Connect(t, "operator")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := Ensure(ctx, js, Options{Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	if err := Ensure(ctx, js, Options{Replicas: 1, Log: slog.New(slog.NewTextHandler(&logged, nil))}); err != nil {
		t.Fatal(err)
	}
	names := []string{"KV_" + BucketStatus, "KV_" + BucketRules, "KV_" + BucketConfig}
	for _, s := range Streams(Options{}) {
		names = append(names, s.Name)
	}
	for _, name := range names {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if cfg := st.CachedInfo().Config; cfg.Replicas != 3 || cfg.PersistMode != jetstream.DefaultPersistMode {
			t.Errorf("%s: %d replicas, persist mode %v after an R1 Ensure", name, cfg.Replicas, cfg.PersistMode)
		}
		if !strings.Contains(logged.String(), "stream="+name) {
			t.Errorf("%s kept its replicas without a word in the log", name)
		}
	}
	if err := (Options{Replicas: 7}).Validate(); err == nil {
		t.Error("7 replicas validated")
	}
}

package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/recordsync/record-sync/app"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/status"
)

// TestDevCluster runs dev with an embedded 3-node cluster: every stream
// and bucket is R3, and a record goes through.
func TestDevCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("three servers")
	}
	s := startDev(t, func(e *app.Env) { e.DevCluster = 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, name := range []string{mesh.StreamIn, mesh.StreamPush, mesh.StreamStatus, mesh.StreamRate, "KV_" + mesh.BucketStatus, "KV_" + mesh.BucketConfig} {
		st, err := s.js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if info := st.CachedInfo(); info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			t.Errorf("%s: %d replicas configured, cluster %+v", name, info.Config.Replicas, info.Cluster)
		}
	}
	if r := s.call("POST", "/v1/sync/", syncKey, contact("cl-1", "cl1@example.com", nil)); r.Status != 202 {
		t.Fatalf("POST: %d %s", r.Status, r.Raw)
	}
	s.waitState("cl-1", "hubspot", status.StateSynced)
}

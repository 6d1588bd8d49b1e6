package status_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	statussvc "github.com/recordsync/record-sync/services/status"
	"github.com/recordsync/record-sync/shared/fastjson"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/status"
)

// BenchmarkStatusService measures the status service alone against an
// embedded server: each record gets a queued and a synced change for three
// targets (one KV write per record), published in batches of 1,000 changes
// as the rules service and the pushers do. It reports records written per
// second, the service's work and the server's together, waiting for the
// synced counter the service keeps.
//
// misses: every record is in the bucket already (queued for the three
// targets) and the service's cache holds nothing, as when a backlog
// drains: each write must read the record first.
func BenchmarkStatusService(b *testing.B) {
	b.Run("fresh", func(b *testing.B) { benchStatus(b, false) })
	b.Run("misses", func(b *testing.B) { benchStatus(b, true) })
}

func benchStatus(b *testing.B, misses bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	js, pub, kv := setup(ctx, b)
	t0 := time.Now().UTC()
	targets := []string{"hubspot", "salesforce", "outreach"}
	states := []status.State{status.StateQueued, status.StateSynced}
	cfg := statussvc.Config{}
	if misses {
		states, cfg.CacheBytes = states[1:], 1
		okv := operatorKV(ctx, b, pub)
		for i := range b.N {
			id := fmt.Sprintf("sb-%d", i)
			rec := status.Record{RecordID: id, Targets: map[string]*status.Target{}}
			for _, tg := range targets {
				rec.Targets[tg] = &status.Target{State: status.StateQueued, EventID: "e-" + id, Operation: "create", OccurredAt: t0, UpdatedAt: t0}
			}
			v, err := fastjson.Marshal(rec)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := okv.Put(ctx, status.Key(id), v); err != nil {
				b.Fatal(err)
			}
		}
	}
	defer runService(ctx, b, js, kv, cfg)()
	var batch []status.Change
	var acks []jetstream.PubAckFuture
	flush := func() {
		f, err := mesh.PublishStatusAsync(pub, "bench", "", batch)
		if err != nil {
			b.Fatal(err)
		}
		acks = append(acks, f...)
		batch = nil
	}
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprintf("sb-%d", i)
		for _, tg := range targets {
			for _, st := range states {
				batch = append(batch, status.Change{RecordID: id, Target: tg, EventID: "e-" + id, Operation: "create",
					OccurredAt: t0, State: st, Attempts: 1, CRMID: "1001", At: t0})
			}
		}
		if len(batch) >= 1000 {
			flush()
		}
	}
	if len(batch) > 0 {
		flush()
	}
	if err := mesh.WaitAcks(ctx, acks); err != nil {
		b.Fatal(err)
	}
	// The status service counts each record it writes as synced.
	deadline := time.Now().Add(time.Minute)
	for {
		counts, err := mesh.ReadCounts(ctx, pub, "outreach")
		if err != nil {
			b.Fatal(err)
		}
		if counts[string(status.StateSynced)] == int64(b.N) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d records written", counts[string(status.StateSynced)], b.N)
		}
		<-time.After(20 * time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

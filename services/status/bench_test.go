package status_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	statussvc "github.com/recordsync/record-sync/services/status"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/status"
)

// BenchmarkStatusService measures the status service alone against an
// embedded server: each record gets a queued and a synced change for three
// targets (one KV write per record), published in batches of 1,000 changes
// as the rules service and the pushers do. It reports records written per
// second, the service's work and the server's together, waiting for the
// synced counter the service keeps.
func BenchmarkStatusService(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	js, pub, kv := setup(ctx, b)
	svc, err := statussvc.New(js, kv, statussvc.Config{}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	t0 := time.Now().UTC()
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
		for _, tg := range []string{"hubspot", "salesforce", "outreach"} {
			for _, st := range []status.State{status.StateQueued, status.StateSynced} {
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

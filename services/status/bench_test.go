package status_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	statussvc "github.com/recordsync/record-sync/services/status"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/natstest"
	"github.com/recordsync/record-sync/shared/status"
)

// BenchmarkStatusService measures the status service alone against an
// embedded server: each record gets a queued and a synced change for three
// targets (one KV write per record), published in batches of 1,000 changes
// as the rules service and the pushers do. It reports records written per
// second, the service's work and the server's together.
func BenchmarkStatusService(b *testing.B) {
	srv := natstest.RunServer(b)
	_, js := natstest.Connect(b, srv, "status")
	_, pub := natstest.Connect(b, srv, "operator") // publishes the changes and watches the bucket
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := mesh.Ensure(ctx, js, mesh.Options{}); err != nil {
		b.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, mesh.BucketStatus)
	if err != nil {
		b.Fatal(err)
	}
	svc, err := statussvc.New(js, kv, statussvc.Config{}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() { cancel(); <-done }()
	watched, err := pub.KeyValue(ctx, mesh.BucketStatus)
	if err != nil {
		b.Fatal(err)
	}
	watch, err := watched.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = watch.Stop() }()

	t0 := time.Now().UTC()
	var batch []status.Change
	flush := func() {
		raw, _ := json.Marshal(mesh.StatusBatch{Changes: batch})
		if _, err := pub.PublishAsync(mesh.SubjectStatus("bench"), raw); err != nil {
			b.Fatal(err)
		}
		batch = batch[:0]
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
	for written := 0; written < b.N; {
		select {
		case e := <-watch.Updates():
			if e != nil {
				written++
			}
		case <-time.After(time.Minute):
			b.Fatalf("%d of %d records written", written, b.N)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

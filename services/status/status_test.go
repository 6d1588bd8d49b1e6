package status_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	statussvc "github.com/recordsync/record-sync/services/status"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/natstest"
	"github.com/recordsync/record-sync/shared/status"
)

// setup starts a server with the mesh's streams and consumers and returns the status
// service's JetStream, an operator's that publishes changes as rules and
// pushers do, and KV sync_status.
func setup(ctx context.Context, tb testing.TB) (js, pub jetstream.JetStream, kv jetstream.KeyValue) {
	tb.Helper()
	srv := natstest.RunServer(tb)
	_, js = natstest.Connect(tb, srv, "status")
	_, pub = natstest.Connect(tb, srv, "operator")
	// What `recordsync setup` does, as the operator: the status user may
	// create nothing.
	o := mesh.Options{}
	if err := mesh.Ensure(ctx, pub, o); err != nil {
		tb.Fatal(err)
	}
	if err := mesh.EnsureConsumers(ctx, pub, nil, o); err != nil {
		tb.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, mesh.BucketStatus)
	if err != nil {
		tb.Fatal(err)
	}
	return js, pub, kv
}

// runService runs a status service with cfg until the returned stop is
// called, which reports the error it ended with.
func runService(ctx context.Context, tb testing.TB, js jetstream.JetStream, kv jetstream.KeyValue, cfg statussvc.Config) (stop func()) {
	tb.Helper()
	svc, err := statussvc.New(js, kv, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(rctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("status service: %v", err)
		}
	}
}

// operatorKV is KV sync_status as the operator sees it: the status user
// only writes it, and may not watch it.
// publisher returns a function that publishes, in one status message,
// each of ids moving to state on hubspot at t0.
func publisher(ctx context.Context, tb testing.TB, pub jetstream.JetStream, t0 time.Time) func(state status.State, ids ...string) {
	return func(state status.State, ids ...string) {
		tb.Helper()
		var b mesh.StatusBatch
		for _, id := range ids {
			b.Changes = append(b.Changes, status.Change{RecordID: id, Target: "hubspot", EventID: "e-" + id, OccurredAt: t0, State: state, At: t0})
		}
		raw, _ := json.Marshal(b)
		if _, err := pub.Publish(ctx, mesh.SubjectStatus("test"), raw); err != nil {
			tb.Fatal(err)
		}
	}
}

func operatorKV(ctx context.Context, tb testing.TB, pub jetstream.JetStream) jetstream.KeyValue {
	tb.Helper()
	kv, err := pub.KeyValue(ctx, mesh.BucketStatus)
	if err != nil {
		tb.Fatal(err)
	}
	return kv
}

// nextPut returns the next value watch sees written, decoded, failing the
// test with why when ctx ends first.
func nextPut(ctx context.Context, t *testing.T, watch jetstream.KeyWatcher, why string) (key string, rec status.Record) {
	t.Helper()
	for {
		select {
		case e := <-watch.Updates():
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			if err := json.Unmarshal(e.Value(), &rec); err != nil {
				t.Fatal(err)
			}
			return e.Key(), rec
		case <-ctx.Done():
			t.Fatal(why)
		}
	}
}

// TestTwoWritersConverge runs two status services against one bucket and
// feeds them, out of order, the changes of several events per record: every
// record must end with its newest event's final state.
func TestTwoWritersConverge(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	js, pub, kv := setup(ctx, t)
	log := slog.New(slog.DiscardHandler)
	run, stop := context.WithCancel(ctx)
	done := make(chan error, 2)
	for i := range 2 {
		svc, err := statussvc.New(js, kv, statussvc.Config{MaxChanges: 7 + i*5, Linger: time.Duration(i+1) * time.Millisecond}, log)
		if err != nil {
			t.Fatal(err)
		}
		go func() { done <- svc.Run(run) }()
	}
	t.Cleanup(func() {
		stop()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("status service: %v", err)
			}
		}
	})

	const records, events = 20, 4
	t0 := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	var changes []status.Change
	for r := range records {
		for e := range events {
			for _, st := range []status.State{status.StateQueued, status.StateRetrying, status.StateSynced} {
				changes = append(changes, status.Change{RecordID: fmt.Sprintf("r:%d@x", r), Target: "hubspot", EventID: fmt.Sprintf("e%d", e),
					OccurredAt: t0.Add(time.Duration(e) * time.Second), State: st, Attempts: 1, At: t0})
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(changes), func(i, j int) { changes[i], changes[j] = changes[j], changes[i] })
	watch, err := operatorKV(ctx, t, pub).WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = watch.Stop() }()
	for start := 0; start < len(changes); start += 3 {
		batch := mesh.StatusBatch{Changes: changes[start:min(start+3, len(changes))]}
		b, _ := json.Marshal(batch)
		if _, err := pub.Publish(ctx, mesh.SubjectStatus("test"), b); err != nil {
			t.Fatal(err)
		}
	}
	final := map[string]bool{}
	for len(final) < records {
		key, rec := nextPut(ctx, t, watch, "not every record reached its final state")
		if st := rec.Targets["hubspot"]; st.EventID == fmt.Sprintf("e%d", events-1) && st.State == status.StateSynced {
			final[key] = true
		}
	}
	// Nothing may move a record back afterwards: publish an old change and
	// a sentinel, and check the old one did not apply.
	old, _ := json.Marshal(mesh.StatusBatch{Changes: []status.Change{{RecordID: "r:0@x", Target: "hubspot", EventID: "e0", OccurredAt: t0, State: status.StateFailed, At: t0}}})
	sentinel, _ := json.Marshal(mesh.StatusBatch{Changes: []status.Change{{RecordID: "sentinel", Target: "hubspot", EventID: "s", OccurredAt: t0, State: status.StateQueued, At: t0}}})
	for _, b := range [][]byte{old, sentinel} {
		if _, err := pub.Publish(ctx, mesh.SubjectStatus("test"), b); err != nil {
			t.Fatal(err)
		}
	}
	for {
		var e jetstream.KeyValueEntry
		select {
		case e = <-watch.Updates():
		case <-ctx.Done():
			t.Fatal("the sentinel never arrived")
		}
		if e != nil && e.Key() == "sentinel" {
			break
		}
		if e != nil && e.Key() == status.Key("r:0@x") {
			t.Fatalf("an old change rewrote the record: %s", e.Value())
		}
	}
}

// TestLostWriteComesBack plays a crash of the server between a status
// write and its sync to disk: KV sync_status is written asynchronously, so
// the status service holds the change's ack back; when the write is lost
// (here deleted) and the service stops, the change comes again and the
// next status service writes the record anew.
func TestLostWriteComesBack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	js, pub, kv := setup(ctx, t)
	st, err := js.Stream(ctx, "KV_"+mesh.BucketStatus)
	if err != nil || st.CachedInfo().Config.PersistMode != jetstream.AsyncPersistMode {
		t.Fatalf("KV sync_status is not written asynchronously: %v", err)
	}
	// A change held back 3 s comes again after twice that, as setup would
	// configure the consumer for that ack delay.
	if err := mesh.EnsureConsumers(ctx, pub, nil, mesh.Options{StatusAckWait: 6 * time.Second}); err != nil {
		t.Fatal(err)
	}
	watch, err := operatorKV(ctx, t, pub).Watch(ctx, status.Key("r1"), jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = watch.Stop() }()
	run := func() (stop func()) {
		return runService(ctx, t, js, kv, statussvc.Config{AckDelay: 3 * time.Second, Linger: time.Millisecond})
	}
	stop := run()
	t0 := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	b, _ := json.Marshal(mesh.StatusBatch{Changes: []status.Change{{RecordID: "r1", Target: "hubspot", EventID: "e1", OccurredAt: t0, State: status.StateSynced, At: t0}}})
	if _, err := pub.Publish(ctx, mesh.SubjectStatus("test"), b); err != nil {
		t.Fatal(err)
	}
	nextPut(ctx, t, watch, "the record was not written")
	info, err := js.Consumer(ctx, mesh.StreamStatus, mesh.ConsumerStatus)
	if err != nil {
		t.Fatal(err)
	}
	if ci, err := info.Info(ctx); err != nil || ci.NumAckPending != 1 {
		t.Fatalf("the change was acked before its write could be on disk: %+v %v", ci, err)
	}
	stop()
	if err := kv.Delete(ctx, status.Key("r1")); err != nil { // the write the crash lost
		t.Fatal(err)
	}
	stop = run()
	defer stop()
	if _, rec := nextPut(ctx, t, watch, "the record was not written again"); rec.Targets["hubspot"].State != status.StateSynced {
		t.Fatalf("record after the redelivery: %+v", rec)
	}
}

// TestBacklogHoldsQueued checks the busy hold: with more than BusyAt
// records held, and until fewer than a tenth of that are, a record still
// queued is not written when Hold passes but once, when its target moves
// on.
func TestBacklogHoldsQueued(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	js, pub, kv := setup(ctx, t)
	svc, err := statussvc.New(js, kv, statussvc.Config{Linger: time.Millisecond, Hold: time.Nanosecond, BusyHold: time.Hour, BusyAt: 20, AckDelay: -1},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	run, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(run) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("status service: %v", err)
		}
	})
	watch, err := operatorKV(ctx, t, pub).WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = watch.Stop() }()
	t0 := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	publish := publisher(ctx, t, pub, t0)
	// until reads the writes up to those of keys, failing on any write of
	// a record as queued.
	until := func(keys ...string) {
		left := map[string]bool{}
		for _, k := range keys {
			left[k] = true
		}
		for len(left) > 0 {
			key, rec := nextPut(ctx, t, watch, fmt.Sprintf("%v not written", left))
			if st := rec.Targets["hubspot"].State; st == status.StateQueued {
				t.Fatalf("%s written as %s in a backlog, want one write once synced", key, st)
			}
			delete(left, key)
		}
	}
	var queued []string
	for i := range 21 {
		queued = append(queued, fmt.Sprintf("q%d", i))
	}
	publish(status.StateQueued, queued...)
	// Each pair of sentinels comes after the changes before it: once the
	// first is written those are taken in, and the second's round comes
	// after their Hold has passed, so without the busy hold the records
	// still queued are written by then.
	sentinels := func(a, b string) {
		publish(status.StateSynced, a)
		until(a)
		publish(status.StateSynced, b)
		until(b)
	}
	sentinels("s1", "s2")
	// Most are pushed; the three left (past a tenth of BusyAt) are the
	// tail of the backlog and are still held.
	publish(status.StateSynced, queued[:18]...)
	until(queued[:18]...)
	sentinels("s3", "s4")
	publish(status.StateSynced, queued[18:]...)
	until(queued[18:]...)
}

// TestHeldAreBounded: past MaxHeld, the records held longest are written
// as they are, however long Hold is, and only those.
func TestHeldAreBounded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	js, pub, kv := setup(ctx, t)
	defer runService(ctx, t, js, kv, statussvc.Config{Linger: time.Millisecond, Hold: time.Hour, BusyHold: time.Hour, BusyAt: 1000, MaxHeld: 10, AckDelay: -1})()
	watch, err := operatorKV(ctx, t, pub).WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = watch.Stop() }()
	t0 := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	var ids []string
	for i := range 15 {
		ids = append(ids, fmt.Sprintf("r%02d", i))
	}
	publish := publisher(ctx, t, pub, t0)
	// expect reads the next writes, which must be of keys, in state.
	expect := func(state status.State, keys ...string) {
		t.Helper()
		left := map[string]bool{}
		for _, k := range keys {
			left[k] = true
		}
		for len(left) > 0 {
			key, rec := nextPut(ctx, t, watch, fmt.Sprintf("%v not written", left))
			if !left[key] || rec.Targets["hubspot"].State != state {
				t.Fatalf("%s written as %s; want only %v, as %s", key, rec.Targets["hubspot"].State, slices.Sorted(maps.Keys(left)), state)
			}
			delete(left, key)
		}
	}
	publish(status.StateQueued, ids...)
	expect(status.StateQueued, ids[:5]...)
	publish(status.StateSynced, ids...)
	expect(status.StateSynced, ids...)
}

// gatedKV is a status bucket whose Get waits until gate reads are in
// flight at once (or 5 s pass, which a service that reads one record
// after the other makes it wait each time).
type gatedKV struct {
	jetstream.KeyValue
	gate     int
	mu       sync.Mutex
	inFlight int
	most     int
	opened   bool
	open     chan struct{}
}

func (g *gatedKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	g.mu.Lock()
	g.inFlight++
	g.most = max(g.most, g.inFlight)
	if g.inFlight == g.gate && !g.opened {
		g.opened = true
		close(g.open)
	}
	g.mu.Unlock()
	select {
	case <-g.open:
	case <-time.After(5 * time.Second):
	}
	defer func() {
		g.mu.Lock()
		g.inFlight--
		g.mu.Unlock()
	}()
	return g.KeyValue.Get(ctx, key)
}

// TestMissesAreReadTogether: a round of records the cache does not hold
// (a backlog draining) reads them back several at a time, not one round
// trip after the other; and each is written right.
func TestMissesAreReadTogether(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	js, pub, kv := setup(ctx, t)
	okv := operatorKV(ctx, t, pub)
	t0 := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	const n = 64
	var changes []status.Change
	for i := range n {
		id := fmt.Sprintf("m-%d", i)
		v, _ := json.Marshal(status.Record{RecordID: id, Targets: map[string]*status.Target{"hubspot": {State: status.StateQueued, EventID: "e-" + id, OccurredAt: t0}}})
		if _, err := okv.Put(ctx, status.Key(id), v); err != nil {
			t.Fatal(err)
		}
		changes = append(changes, status.Change{RecordID: id, Target: "hubspot", EventID: "e-" + id, OccurredAt: t0, State: status.StateSynced, At: t0})
	}
	g := &gatedKV{KeyValue: kv, gate: 8, open: make(chan struct{})}
	defer runService(ctx, t, js, g, statussvc.Config{CacheBytes: 1})()
	if _, err := mesh.PublishStatusAsync(pub, "test", "", changes); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 50*time.Second, "every record synced", func() bool {
		for i := range n {
			e, err := okv.Get(ctx, status.Key(fmt.Sprintf("m-%d", i)))
			var rec status.Record
			if err != nil || json.Unmarshal(e.Value(), &rec) != nil || rec.Targets["hubspot"].State != status.StateSynced {
				return false
			}
		}
		return true
	})
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.most < g.gate {
		t.Fatalf("at most %d reads in flight at once; want %d", g.most, g.gate)
	}
}

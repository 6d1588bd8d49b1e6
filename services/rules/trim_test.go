package rules

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/natsrv"
	"github.com/recordsync/record-sync/shared/natstest"
	"github.com/recordsync/record-sync/shared/rules"
)

// TestTrimKeepsTheWindowAndWhatIsNotRouted: the rules service, as its own
// NATS user, routes the gathered messages of SYNC_GATHER and trims them
// once they are older than the duplicate window; what it has not routed
// stays, however old.
func TestTrimKeepsTheWindowAndWhatIsNotRouted(t *testing.T) {
	srv := natstest.RunServerWith(t, natsrv.Config{Profile: natsrv.ProfileFast})
	ctx := context.Background()
	_, op := natstest.Connect(t, srv, "operator")
	targets := []string{"hubspot"}
	if err := mesh.Ensure(ctx, op, mesh.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := mesh.EnsureConsumers(ctx, op, targets, mesh.Options{}); err != nil {
		t.Fatal(err)
	}
	_, js := natstest.Connect(t, srv, "rules")
	kv, err := js.KeyValue(ctx, mesh.BucketRules)
	if err != nil {
		t.Fatal(err)
	}
	seed, err := rules.Parse([]byte(`{"rules":[]}`), targets)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	s, err := New(js, rules.NewStore(kv, seed, targets, log), Config{Limits: event.DefaultLimits(targets), DefaultTargets: targets, Targets: targets}, log)
	if err != nil {
		t.Fatal(err)
	}
	_, ingest := natstest.Connect(t, srv, "ingest")
	publish := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			m := nats.NewMsg(mesh.SubjectInGathered)
			m.Data = fmt.Appendf(nil, `{"events":[{"record_id":"t-%d","event_id":"t-%d","operation":"delete"}]}`, i, i)
			m.Header.Set(mesh.HeaderCount, "1")
			m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.Itoa(i))
			if _, err := ingest.PublishMsg(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(0, 5)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	cons, err := mesh.Bind(ctx, js, mesh.StreamGather, mesh.ConsumerRules)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, "the 5 gathered messages routed", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.AckFloor.Stream == 5
	})
	stop()
	if err := <-done; err != nil && runCtx.Err() == nil {
		t.Fatal(err)
	}
	publish(5, 8) // not routed: the rules service is stopped

	state := func() jetstream.StreamState {
		t.Helper()
		st, err := op.Stream(ctx, mesh.StreamGather)
		if err != nil {
			t.Fatal(err)
		}
		return st.CachedInfo().State
	}
	if err := s.trim(ctx, cons); err != nil {
		t.Fatal(err)
	}
	if st := state(); st.Msgs != 8 {
		t.Fatalf("inside the window, trim left %d of 8 messages", st.Msgs)
	}
	s.now = func() time.Time { return time.Now().Add(time.Hour) }
	if err := s.trim(ctx, cons); err != nil {
		t.Fatal(err)
	}
	if st := state(); st.Msgs != 3 || st.FirstSeq != 6 {
		t.Fatalf("past the window, trim left %d messages from %d; want the 3 not routed, from 6", st.Msgs, st.FirstSeq)
	}
	push, err := op.Stream(ctx, mesh.StreamPush)
	if err != nil {
		t.Fatal(err)
	}
	if n := push.CachedInfo().State.Msgs; n == 0 {
		t.Fatal("nothing routed to SYNC_PUSH")
	}
}

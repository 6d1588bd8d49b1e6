package pusher_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/recordsync/record-sync/crmsim"
	"github.com/recordsync/record-sync/shared/config"
	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/natstest"
)

// TestARoundTakesAboutItsBatches: a partition's rounds have pushed single
// events (a message an item), then a backlog comes in messages of 100
// items. A round still takes about its batches' worth of items (10 here,
// or one whole message), not as many messages as it took single events:
// what the pusher holds stays bounded by its rounds, whatever the backlog.
// The messages a round holds are the consumer's unacknowledged ones.
func TestARoundTakesAboutItsBatches(t *testing.T) {
	s := newStack(t, mesh.PushOptions{Partitions: 1})
	s.startWorker(t, "a", func(tc *config.Target) { tc.BatchSize, tc.Concurrency = 10, 1 })
	base := time.Now().UTC().Add(-time.Hour)
	email := func(i int) string { return fmt.Sprintf("round-%d@example.com", i) }
	for i := range 10 {
		s.publish(t, fmt.Sprintf("single-%d", i), update(fmt.Sprintf("single-%d", i), fmt.Sprintf("single-%d@example.com", i), 0, base))
	}
	natstest.Eventually(t, 10*time.Second, "the single events in the CRM", func() bool { return len(s.sim.Sim().History("single-9@example.com")) > 0 })

	s.sim.Sim().SetFaults(crmsim.Faults{LatencyMS: 10, RateLimit: 1_000_000, RateWindowMS: 1000})
	const messages, items = 30, 100
	for m := range messages {
		evs := make([]event.Event, items)
		for i := range evs {
			n := m*items + i
			evs[i] = update(fmt.Sprintf("round-%d", n), email(n), 0, base)
		}
		s.publish(t, fmt.Sprintf("backlog-%d", m), evs...)
	}
	_, op := natstest.Connect(t, s.srv, "operator")
	cons, err := op.Consumer(context.Background(), mesh.StreamPush, mesh.ConsumerPusher("hubspot", 0))
	if err != nil {
		t.Fatal(err)
	}
	most := 0
	natstest.Eventually(t, 60*time.Second, "the backlog in the CRM", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if info, err := cons.Info(ctx); err == nil {
			most = max(most, info.NumAckPending)
		}
		for n := range messages * items {
			if len(s.sim.Sim().History(email(n))) == 0 {
				return false
			}
		}
		return true
	})
	t.Logf("at most %d messages of %d items in hand at once", most, items)
	// A round's bound is 1.25 times a whole message (more than 10 items)
	// at the items' size: two messages, three when the single events'
	// items, which carry a message's headers each, set the size; the
	// acks of one round may still be on their way when the next is
	// fetched. Sized by the single events' items per message, a round
	// took 10.
	if most > 6 {
		t.Errorf("a round held %d messages of %d items: about %d items, for batches of 10", most, items, most*items)
	}
}

// TestAMessageLargerThanARoundIsPushed: the rounds have learned small
// items, then one message comes whose items are ten times their size, so
// that the message alone is more than a round's byte bound. JetStream will
// not deliver it within that bound; the partition takes it alone and
// pushes it, and the small ones after it.
func TestAMessageLargerThanARoundIsPushed(t *testing.T) {
	s := newStack(t, mesh.PushOptions{Partitions: 1})
	s.startWorker(t, "a", nil)
	base := time.Now().UTC().Add(-time.Hour)
	s.publish(t, "small", update("small-0", "small-0@example.com", 0, base))
	natstest.Eventually(t, 10*time.Second, "the small event in the CRM", func() bool { return len(s.sim.Sim().History("small-0@example.com")) > 0 })
	evs := make([]event.Event, mesh.MaxWorkItems)
	for i := range evs {
		evs[i] = update(fmt.Sprintf("large-%d", i), fmt.Sprintf("large-%d@example.com", i), 0, base)
		evs[i].Data["last_name"] = strings.Repeat("x", 4000)
	}
	s.publish(t, "large", evs...)
	s.publish(t, "after", update("small-1", "small-1@example.com", 0, base))
	natstest.Eventually(t, 20*time.Second, "the large message's records and the small one after it in the CRM", func() bool {
		return len(s.sim.Sim().History(fmt.Sprintf("large-%d@example.com", mesh.MaxWorkItems-1))) > 0 &&
			len(s.sim.Sim().History("small-1@example.com")) > 0
	})
}

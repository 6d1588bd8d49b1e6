package pusher_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/crm"
	"github.com/recordsync/record-sync/crm/hubspot"
	"github.com/recordsync/record-sync/crmsim"
	simhubspot "github.com/recordsync/record-sync/crmsim/hubspot"
	"github.com/recordsync/record-sync/services/pusher"
	"github.com/recordsync/record-sync/shared/config"
	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/mapping"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/natsrv"
	"github.com/recordsync/record-sync/shared/natstest"
	"github.com/recordsync/record-sync/shared/status"
)

const token = "pat-order-test"

// stack is an embedded NATS server with the mesh's streams, and the
// emulated HubSpot.
type stack struct {
	srv  *natsrv.Server
	sim  *simhubspot.CRM
	addr string // host:port of the emulator
	push mesh.PushOptions
	pub  jetstream.JetStream // as the rules service
	// waits receives the waits of every worker started.
	waits *mesh.Waits
}

func newStack(t *testing.T, push mesh.PushOptions) *stack {
	t.Helper()
	s := &stack{srv: natstest.RunServer(t), sim: simhubspot.New(simhubspot.Credentials{Token: token}), push: push, waits: mesh.NewWaits()}
	sim, err := crmsim.NewServer(s.sim)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(sim)
	t.Cleanup(ts.Close)
	u, _ := url.Parse(ts.URL)
	s.addr = u.Host
	_, jsOp := natstest.Connect(t, s.srv, "operator")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := mesh.Ensure(ctx, jsOp, mesh.Options{}); err != nil {
		t.Fatal(err)
	}
	// What `recordsync setup` does: the pusher user only binds.
	if err := mesh.EnsureConsumers(ctx, jsOp, []string{"hubspot"}, mesh.Options{Push: push}); err != nil {
		t.Fatal(err)
	}
	_, s.pub = natstest.Connect(t, s.srv, "rules")
	return s
}

// worker is one pusher process of HubSpot: its own NATS connection, stores
// and plugin.
type worker struct {
	w      *pusher.Worker
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan error
}

// startWorker starts a pusher of HubSpot; tune changes its target config.
func (s *stack) startWorker(t *testing.T, name string, tune func(*config.Target)) *worker {
	t.Helper()
	nc, err := s.srv.Connect("pusher")
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := io.Discard
	if os.Getenv("RECORDSYNC_TEST_LOG") != "" {
		out = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(out, nil)).With("worker", name)
	plugin := hubspot.New(token, 5*time.Second)
	reg := crm.NewRegistry()
	if err := reg.Register(plugin); err != nil {
		t.Fatal(err)
	}
	d, err := config.LoadDefaults(s.addr, map[string]config.Override{"hubspot": hubspot.Factory().Defaults}, reg.MaxBatch)
	if err != nil {
		t.Fatal(err)
	}
	tc := d.Targets["hubspot"]
	tc.RateLimitPerMinute, tc.FlushInterval = 1_000_000, config.Duration(20*time.Millisecond)
	tc.Backoff, tc.MaxAttempts = []config.Duration{config.Duration(50 * time.Millisecond), config.Duration(200 * time.Millisecond)}, 50
	if tune != nil {
		tune(&tc)
	}
	d.Targets["hubspot"] = tc
	cfgKV, err := js.KeyValue(ctx, mesh.BucketConfig)
	if err != nil {
		t.Fatal(err)
	}
	rulesKV, err := js.KeyValue(ctx, mesh.BucketRules)
	if err != nil {
		t.Fatal(err)
	}
	statusKV, err := js.KeyValue(ctx, mesh.BucketStatus)
	if err != nil {
		t.Fatal(err)
	}
	maps, err := mapping.NewStore(rulesKV, reg.Schemas(), log)
	if err != nil {
		t.Fatal(err)
	}
	w, err := pusher.NewWorker(js, plugin, config.NewStore(cfgKV, d, log), maps, status.NewReader(statusKV), pusher.Options{Push: s.push, Waits: s.waits}, log)
	if err != nil {
		t.Fatal(err)
	}
	wk := &worker{w: w, nc: nc, cancel: cancel, done: make(chan error, 1)}
	go func() { wk.done <- w.Run(ctx) }()
	t.Cleanup(func() {
		wk.cancel()
		if err := <-wk.done; err != nil {
			t.Errorf("worker %s: %v", name, err)
		}
		nc.Close()
		_ = plugin.Close()
	})
	return wk
}

// kill stops w as a crash would: its connection closes without draining,
// nothing it holds is acked.
func (w *worker) kill() {
	w.nc.Close()
	w.cancel()
}

// publish routes events to HubSpot as the rules service does.
func (s *stack) publish(t *testing.T, id string, events ...event.Event) {
	t.Helper()
	items := make([]mesh.Item, len(events))
	for i, ev := range events {
		items[i] = mesh.Item{Event: ev}
	}
	var fs []jetstream.PubAckFuture
	for p, part := range mesh.SplitWork(items, s.push.WithDefaults().Partitions) {
		f, err := mesh.PublishWorkAsync(s.pub, "hubspot", p, fmt.Sprintf("%s:%d", id, p), &mesh.Work{Items: part}, nil)
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := mesh.WaitAcks(ctx, fs); err != nil {
		t.Fatal(err)
	}
}

func update(record, email string, version int, at time.Time) event.Event {
	return event.Event{EventID: fmt.Sprintf("%s-v%02d", record, version), RecordID: record, ObjectType: event.ObjectContact, Operation: event.OpUpdate,
		Targets: []string{"hubspot"}, OccurredAt: at,
		Data: map[string]any{"email": email, "first_name": fmt.Sprintf("v%02d", version), "last_name": "Order"}}
}

// partialUpdate sets first_name on even versions and last_name on odd
// ones: an event that is lost (a retry overtaken and dropped) leaves its
// field behind, so the final state tells.
func partialUpdate(record, email string, version int, at time.Time) event.Event {
	ev := update(record, email, version, at)
	field := "first_name"
	if version%2 == 1 {
		field = "last_name"
	}
	ev.Data = map[string]any{"email": email, field: fmt.Sprintf("v%02d", version)}
	return ev
}

// replay applies a history's writes in order and returns the final
// properties, and the writes' versions (the highest in each) in order.
func replay(h []crmsim.Write) (map[string]any, []string) {
	state := map[string]any{}
	var versions []string
	for _, w := range h {
		v := ""
		for _, k := range []string{"firstname", "lastname"} {
			if s, _ := w.Values[k].(string); strings.HasPrefix(s, "v") && s > v {
				v = s
			}
			if x, ok := w.Values[k]; ok {
				state[k] = x
			}
		}
		versions = append(versions, v)
	}
	return state, versions
}

// TestOrderAcrossPushersAndFailover: three pushers of one target, each
// record updated 20 times in quick succession, partial batch failures (so
// that retries happen), one pusher killed meanwhile. Every record's writes
// in the CRM are in occurred_at order and its final state is its last
// event.
func TestOrderAcrossPushersAndFailover(t *testing.T) {
	s := newStack(t, mesh.PushOptions{Partitions: 8, AckWait: 2 * time.Second, PinnedTTL: 3 * time.Second})
	s.sim.Sim().SetFaults(crmsim.Faults{PartialBatchError: 0.1})
	workers := []*worker{s.startWorker(t, "a", nil), s.startWorker(t, "b", nil), s.startWorker(t, "c", nil)}
	const records, versions = 40, 20
	base := time.Now().UTC().Add(-time.Hour)
	email := func(r int) string { return fmt.Sprintf("order-%d@example.com", r) }
	for v := range versions {
		var evs []event.Event
		for r := range records {
			evs = append(evs, partialUpdate(fmt.Sprintf("o-%d", r), email(r), v, base.Add(time.Duration(v)*time.Second)))
		}
		s.publish(t, fmt.Sprintf("v%d", v), evs...)
		if v == versions/2 {
			// Kill the pusher owning the most partitions, once it has
			// pushed some of them.
			natstest.Eventually(t, 30*time.Second, "pushes", func() bool { return len(s.sim.Sim().History(email(0))) > 0 })
			victim := workers[0]
			for _, w := range workers {
				if w.w.Owned() > victim.w.Owned() {
					victim = w
				}
			}
			t.Logf("killing a pusher owning %d of 8 partitions", victim.w.Owned())
			victim.kill()
		}
	}
	last := fmt.Sprintf("v%02d", versions-1)
	natstest.Eventually(t, 60*time.Second, "every record's last event in the CRM", func() bool {
		for r := range records {
			if _, vs := replay(s.sim.Sim().History(email(r))); len(vs) == 0 || vs[len(vs)-1] != last {
				return false
			}
		}
		return true
	})
	wantFirst, wantLast := fmt.Sprintf("v%02d", versions-2), last
	for r := range records {
		state, vs := replay(s.sim.Sim().History(email(r)))
		if !slices.IsSorted(vs) {
			t.Errorf("record o-%d: writes out of order: %s", r, strings.Join(vs, " "))
		}
		if state["firstname"] != wantFirst || state["lastname"] != wantLast {
			t.Errorf("record o-%d: final state first %v last %v, want %s %s (writes %s)", r, state["firstname"], state["lastname"], wantFirst, wantLast, strings.Join(vs, " "))
		}
	}
	if st := s.sim.Sim().Stats(s.sim.Stored()); st.DuplicatesCreated != 0 || st.RecordsStored != records {
		t.Errorf("duplicates_created %d, records_stored %d, want 0 and %d", st.DuplicatesCreated, st.RecordsStored, records)
	}
}

// TestHotIdentityDoesNotBlockOthers: many records sharing one email (one
// HubSpot contact) queued first, then an unrelated record; the unrelated
// record is in the CRM while most of the hot identity's backlog is still
// waiting.
func TestHotIdentityDoesNotBlockOthers(t *testing.T) {
	hot := 2000
	if !testing.Short() {
		hot = 10_000
	}
	s := newStack(t, mesh.PushOptions{Partitions: 4})
	s.sim.Sim().SetFaults(crmsim.Faults{LatencyMS: 5})
	base := time.Now().UTC().Add(-time.Hour)
	var evs []event.Event
	for i := range hot {
		ev := update(fmt.Sprintf("hot-%d", i), "hot@example.com", 0, base.Add(time.Duration(i)*time.Millisecond))
		ev.Data["first_name"] = fmt.Sprintf("h%05d", i)
		evs = append(evs, ev)
	}
	for chunk := range slices.Chunk(evs, 500) {
		s.publish(t, fmt.Sprintf("hot-%s", chunk[0].RecordID), chunk...)
	}
	s.publish(t, "cold", update("cold-1", "cold@example.com", 1, base))
	s.startWorker(t, "a", nil)
	s.startWorker(t, "b", nil)
	natstest.Eventually(t, 30*time.Second, "the unrelated record in the CRM", func() bool { return len(s.sim.Sim().History("cold@example.com")) > 0 })
	n := len(s.sim.Sim().History("hot@example.com"))
	t.Logf("the unrelated record was in the CRM after %d of %d writes of the hot identity", n, hot)
	if n > hot/2 {
		t.Errorf("the unrelated record waited for %d of %d writes of the hot identity", n, hot)
	}
}

// TestRetryIsNotOvertaken: a record's push fails and is retried later;
// meanwhile a later event of the record arrives. The later event waits
// behind the retry, so the CRM gets the first event's field too, and never
// the later event before the first.
func TestRetryIsNotOvertaken(t *testing.T) {
	s := newStack(t, mesh.PushOptions{Partitions: 2})
	s.sim.Sim().SetFaults(crmsim.Faults{PartialBatchError: 1})
	s.startWorker(t, "a", func(tc *config.Target) {
		tc.Backoff = []config.Duration{config.Duration(time.Second)}
	})
	base := time.Now().UTC().Add(-time.Hour)
	s.publish(t, "first", partialUpdate("r-1", "r1@example.com", 0, base)) // first_name v00
	natstest.Eventually(t, 10*time.Second, "the first push refused", func() bool {
		return s.sim.Sim().Stats(0).RequestsByStatus["207"] > 0
	})
	s.sim.Sim().SetFaults(crmsim.Faults{})
	s.publish(t, "second", partialUpdate("r-1", "r1@example.com", 1, base.Add(time.Second))) // last_name v01
	natstest.Eventually(t, 20*time.Second, "both events in the CRM", func() bool {
		state, _ := replay(s.sim.Sim().History("r1@example.com"))
		return state["lastname"] == "v01"
	})
	state, vs := replay(s.sim.Sim().History("r1@example.com"))
	if state["firstname"] != "v00" || !slices.IsSorted(vs) {
		t.Fatalf("writes %v, final %v: the later event overtook the retry", vs, state)
	}
}

// TestJoinsDoNotHoldUpOtherRetries: two records' pushes fail and are
// retried a second later; meanwhile one of them gets a new event every 50
// ms, each joining its pending retry, and the CRM takes 100 ms a request.
// The other record's retry is still pushed when due. (With rolled-up record
// messages it was not: nats-server drops a consumer's redelivery queue on
// each rollup in its subjects, so every join put the other retry back by an
// AckWait, again and again.)
func TestJoinsDoNotHoldUpOtherRetries(t *testing.T) {
	s := newStack(t, mesh.PushOptions{Partitions: 1, AckWait: 3 * time.Second})
	s.sim.Sim().SetFaults(crmsim.Faults{PartialBatchError: 1})
	s.startWorker(t, "a", func(tc *config.Target) {
		tc.Backoff = []config.Duration{config.Duration(time.Second)}
	})
	base := time.Now().UTC().Add(-time.Hour)
	s.publish(t, "first", update("busy", "busy@example.com", 0, base), update("other", "other@example.com", 0, base))
	natstest.Eventually(t, 10*time.Second, "both pushes refused", func() bool {
		return s.sim.Sim().Stats(0).RequestsByStatus["207"] > 0
	})
	s.sim.Sim().SetFaults(crmsim.Faults{LatencyMS: 100})
	// The busy record's events come until the other record is in the CRM.
	start := time.Now()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	v := 1
	for ; len(s.sim.Sim().History("other@example.com")) == 0; v++ {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("the other record's retry not in the CRM after 20s, while %d events of the busy one came", v)
		}
		s.publish(t, fmt.Sprintf("busy-%d", v), update("busy", "busy@example.com", v, base.Add(time.Duration(v)*time.Second)))
	}
	t.Logf("the other record's retry was in the CRM %s after the faults ended, %d events of the busy record later", time.Since(start).Round(time.Millisecond), v-1)
	last := fmt.Sprintf("v%02d", v-1)
	natstest.Eventually(t, 20*time.Second, "the busy record's last event in the CRM", func() bool {
		_, vs := replay(s.sim.Sim().History("busy@example.com"))
		return len(vs) > 0 && vs[len(vs)-1] == last
	})
	if _, vs := replay(s.sim.Sim().History("busy@example.com")); !slices.IsSorted(vs) {
		t.Errorf("the busy record's writes out of order: %s", strings.Join(vs, " "))
	}
}

// TestAFetchThatFailsIsAWait: when a partition's consumer is gone, its
// loop is listed as waiting for JetStream (what /readyz and
// recordsync_consumer_waiting report), and no longer once the consumer is
// back and the partition's work is pushed.
func TestAFetchThatFailsIsAWait(t *testing.T) {
	s := newStack(t, mesh.PushOptions{Partitions: 1})
	s.startWorker(t, "a", nil)
	base := time.Now().UTC().Add(-time.Hour)
	s.publish(t, "before", update("w-1", "w1@example.com", 0, base))
	natstest.Eventually(t, 10*time.Second, "the first record in the CRM", func() bool { return len(s.sim.Sim().History("w1@example.com")) > 0 })
	_, op := natstest.Connect(t, s.srv, "operator")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	name := mesh.ConsumerPusher("hubspot", 0)
	if err := op.DeleteConsumer(ctx, mesh.StreamPush, name); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, "the partition listed as waiting", func() bool {
		for _, w := range s.waits.Current() {
			if w.Consumer == name {
				t.Logf("waiting: %s", w.Reason)
				return true
			}
		}
		return false
	})
	if err := mesh.EnsureConsumers(ctx, op, []string{"hubspot"}, mesh.Options{Push: s.push}); err != nil {
		t.Fatal(err)
	}
	s.publish(t, "after", update("w-2", "w2@example.com", 0, base))
	natstest.Eventually(t, 10*time.Second, "the second record in the CRM", func() bool { return len(s.sim.Sim().History("w2@example.com")) > 0 })
	if cur := s.waits.Current(); len(cur) != 0 {
		t.Errorf("still waiting: %+v", cur)
	}
}

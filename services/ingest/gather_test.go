package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/services/ingest"
	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/natstest"
	"github.com/recordsync/record-sync/shared/telemetry"
)

// gathered reads every message of SYNC_GATHER: the events of each.
func gathered(t *testing.T, js jetstream.JetStream) [][]event.Event {
	t.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, mesh.StreamGather)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]event.Event
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var b mesh.Batch
		if err := event.DecodeStrict(m.Data, "body", &b); err != nil {
			t.Fatalf("a gathered message the rules service would refuse: %v", err)
		}
		if n := m.Header.Get(mesh.HeaderCount); n != fmt.Sprint(len(b.Events)) {
			t.Fatalf("message %d: %s events counted, %d held", seq, n, len(b.Events))
		}
		out = append(out, b.Events)
	}
	return out
}

// storedIDs counts the events stored per event id.
func storedIDs(msgs [][]event.Event) map[string]int {
	n := map[string]int{}
	for _, evs := range msgs {
		for _, ev := range evs {
			n[ev.EventID]++
		}
	}
	return n
}

type oneAnswer struct {
	status int
	body   ingest.Accepted
}

// postAll posts each body to the edge at once, from one goroutine each,
// with the headers given (name, value, ...), and returns the answers in
// order.
func postAll(t *testing.T, urls []string, bodies []string, hdr ...string) []oneAnswer {
	t.Helper()
	out := make([]oneAnswer, len(bodies))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, b := range bodies {
		wg.Go(func() {
			<-start
			a, err := request(http.MethodPost, urls[i%len(urls)]+"/v1/sync/", "application/json", b, hdr...)
			if err != nil {
				t.Error(err)
				return
			}
			out[i].status = a.status
			_ = json.Unmarshal(a.raw, &out[i].body)
		})
	}
	close(start)
	wg.Wait()
	return out
}

func single(record, eventID string) string {
	if eventID == "" {
		return fmt.Sprintf(`{"record_id":%q,"operation":"update","data":{"email":%q}}`, record, record+"@example.com")
	}
	return fmt.Sprintf(`{"record_id":%q,"event_id":%q,"operation":"update","data":{"email":%q}}`, record, eventID, record+"@example.com")
}

// TestGatherSharesMessages: concurrent single events are stored together,
// fewer messages than events, each event once and as sent, each request
// answered accepted with its own status URL.
func TestGatherSharesMessages(t *testing.T) {
	e := edgeWith(t, "fast", func(c *ingest.Config) { c.GatherWait = 20 * time.Millisecond })
	ts := e.server(t)
	const n = 64
	bodies := make([]string, n)
	for i := range bodies {
		bodies[i] = single(fmt.Sprintf("g-%d", i), fmt.Sprintf("e-%d", i))
	}
	answers := postAll(t, []string{ts.URL}, bodies)
	for i, a := range answers {
		if a.status != http.StatusAccepted || a.body.Duplicate || a.body.EventID != fmt.Sprintf("e-%d", i) ||
			!strings.HasPrefix(a.body.StatusURL, fmt.Sprintf("/v1/sync/status/g-%d?accepted=", i)) {
			t.Fatalf("request %d: %d %+v", i, a.status, a.body)
		}
	}
	msgs := gathered(t, e.js)
	if len(msgs) >= n {
		t.Fatalf("%d events in %d messages: nothing shared", n, len(msgs))
	}
	ids := storedIDs(msgs)
	for i := range n {
		if got := ids[fmt.Sprintf("e-%d", i)]; got != 1 {
			t.Fatalf("event e-%d stored %d times", i, got)
		}
	}
	lim := event.DefaultLimits([]string{"hubspot"})
	for _, evs := range msgs {
		for _, ev := range evs {
			var i int
			_, _ = fmt.Sscanf(ev.EventID, "e-%d", &i)
			sameMeaning(t, mustValid(t, []byte(bodies[i]), "body", lim), []byte(bodies[i]), ev, "")
		}
	}
	t.Logf("%d single events in %d messages", n, len(msgs))
}

// TestGatherDedupes: an event id is stored once within the duplicate
// window, whether its repeats come in one gathered message, in later ones,
// on another edge at the same moment, or on an edge started since; every
// repeat is answered duplicate.
func TestGatherDedupes(t *testing.T) {
	e := edgeWith(t, "fast", func(c *ingest.Config) { c.GatherWait = 5 * time.Millisecond })
	a := e.server(t).URL
	b := httptest.NewServer(e.checked(t, e.replica(t)))
	t.Cleanup(b.Close)

	// One id ten times at once, on one edge.
	same := make([]string, 10)
	for i := range same {
		same[i] = single("d-1", "dup-1")
	}
	answers := postAll(t, []string{a}, same)
	if fresh := countFresh(t, answers); fresh != 1 {
		t.Fatalf("one id sent 10 times at once: %d answered not duplicate", fresh)
	}
	// The same id again, on both edges, and with an Idempotency-Key.
	for _, url := range []string{a, b.URL} {
		ans := postAll(t, []string{url}, []string{single("d-1", "dup-1")})
		if ans[0].status != http.StatusAccepted || !ans[0].body.Duplicate {
			t.Fatalf("a repeat on %s: %d %+v", url, ans[0].status, ans[0].body)
		}
	}
	if ans := postAll(t, []string{b.URL}, []string{single("d-1", "")}, "Idempotency-Key", "dup-1"); !ans[0].body.Duplicate {
		t.Fatalf("a repeat by Idempotency-Key: %+v", ans[0].body)
	}

	// Fifty ids, each sent to both edges at the same moment.
	var race []string
	for i := range 50 {
		race = append(race, single(fmt.Sprintf("r-%d", i), fmt.Sprintf("race-%d", i)), single(fmt.Sprintf("r-%d", i), fmt.Sprintf("race-%d", i)))
	}
	answers = postAll(t, []string{a, b.URL}, race)
	for i := 0; i < len(answers); i += 2 {
		if fresh := countFresh(t, answers[i:i+2]); fresh != 1 {
			t.Fatalf("race-%d sent to both edges: %d answered not duplicate", i/2, fresh)
		}
	}

	// An edge that starts now reads the window back.
	c := httptest.NewServer(e.checked(t, e.replica(t)))
	t.Cleanup(c.Close)
	if ans := postAll(t, []string{c.URL}, []string{single("r-7", "race-7")}); !ans[0].body.Duplicate {
		t.Fatalf("a repeat on an edge started since: %+v", ans[0].body)
	}

	// Events without an id are never duplicates of each other.
	ans := postAll(t, []string{a, b.URL}, []string{single("n-1", ""), single("n-1", "")})
	if countFresh(t, ans) != 2 || ans[0].body.EventID == ans[1].body.EventID {
		t.Fatalf("two events without an id: %+v", ans)
	}

	ids := storedIDs(gathered(t, e.js))
	for id, n := range ids {
		if n != 1 {
			t.Fatalf("event %s stored %d times", id, n)
		}
	}
	if len(ids) != 1+50+2 {
		t.Fatalf("%d events stored, want %d", len(ids), 1+50+2)
	}
}

// countFresh counts the answers accepted as not duplicate, failing on any
// answer that is not a 202.
func countFresh(t *testing.T, answers []oneAnswer) int {
	t.Helper()
	n := 0
	for _, a := range answers {
		if a.status != http.StatusAccepted {
			t.Fatalf("answer %d %+v", a.status, a.body)
		}
		if !a.body.Duplicate {
			n++
		}
	}
	return n
}

// TestGatherErrorsStayTheirOwn: a bad event among concurrent good ones is
// refused alone; its neighbours are stored.
func TestGatherErrorsStayTheirOwn(t *testing.T) {
	e := edgeWith(t, "fast", func(c *ingest.Config) { c.GatherWait = 20 * time.Millisecond })
	ts := e.server(t)
	var bodies []string
	for i := range 30 {
		if i%3 == 1 {
			bodies = append(bodies, fmt.Sprintf(`{"record_id":"bad %d","operation":"update"}`, i))
			continue
		}
		bodies = append(bodies, single(fmt.Sprintf("ok-%d", i), fmt.Sprintf("ok-%d", i)))
	}
	answers := postAll(t, []string{ts.URL}, bodies)
	for i, a := range answers {
		want := http.StatusAccepted
		if i%3 == 1 {
			want = http.StatusUnprocessableEntity
		}
		if a.status != want {
			t.Fatalf("request %d: %d, want %d", i, a.status, want)
		}
	}
	if ids := storedIDs(gathered(t, e.js)); len(ids) != 20 {
		t.Fatalf("%d events stored, want the 20 good ones", len(ids))
	}
}

// TestGatherStopAnswersNothingAccepted: events gathered but not yet
// published when the edge stops (as in a crash between gathering and
// publishing) are answered 503, and are not stored: sent again, they are
// new, not duplicates.
func TestGatherStopAnswersNothingAccepted(t *testing.T) {
	e := edgeWith(t, "fast", nil)
	metrics, err := telemetry.NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.cfg
	cfg.GatherWait = time.Hour // under load, every round waits to be full
	deps := e.deps
	deps.Meter = metrics.Meter("ingest")
	svc, err := ingest.New(cfg, deps, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(e.checked(t, svc))
	t.Cleanup(ts.Close)
	t.Cleanup(svc.Close)

	// An idle edge publishes at once.
	if ans := postAll(t, []string{ts.URL}, []string{single("s-0", "stop-0")}); ans[0].status != http.StatusAccepted {
		t.Fatalf("first event: %d", ans[0].status)
	}
	// The next ones wait for their round to fill up.
	bodies := []string{single("s-1", "stop-1"), single("s-2", "stop-2"), single("s-3", "stop-3")}
	done := make(chan []oneAnswer)
	go func() { done <- postAll(t, []string{ts.URL}, bodies) }()
	natstest.Eventually(t, 10*time.Second, "3 requests waiting for their message", func() bool {
		return gauge(t, metrics, "recordsync_ingest_gather_waiting") == 3
	})
	svc.Close()
	for i, a := range <-done {
		if a.status != http.StatusServiceUnavailable {
			t.Fatalf("request %d after the stop: %d %+v", i, a.status, a.body)
		}
	}
	if msgs := gathered(t, e.js); len(msgs) != 1 {
		t.Fatalf("%d messages stored, want the first only", len(msgs))
	}
	// Sent again to another edge, they are new.
	other := httptest.NewServer(e.checked(t, e.replica(t)))
	t.Cleanup(other.Close)
	if fresh := countFresh(t, postAll(t, []string{other.URL}, bodies)); fresh != 3 {
		t.Fatalf("sent again: %d of 3 new", fresh)
	}
}

// gauge reads a metric's value from the edge's /metrics text.
func gauge(t *testing.T, m *telemetry.Metrics, name string) float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
			var v float64
			fields := strings.Fields(line)
			_, _ = fmt.Sscan(fields[len(fields)-1], &v)
			return v
		}
	}
	return -1
}

package app_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/app"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/status"
)

func TestRecordEndToEnd(t *testing.T) {
	s := startDev(t)
	r := s.call("POST", "/v1/sync/", syncKey, contact("c-123", "Ada@Example.com", map[string]any{"first_name": "Ada", "last_name": "Lovelace"}))
	if r.Status != http.StatusAccepted {
		t.Fatalf("POST /v1/sync/: %d %s", r.Status, r.Raw)
	}
	if r.Body["status"] != "accepted" || r.Body["record_id"] != "c-123" || r.Body["duplicate"] != false ||
		!strings.HasPrefix(fmt.Sprint(r.Body["status_url"]), "/v1/sync/status/c-123?accepted=") || r.Body["event_id"] == "" {
		t.Fatalf("unexpected answer %s", r.Raw)
	}
	// The status URL reads accepted (or later) from the moment of the 202.
	if now := s.call("GET", r.Body["status_url"].(string), syncKey, nil); now.Status != http.StatusOK {
		t.Fatalf("status URL right after the 202: %d %s", now.Status, now.Raw)
	}
	st := s.waitState("c-123", "hubspot", status.StateSynced)
	if st.CRMID == nil || st.Attempts != 1 || st.LastError != nil {
		t.Fatalf("synced status incomplete: %+v", st)
	}

	got := s.call("GET", "/v1/sync/status/c-123", syncKey, nil)
	if got.Status != http.StatusOK {
		t.Fatalf("GET status: %d %s", got.Status, got.Raw)
	}
	hs := got.Body["targets"].(map[string]any)["hubspot"].(map[string]any)
	var states []string
	for _, h := range hs["history"].([]any) {
		states = append(states, h.(map[string]any)["state"].(string))
	}
	if strings.Join(states, ",") != "queued,synced" || hs["event_id"] != r.Body["event_id"] {
		t.Fatalf("status: %s", got.Raw)
	}

	// The contact reads back through the emulated HubSpot API.
	c := s.hubspot("GET", "/crm/v3/objects/contacts/ada@example.com?idProperty=email", nil)
	props, _ := c.Body["properties"].(map[string]any)
	if c.Status != http.StatusOK || props["firstname"] != "Ada" || props["lastname"] != "Lovelace" || c.Body["id"] != *st.CRMID {
		t.Fatalf("contact in HubSpot: %d %s", c.Status, c.Raw)
	}

	// An update, then a delete, of the same record.
	upd := map[string]any{"record_id": "c-123", "operation": "update", "data": map[string]any{"email": "ada@example.com", "title": "Countess"}}
	if r := s.call("POST", "/v1/sync/", syncKey, upd); r.Status != http.StatusAccepted {
		t.Fatalf("update: %d %s", r.Status, r.Raw)
	}
	s.waitStateOp("c-123", "update")
	c = s.hubspot("GET", "/crm/v3/objects/contacts/ada@example.com?idProperty=email&properties=firstname,jobtitle", nil)
	if props := c.Body["properties"].(map[string]any); props["jobtitle"] != "Countess" || props["firstname"] != "Ada" {
		t.Fatalf("updated contact: %s", c.Raw)
	}
	metrics := string(s.call("GET", "/metrics", "", nil).Raw)
	for _, want := range []string{
		`recordsync_http_requests_total{operation="sync-event",status="202"}`,
		`recordsync_events_accepted_total{endpoint="single"} 2`,
		`recordsync_rule_decisions_total{action="pass",rule_id="",target="hubspot"}`,
		`recordsync_push_results_total{class="ok",code="",target="hubspot"}`,
		`recordsync_push_batch_size_bucket{target="hubspot",le="1"}`,
		`recordsync_backlog{target="hubspot"}`,
		`recordsync_status_writes_total{result="ok"}`,
		`recordsync_config_not_applied{kind="rules",service="rules"} 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	del := map[string]any{"record_id": "c-123", "operation": "delete", "data": map[string]any{"email": "ada@example.com"}}
	if r := s.call("POST", "/v1/sync/", syncKey, del); r.Status != http.StatusAccepted {
		t.Fatalf("delete: %d %s", r.Status, r.Raw)
	}
	s.waitStateOp("c-123", "delete")
	if c := s.hubspot("GET", "/crm/v3/objects/contacts/ada@example.com?idProperty=email", nil); c.Status != http.StatusNotFound {
		t.Fatalf("deleted contact still there: %d %s", c.Status, c.Raw)
	}
}

// waitStateOp waits until the record's hubspot status is synced for an
// event of operation op.
func (s *devStack) waitStateOp(recordID, op string) {
	s.t.Helper()
	s.waitFor(recordID, "hubspot", op+" synced", func(t *status.Target) bool {
		return t.Operation == op && t.State == status.StateSynced
	})
}

func TestDuplicateEventProcessedOnce(t *testing.T) {
	s := startDev(t)
	ev := contact("c-dup", "dup@example.com", nil)
	ev["event_id"] = "e-dup-1"
	first := s.call("POST", "/v1/sync/", syncKey, ev)
	second := s.call("POST", "/v1/sync/", syncKey, ev)
	if first.Status != 202 || second.Status != 202 || first.Body["duplicate"] != false || second.Body["duplicate"] != true {
		t.Fatalf("first %d %s, second %d %s", first.Status, first.Raw, second.Status, second.Raw)
	}
	// The same event again, by the Idempotency-Key header.
	delete(ev, "event_id")
	third := s.call("POST", "/v1/sync/", syncKey, ev, "Idempotency-Key", "e-dup-1")
	if third.Status != 202 || third.Body["duplicate"] != true || third.Body["event_id"] != "e-dup-1" {
		t.Fatalf("by header: %d %s", third.Status, third.Raw)
	}
	st := s.waitState("c-dup", "hubspot", status.StateSynced)
	if len(st.History) != 2 {
		t.Fatalf("history %+v: want one queued and one synced", st.History)
	}
	if in, gathered := s.lastSeq(mesh.StreamIn), s.lastSeq(mesh.StreamGather); in != 0 || gathered != 1 {
		t.Fatalf("SYNC_IN stored %d messages and SYNC_GATHER %d, want 0 and 1", in, gathered)
	}
	stats := s.sim("GET", "/stats", nil)
	if stats.Body["records_stored"] != 1.0 || stats.Body["requests_by_status"].(map[string]any)["200"] != 1.0 {
		t.Fatalf("emulator saw %s, want one upsert", stats.Raw)
	}
}

func TestBatch(t *testing.T) {
	s := startDev(t)
	before := s.lastSeq(mesh.StreamIn)
	body := map[string]any{"events": []any{
		contact("b-1", "b1@example.com", nil),
		map[string]any{"record_id": "b 2", "operation": "upsert"},
		contact("b-3", "b3@example.com", nil),
	}}
	r := s.call("POST", "/v1/sync/batch", syncKey, body)
	if r.Status != http.StatusMultiStatus {
		t.Fatalf("batch: %d %s", r.Status, r.Raw)
	}
	results := r.Body["results"].([]any)
	if len(results) != 3 {
		t.Fatalf("results: %s", r.Raw)
	}
	bad := results[1].(map[string]any)
	if bad["status"] != "error" || results[0].(map[string]any)["status"] != "accepted" || results[2].(map[string]any)["status"] != "accepted" {
		t.Fatalf("results: %s", r.Raw)
	}
	locs := locations(bad["error"].(map[string]any))
	for _, want := range []string{"body.events[1].record_id", "body.events[1].operation"} {
		if !strings.Contains(locs, want) {
			t.Errorf("batch item error names %s, not %s", locs, want)
		}
	}
	// The accepted events travelled as one message.
	if got := s.lastSeq(mesh.StreamIn) - before; got != 1 {
		t.Fatalf("batch stored as %d messages, want 1", got)
	}
	s.waitState("b-1", "hubspot", status.StateSynced)
	s.waitState("b-3", "hubspot", status.StateSynced)

	all := s.call("POST", "/v1/sync/batch", syncKey, map[string]any{"events": []any{contact("b-4", "b4@example.com", nil)}})
	if all.Status != http.StatusAccepted {
		t.Fatalf("all-valid batch: %d %s", all.Status, all.Raw)
	}
	again := s.call("POST", "/v1/sync/batch", syncKey, map[string]any{"events": []any{
		map[string]any{"event_id": "bx-1", "record_id": "b-5", "operation": "create", "data": map[string]any{"email": "b5@example.com"}}}})
	dup := s.call("POST", "/v1/sync/batch", syncKey, map[string]any{"events": []any{
		map[string]any{"event_id": "bx-1", "record_id": "b-5", "operation": "create", "data": map[string]any{"email": "b5@example.com"}}}})
	if again.Status != 202 || dup.Status != 202 || dup.Body["results"].([]any)[0].(map[string]any)["duplicate"] != true {
		t.Fatalf("resent batch: %s", dup.Raw)
	}
}

func locations(problem map[string]any) string {
	var out []string
	errs, _ := problem["errors"].([]any)
	for _, e := range errs {
		out = append(out, fmt.Sprint(e.(map[string]any)["location"]))
	}
	return strings.Join(out, " ")
}

func TestRulesDecideStatus(t *testing.T) {
	s := startDev(t)
	s.call("POST", "/v1/sync/", syncKey, contact("r-skip", "skip@example.com", map[string]any{"do_not_sync": true}))
	st := s.waitState("r-skip", "hubspot", status.StateSkippedByRule)
	if st.RuleID == nil || *st.RuleID != "do-not-sync" {
		t.Fatalf("skipped status: %+v", st)
	}
	s.call("POST", "/v1/sync/", syncKey, map[string]any{"record_id": "r-noemail", "operation": "create", "data": map[string]any{"first_name": "X"}})
	st = s.waitState("r-noemail", "hubspot", status.StateFailed)
	if st.RuleID == nil || *st.RuleID != "require-email" || st.LastError == nil || st.LastError.Class != "permanent" || st.LastError.DeadLettered {
		t.Fatalf("rejected status: %+v %+v", st, st.LastError)
	}
	if r := s.call("POST", "/v1/sync/retry/r-noemail", syncKey, nil); r.Status != http.StatusConflict {
		t.Fatalf("retry of a rule rejection: %d %s", r.Status, r.Raw)
	}
}

func TestRulesReplaceWithRevision(t *testing.T) {
	s := startDev(t)
	got := s.call("GET", "/v1/sync/rules", adminKey, nil)
	if got.Status != 200 || len(got.Body["rules"].([]any)) != 2 {
		t.Fatalf("GET rules: %d %s", got.Status, got.Raw)
	}
	rev := got.Body["revision"].(float64)
	newSet := map[string]any{"rules": []any{map[string]any{"id": "need-name", "kind": "require", "fields": []string{"email", "last_name"}}}}
	if r := s.call("POST", "/v1/sync/rules", adminKey, newSet); r.Status != http.StatusPreconditionRequired {
		t.Fatalf("without revision: %d %s", r.Status, r.Raw)
	}
	ok := s.call("POST", "/v1/sync/rules", adminKey, newSet, "If-Match", fmt.Sprintf(`"%d"`, int(rev)))
	if ok.Status != 200 || ok.Body["revision"].(float64) <= rev {
		t.Fatalf("replace: %d %s", ok.Status, ok.Raw)
	}
	stale := s.call("POST", "/v1/sync/rules", adminKey, map[string]any{"revision": rev, "rules": []any{}})
	if stale.Status != http.StatusConflict {
		t.Fatalf("stale revision: %d %s", stale.Status, stale.Raw)
	}
	// The next event follows the new set.
	s.call("POST", "/v1/sync/", syncKey, contact("r-new", "new@example.com", nil))
	st := s.waitState("r-new", "hubspot", status.StateFailed)
	if st.RuleID == nil || *st.RuleID != "need-name" {
		t.Fatalf("new rule not applied: %+v", st)
	}
}

func TestDirectPublishOnSyncIn(t *testing.T) {
	s := startDev(t)
	ctx := context.Background()
	if _, err := s.js.Publish(ctx, mesh.SubjectIn, []byte(`{"record_id":"n-1","operation":"create","data":{"email":"n1@example.com"}}`)); err != nil {
		t.Fatal(err)
	}
	s.waitState("n-1", "hubspot", status.StateSynced)

	cons, err := s.js.OrderedConsumer(ctx, mesh.StreamRejected, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	// What the HTTP edge refuses, the rules service refuses on sync.in,
	// naming the same field.
	for _, tt := range []struct{ subject, body, field string }{
		{mesh.SubjectIn, `{"record_id":"n 2","operation":"create"}`, "body.record_id"},
		{mesh.SubjectIn, `not json`, "body"},
		{mesh.SubjectIn, "{\"record_id\":\"n-3\",\"operation\":\"create\",\"data\":{\"email\":\"\xff\xfe\"}}", "body.data.email"},
		{mesh.SubjectIn, "{\"record_id\":\"n-4\",\"operation\":\"create\",\"data\":{\"email\":\"a@b.co\",\"a\xffb\":\"x\"}}", "body.data"},
		{mesh.SubjectIn, `{"record_id":"n-5","operation":"create","data":{"email":"a@b.co","a\u0000b":"x"}}`, "body.data"},
		{mesh.SubjectIn, `{"record_id":"n-6","record_id":"n-7","operation":"delete"}`, "body.record_id"},
		{mesh.SubjectIn, `{"record_id":"n-8","operation":"delete","occurred_at":"9999-12-31T00:00:00Z"}`, "body.occurred_at"},
		{mesh.SubjectIn, `{"record_id":"n-9","operation":"delete","occurred_at":"0001-01-01T00:00:00Z"}`, "body.occurred_at"},
		{mesh.SubjectIn, `{"record_id":"..","operation":"delete"}`, "body.record_id"},
		{mesh.SubjectIn, `{"record_id":"n-10","operation":"create","data":{"n":1e400}}`, "body.data.n"},
		{mesh.SubjectInBatch, `{"events":[{"record_id":"n-11","operation":"delete","occurred_at":"9999-12-31T00:00:00Z"}]}`, "body.events[0].occurred_at"},
	} {
		if _, err := s.js.Publish(ctx, tt.subject, []byte(tt.body)); err != nil {
			t.Fatal(err)
		}
		m, err := cons.Next(jetstream.FetchMaxWait(30 * time.Second))
		if err != nil {
			t.Fatalf("rejected message not kept: %v", err)
		}
		reason := m.Headers().Get(mesh.HeaderReason)
		if string(m.Data()) != tt.body || !strings.Contains(reason, tt.field) {
			t.Fatalf("rejected %q with reason %q, want %s named", m.Data(), reason, tt.field)
		}
	}
}

func TestManualRetryAfterDeadLetter(t *testing.T) {
	s := startDev(t)
	if r := s.call("POST", "/v1/sync/config-override", adminKey, map[string]any{"target": "hubspot", "max_attempts": 1}); r.Status != 200 {
		t.Fatalf("override: %d %s", r.Status, r.Raw)
	}
	s.sim("PUT", "/faults", map[string]any{"down": true})
	s.call("POST", "/v1/sync/", syncKey, contact("m-1", "m1@example.com", nil))
	st := s.waitState("m-1", "hubspot", status.StateFailed)
	if st.LastError == nil || !st.LastError.DeadLettered || st.LastError.Class != "transient" {
		t.Fatalf("failed status: %+v", st.LastError)
	}
	s.sim("PUT", "/faults", map[string]any{})
	r := s.call("POST", "/v1/sync/retry/m-1", syncKey, nil)
	if r.Status != http.StatusAccepted {
		t.Fatalf("retry: %d %s", r.Status, r.Raw)
	}
	st = s.waitState("m-1", "hubspot", status.StateSynced)
	if st.Generation != 1 || st.LastError != nil {
		t.Fatalf("after retry: %+v", st)
	}
	if r := s.call("POST", "/v1/sync/retry/m-1", syncKey, nil); r.Status != http.StatusConflict {
		t.Fatalf("retry of a synced record: %d %s", r.Status, r.Raw)
	}
}

func TestBacklogBound(t *testing.T) {
	s := startDev(t)
	if r := s.call("POST", "/v1/sync/config-override", adminKey, map[string]any{"target": "hubspot", "enabled": false, "max_backlog": 2}); r.Status != 200 {
		t.Fatalf("override: %d %s", r.Status, r.Raw)
	}
	// The backlog is refreshed once a second; within a bounded number of
	// requests past the bound, ingest must start refusing.
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; ; i++ {
		r := s.call("POST", "/v1/sync/", syncKey, contact(fmt.Sprintf("bl-%d", i), fmt.Sprintf("bl%d@example.com", i), nil))
		if r.Status == http.StatusServiceUnavailable {
			if r.Header.Get("Retry-After") == "" || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/problem+json") {
				t.Fatalf("503 without Retry-After or problem body: %v %s", r.Header, r.Raw)
			}
			break
		}
		if r.Status != http.StatusAccepted || time.Now().After(deadline) {
			t.Fatalf("request %d: %d %s", i, r.Status, r.Raw)
		}
		waitTick(100 * time.Millisecond)
	}
	// Enabled again, the backlog drains.
	s.call("POST", "/v1/sync/config-override", adminKey, map[string]any{"target": "hubspot", "enabled": true})
	s.waitState("bl-0", "hubspot", status.StateSynced)
}

// waitTick paces a loop of requests; it synchronises nothing.
func waitTick(d time.Duration) { <-time.After(d) }

func TestHealthAndDocs(t *testing.T) {
	s := startDev(t)
	for _, p := range []string{"/healthz", "/readyz", "/openapi.json", "/docs"} {
		if r := s.call("GET", p, "", nil); r.Status != 200 {
			t.Errorf("GET %s: %d %s", p, r.Status, r.Raw)
		}
	}
	spec := s.call("GET", "/openapi.json", "", nil)
	paths := spec.Body["paths"].(map[string]any)
	for _, p := range []string{"/v1/sync/", "/v1/sync/batch", "/v1/sync/status/{record_id}", "/v1/sync/retry/{record_id}",
		"/v1/sync/rules", "/v1/sync/config", "/v1/sync/config-override", "/v1/sync/preview", "/healthz", "/readyz"} {
		if paths[p] == nil {
			t.Errorf("OpenAPI lacks %s", p)
		}
	}
	if spec.Body["openapi"] != "3.1.0" {
		t.Errorf("OpenAPI version %v", spec.Body["openapi"])
	}
	// The sync body is documented with the event's schema, not as binary.
	if !strings.Contains(string(spec.Raw), `"record_id"`) {
		t.Error("OpenAPI does not describe the event body")
	}
}

func TestPreviewEnqueuesNothing(t *testing.T) {
	s := startDev(t)
	before := s.inbound()
	r := s.call("POST", "/v1/sync/preview", syncKey, contact("p-1", "P@Example.com", map[string]any{"first_name": "Pat", "do_not_sync": false}))
	if r.Status != 200 {
		t.Fatalf("preview: %d %s", r.Status, r.Raw)
	}
	hs := r.Body["targets"].(map[string]any)["hubspot"].(map[string]any)
	props := hs["payload"].(map[string]any)["properties"].(map[string]any)
	if hs["decision"].(map[string]any)["action"] != "pass" || hs["identity"] != "p@example.com" || props["firstname"] != "Pat" || props["email"] != "p@example.com" {
		t.Fatalf("preview: %s", r.Raw)
	}
	if s.inbound() != before {
		t.Fatal("preview enqueued something")
	}
	if r := s.call("GET", "/v1/sync/status/p-1", syncKey, nil); r.Status != 404 {
		t.Fatalf("preview recorded a status: %d", r.Status)
	}
}

func TestConfig(t *testing.T) {
	s := startDev(t)
	r := s.call("GET", "/v1/sync/config", adminKey, nil)
	if r.Status != 200 || len(r.Body["targets"].([]any)) == 0 {
		t.Fatalf("config: %d %s", r.Status, r.Raw)
	}
	ok := s.call("POST", "/v1/sync/config-override", adminKey, map[string]any{"target": "hubspot", "batch_size": 50, "flush_interval": "50ms"})
	if ok.Status != 200 || ok.Body["batch_size"] != 50.0 || ok.Body["flush_interval"] != "50ms" || ok.Body["max_attempts"] != 3.0 {
		t.Fatalf("override: %d %s", ok.Status, ok.Raw)
	}
	r = s.call("GET", "/v1/sync/config", adminKey, nil)
	if r.Body["targets"].([]any)[0].(map[string]any)["batch_size"] != 50.0 {
		t.Fatalf("config after override: %s", r.Raw)
	}

	if r := s.call("PUT", "/v1/sync/log-level", adminKey, map[string]any{"level": "debug"}); r.Status != 200 || r.Body["level"] != "debug" {
		t.Fatalf("log level: %d %s", r.Status, r.Raw)
	}
	if r := s.call("GET", "/v1/sync/log-level", adminKey, nil); r.Body["level"] != "debug" {
		t.Fatalf("log level after change: %s", r.Raw)
	}
	if r := s.call("PUT", "/v1/sync/log-level", adminKey, map[string]any{"level": "loud"}); r.Status != 422 || locations(r.Body) != "body.level" {
		t.Fatalf("bad log level: %d %s", r.Status, r.Raw)
	}
	if r := s.call("PUT", "/v1/sync/log-level", syncKey, map[string]any{"level": "info"}); r.Status != 403 {
		t.Fatalf("log level with a sync key: %d", r.Status)
	}
}

// TestStatsAddUp: after a run with a rule skip, a rule rejection, a
// dead letter, updates that supersede and a retry, the counts per state
// and the superseded events add up to the events accepted.
func TestStatsAddUp(t *testing.T) {
	s := startDev(t)
	if r := s.call("POST", "/v1/sync/config-override", adminKey, map[string]any{"target": "hubspot", "max_attempts": 1}); r.Status != 200 {
		t.Fatalf("override: %d %s", r.Status, r.Raw)
	}
	var events []any
	for i := range 40 {
		events = append(events, contact(fmt.Sprintf("st-%d", i), fmt.Sprintf("st%d@example.com", i), nil))
	}
	events = append(events,
		contact("st-skip", "skip@example.com", map[string]any{"do_not_sync": true}),
		map[string]any{"record_id": "st-noemail", "operation": "create", "data": map[string]any{"first_name": "N"}},
		contact("st-bad", "not-an-email", nil),
	)
	if r := s.call("POST", "/v1/sync/batch", syncKey, map[string]any{"events": events}); r.Status != 202 {
		t.Fatalf("batch: %d %s", r.Status, r.Raw)
	}
	for i := range 5 {
		upd := map[string]any{"record_id": fmt.Sprintf("st-%d", i), "operation": "update", "data": map[string]any{"email": fmt.Sprintf("st%d@example.com", i), "title": "v2"}}
		if r := s.call("POST", "/v1/sync/", syncKey, upd); r.Status != 202 {
			t.Fatalf("update: %d %s", r.Status, r.Raw)
		}
	}
	for i := range 40 {
		s.waitState(fmt.Sprintf("st-%d", i), "hubspot", status.StateSynced)
	}
	s.waitState("st-bad", "hubspot", status.StateFailed)
	// Stats are counted after the writes they follow; wait for them to
	// settle at the expected totals.
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := s.call("GET", "/v1/sync/stats", syncKey, nil)
		hs := r.Body["targets"].(map[string]any)["hubspot"].(map[string]any)
		states := hs["states"].(map[string]any)
		accepted, superseded, inFlight := hs["accepted"].(float64), hs["superseded"].(float64), hs["in_flight"].(float64)
		sum := superseded + inFlight
		for _, n := range states {
			sum += n.(float64)
		}
		if sum != accepted {
			t.Fatalf("stats do not add up: %s", r.Raw)
		}
		if accepted == 48 && inFlight == 0 && states["synced"] == 40.0 && states["failed"] == 2.0 && states["skipped_by_rule"] == 1.0 {
			if superseded != 5 {
				t.Fatalf("superseded %v, want 5: %s", superseded, r.Raw)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats never settled: %s", r.Raw)
		}
		waitTick(50 * time.Millisecond)
	}
}

// TestThreeTargets sends one record to HubSpot, Salesforce and Outreach:
// each CRM gets it in its own shape (HubSpot upserted by email, Salesforce
// by external id through the JWT bearer flow, Outreach looked up then
// created through OAuth refresh), and its status is per target.
func TestThreeTargets(t *testing.T) {
	s := startDev(t)
	ev := contact("tt-1", "tt1@example.com", map[string]any{"first_name": "Grace", "last_name": "Hopper"})
	ev["targets"] = []string{"hubspot", "salesforce", "outreach"}
	if r := s.call("POST", "/v1/sync/", syncKey, ev); r.Status != 202 {
		t.Fatalf("POST: %d %s", r.Status, r.Raw)
	}
	hs := s.waitState("tt-1", "hubspot", status.StateSynced)
	sf := s.waitState("tt-1", "salesforce", status.StateSynced)
	if hs.CRMID == nil || sf.CRMID == nil || *hs.CRMID == *sf.CRMID {
		t.Fatalf("CRM ids: hubspot %v, salesforce %v", hs.CRMID, sf.CRMID)
	}
	sfRead := s.salesforce("GET", "/services/data/v60.0/sobjects/Contact/RecordSync_Id__c/tt-1")
	if sfRead.Status != 200 || sfRead.Body["LastName"] != "Hopper" || sfRead.Body["Email"] != "tt1@example.com" || sfRead.Body["Id"] != *sf.CRMID {
		t.Fatalf("contact in Salesforce: %d %s", sfRead.Status, sfRead.Raw)
	}
	or := s.waitState("tt-1", "outreach", status.StateSynced)
	p := s.outreach("GET", "/api/v2/prospects?filter[emails]=tt1@example.com")
	data, _ := p.Body["data"].([]any)
	if p.Status != 200 || len(data) != 1 || fmt.Sprint(data[0].(map[string]any)["id"]) != *or.CRMID ||
		data[0].(map[string]any)["attributes"].(map[string]any)["lastName"] != "Hopper" {
		t.Fatalf("prospect in Outreach: %d %s", p.Status, p.Raw)
	}

	// An update of one field and a delete by record id alone: HubSpot and
	// Outreach match by email, which they do not carry, so the CRM ids the
	// create got are used.
	upd := map[string]any{"record_id": "tt-1", "operation": "update", "targets": []string{"hubspot", "salesforce", "outreach"},
		"data": map[string]any{"title": "CTO"}}
	pv := s.call("POST", "/v1/sync/preview", syncKey, upd)
	if id := pv.Body["targets"].(map[string]any)["hubspot"].(map[string]any)["identity"]; id != "crm-id:"+*hs.CRMID {
		t.Fatalf("preview of the update: %s", pv.Raw)
	}
	if r := s.call("POST", "/v1/sync/", syncKey, upd); r.Status != 202 {
		t.Fatalf("update: %d %s", r.Status, r.Raw)
	}
	synced := func(op string) {
		t.Helper()
		for _, tg := range []string{"hubspot", "salesforce", "outreach"} {
			st := s.waitFor("tt-1", tg, op, func(t *status.Target) bool { return t.Operation == op && t.State.Final() })
			if st.State != status.StateSynced {
				t.Fatalf("%s on %s: %+v %+v", op, tg, st, st.LastError)
			}
		}
	}
	synced("update")
	if r := s.hubspot("GET", "/crm/v3/objects/contacts/"+*hs.CRMID+"?properties=jobtitle,firstname,lastname,email", nil); r.Body["properties"].(map[string]any)["jobtitle"] != "CTO" ||
		r.Body["properties"].(map[string]any)["email"] != "tt1@example.com" {
		t.Fatalf("contact in HubSpot after the update: %s", r.Raw)
	}
	if r := s.salesforce("GET", "/services/data/v60.0/sobjects/Contact/RecordSync_Id__c/tt-1"); r.Body["Title"] != "CTO" || r.Body["LastName"] != "Hopper" {
		t.Fatalf("contact in Salesforce after the update: %s", r.Raw)
	}
	if r := s.outreach("GET", "/api/v2/prospects/"+*or.CRMID); r.Body["data"].(map[string]any)["attributes"].(map[string]any)["title"] != "CTO" {
		t.Fatalf("prospect in Outreach after the update: %s", r.Raw)
	}

	del := map[string]any{"record_id": "tt-1", "operation": "delete", "targets": []string{"hubspot", "salesforce", "outreach"}}
	if r := s.call("POST", "/v1/sync/", syncKey, del); r.Status != 202 {
		t.Fatalf("DELETE: %d %s", r.Status, r.Raw)
	}
	synced("delete")
	if r := s.hubspot("GET", "/crm/v3/objects/contacts/"+*hs.CRMID, nil); r.Status != 404 {
		t.Fatalf("contact still in HubSpot: %d %s", r.Status, r.Raw)
	}
	if st := call(t, "GET", s.info.CRMSimURL+"/_sim/salesforce/stats", "", nil); st.Body["records_stored"] != 0.0 {
		t.Fatalf("contact still in Salesforce: %s", st.Raw)
	}
	if r := s.outreach("GET", "/api/v2/prospects/"+*or.CRMID); r.Status != 404 {
		t.Fatalf("prospect still in Outreach: %d %s", r.Status, r.Raw)
	}
}

// TestOneCRMDownDoesNotSlowTheOthers: with HubSpot down, records for
// Salesforce and Outreach keep syncing; HubSpot's sync once it is back.
func TestOneCRMDownDoesNotSlowTheOthers(t *testing.T) {
	// HubSpot's circuit opens while it is down; it probes again soon here.
	s := startDev(t, func(e *app.Env) { e.CircuitOpenFor = 300 * time.Millisecond })
	if r := s.call("POST", "/v1/sync/config-override", adminKey, map[string]any{"target": "hubspot", "max_attempts": 100, "backoff": []string{"200ms"}}); r.Status != 200 {
		t.Fatalf("override: %d %s", r.Status, r.Raw)
	}
	if r := s.call("POST", "/v1/sync/config-override", adminKey, map[string]any{"target": "outreach", "rate_limit_per_minute": 6000}); r.Status != 200 {
		t.Fatalf("override: %d %s", r.Status, r.Raw)
	}
	s.sim("PUT", "/faults", map[string]any{"down": true})
	const n = 20
	var events []any
	for i := range n {
		ev := contact(fmt.Sprintf("dn-%d", i), fmt.Sprintf("dn%d@example.com", i), map[string]any{"last_name": "L"})
		ev["targets"] = []string{"hubspot", "salesforce", "outreach"}
		events = append(events, ev)
	}
	if r := s.call("POST", "/v1/sync/batch", syncKey, map[string]any{"events": events}); r.Status != 202 {
		t.Fatalf("batch: %d %s", r.Status, r.Raw)
	}
	for i := range n {
		s.waitState(fmt.Sprintf("dn-%d", i), "salesforce", status.StateSynced)
		s.waitState(fmt.Sprintf("dn-%d", i), "outreach", status.StateSynced)
	}
	if r := s.call("GET", "/v1/sync/status/dn-0", syncKey, nil); strings.Contains(string(r.Raw), `"hubspot":{"state":"synced"`) {
		t.Fatalf("hubspot synced while down: %s", r.Raw)
	}
	s.sim("PUT", "/faults", map[string]any{})
	for i := range n {
		s.waitState(fmt.Sprintf("dn-%d", i), "hubspot", status.StateSynced)
	}
}

package app_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/recordsync/record-sync/app"
	"github.com/recordsync/record-sync/shared/status"
)

// TestBulkReplayByCode dead-letters records with two different codes, then
// replays only one code: through the API (dry run, then for real) and
// through `recordsync dlq`.
func TestBulkReplayByCode(t *testing.T) {
	s := startDev(t)
	if r := s.call("POST", "/v1/sync/config-override", adminKey, map[string]any{"target": "hubspot", "max_attempts": 1}); r.Status != 200 {
		t.Fatalf("override: %d %s", r.Status, r.Raw)
	}
	s.sim("PUT", "/faults", map[string]any{"partial_batch_error": 1})
	var events []any
	for i := range 6 {
		events = append(events, contact(fmt.Sprintf("dl-%d", i), fmt.Sprintf("dl%d@example.com", i), nil))
	}
	events = append(events, contact("dl-bad", "not-an-email", nil))
	if r := s.call("POST", "/v1/sync/batch", syncKey, map[string]any{"events": events}); r.Status != 202 {
		t.Fatalf("batch: %d %s", r.Status, r.Raw)
	}
	for i := range 6 {
		st := s.waitState(fmt.Sprintf("dl-%d", i), "hubspot", status.StateFailed)
		if st.LastError.Code != "INTERNAL_ERROR" || !st.LastError.DeadLettered {
			t.Fatalf("dl-%d: %+v", i, st.LastError)
		}
	}
	if st := s.waitState("dl-bad", "hubspot", status.StateFailed); st.LastError.Code != "INVALID_EMAIL" || !strings.Contains(st.LastError.Excerpt, "not-an-email") {
		t.Fatalf("dl-bad: %+v", st.LastError)
	}
	s.sim("PUT", "/faults", map[string]any{})

	list := s.call("GET", "/v1/sync/dlq?target=hubspot&code=INTERNAL_ERROR", adminKey, nil)
	if list.Status != 200 || len(list.Body["letters"].([]any)) != 6 {
		t.Fatalf("list: %d %s", list.Status, list.Raw)
	}
	// target is optional; since takes a duration as the command does.
	for _, q := range []string{"", "?since=24h", "?since=2000-01-01T00:00:00Z&until=0s"} {
		if all := s.call("GET", "/v1/sync/dlq"+q, adminKey, nil); all.Status != 200 || len(all.Body["letters"].([]any)) != 7 {
			t.Fatalf("list%s: %d %s", q, all.Status, all.Raw)
		}
	}
	dry := s.call("POST", "/v1/sync/dlq/replay", adminKey, map[string]any{"target": "hubspot", "code": "INTERNAL_ERROR", "dry_run": true})
	if dry.Status != 200 || dry.Body["matched"] != 6.0 || dry.Body["requeued"] != 0.0 {
		t.Fatalf("dry run: %d %s", dry.Status, dry.Raw)
	}
	if r := s.call("POST", "/v1/sync/dlq/replay", adminKey, map[string]any{"target": "nope", "since": "yesterday"}); r.Status != 422 ||
		!strings.Contains(locations(r.Body), "body.target") || !strings.Contains(locations(r.Body), "body.since") {
		t.Fatalf("bad replay: %d %s", r.Status, r.Raw)
	}

	// Half through the API, the rest through the command.
	t.Setenv("NATS_URL", "") // the command finds data/nats.env
	env := app.Env{DataDir: strings.TrimSuffix(s.info.NATSEnv, "/nats.env")}
	var out, errOut bytes.Buffer
	if err := app.RunDLQ(context.Background(), env, []string{"list", "--target", "hubspot", "--code", "INTERNAL_ERROR"}, &out, &errOut); err != nil {
		t.Fatalf("dlq list: %v %s", err, errOut.String())
	}
	if n := strings.Count(out.String(), "\n"); n != 6 || !strings.Contains(errOut.String(), "6 dead letters") {
		t.Fatalf("dlq list printed %d letters:\n%s", n, out.String())
	}
	out.Reset()
	if err := app.RunDLQ(context.Background(), env, []string{"replay", "--target", "hubspot", "--code", "INTERNAL_ERROR", "--since", "1h"}, &out, &errOut); err != nil {
		t.Fatalf("dlq replay: %v %s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "matched 6, replayed 6, skipped 0") || !strings.Contains(errOut.String(), "6/6") {
		t.Fatalf("dlq replay said:\n%s\n%s", out.String(), errOut.String())
	}
	for i := range 6 {
		if st := s.waitState(fmt.Sprintf("dl-%d", i), "hubspot", status.StateSynced); st.Generation != 1 {
			t.Fatalf("dl-%d generation %d", i, st.Generation)
		}
	}
	// The other code was left alone; a second replay finds nothing to do.
	if r := s.call("GET", "/v1/sync/status/dl-bad", syncKey, nil); !strings.Contains(string(r.Raw), `"state":"failed"`) {
		t.Fatalf("dl-bad: %s", r.Raw)
	}
	// A dry run now says what the replay then does: all skipped.
	dry = s.call("POST", "/v1/sync/dlq/replay", adminKey, map[string]any{"target": "hubspot", "code": "INTERNAL_ERROR", "dry_run": true})
	if dry.Body["matched"] != 6.0 || dry.Body["skipped"] != 6.0 {
		t.Fatalf("dry run after the replay: %s", dry.Raw)
	}
	again := s.call("POST", "/v1/sync/dlq/replay", adminKey, map[string]any{"target": "hubspot", "code": "INTERNAL_ERROR"})
	if again.Body["requeued"] != 0.0 || again.Body["skipped"] != 6.0 {
		t.Fatalf("second replay: %s", again.Raw)
	}
	// The records replayed and synced are no longer listed; dl-bad is.
	left := s.call("GET", "/v1/sync/dlq", adminKey, nil)
	letters, _ := left.Body["letters"].([]any)
	if len(letters) != 1 || letters[0].(map[string]any)["record_id"] != "dl-bad" || letters[0].(map[string]any)["target"] != "hubspot" {
		t.Fatalf("list after the replay: %s", left.Raw)
	}
}

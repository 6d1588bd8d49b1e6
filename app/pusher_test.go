package app_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/recordsync/record-sync/app"
	"github.com/recordsync/record-sync/shared/status"
	"github.com/recordsync/record-sync/shared/telemetry"
)

// TestTwoPushersShareTheLimit runs a second pusher process's worth of
// workers against the dev NATS: together they keep to the target's rate
// limit, as the emulator's quota counts it.
func TestTwoPushersShareTheLimit(t *testing.T) {
	s := startDev(t, func(e *app.Env) { e.DevPushers = 0 })
	// The CRM takes 10 requests a second; the pushers are told 7. They
	// read the setting when they start.
	s.sim("PUT", "/faults", map[string]any{"rate_limit": 10, "rate_window_ms": 1000})
	if r := s.call("POST", "/v1/sync/config-override", adminKey, map[string]any{"target": "hubspot", "batch_size": 1, "flush_interval": "1ms", "rate_limit_per_minute": 420}); r.Status != 200 {
		t.Fatalf("override: %d %s", r.Status, r.Raw)
	}
	var metrics []*telemetry.Metrics
	for range 2 {
		metrics = append(metrics, s.runPusher())
	}
	const n = 24
	for i := range n {
		s.call("POST", "/v1/sync/", syncKey, contact(fmt.Sprintf("tp-%d", i), fmt.Sprintf("tp%d@example.com", i), nil))
	}
	for i := range n {
		s.waitState(fmt.Sprintf("tp-%d", i), "hubspot", status.StateSynced)
	}
	stats := s.sim("GET", "/stats", nil)
	byStatus := stats.Body["requests_by_status"].(map[string]any)
	if stats.Body["max_requests_in_window"].(float64) > 10 || byStatus["429"] != nil || byStatus["200"] != float64(n) {
		t.Fatalf("the limit did not hold between the pushers: %s", stats.Raw)
	}
	for i, m := range metrics {
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		if !strings.Contains(rec.Body.String(), `recordsync_push_results_total{class="ok",code="",target="hubspot"}`) {
			t.Fatalf("pusher %d pushed nothing", i)
		}
	}
}

// runPusher runs the pushers of every target as a process of their own
// would, against the dev NATS, until the test ends, and returns their
// metrics.
func (s *devStack) runPusher() *telemetry.Metrics {
	s.t.Helper()
	env := app.Env{CRMSimAddr: strings.TrimPrefix(s.info.CRMSimURL, "http://"), CRMCredentials: s.info.Credentials}
	reg, _, err := app.Registry(env, true)
	if err != nil {
		s.t.Fatal(err)
	}
	metrics, err := telemetry.NewMetrics()
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m, err := app.OpenMesh(ctx, s.operator(), "pusher", env, reg, metrics, slog.New(slog.DiscardHandler))
	if err != nil {
		s.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- app.RunPusher(ctx, m) }()
	s.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			s.t.Errorf("pusher: %v", err)
		}
	})
	return metrics
}

// TestFaultyCRM pushes 3,000 records, some invalid on purpose, to a
// HubSpot that fails requests (5% 5xx, 5% 429, 1% timeouts, 2% of items in
// batches): every valid record ends synced, every invalid one failed, the
// CRM holds exactly the valid ones once each, and its quota was never
// exceeded.
func TestFaultyCRM(t *testing.T) {
	if testing.Short() {
		t.Skip("pushes 3,000 records")
	}
	s := startDev(t, func(e *app.Env) { e.CRMTimeout = 2 * time.Second })
	if r := s.call("POST", "/v1/sync/config-override", adminKey, map[string]any{"target": "hubspot", "max_attempts": 10,
		"backoff": []string{"100ms", "200ms", "500ms"}, "rate_limit_per_minute": 1080}); r.Status != 200 {
		t.Fatalf("override: %d %s", r.Status, r.Raw)
	}
	// HubSpot's 190 requests per 10 s, counted per second so that a 429's
	// Retry-After is short; the pushers are told 18 a second.
	s.sim("PUT", "/faults", map[string]any{"error_5xx": 0.05, "rate_limited": 0.05, "timeout": 0.01, "partial_batch_error": 0.02, "rate_limit": 19, "rate_window_ms": 1000})
	const total, invalidEvery = 3000, 100
	for b := 0; b < total; b += 500 {
		var events []any
		for i := b; i < b+500; i++ {
			email := fmt.Sprintf("f%d@example.com", i)
			if i%invalidEvery == 0 {
				email = fmt.Sprintf("invalid-%d", i)
			}
			events = append(events, contact(fmt.Sprintf("f-%d", i), email, map[string]any{"first_name": fmt.Sprint("N", i)}))
		}
		if r := s.call("POST", "/v1/sync/batch", syncKey, map[string]any{"events": events}); r.Status != 202 {
			t.Fatalf("batch: %d %s", r.Status, r.Raw)
		}
	}
	for i := range total {
		if i%invalidEvery == 0 {
			if st := s.waitState(fmt.Sprintf("f-%d", i), "hubspot", status.StateFailed); st.LastError.Code != "INVALID_EMAIL" {
				t.Fatalf("f-%d: %+v", i, st.LastError)
			}
			continue
		}
		s.waitState(fmt.Sprintf("f-%d", i), "hubspot", status.StateSynced)
	}
	s.sim("PUT", "/faults", map[string]any{})
	stats := s.sim("GET", "/stats", nil)
	valid := float64(total - total/invalidEvery)
	if stats.Body["records_stored"] != valid || stats.Body["duplicates_created"] != 0.0 || stats.Body["max_requests_in_window"].(float64) > 19 {
		t.Fatalf("emulator: %s", stats.Raw)
	}
	for _, i := range []int{1, 1499, 2999} {
		c := s.hubspot("GET", fmt.Sprintf("/crm/v3/objects/contacts/f%d@example.com?idProperty=email", i), nil)
		if c.Body["properties"].(map[string]any)["firstname"] != fmt.Sprint("N", i) {
			t.Fatalf("f-%d in HubSpot: %s", i, c.Raw)
		}
	}
	t.Logf("emulator saw %v", stats.Body["requests_by_status"])
	r := s.call("GET", "/v1/sync/stats", syncKey, nil)
	hs := r.Body["targets"].(map[string]any)["hubspot"].(map[string]any)
	states := hs["states"].(map[string]any)
	if hs["accepted"] != float64(total) || states["synced"] != valid || states["failed"] != float64(total/invalidEvery) ||
		hs["superseded"] != 0.0 || hs["in_flight"] != 0.0 {
		t.Fatalf("stats after the faulty run: %s", r.Raw)
	}
}

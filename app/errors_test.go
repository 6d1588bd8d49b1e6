package app_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestErrorPaths checks every refusal of the HTTP edge: the status, an RFC
// 9457 problem body naming each bad field, and that nothing was enqueued.
func TestErrorPaths(t *testing.T) {
	s := startDev(t)
	good := contact("e-1", "e1@example.com", nil)
	big := `{"record_id":"e-2","operation":"create","data":{"email":"` + strings.Repeat("x", 300<<10) + `@example.com"}}`
	tooMany := map[string]any{"events": make([]any, 501)}
	for i := range tooMany["events"].([]any) {
		tooMany["events"].([]any)[i] = good
	}
	tests := []struct {
		name      string
		method    string
		path      string
		key       string
		body      any
		hdr       []string
		status    int
		locations []string // each must be named in errors[].location
	}{
		{name: "no key", method: "POST", path: "/v1/sync/", body: good, status: 401},
		{name: "unknown key", method: "POST", path: "/v1/sync/", key: "nope", body: good, status: 401},
		{name: "sync key on admin endpoint", method: "GET", path: "/v1/sync/rules", key: syncKey, status: 403},
		{name: "sync key on config override", method: "POST", path: "/v1/sync/config-override", key: syncKey, body: map[string]any{"target": "hubspot"}, status: 403},
		{name: "body too large", method: "POST", path: "/v1/sync/", key: syncKey, body: big, status: 413},
		{name: "not JSON", method: "POST", path: "/v1/sync/", key: syncKey, body: `{"record_id":`, status: 400},
		{name: "empty body", method: "POST", path: "/v1/sync/", key: syncKey, body: ``, status: 400},
		{name: "unknown field", method: "POST", path: "/v1/sync/", key: syncKey, body: `{"record_id":"e-3","operation":"create","data":{"email":"a@b.co"},"colour":"red"}`, status: 422, locations: []string{"body.colour"}},
		{name: "wrong type", method: "POST", path: "/v1/sync/", key: syncKey, body: `{"record_id":7,"operation":"create"}`, status: 422, locations: []string{"body.record_id"}},
		{name: "missing fields", method: "POST", path: "/v1/sync/", key: syncKey, body: `{}`, status: 422, locations: []string{"body.record_id", "body.operation"}},
		{name: "bad values", method: "POST", path: "/v1/sync/", key: syncKey,
			body:   map[string]any{"record_id": "has space", "operation": "merge", "object_type": "deal", "targets": []string{"pipedrive"}, "data": map[string]any{"nested": map[string]any{"a": 1}}},
			status: 422, locations: []string{"body.record_id", "body.operation", "body.object_type", "body.targets[0]", "body.data.nested"}},
		{name: "create without data", method: "POST", path: "/v1/sync/", key: syncKey, body: map[string]any{"record_id": "e-4", "operation": "create"}, status: 422, locations: []string{"body.data"}},
		{name: "idempotency key differs from event_id", method: "POST", path: "/v1/sync/", key: syncKey, body: map[string]any{"event_id": "a", "record_id": "e-5", "operation": "delete"}, hdr: []string{"Idempotency-Key", "b"}, status: 422, locations: []string{"header.Idempotency-Key"}},
		{name: "batch too large", method: "POST", path: "/v1/sync/batch", key: syncKey, body: tooMany, status: 422, locations: []string{"body.events"}},
		{name: "empty batch", method: "POST", path: "/v1/sync/batch", key: syncKey, body: map[string]any{"events": []any{}}, status: 422, locations: []string{"body.events"}},
		{name: "unknown record", method: "GET", path: "/v1/sync/status/nobody", key: syncKey, status: 404},
		{name: "bad record id", method: "GET", path: "/v1/sync/status/a%20b", key: syncKey, status: 422, locations: []string{"path.record_id"}},
		{name: "retry unknown record", method: "POST", path: "/v1/sync/retry/nobody", key: syncKey, status: 404},
		{name: "batch size over the CRM's maximum", method: "POST", path: "/v1/sync/config-override", key: adminKey, body: map[string]any{"target": "hubspot", "batch_size": 101}, status: 422, locations: []string{"body.batch_size"}},
		{name: "bad config values", method: "POST", path: "/v1/sync/config-override", key: adminKey, body: map[string]any{"target": "hubspot", "max_attempts": 0, "api_host": "ftp://x", "backoff": []string{"-1s"}}, status: 422, locations: []string{"body.max_attempts", "body.api_host", "body.backoff[0]"}},
		{name: "unknown target override", method: "POST", path: "/v1/sync/config-override", key: adminKey, body: map[string]any{"target": "pipedrive"}, status: 422, locations: []string{"body.target"}},
		{name: "invalid rules", method: "POST", path: "/v1/sync/rules", key: adminKey, body: map[string]any{"revision": 1, "rules": []any{
			map[string]any{"id": "a", "kind": "teleport"}, map[string]any{"id": "a", "kind": "require"}, map[string]any{"id": "b", "kind": "skip_flag", "targets": []string{"pipedrive"}, "field": "x"}}},
			status: 422, locations: []string{"body.rules[0].kind", "body.rules[1].id", "body.rules[1].fields", "body.rules[2].targets[0]"}},
	}
	before := s.inbound()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.call(tt.method, tt.path, tt.key, tt.body, tt.hdr...)
			if r.Status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tt.status, r.Raw)
			}
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
				t.Fatalf("Content-Type %q, want application/problem+json", ct)
			}
			if r.Body["status"] != float64(tt.status) || r.Body["title"] != http.StatusText(tt.status) || r.Body["detail"] == "" {
				t.Fatalf("not a problem detail: %s", r.Raw)
			}
			got := locations(r.Body)
			for _, want := range tt.locations {
				if !strings.Contains(" "+got+" ", " "+want+" ") {
					t.Errorf("errors name %q, want %q among them", got, want)
				}
			}
		})
	}
	if after := s.inbound(); after != before {
		t.Fatalf("refused requests stored %d messages", after-before)
	}
}

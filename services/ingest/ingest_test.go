package ingest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/recordsync/record-sync/services/ingest"
)

func get(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body map[string]any
	_ = json.Unmarshal(raw, &body)
	return resp.StatusCode, body
}

// TestReadyzFailsWithoutNATS: /readyz fails when NATS is gone, while
// /healthz still says the process lives.
func TestReadyzFailsWithoutNATS(t *testing.T) {
	base, srv := edge(t, "fast")
	if code, _ := get(t, base+"/readyz"); code != http.StatusOK {
		t.Fatalf("readyz with NATS up: %d", code)
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	code, body := get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body["detail"].(string), "NATS") {
		t.Fatalf("readyz with NATS down: %d %v", code, body)
	}
	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("healthz: %d", code)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/sync/", strings.NewReader(eventJSON()))
	req.Header.Set("X-API-Key", benchKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("POST with NATS down: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

// TestAdminWritesNeedTheAdminUser: an edge without a connection as the
// admin NATS user answers the endpoints that write rules, mappings and
// config with 503 and says what to set; it stored nothing.
func TestAdminWritesNeedTheAdminUser(t *testing.T) {
	const adminKey = "admin-key"
	base, _ := edge(t, "fast", func(c *ingest.Config) {
		c.AdminKeys, c.AdminReadOnly = []string{adminKey}, true
	})
	for _, tt := range []struct{ path, body, what string }{
		{"/v1/sync/config-override", `{"target":"hubspot","batch_size":50}`, "config"},
		{"/v1/sync/rules", `{"revision":0,"rules":[]}`, "rules"},
		{"/v1/sync/mappings/hubspot/contact", `{"revision":0,"fields":[]}`, "mappings"},
	} {
		req, _ := http.NewRequest(http.MethodPost, base+tt.path, strings.NewReader(tt.body))
		req.Header.Set("X-API-Key", adminKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		want := tt.what + " cannot be changed through this edge: it has no connection as the admin NATS user (set RECORDSYNC_NATS_ADMIN_PASSWORD"
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(raw), want) {
			t.Errorf("POST %s: %d %s", tt.path, resp.StatusCode, raw)
		}
	}
	// Reads still work, and show nothing changed.
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/sync/config", nil)
	req.Header.Set("X-API-Key", adminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(raw), `"target":"hubspot"`) || strings.Contains(string(raw), `"batch_size":50,`) {
		t.Errorf("GET config: %d %s", resp.StatusCode, raw)
	}
}

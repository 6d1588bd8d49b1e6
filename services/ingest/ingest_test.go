package ingest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
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
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("POST with NATS down: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

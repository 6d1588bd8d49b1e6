package app_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/recordsync/record-sync/app"
	"github.com/recordsync/record-sync/shared/status"
)

// TestCircuitOpensAndCloses: a CRM that keeps failing opens its target's
// circuit (readyz and the metric say so, no attempts are spent while it is
// open); once it answers again, a probe closes it and the work syncs.
func TestCircuitOpensAndCloses(t *testing.T) {
	s := startDev(t, func(e *app.Env) { e.CircuitOpenFor = 500 * time.Millisecond })
	if r := s.call("POST", "/v1/sync/config-override", adminKey, map[string]any{"target": "hubspot", "max_attempts": 50, "backoff": []string{"50ms"}, "batch_size": 1}); r.Status != 200 {
		t.Fatalf("override: %d %s", r.Status, r.Raw)
	}
	s.sim("PUT", "/faults", map[string]any{"error_5xx": 1})
	for i := range 3 {
		s.call("POST", "/v1/sync/", syncKey, contact(fmt.Sprintf("cb-%d", i), fmt.Sprintf("cb%d@example.com", i), nil))
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := s.call("GET", "/readyz", "", nil)
		if r.Status == 200 && strings.Contains(string(r.Raw), "circuit of hubspot is open") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the circuit never opened: %s", r.Raw)
		}
		waitTick(20 * time.Millisecond)
	}
	if m := string(s.call("GET", "/metrics", "", nil).Raw); !strings.Contains(m, `recordsync_circuit_state{target="hubspot"}`) {
		t.Fatal("no circuit metric")
	}
	s.sim("PUT", "/faults", map[string]any{})
	for i := range 3 {
		st := s.waitState(fmt.Sprintf("cb-%d", i), "hubspot", status.StateSynced)
		if st.Attempts >= 50 {
			t.Fatalf("attempts spent while the circuit was open: %d", st.Attempts)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); strings.Contains(string(s.call("GET", "/readyz", "", nil).Raw), "circuit"); {
		if time.Now().After(deadline) {
			t.Fatal("readyz still reports a circuit after it closed")
		}
		waitTick(20 * time.Millisecond)
	}
}

package status_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/recordsync/record-sync/shared/status"
)

func TestApplyOrdering(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	ch := func(ev string, occurred int, st status.State, attempts int) status.Change {
		return status.Change{RecordID: "c-1", Target: "hubspot", EventID: ev, OccurredAt: t0.Add(time.Duration(occurred) * time.Second),
			State: st, Attempts: attempts, At: t0.Add(time.Minute)}
	}
	tests := []struct {
		name    string
		changes []status.Change
		applied []bool
		final   status.State
		event   string
	}{
		{"normal life", []status.Change{ch("e1", 0, status.StateQueued, 0), ch("e1", 0, status.StateSynced, 1)}, []bool{true, true}, status.StateSynced, "e1"},
		{"late queued after synced is ignored", []status.Change{ch("e1", 0, status.StateSynced, 1), ch("e1", 0, status.StateQueued, 0)}, []bool{true, false}, status.StateSynced, "e1"},
		{"older event never overwrites newer", []status.Change{ch("e2", 5, status.StateQueued, 0), ch("e1", 0, status.StateSynced, 1)}, []bool{true, false}, status.StateQueued, "e2"},
		{"newer event replaces a final state", []status.Change{ch("e1", 0, status.StateSynced, 1), ch("e2", 5, status.StateQueued, 0)}, []bool{true, true}, status.StateQueued, "e2"},
		{"retries count up", []status.Change{ch("e1", 0, status.StateRetrying, 1), ch("e1", 0, status.StateRetrying, 2), ch("e1", 0, status.StateRetrying, 1)}, []bool{true, true, false}, status.StateRetrying, "e1"},
		{"repeat is a no-op", []status.Change{ch("e1", 0, status.StateSynced, 1), ch("e1", 0, status.StateSynced, 1)}, []bool{true, false}, status.StateSynced, "e1"},
		{"same instant: larger event id wins", []status.Change{ch("e2", 0, status.StateSynced, 1), ch("e1", 0, status.StateSynced, 1)}, []bool{true, false}, status.StateSynced, "e2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r status.Record
			for i, c := range tt.changes {
				if got := r.Apply(c); got != tt.applied[i] {
					t.Fatalf("change %d applied=%v, want %v", i, got, tt.applied[i])
				}
			}
			got := r.Targets["hubspot"]
			if got.State != tt.final || got.EventID != tt.event {
				t.Fatalf("final %s of %s, want %s of %s", got.State, got.EventID, tt.final, tt.event)
			}
		})
	}
}

func TestManualRetryGeneration(t *testing.T) {
	var r status.Record
	base := status.Change{RecordID: "c-1", Target: "hubspot", EventID: "e1", At: time.Now()}
	failed := base
	failed.State, failed.Attempts = status.StateFailed, 3
	failed.Error = &status.Error{Class: status.ClassTransient, Code: "HTTP_502", DeadLettered: true}
	r.Apply(failed)
	requeued := base
	requeued.State, requeued.Generation = status.StateQueued, 1
	if !r.Apply(requeued) {
		t.Fatal("a manual retry did not supersede the failure")
	}
	if st := r.Targets["hubspot"]; st.LastError != nil || st.Attempts != 0 {
		t.Fatalf("after retry: %+v", st)
	}
}

func TestHistoryBounded(t *testing.T) {
	var r status.Record
	for i := range 50 {
		r.Apply(status.Change{RecordID: "c-1", Target: "t", EventID: "e", State: status.StateRetrying, Attempts: i + 1, At: time.Now()})
	}
	if n := len(r.Targets["t"].History); n != status.HistoryLen {
		t.Fatalf("history of %d, want %d", n, status.HistoryLen)
	}
}

func TestKey(t *testing.T) {
	for in, want := range map[string]string{"c-123": "c-123", "ada@x.io": "ada=40x=2Eio", "a:b_c": "a=3Ab_c", "..": "=2E=2E"} {
		if got := status.Key(in); got != want {
			t.Errorf("Key(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLastPushedKeepsTheLastSyncedEvent(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	var r status.Record
	first := &status.Pushed{EventID: "e-1", Operation: "create", Data: status.Data(`{"email":"a@example.com"}`), At: t0}
	r.Apply(status.Change{RecordID: "c", Target: "hubspot", EventID: "e-1", OccurredAt: t0, State: status.StateQueued, At: t0})
	if r.Targets["hubspot"].LastPushed != nil {
		t.Fatal("a queued event has nothing pushed yet")
	}
	r.Apply(status.Change{RecordID: "c", Target: "hubspot", EventID: "e-1", OccurredAt: t0, State: status.StateSynced, Pushed: first, At: t0})
	// A newer event that fails leaves what the CRM last got as it was.
	t1 := t0.Add(time.Minute)
	r.Apply(status.Change{RecordID: "c", Target: "hubspot", EventID: "e-2", OccurredAt: t1, State: status.StateFailed,
		Error: &status.Error{Class: "permanent", Code: "X"}, At: t1})
	if got := r.Targets["hubspot"].LastPushed; got != first {
		t.Fatalf("after a failed newer event, last pushed is %+v; want e-1's", got)
	}
	second := &status.Pushed{EventID: "e-3", Operation: "delete", At: t1}
	r.Apply(status.Change{RecordID: "c", Target: "hubspot", EventID: "e-3", OccurredAt: t1.Add(time.Second), State: status.StateSynced, Pushed: second, At: t1})
	if got := r.Targets["hubspot"].LastPushed; got != second {
		t.Fatalf("last pushed is %+v; want e-3's", got)
	}
}

// A pushed event's data travels as the object it is, without being
// decoded on the way, and decodes where it is read.
func TestPushedDataStaysEncoded(t *testing.T) {
	data, err := status.DataOf(map[string]any{"email": "a@example.com", "n": 1.5})
	if err != nil {
		t.Fatal(err)
	}
	in := status.Target{State: status.StateSynced, LastPushed: &status.Pushed{EventID: "e-1", Data: data}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"data":{"email":"a@example.com","n":1.5}`) {
		t.Fatalf("encoded: %s", b)
	}
	var out status.Target
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	m, err := out.LastPushed.Data.Map()
	if err != nil || m["email"] != "a@example.com" || m["n"] != 1.5 {
		t.Fatalf("decoded: %v %v", m, err)
	}
	if err := json.Unmarshal([]byte(`{"event_id":"e","data":[1]}`), &status.Pushed{}); err == nil {
		t.Fatal("data that is not an object was taken")
	}
	var none status.Pushed
	if err := json.Unmarshal([]byte(`{"event_id":"e","data":null}`), &none); err != nil || none.Data != nil {
		t.Fatalf("null data: %v %v", none.Data, err)
	}
	if b, _ := json.Marshal(status.Pushed{}); strings.Contains(string(b), "data") {
		t.Fatalf("no data is left out: %s", b)
	}
}

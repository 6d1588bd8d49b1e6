package ingest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/natstest"
	"github.com/recordsync/record-sync/shared/status"
)

// stateOf reads the state per target of a status answer.
func stateOf(a answer) map[string]string {
	out := map[string]string{}
	targets, _ := a.body["targets"].(map[string]any)
	for name, t := range targets {
		m := t.(map[string]any)
		out[name] = m["state"].(string) + "/" + m["event_id"].(string)
	}
	return out
}

// TestStatusAcceptedRightAfter202: with nothing routing or recording
// status (rules and status services stopped), the status_url of a 202
// reads accepted at once, on another replica too; once the status service
// records more, that is what it reads; an older event recorded does not
// hide the accepted one; a forged receipt is ignored.
func TestStatusAcceptedRightAfter202(t *testing.T) {
	e := edgeWith(t, "fast", nil)
	one := e.server(t)
	two := httptest.NewServer(e.checked(t, e.replica(t)))
	t.Cleanup(two.Close)
	ctx := context.Background()
	_, statusJS := natstest.Connect(t, e.srv, "status")
	kv, err := statusJS.KeyValue(ctx, mesh.BucketStatus)
	if err != nil {
		t.Fatal(err)
	}

	occurred := time.Now().UTC().Add(-time.Second).Truncate(time.Second)
	a := send(t, http.MethodPost, one.URL+"/v1/sync/", "application/json",
		`{"event_id":"a-1","record_id":"acc-1","operation":"create","data":{"email":"a@b.co"},"occurred_at":"`+occurred.Format(time.RFC3339)+`"}`)
	if a.status != http.StatusAccepted {
		t.Fatalf("%d %s", a.status, a.raw)
	}
	url := a.body["status_url"].(string)
	for _, base := range []string{one.URL, two.URL} {
		st := send(t, http.MethodGet, base+url, "-", "")
		if st.status != http.StatusOK || stateOf(st)["hubspot"] != "accepted/a-1" {
			t.Fatalf("status right after the 202 at %s: %d %s", base, st.status, st.raw)
		}
	}
	// Without its receipt the record is not known yet: the status service
	// has recorded nothing.
	if st := send(t, http.MethodGet, one.URL+"/v1/sync/status/acc-1", "-", ""); st.status != http.StatusNotFound {
		t.Fatalf("without the receipt: %d %s", st.status, st.raw)
	}
	// A receipt for another record, or altered, is ignored.
	forged := strings.Replace(url, "acc-1", "acc-2", 1)
	if st := send(t, http.MethodGet, one.URL+forged, "-", ""); st.status != http.StatusNotFound {
		t.Fatalf("receipt of another record: %d %s", st.status, st.raw)
	}
	// One character of the signature changed: one that carries six of its
	// bits (the last of its 22 carries two, and replacing it may change
	// none of them).
	altered := []byte(url)
	if i := len(altered) - 5; altered[i] == 'A' {
		altered[i] = 'B'
	} else {
		altered[i] = 'A'
	}
	if st := send(t, http.MethodGet, one.URL+string(altered), "-", ""); st.status != http.StatusNotFound {
		t.Fatalf("altered receipt: %d %s", st.status, st.raw)
	}

	// The status service records the event as synced: that is what reads.
	put := func(rec status.Record) {
		t.Helper()
		raw, _ := json.Marshal(rec)
		if _, err := kv.Put(ctx, status.Key(rec.RecordID), raw); err != nil {
			t.Fatal(err)
		}
	}
	var rec status.Record
	at := time.Now().UTC()
	rec.Apply(status.Change{RecordID: "acc-1", Target: "hubspot", EventID: "a-1", Operation: "create", OccurredAt: occurred, State: status.StateSynced, At: at})
	put(rec)
	st := send(t, http.MethodGet, two.URL+url, "-", "")
	if got := stateOf(st)["hubspot"]; got != "synced/a-1" {
		t.Fatalf("after the status service wrote: %s", st.raw)
	}

	// A newer event of a record whose older one is synced reads accepted.
	b := send(t, http.MethodPost, one.URL+"/v1/sync/batch", "application/json",
		`{"events":[{"event_id":"b-2","record_id":"acc-3","operation":"update","data":{"email":"c@b.co"}},{"event_id":"b-3","record_id":"acc-4","operation":"delete"}]}`)
	if b.status != http.StatusAccepted {
		t.Fatalf("%d %s", b.status, b.raw)
	}
	var old status.Record
	old.Apply(status.Change{RecordID: "acc-3", Target: "hubspot", EventID: "b-1", Operation: "create", OccurredAt: at.Add(-time.Hour), State: status.StateSynced, At: at.Add(-time.Hour)})
	put(old)
	results := b.body["results"].([]any)
	for i, want := range []string{"accepted/b-2", "accepted/b-3"} {
		u := results[i].(map[string]any)["status_url"].(string)
		if got := stateOf(send(t, http.MethodGet, two.URL+u, "-", ""))["hubspot"]; got != want {
			t.Fatalf("batch event %d reads %s, want %s", i, got, want)
		}
	}
	if got := stateOf(send(t, http.MethodGet, two.URL+"/v1/sync/status/acc-3", "-", ""))["hubspot"]; got != "synced/b-1" {
		t.Fatalf("without the receipt, acc-3 reads %s", got)
	}
}

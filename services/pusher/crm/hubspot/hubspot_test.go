package hubspot_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/recordsync/record-sync/crmsim"
	simhubspot "github.com/recordsync/record-sync/crmsim/hubspot"
	"github.com/recordsync/record-sync/services/pusher/crm"
	"github.com/recordsync/record-sync/services/pusher/crm/hubspot"
	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/mapping"
)

const token = "pat-test"

// setup serves the emulated HubSpot and returns a plugin pointed at it.
func setup(t *testing.T) (*hubspot.Client, *simhubspot.CRM, string) {
	t.Helper()
	sim := simhubspot.New(token)
	srv, err := crmsim.NewServer(sim)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	c := hubspot.New(token, 2*time.Second)
	t.Cleanup(func() { _ = c.Close() })
	return c, sim, ts.URL + "/hubspot"
}

func records(t *testing.T, c crm.CRM, op event.Operation, emails ...string) []crm.Record {
	t.Helper()
	var out []crm.Record
	for i, e := range emails {
		ev := &event.Event{RecordID: fmt.Sprint("r-", i), Operation: op, Data: map[string]any{"email": e, "first_name": "N", "do_not_sync": false}}
		sc, _ := c.Schema(event.ObjectContact)
		m, errs := mapping.Compile(sc.Default, sc, "default")
		if errs != nil {
			t.Fatal(errs)
		}
		f, err := m.Apply(ev.Data)
		if err != nil {
			t.Fatal(err)
		}
		id, err := c.Identify(ev, f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, crm.Record{Event: ev, Identity: id, Fields: f})
	}
	return out
}

func TestUpsertAndDelete(t *testing.T) {
	c, sim, host := setup(t)
	ctx := context.Background()
	res := c.Push(ctx, host, records(t, c, event.OpCreate, "a@x.io", "B@x.io"))
	for i, r := range res {
		if r.Class != crm.OK || r.CRMID == "" {
			t.Fatalf("create %d: %+v", i, r)
		}
	}
	again := c.Push(ctx, host, records(t, c, event.OpUpdate, "a@x.io"))
	if again[0].Class != crm.OK || again[0].CRMID != res[0].CRMID {
		t.Fatalf("update made another contact: %+v vs %+v", again[0], res[0])
	}
	if n := sim.Stored(); n != 2 {
		t.Fatalf("stored %d, want 2", n)
	}
	del := c.Push(ctx, host, records(t, c, event.OpDelete, "b@x.io", "never@x.io"))
	if del[0].Class != crm.OK || del[0].CRMID != res[1].CRMID || del[1].Class != crm.OK {
		t.Fatalf("delete: %+v", del)
	}
	if n := sim.Stored(); n != 1 {
		t.Fatalf("stored %d after delete, want 1", n)
	}
	if q := c.Quota(); !q.Known || q.Limit != 190 || q.Window != 10*time.Second {
		t.Fatalf("quota headers not understood: %+v", q)
	}
}

func TestFailures(t *testing.T) {
	tests := []struct {
		name   string
		faults crmsim.Faults
		emails []string
		want   []crm.Class
		code   string
	}{
		{"invalid email is permanent", crmsim.Faults{}, []string{"ok@x.io", "not-an-email"}, []crm.Class{crm.OK, crm.Permanent}, "INVALID_EMAIL"},
		{"5xx is transient", crmsim.Faults{Error5xx: 1}, []string{"a@x.io"}, []crm.Class{crm.Transient}, "INTERNAL_ERROR"},
		{"partial batch error is transient per item", crmsim.Faults{PartialBatchError: 1}, []string{"a@x.io"}, []crm.Class{crm.Transient}, "INTERNAL_ERROR"},
		{"rate limit fault", crmsim.Faults{RateLimited: 1}, []string{"a@x.io"}, []crm.Class{crm.RateLimited}, "RATE_LIMIT:TEN_SECONDLY_ROLLING"},
		{"down is transient", crmsim.Faults{Down: true}, []string{"a@x.io"}, []crm.Class{crm.Transient}, "NETWORK"},
		{"timeout is transient", crmsim.Faults{Timeout: 1}, []string{"a@x.io"}, []crm.Class{crm.Transient}, "TIMEOUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, sim, host := setup(t)
			sim.Sim().SetFaults(tt.faults)
			res := c.Push(context.Background(), host, records(t, c, event.OpCreate, tt.emails...))
			for i, want := range tt.want {
				if res[i].Class != want {
					t.Fatalf("result %d: %+v, want class %v", i, res[i], want)
				}
			}
			if last := res[len(res)-1]; last.Code != tt.code {
				t.Fatalf("code %q, want %q (%+v)", last.Code, tt.code, last)
			}
		})
	}
}

func TestQuotaExhausted(t *testing.T) {
	c, sim, host := setup(t)
	sim.Sim().SetFaults(crmsim.Faults{RateLimit: 1, RateWindowMS: 60_000})
	if r := c.Push(context.Background(), host, records(t, c, event.OpCreate, "a@x.io")); r[0].Class != crm.OK {
		t.Fatalf("first request: %+v", r[0])
	}
	r := c.Push(context.Background(), host, records(t, c, event.OpCreate, "b@x.io"))
	if r[0].Class != crm.RateLimited || r[0].RetryAfter < 50*time.Second {
		t.Fatalf("past the quota: %+v, want rate limited with Retry-After near a minute", r[0])
	}
	if st := sim.Sim().Stats(sim.Stored()); st.MaxRequestsInWindow != 1 || st.RecordsStored != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestBadToken(t *testing.T) {
	_, _, host := setup(t)
	c := hubspot.New("wrong", time.Second)
	r := c.Push(context.Background(), host, records(t, c, event.OpCreate, "a@x.io"))
	if r[0].Class != crm.Transient || r[0].Code != "INVALID_AUTHENTICATION" {
		t.Fatalf("bad token: %+v", r[0])
	}
}

func TestIdentifyAndPayload(t *testing.T) {
	c := hubspot.New(token, time.Second)
	if _, err := c.Identify(&event.Event{}, map[string]any{"firstname": "A"}); err == nil {
		t.Fatal("a record without email identified")
	}
	rec := crm.Record{Event: &event.Event{Operation: event.OpUpdate}, Identity: "a@x.io", Fields: map[string]any{"firstname": "A", "phone": 12.0, "jobtitle": nil}}
	in, _ := json.Marshal(c.Payload(rec))
	if string(in) != `{"id":"a@x.io","idProperty":"email","properties":{"firstname":"A","jobtitle":"","phone":"12"}}` {
		t.Fatalf("payload %s", in)
	}
}

// TestDefaultMappings: the default mapping of each object type compiles
// against HubSpot's properties.
func TestDefaultMappings(t *testing.T) {
	c := hubspot.New(token, time.Second)
	for _, ot := range []string{event.ObjectContact, event.ObjectLead} {
		sc, ok := c.Schema(ot)
		if !ok {
			t.Fatalf("no schema for %s", ot)
		}
		if _, errs := mapping.Compile(sc.Default, sc, "default"); errs != nil {
			t.Fatalf("%s: %v", ot, errs)
		}
	}
}

package outreach_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/recordsync/record-sync/crmsim"
	simout "github.com/recordsync/record-sync/crmsim/outreach"
	"github.com/recordsync/record-sync/services/pusher/crm"
	"github.com/recordsync/record-sync/services/pusher/crm/outreach"
	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/mapping"
)

func setup(t *testing.T) (*outreach.Client, *simout.CRM, string) {
	t.Helper()
	creds := simout.NewCredentials()
	sim := simout.New(creds)
	srv, err := crmsim.NewServer(sim)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	c := outreach.New(outreach.Credentials{ClientID: creds.ClientID, ClientSecret: creds.ClientSecret, RefreshToken: creds.RefreshToken}, 2*time.Second)
	return c, sim, ts.URL + "/outreach"
}

func records(t *testing.T, c crm.CRM, op event.Operation, emails ...string) []crm.Record {
	t.Helper()
	sc, _ := c.Schema(event.ObjectContact)
	m, errs := mapping.Compile(sc.Default, sc, "default")
	if errs != nil {
		t.Fatal(errs)
	}
	var out []crm.Record
	for i, e := range emails {
		ev := &event.Event{RecordID: fmt.Sprint("r-", i), Operation: op, Data: map[string]any{"email": e, "first_name": "N", "phone": "+1 555"}}
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

func TestLookupThenCreateOrUpdate(t *testing.T) {
	c, sim, host := setup(t)
	ctx := context.Background()
	first := c.Push(ctx, host, records(t, c, event.OpCreate, "A@x.io"))
	if first[0].Class != crm.OK || first[0].CRMID == "" {
		t.Fatalf("create: %+v", first)
	}
	// A fresh client (a restarted pusher, a redelivery) finds the prospect
	// instead of creating another.
	c2 := outreach.New(outreach.Credentials{ClientID: sim.Credentials().(simout.Credentials).ClientID,
		ClientSecret: sim.Credentials().(simout.Credentials).ClientSecret, RefreshToken: sim.Credentials().(simout.Credentials).RefreshToken}, time.Second)
	again := c2.Push(ctx, host, records(t, c2, event.OpUpdate, "a@x.io"))
	if again[0].Class != crm.OK || again[0].CRMID != first[0].CRMID || sim.Stored() != 1 {
		t.Fatalf("update made another prospect: %+v, stored %d", again, sim.Stored())
	}
	if st := sim.Sim().Stats(sim.Stored()); st.DuplicatesCreated != 0 {
		t.Fatalf("duplicates created: %d", st.DuplicatesCreated)
	}
	del := c.Push(ctx, host, records(t, c, event.OpDelete, "a@x.io", "never@x.io"))
	if del[0].Class != crm.OK || del[1].Class != crm.OK || sim.Stored() != 0 {
		t.Fatalf("delete: %+v, stored %d", del, sim.Stored())
	}
	if q := c.Quota(); !q.Known || q.Limit != 10000 {
		t.Fatalf("rate-limit headers not understood: %+v", q)
	}
}

func TestTimeoutThenRetryCreatesOnce(t *testing.T) {
	c, sim, host := setup(t)
	sim.Sim().SetFaults(crmsim.Faults{Timeout: 1})
	r := c.Push(context.Background(), host, records(t, c, event.OpCreate, "t@x.io"))
	if r[0].Class != crm.Transient {
		t.Fatalf("timeout: %+v", r)
	}
	sim.Sim().SetFaults(crmsim.Faults{})
	r = c.Push(context.Background(), host, records(t, c, event.OpCreate, "t@x.io"))
	if r[0].Class != crm.OK || sim.Stored() != 1 || sim.Sim().Stats(1).DuplicatesCreated != 0 {
		t.Fatalf("the retry after an applied timeout: %+v, stored %d", r, sim.Stored())
	}
}

func TestRateLimitAndRenewal(t *testing.T) {
	c, sim, host := setup(t)
	sim.Sim().SetFaults(crmsim.Faults{RateLimit: 1, RateWindowMS: 60_000})
	c.Push(context.Background(), host, records(t, c, event.OpCreate, "a@x.io"))
	r := c.Push(context.Background(), host, records(t, c, event.OpCreate, "b@x.io"))
	if r[0].Class != crm.RateLimited || r[0].Code != "rateLimitExceeded" || r[0].RetryAfter < 50*time.Second {
		t.Fatalf("past the limit: %+v", r)
	}
	// The access token expires under the client: it gets a new one from
	// its refresh token and carries on.
	sim.Sim().SetFaults(crmsim.Faults{})
	sim.ExpireTokens()
	if r := c.Push(context.Background(), host, records(t, c, event.OpCreate, "c@x.io")); r[0].Class != crm.OK {
		t.Fatalf("after the token expired: %+v", r)
	}
}

package salesforce_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/recordsync/record-sync/crmsim"
	simsf "github.com/recordsync/record-sync/crmsim/salesforce"
	"github.com/recordsync/record-sync/services/pusher/crm"
	"github.com/recordsync/record-sync/services/pusher/crm/salesforce"
	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/mapping"
)

func setup(t *testing.T) (*salesforce.Client, *simsf.CRM, string) {
	t.Helper()
	creds, err := simsf.NewCredentials()
	if err != nil {
		t.Fatal(err)
	}
	sim, err := simsf.New(creds)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := crmsim.NewServer(sim)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	key, err := jwt.ParseRSAPrivateKeyFromPEM([]byte(creds.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	c := salesforce.New(salesforce.Credentials{ConsumerKey: creds.ConsumerKey, Username: creds.Username, Key: key, Audience: creds.Audience}, 2*time.Second)
	return c, sim, ts.URL + "/salesforce"
}

func records(t *testing.T, c crm.CRM, objectType string, op event.Operation, data ...map[string]any) []crm.Record {
	t.Helper()
	var out []crm.Record
	for i, d := range data {
		ev := &event.Event{RecordID: fmt.Sprint("r-", i), ObjectType: objectType, Operation: op, Data: d}
		sc, _ := c.Schema(objectType)
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

func TestUpsertByExternalID(t *testing.T) {
	c, sim, host := setup(t)
	ctx := context.Background()
	res := c.Push(ctx, host, records(t, c, "contact", event.OpCreate, map[string]any{"last_name": "Lovelace", "email": "ADA@x.io"}, map[string]any{"last_name": "Hopper"}))
	if res[0].Class != crm.OK || res[0].CRMID == "" || res[1].Class != crm.OK {
		t.Fatalf("create: %+v", res)
	}
	again := c.Push(ctx, host, records(t, c, "contact", event.OpUpdate, map[string]any{"last_name": "Lovelace", "title": "Countess"}))
	if again[0].Class != crm.OK || again[0].CRMID != res[0].CRMID || sim.Stored() != 2 {
		t.Fatalf("a redelivered upsert made another record: %+v, stored %d", again[0], sim.Stored())
	}
	del := c.Push(ctx, host, records(t, c, "contact", event.OpDelete, map[string]any{}, map[string]any{}, map[string]any{}))
	if del[0].Class != crm.OK || del[2].Class != crm.OK || sim.Stored() != 0 {
		t.Fatalf("delete: %+v, stored %d", del, sim.Stored())
	}
	if q := c.Quota(); !q.Known || q.Limit != 1000 {
		t.Fatalf("Sforce-Limit-Info not understood: %+v", q)
	}
}

func TestItemFailuresAndLimits(t *testing.T) {
	c, sim, host := setup(t)
	ctx := context.Background()
	res := c.Push(ctx, host, records(t, c, "lead", event.OpCreate, map[string]any{"last_name": "A", "company": "C"}, map[string]any{"last_name": "B"}))
	if res[0].Class != crm.OK || res[1].Class != crm.Permanent || res[1].Code != "REQUIRED_FIELD_MISSING" || res[1].Excerpt == "" {
		t.Fatalf("lead without company: %+v", res)
	}
	sim.Sim().SetFaults(crmsim.Faults{PartialBatchError: 1})
	if r := c.Push(ctx, host, records(t, c, "contact", event.OpCreate, map[string]any{"last_name": "X"})); r[0].Class != crm.Transient || r[0].Code != "UNABLE_TO_LOCK_ROW" {
		t.Fatalf("locked row: %+v", r)
	}
	sim.Sim().SetFaults(crmsim.Faults{Error5xx: 1})
	if r := c.Push(ctx, host, records(t, c, "contact", event.OpCreate, map[string]any{"last_name": "X"})); r[0].Class != crm.Transient || !r[0].Whole {
		t.Fatalf("5xx: %+v", r)
	}
	sim.Sim().SetFaults(crmsim.Faults{RateLimit: 1, RateWindowMS: 60_000})
	c.Push(ctx, host, records(t, c, "contact", event.OpCreate, map[string]any{"last_name": "X"}))
	if r := c.Push(ctx, host, records(t, c, "contact", event.OpCreate, map[string]any{"last_name": "Y"})); r[0].Class != crm.RateLimited || r[0].Code != "REQUEST_LIMIT_EXCEEDED" {
		t.Fatalf("past the limit: %+v", r)
	}
}

func TestTokenRenewal(t *testing.T) {
	c, sim, host := setup(t)
	sim.SetTokenTTL(0) // every token is expired by its first use
	r := c.Push(context.Background(), host, records(t, c, "contact", event.OpCreate, map[string]any{"last_name": "X"}))
	if r[0].Class != crm.Transient || r[0].Code != "INVALID_SESSION_ID" {
		t.Fatalf("with tokens that expire at once: %+v", r)
	}
	sim.SetTokenTTL(time.Hour)
	if r := c.Push(context.Background(), host, records(t, c, "contact", event.OpCreate, map[string]any{"last_name": "X"})); r[0].Class != crm.OK {
		t.Fatalf("after renewal: %+v", r)
	}
}

func TestBadKey(t *testing.T) {
	_, _, host := setup(t)
	other, _ := simsf.NewCredentials()
	key, _ := jwt.ParseRSAPrivateKeyFromPEM([]byte(other.PrivateKey))
	c := salesforce.New(salesforce.Credentials{ConsumerKey: other.ConsumerKey, Username: other.Username, Key: key, Audience: other.Audience}, time.Second)
	r := c.Push(context.Background(), host, records(t, c, "contact", event.OpCreate, map[string]any{"last_name": "X"}))
	if r[0].Class != crm.Transient || r[0].Code != "AUTH" {
		t.Fatalf("a key the org does not trust: %+v", r)
	}
}

package hubspot_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/recordsync/record-sync/crm"
	"github.com/recordsync/record-sync/crm/crmtest"
	"github.com/recordsync/record-sync/crm/hubspot"
	"github.com/recordsync/record-sync/crmsim"
	simhubspot "github.com/recordsync/record-sync/crmsim/hubspot"
	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/mapping"
)

const token = "pat-test"

// setup serves the emulated HubSpot and returns a plugin pointed at it.
func setup(t *testing.T) (*hubspot.Client, *simhubspot.CRM, string) {
	t.Helper()
	sim := simhubspot.New(simhubspot.Credentials{Token: token})
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

func invalid(i int) map[string]any { return map[string]any{"email": fmt.Sprintf("not-an-email-%d", i)} }

func TestContract(t *testing.T) {
	crmtest.Run(t, func(t *testing.T) crmtest.Harness {
		sim := simhubspot.New(simhubspot.Credentials{Token: token})
		return crmtest.Harness{Client: hubspot.New(token, 2*time.Second), Sim: sim, Invalid: invalid}
	})
}

// TestContractOAuth runs the contract with the OAuth alternative: access
// tokens from the refresh token, renewed when HubSpot says they expired.
func TestContractOAuth(t *testing.T) {
	crmtest.Run(t, func(t *testing.T) crmtest.Harness {
		creds := simhubspot.NewCredentials()
		sim := simhubspot.New(creds)
		c := hubspot.NewOAuth(hubspot.OAuthCredentials{ClientID: creds.ClientID, ClientSecret: creds.ClientSecret, RefreshToken: creds.RefreshToken}, 2*time.Second)
		return crmtest.Harness{Client: c, Sim: sim, ExpireTokens: sim.ExpireTokens, Invalid: invalid}
	})
}

// TestQuotaHeaders: the X-HubSpot-RateLimit-* headers are read.
func TestQuotaHeaders(t *testing.T) {
	c, _, host := setup(t)
	if r := c.Push(context.Background(), crm.Endpoint{Host: host}, records(t, c, event.OpCreate, "a@x.io")); r[0].Class != crm.OK {
		t.Fatalf("push: %+v", r[0])
	}
	if q := c.Quota(); !q.Known || q.Limit != 190 || q.Remaining != 189 || q.Window != 10*time.Second {
		t.Fatalf("quota headers not understood: %+v", q)
	}
}

func TestBadToken(t *testing.T) {
	_, _, host := setup(t)
	c := hubspot.New("wrong", time.Second)
	r := c.Push(context.Background(), crm.Endpoint{Host: host}, records(t, c, event.OpCreate, "a@x.io"))
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

package salesforce_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/recordsync/record-sync/crmsim"
	simsf "github.com/recordsync/record-sync/crmsim/salesforce"
	"github.com/recordsync/record-sync/services/pusher/crm"
	"github.com/recordsync/record-sync/services/pusher/crm/crmtest"
	"github.com/recordsync/record-sync/services/pusher/crm/salesforce"
	"github.com/recordsync/record-sync/shared/event"
)

func client(t *testing.T, creds simsf.Credentials) *salesforce.Client {
	t.Helper()
	key, err := jwt.ParseRSAPrivateKeyFromPEM([]byte(creds.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	return salesforce.New(salesforce.Credentials{ConsumerKey: creds.ConsumerKey, Username: creds.Username, Key: key, Audience: creds.Audience}, 2*time.Second)
}

func harness(t *testing.T) crmtest.Harness {
	t.Helper()
	creds, err := simsf.NewCredentials()
	if err != nil {
		t.Fatal(err)
	}
	sim, err := simsf.New(creds)
	if err != nil {
		t.Fatal(err)
	}
	return crmtest.Harness{Client: client(t, creds), Sim: sim, ExpireTokens: sim.ExpireTokens, ObjectType: event.ObjectLead,
		// A lead needs a company.
		Invalid: func(i int) map[string]any {
			return map[string]any{"email": fmt.Sprintf("bad%d@example.com", i), "last_name": "L"}
		}}
}

func TestContract(t *testing.T) { crmtest.Run(t, harness) }

// TestUntrustedKey: an assertion signed with a key the org does not trust
// gets no token; the push fails transiently (the credentials can be fixed).
func TestUntrustedKey(t *testing.T) {
	h := harness(t)
	srv, err := crmsim.NewServer(h.Sim)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	other, err := simsf.NewCredentials()
	if err != nil {
		t.Fatal(err)
	}
	ev := &event.Event{RecordID: "r-1", ObjectType: event.ObjectLead, Operation: event.OpCreate}
	r := client(t, other).Push(context.Background(), ts.URL+"/salesforce", []crm.Record{{Event: ev, Identity: "r-1", Fields: map[string]any{"LastName": "L", "Company": "C"}}})
	if r[0].Class != crm.Transient || r[0].Code != "AUTH" || !strings.Contains(r[0].Message, "invalid") {
		t.Fatalf("untrusted key: %+v", r[0])
	}
}

package salesforce_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/recordsync/record-sync/crm"
	"github.com/recordsync/record-sync/crm/crmtest"
	"github.com/recordsync/record-sync/crm/salesforce"
	"github.com/recordsync/record-sync/crmsim"
	simsf "github.com/recordsync/record-sync/crmsim/salesforce"
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

// org returns a new emulated org and the sandbox credentials it trusts.
func org(t *testing.T) (simsf.Credentials, *simsf.CRM) {
	t.Helper()
	creds, err := simsf.NewCredentials()
	if err != nil {
		t.Fatal(err)
	}
	sim, err := simsf.New(creds)
	if err != nil {
		t.Fatal(err)
	}
	return creds, sim
}

func harness(t *testing.T) crmtest.Harness {
	t.Helper()
	creds, sim := org(t)
	return crmtest.Harness{Client: client(t, creds), Sim: sim, ExpireTokens: sim.ExpireTokens, ObjectType: event.ObjectLead,
		// A lead needs a company.
		Invalid: func(i int) map[string]any {
			return map[string]any{"email": fmt.Sprintf("bad%d@example.com", i), "last_name": "L"}
		}}
}

func TestContract(t *testing.T) { crmtest.Run(t, harness) }

// serve serves h's emulator until the test ends and returns the plugin's
// API host.
func serve(t *testing.T, h crmtest.Harness) string {
	t.Helper()
	srv, err := crmsim.NewServer(h.Sim)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return ts.URL + "/salesforce"
}

// TestUntrustedKey: an assertion signed with a key the org does not trust
// gets no token; the push fails transiently (the credentials can be fixed).
func TestUntrustedKey(t *testing.T) {
	h := harness(t)
	host := serve(t, h)
	other, err := simsf.NewCredentials()
	if err != nil {
		t.Fatal(err)
	}
	ev := &event.Event{RecordID: "r-1", ObjectType: event.ObjectLead, Operation: event.OpCreate}
	r := client(t, other).Push(context.Background(), crm.Endpoint{Host: host}, []crm.Record{{Event: ev, Identity: "r-1", Fields: map[string]any{"LastName": "L", "Company": "C"}}})
	if r[0].Class != crm.Transient || r[0].Code != "AUTH" || !strings.Contains(r[0].Message, "invalid") {
		t.Fatalf("untrusted key: %+v", r[0])
	}
}

// TestDeletesByCollection: deleting a full batch takes one query for the
// record ids and one collections delete, whatever the ids hold (quotes
// are escaped); ids too long for one query's URL take more queries, never
// a request per record.
func TestDeletesByCollection(t *testing.T) {
	h := harness(t)
	c, host := h.Client, serve(t, h)
	requests := func() int {
		n := 0
		for _, v := range h.Sim.Sim().Stats(0).RequestsByStatus {
			n += v
		}
		return n
	}
	for _, tt := range []struct {
		name    string
		id      func(i int) string
		queries int
	}{
		{"short ids", func(i int) string { return fmt.Sprintf("o'brien:%d", i) }, 1},
		{"128-character ids", func(i int) string { return fmt.Sprintf("%0128d", i) }, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			recs := func(op event.Operation) []crm.Record {
				out := make([]crm.Record, salesforce.MaxBatch)
				for i := range out {
					ev := &event.Event{RecordID: tt.id(i), ObjectType: event.ObjectLead, Operation: op}
					out[i] = crm.Record{Event: ev, Identity: tt.id(i), Fields: map[string]any{"LastName": "L", "Company": "C"}}
				}
				return out
			}
			for i, r := range c.Push(context.Background(), crm.Endpoint{Host: host}, recs(event.OpCreate)) {
				if r.Class != crm.OK {
					t.Fatalf("create %d: %+v", i, r)
				}
			}
			before := requests()
			for i, r := range c.Push(context.Background(), crm.Endpoint{Host: host}, recs(event.OpDelete)) {
				if r.Class != crm.OK || r.CRMID == "" {
					t.Fatalf("delete %d: %+v", i, r)
				}
			}
			if got := requests() - before; got != tt.queries+1 {
				t.Fatalf("%d requests for %d deletes, want %d queries and one delete", got, salesforce.MaxBatch, tt.queries)
			}
			if n := h.Sim.Stored(); n != 0 {
				t.Fatalf("%d records left", n)
			}
		})
	}
}

// TestEmulatorRefusesOtherMediaTypes: the emulated org answers a body that
// is not application/json with 415 UNSUPPORTED_MEDIA_TYPE, as Salesforce
// does, after a JWT bearer token as any client gets one.
func TestEmulatorRefusesOtherMediaTypes(t *testing.T) {
	creds, sim := org(t)
	host := serve(t, crmtest.Harness{Sim: sim})
	key, err := jwt.ParseRSAPrivateKeyFromPEM([]byte(creds.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	assertion, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": creds.ConsumerKey, "sub": creds.Username,
		"aud": creds.Audience, "exp": time.Now().Add(time.Minute).Unix()}).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.PostForm(host+"/services/oauth2/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {assertion}})
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		InstanceURL string `json:"instance_url"`
	}
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if err != nil || tok.AccessToken == "" {
		t.Fatalf("token: %v", err)
	}
	req, _ := http.NewRequest(http.MethodPatch, tok.InstanceURL+"/services/data/"+salesforce.APIVersion+"/composite/sobjects/Contact/"+salesforce.ExternalID,
		strings.NewReader(`{"records":[]}`))
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Content-Type", "text/plain")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var errs []struct {
		ErrorCode string `json:"errorCode"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&errs); err != nil || resp.StatusCode != http.StatusUnsupportedMediaType || len(errs) != 1 || errs[0].ErrorCode != "UNSUPPORTED_MEDIA_TYPE" {
		t.Fatalf("text/plain body: %d %+v %v", resp.StatusCode, errs, err)
	}
}

package crmsim_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/recordsync/record-sync/crmsim"
	"github.com/recordsync/record-sync/crmsim/hubspot"
	"github.com/recordsync/record-sync/crmsim/outreach"
	"github.com/recordsync/record-sync/crmsim/salesforce"
)

func factories() []crmsim.Factory {
	return []crmsim.Factory{hubspot.Factory(), salesforce.Factory(), outreach.Factory()}
}

// emulator is a running emulator on dir, with tokens for each CRM.
type emulator struct {
	t      *testing.T
	srv    *httptest.Server
	sim    *crmsim.Server
	tokens map[string]string
}

func start(t *testing.T, dir string) *emulator {
	t.Helper()
	sim, err := crmsim.Open(dir, factories()...)
	if err != nil {
		t.Fatal(err)
	}
	e := &emulator{t: t, sim: sim, srv: httptest.NewServer(sim), tokens: map[string]string{}}
	var creds struct {
		HubSpot    hubspot.Credentials    `json:"hubspot"`
		Salesforce salesforce.Credentials `json:"salesforce"`
		Outreach   outreach.Credentials   `json:"outreach"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "credentials.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &creds); err != nil {
		t.Fatal(err)
	}
	e.tokens["hubspot"] = creds.HubSpot.Token
	key, err := jwt.ParseRSAPrivateKeyFromPEM([]byte(creds.Salesforce.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	assertion, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": creds.Salesforce.ConsumerKey, "sub": creds.Salesforce.Username,
		"aud": creds.Salesforce.Audience, "exp": time.Now().Add(time.Minute).Unix()}).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	e.tokens["salesforce"] = e.token("/salesforce/services/oauth2/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {assertion}})
	e.tokens["outreach"] = e.token("/outreach/oauth/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {creds.Outreach.ClientID},
		"client_secret": {creds.Outreach.ClientSecret}, "refresh_token": {creds.Outreach.RefreshToken}})
	return e
}

func (e *emulator) token(path string, form url.Values) string {
	e.t.Helper()
	res, err := http.PostForm(e.srv.URL+path, form)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(res.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		e.t.Fatalf("token from %s: %d %v", path, res.StatusCode, err)
	}
	return tok.AccessToken
}

func (e *emulator) stop() {
	e.t.Helper()
	e.srv.Close()
	if err := e.sim.Close(); err != nil {
		e.t.Fatal(err)
	}
}

// call sends body (JSON) to crm's path and decodes the answer into out;
// it fails the test unless the status is want.
func (e *emulator) call(crm, method, path, body string, want int, out any) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+"/"+crm+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.tokens[crm])
	if body != "" {
		ct := "application/json"
		if crm == "outreach" {
			ct = "application/vnd.api+json"
		}
		req.Header.Set("Content-Type", ct)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		e.t.Fatalf("%s %s %s: %d %s; want %d", crm, method, path, res.StatusCode, b, want)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s %s: %v in %s", crm, method, path, err, b)
		}
	}
}

func (e *emulator) control(method, path string) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+"/_sim"+path, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode >= 300 {
		e.t.Fatalf("%s /_sim%s: %d", method, path, res.StatusCode)
	}
}

const sfBase = "/services/data/v60.0"

func TestRestartKeepsRecords(t *testing.T) {
	dir := t.TempDir()
	e := start(t, dir)
	e.call("hubspot", http.MethodPost, "/crm/v3/objects/contacts/batch/upsert",
		`{"inputs":[{"id":"ada@example.com","idProperty":"email","properties":{"firstname":"Ada","jobtitle":"Countess"}}]}`, http.StatusOK, nil)
	var sfCreated struct {
		ID string `json:"id"`
	}
	e.call("salesforce", http.MethodPost, sfBase+"/sobjects/Contact", `{"LastName":"Lovelace","Title":"Countess","RecordSync_Id__c":"ada"}`, http.StatusCreated, &sfCreated)
	var orCreated struct {
		Data struct {
			ID int `json:"id"`
		} `json:"data"`
	}
	e.call("outreach", http.MethodPost, "/api/v2/prospects", `{"data":{"type":"prospect","attributes":{"emails":["ada@example.com"],"title":"Countess"}}}`, http.StatusCreated, &orCreated)
	e.stop()

	// After a restart every record reads back and takes an update.
	e = start(t, dir)
	check := func(want string) {
		t.Helper()
		var hs struct {
			Properties map[string]string `json:"properties"`
		}
		e.call("hubspot", http.MethodGet, "/crm/v3/objects/contacts/ada@example.com?idProperty=email&properties=jobtitle", "", http.StatusOK, &hs)
		var sf map[string]any
		e.call("salesforce", http.MethodGet, sfBase+"/sobjects/Contact/RecordSync_Id__c/ada", "", http.StatusOK, &sf)
		var or struct {
			Data []struct {
				Attributes map[string]any `json:"attributes"`
			} `json:"data"`
		}
		e.call("outreach", http.MethodGet, "/api/v2/prospects?filter[emails]=ada@example.com", "", http.StatusOK, &or)
		if len(or.Data) != 1 {
			t.Fatalf("outreach holds %d prospects for ada@example.com; want 1", len(or.Data))
		}
		got := fmt.Sprint(hs.Properties["jobtitle"], "|", sf["Title"], "|", or.Data[0].Attributes["title"])
		if got != want+"|"+want+"|"+want {
			t.Fatalf("titles after a restart: %s; want %s in each CRM", got, want)
		}
		if sf["Id"] != sfCreated.ID {
			t.Fatalf("salesforce id after a restart: %v; want %s", sf["Id"], sfCreated.ID)
		}
	}
	check("Countess")
	e.call("hubspot", http.MethodPatch, "/crm/v3/objects/contacts/ada@example.com?idProperty=email", `{"properties":{"jobtitle":"Analyst"}}`, http.StatusOK, nil)
	e.call("salesforce", http.MethodPatch, sfBase+"/sobjects/Contact/"+sfCreated.ID, `{"Title":"Analyst"}`, http.StatusNoContent, nil)
	e.call("outreach", http.MethodPatch, fmt.Sprintf("/api/v2/prospects/%d", orCreated.Data.ID),
		fmt.Sprintf(`{"data":{"type":"prospect","id":%d,"attributes":{"title":"Analyst"}}}`, orCreated.Data.ID), http.StatusOK, nil)
	// A new record after the restart gets an id of its own, not one already used.
	var second struct {
		ID string `json:"id"`
	}
	e.call("salesforce", http.MethodPost, sfBase+"/sobjects/Contact", `{"LastName":"Hopper","RecordSync_Id__c":"grace"}`, http.StatusCreated, &second)
	if second.ID == sfCreated.ID {
		t.Fatalf("a record created after a restart reused id %s", second.ID)
	}
	e.stop()

	e = start(t, dir)
	check("Analyst")
	// A reset empties the records file too: nothing comes back after the next restart.
	for _, crm := range []string{"hubspot", "salesforce", "outreach"} {
		e.control(http.MethodPost, "/"+crm+"/reset")
	}
	e.stop()
	e = start(t, dir)
	defer e.stop()
	e.call("hubspot", http.MethodGet, "/crm/v3/objects/contacts/ada@example.com?idProperty=email", "", http.StatusNotFound, nil)
	e.call("salesforce", http.MethodGet, sfBase+"/sobjects/Contact/RecordSync_Id__c/ada", "", http.StatusNotFound, nil)
	var none struct {
		Data []any `json:"data"`
	}
	e.call("outreach", http.MethodGet, "/api/v2/prospects?filter[emails]=ada@example.com", "", http.StatusOK, &none)
	if len(none.Data) != 0 {
		t.Fatalf("outreach holds %d prospects after a reset and a restart", len(none.Data))
	}
}

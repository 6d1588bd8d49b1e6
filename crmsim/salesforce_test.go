package crmsim_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/recordsync/record-sync/crmsim"
)

// An allOrNone collection with one bad record changes no record, and
// leaves no write in the history: a rollback is not a write.
func TestSalesforceAllOrNoneRollbackWritesNoHistory(t *testing.T) {
	tests := []struct {
		name   string
		method string
		path   func(ada, grace string) string
		body   func(ada, grace string) string
	}{
		{
			name:   "upsert",
			method: http.MethodPatch,
			path:   func(_, _ string) string { return sfBase + "/composite/sobjects/Contact/RecordSync_Id__c" },
			body: func(_, _ string) string {
				return `{"allOrNone":true,"records":[
					{"attributes":{"type":"Contact"},"RecordSync_Id__c":"ada","Title":"Analyst"},
					{"attributes":{"type":"Contact"},"RecordSync_Id__c":"new","LastName":"Newton"},
					{"attributes":{"type":"Contact"},"RecordSync_Id__c":"grace","Email":"not an email"}]}`
			},
		},
		{
			name:   "update",
			method: http.MethodPatch,
			path:   func(_, _ string) string { return sfBase + "/composite/sobjects" },
			body: func(ada, grace string) string {
				return `{"allOrNone":true,"records":[
					{"attributes":{"type":"Contact"},"id":"` + ada + `","Title":"Analyst"},
					{"attributes":{"type":"Contact"},"id":"` + grace + `","Email":"not an email"}]}`
			},
		},
		{
			name:   "create",
			method: http.MethodPost,
			path:   func(_, _ string) string { return sfBase + "/composite/sobjects" },
			body: func(_, _ string) string {
				return `{"allOrNone":true,"records":[
					{"attributes":{"type":"Contact"},"RecordSync_Id__c":"new","LastName":"Newton"},
					{"attributes":{"type":"Contact"},"RecordSync_Id__c":"nameless"}]}`
			},
		},
		{
			name:   "delete",
			method: http.MethodDelete,
			path: func(ada, grace string) string {
				return sfBase + "/composite/sobjects?allOrNone=true&ids=" + ada + "," + grace + ",003sim999999999AAA"
			},
			body: func(_, _ string) string { return "" },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := start(t, t.TempDir())
			t.Cleanup(e.stop)
			created := map[string]string{}
			for _, c := range []struct{ ext, body string }{
				{"ada", `{"LastName":"Lovelace","Title":"Countess","RecordSync_Id__c":"ada"}`},
				{"grace", `{"LastName":"Hopper","Title":"Admiral","RecordSync_Id__c":"grace"}`},
			} {
				var res struct {
					ID string `json:"id"`
				}
				e.call("salesforce", http.MethodPost, sfBase+"/sobjects/Contact", c.body, http.StatusCreated, &res)
				created[c.ext] = res.ID
			}

			var results []struct {
				Success bool `json:"success"`
				Errors  []struct {
					StatusCode string `json:"statusCode"`
				} `json:"errors"`
			}
			e.call("salesforce", tt.method, tt.path(created["ada"], created["grace"]), tt.body(created["ada"], created["grace"]), http.StatusOK, &results)
			if len(results) == 0 {
				t.Fatal("no results")
			}
			for i, r := range results {
				if r.Success || len(r.Errors) == 0 {
					t.Fatalf("result %d of an allOrNone batch with a bad record: %+v; want a failure", i, r)
				}
			}

			for ext, title := range map[string]string{"ada": "Countess", "grace": "Admiral"} {
				var rec map[string]any
				e.call("salesforce", http.MethodGet, sfBase+"/sobjects/Contact/RecordSync_Id__c/"+ext, "", http.StatusOK, &rec)
				if rec["Id"] != created[ext] || rec["Title"] != title || rec["Email"] != nil {
					t.Errorf("%s after the rolled-back batch: Id %v, Title %v, Email %v; want %s, %s, none", ext, rec["Id"], rec["Title"], rec["Email"], created[ext], title)
				}
				if w := sfHistory(e, ext); len(w) != 1 || w[0].Op != "create" {
					t.Errorf("history of %s: %+v; want its create only", ext, w)
				}
			}
			for _, ext := range []string{"new", "nameless"} {
				e.call("salesforce", http.MethodGet, sfBase+"/sobjects/Contact/RecordSync_Id__c/"+ext, "", http.StatusNotFound, nil)
				if w := sfHistory(e, ext); len(w) != 0 {
					t.Errorf("history of %s: %+v; want none", ext, w)
				}
			}
		})
	}
}

// sfHistory returns GET /_sim/salesforce/history for identity.
func sfHistory(e *emulator, identity string) []crmsim.Write {
	e.t.Helper()
	var h struct {
		Writes []crmsim.Write `json:"writes"`
	}
	res, err := http.Get(e.srv.URL + "/_sim/salesforce/history?identity=" + url.QueryEscape(identity))
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		e.t.Fatalf("history of %s: %d", identity, res.StatusCode)
	}
	if err := json.NewDecoder(res.Body).Decode(&h); err != nil {
		e.t.Fatalf("history of %s: %v", identity, err)
	}
	return h.Writes
}

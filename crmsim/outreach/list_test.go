package outreach_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/recordsync/record-sync/crmsim"
	"github.com/recordsync/record-sync/crmsim/outreach"
)

type listAnswer struct {
	Data []struct {
		ID         int            `json:"id"`
		Attributes map[string]any `json:"attributes"`
	} `json:"data"`
	Meta  map[string]int    `json:"meta"`
	Links map[string]string `json:"links"`
}

func TestListFiltersSortsAndPages(t *testing.T) {
	creds := outreach.NewCredentials()
	srv, err := crmsim.NewServer(outreach.New(creds))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	res, err := http.PostForm(ts.URL+"/outreach/oauth/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {creds.ClientID},
		"client_secret": {creds.ClientSecret}, "refresh_token": {creds.RefreshToken}})
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(res.Body).Decode(&tok)
	_ = res.Body.Close()
	do := func(method, path, body string) (*http.Response, listAnswer) {
		t.Helper()
		req, _ := http.NewRequest(method, path, strings.NewReader(body))
		if !strings.HasPrefix(path, "http") {
			req, _ = http.NewRequest(method, ts.URL+"/outreach/api/v2"+path, strings.NewReader(body))
		}
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		req.Header.Set("Content-Type", "application/vnd.api+json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out listAnswer
		_ = json.NewDecoder(res.Body).Decode(&out)
		return res, out
	}
	names := []string{"Carol", "Alice", "Bob", "Dave", "Eve"}
	for i, n := range names {
		res, _ := do(http.MethodPost, "/prospects", fmt.Sprintf(`{"data":{"type":"prospect","attributes":{"firstName":%q,"emails":["%s@example.com"],"title":"t%d"}}}`, n, strings.ToLower(n), i%2))
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("create %s: %d", n, res.StatusCode)
		}
	}
	firstNames := func(a listAnswer) []string {
		var out []string
		for _, d := range a.Data {
			out = append(out, d.Attributes["firstName"].(string))
		}
		return out
	}
	tests := []struct {
		name  string
		query string
		want  []string
		count int
	}{
		{"by email", "filter[emails]=BOB@example.com", []string{"Bob"}, 1},
		{"any of a list", "filter[firstName]=Alice,Eve", []string{"Alice", "Eve"}, 2},
		{"new filter syntax", "filter[firstName][]=Alice&filter[firstName][]=Dave", []string{"Alice", "Dave"}, 2},
		{"two filters", "filter[title]=t0&filter[firstName]=Carol,Alice", []string{"Carol"}, 1},
		{"id range", "filter[id]=2..3", []string{"Alice", "Bob"}, 2},
		{"sort ascending", "sort=firstName", []string{"Alice", "Bob", "Carol", "Dave", "Eve"}, 5},
		{"sort descending, then by name", "sort=-title,firstName", []string{"Alice", "Dave", "Bob", "Carol", "Eve"}, 5},
		{"no match", "filter[emails]=nobody@example.com", nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, got := do(http.MethodGet, "/prospects?"+tc.query, "")
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d", res.StatusCode)
			}
			if d := cmp.Diff(tc.want, firstNames(got)); d != "" {
				t.Fatalf("(-want +got):\n%s", d)
			}
			if got.Meta["count"] != tc.count {
				t.Fatalf("meta.count %d; want %d", got.Meta["count"], tc.count)
			}
			if res.Header.Get("X-RateLimit-Limit") != "10000" || res.Header.Get("X-RateLimit-Remaining") == "" || res.Header.Get("X-RateLimit-Reset") == "" {
				t.Fatalf("rate-limit headers: %v", res.Header)
			}
		})
	}
	t.Run("cursor paging follows links.next", func(t *testing.T) {
		var all []string
		next := ts.URL + "/outreach/api/v2/prospects?sort=firstName&page[size]=2"
		for pages := 0; next != ""; pages++ {
			if pages > 5 {
				t.Fatal("links.next never ends")
			}
			res, got := do(http.MethodGet, next, "")
			if res.StatusCode != http.StatusOK || len(got.Data) > 2 {
				t.Fatalf("page %d: status %d, %d records", pages, res.StatusCode, len(got.Data))
			}
			all = append(all, firstNames(got)...)
			next = got.Links["next"]
		}
		if d := cmp.Diff([]string{"Alice", "Bob", "Carol", "Dave", "Eve"}, all); d != "" {
			t.Fatalf("(-want +got):\n%s", d)
		}
	})
	for _, bad := range []string{"filter[shoeSize]=9", "sort=shoeSize", "page[size]=0", "page[size]=1001", "page[after]=garbage!"} {
		t.Run("refused: "+bad, func(t *testing.T) {
			if res, _ := do(http.MethodGet, "/prospects?"+bad, ""); res.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d; want 400", res.StatusCode)
			}
		})
	}
}

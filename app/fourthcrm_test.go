package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/recordsync/record-sync/app"
	"github.com/recordsync/record-sync/crm"
	"github.com/recordsync/record-sync/shared/config"
	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/mapping"
	"github.com/recordsync/record-sync/shared/status"
)

// TestAddingACRM proves docs/CONTRIBUTING.md's "Adding a CRM": a fourth
// CRM, written here and served by the test, is one package's worth of code
// and one entry in the factory list, and a record syncs to it end to end
// through the whole dev mesh (edge, rules, pusher, status). Its
// credentials come from its own entry of the credentials file, its
// configuration from its factory; nothing else names it. A second such
// plugin that forgets to fill its results shows the pusher reads an unset
// result as a transient NO_RESULT, never as synced.
func TestAddingACRM(t *testing.T) {
	crmSrv := newTinyCRM("tok-1")
	srv := httptest.NewServer(crmSrv)
	t.Cleanup(srv.Close)
	creds := filepath.Join(t.TempDir(), "credentials.json")
	if err := os.WriteFile(creds, []byte(`{"tiny":{"token":"tok-1"},"forgetful":{"token":"tok-1"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startDev(t, func(e *app.Env) {
		e.CRMSim = false // the three others have no credentials: they wait
		e.CRMCredentials = creds
		e.CRMs = append(app.CRMs(), tinyFactory("tiny", srv.URL, false), tinyFactory("forgetful", srv.URL, true))
	})

	r := s.call("POST", "/v1/sync/", syncKey, map[string]any{"record_id": "c-4", "operation": "create", "targets": []string{"tiny", "forgetful"},
		"data": map[string]any{"email": "Ada@Example.com", "first_name": "Ada"}})
	if r.Status != http.StatusAccepted {
		t.Fatalf("POST /v1/sync/: %d %s", r.Status, r.Raw)
	}
	st := s.waitState("c-4", "tiny", status.StateSynced)
	if st.CRMID == nil || crmSrv.get("ada@example.com")["name"] != "Ada" || *st.CRMID != "T-ada@example.com" {
		t.Fatalf("synced %+v, the CRM holds %v", st, crmSrv.get("ada@example.com"))
	}
	forgot := s.waitFor("c-4", "forgetful", "a result left unset read as a transient NO_RESULT", func(t *status.Target) bool {
		return t.LastError != nil && t.LastError.Code == crm.CodeNoResult
	})
	if forgot.State == status.StateSynced || forgot.LastError.Class != "transient" {
		t.Fatalf("an unset result: %+v %+v", forgot, forgot.LastError)
	}

	// Its configuration is its factory's, validated against its batch.
	cfg := s.call("GET", "/v1/sync/config", adminKey, nil)
	var tc map[string]any
	for _, c := range cfg.Body["targets"].([]any) {
		if c := c.(map[string]any); c["target"] == "tiny" {
			tc = c
		}
	}
	if cfg.Status != http.StatusOK || tc["api_host"] != srv.URL || tc["rate_limit_per_minute"] != 600.0 || tc["max_attempts"] != 3.0 {
		t.Fatalf("config: %d %s", cfg.Status, cfg.Raw)
	}
	if r := s.call("POST", "/v1/sync/config-override", adminKey, map[string]any{"target": "tiny", "batch_size": 2}); r.Status != http.StatusUnprocessableEntity {
		t.Fatalf("a batch past the tiny CRM's largest: %d %s", r.Status, r.Raw)
	}
	// An unknown target is refused, naming the registered ones.
	if r := s.call("POST", "/v1/sync/", syncKey, map[string]any{"record_id": "c-5", "operation": "create", "targets": []string{"tinier"},
		"data": map[string]any{"email": "b@example.com"}}); r.Status != http.StatusUnprocessableEntity || !strings.Contains(string(r.Raw), "tiny") {
		t.Fatalf("unknown target: %d %s", r.Status, r.Raw)
	}
}

// tinyFactory is the factory of a tiny CRM named name at host: one
// contact per request, matched by email. forgetful plugins leave their
// results unset.
func tinyFactory(name, host string, forgetful bool) crm.Factory {
	return crm.Factory{
		Name:     name,
		Defaults: config.Override{BatchSize: new(1), RateLimitPerMinute: new(600), Concurrency: new(2), APIHost: new(host)},
		New: func(raw json.RawMessage, o crm.Options) (crm.CRM, bool, error) {
			var c struct {
				Token string `json:"token"`
			}
			if err := crm.DecodeCredentials(name, raw, &c); err != nil {
				return nil, false, err
			}
			p := &tinyPlugin{name: name, token: c.Token, forgetful: forgetful}
			p.Conn = crm.NewConn(crm.API{Name: name, Session: p.session}, o.Timeout)
			return p, c.Token != "", nil
		},
	}
}

// tinyPlugin is the tiny CRM's plugin.
type tinyPlugin struct {
	*crm.Conn
	name, token string
	forgetful   bool
}

var _ crm.CRM = (*tinyPlugin)(nil)

func (p *tinyPlugin) session(_ context.Context, ep crm.Endpoint, _ *crm.Session) (crm.Session, error) {
	return crm.Session{Base: ep.URL(""), Token: p.token}, nil
}

func (p *tinyPlugin) Name() string  { return p.name }
func (p *tinyPlugin) MaxBatch() int { return 1 }

func (p *tinyPlugin) Schema(objectType string) (mapping.Schema, bool) {
	return mapping.Schema{Fields: []string{"email", "name"}, Default: mapping.Mapping{Fields: []mapping.Field{
		{From: "email", To: "email", Fn: []string{"trim", "lower"}}, {From: "first_name", To: "name"},
	}}}, objectType == event.ObjectContact
}

func (p *tinyPlugin) Identify(_ *event.Event, fields map[string]any) (string, error) {
	return crm.EmailIdentity(p.name, fields, "email")
}

func (p *tinyPlugin) Payload(rec crm.Record) any { return map[string]any{"fields": rec.Fields} }

func (p *tinyPlugin) Push(ctx context.Context, ep crm.Endpoint, recs []crm.Record) []crm.Result {
	out := make([]crm.Result, len(recs))
	for i, rec := range recs {
		path := "/v1/contacts/" + url.PathEscape(rec.Identity)
		if rec.Event.Operation == event.OpDelete {
			if _, res, ok := p.Call(ctx, ep, http.MethodDelete, path, nil, nil); !ok {
				out[i] = res
				continue
			}
			out[i] = crm.Result{Class: crm.OK}
			continue
		}
		var answer struct {
			ID string `json:"id"`
		}
		_, res, ok := p.Call(ctx, ep, http.MethodPut, path, p.Payload(rec), &answer)
		switch {
		case p.forgetful: // leaves out[i] unset
		case !ok:
			out[i] = res
		default:
			out[i] = crm.Result{Class: crm.OK, CRMID: answer.ID}
		}
	}
	return out
}

// tinyCRM is the CRM itself: contacts by email, behind a bearer token.
type tinyCRM struct {
	token string

	mu       sync.Mutex
	contacts map[string]map[string]any
}

func newTinyCRM(token string) *tinyCRM {
	return &tinyCRM{token: token, contacts: map[string]map[string]any{}}
}

func (c *tinyCRM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	email, found := strings.CutPrefix(r.URL.Path, "/v1/contacts/")
	switch {
	case r.Header.Get("Authorization") != "Bearer "+c.token:
		http.Error(w, `{"code":"UNAUTHENTICATED"}`, http.StatusUnauthorized)
	case !found || email == "":
		http.NotFound(w, r)
	case r.Method == http.MethodPut:
		var body struct {
			Fields map[string]any `json:"fields"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, `{"code":"BAD_JSON"}`, http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.contacts[email] = body.Fields
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"id":%q}`, "T-"+email)
	case r.Method == http.MethodDelete:
		c.mu.Lock()
		delete(c.contacts, email)
		c.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func (c *tinyCRM) get(email string) map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.contacts[email]
}

// Package outreach emulates Outreach's API v2 for prospects: OAuth 2.0
// refresh-token grants with short-lived access tokens, JSON:API
// (application/vnd.api+json) create, read, list with filter[emails],
// update and delete, JSON:API error objects, and the hourly rate limit
// with X-RateLimit-* headers and a 429 with Retry-After. Outreach has no
// upsert: a client must look a prospect up before it creates one, and a
// create for an email already stored is counted as a duplicate.
package outreach

import (
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/recordsync/record-sync/crmsim"
)

const mediaType = "application/vnd.api+json"

var attributes = []string{"firstName", "lastName", "emails", "title", "company", "workPhones", "mobilePhones",
	"addressCity", "addressState", "addressZip", "addressCountry", "tags"}

// Credentials are the OAuth client and the refresh token a client starts
// from.
type Credentials = crmsim.OAuthClient

// prospect is one stored prospect, as kept in the records file.
type prospect struct {
	ID         int            `json:"id"`
	Attributes map[string]any `json:"attributes"`
	CreatedAt  time.Time      `json:"createdAt"`
	UpdatedAt  time.Time      `json:"updatedAt"`
}

// CRM is the emulated Outreach.
type CRM struct {
	sim   *crmsim.Sim
	creds Credentials

	tokens *crmsim.Tokens

	mu    sync.Mutex
	store *crmsim.Store[prospect] // by id in decimal, indexed by emailKeys
	next  int
}

var _ crmsim.CRM = (*CRM)(nil)

// Factory builds the emulated Outreach for crmsim.Open: its prospects are
// kept in <dir>/outreach.db.
func Factory() crmsim.Factory {
	return crmsim.Factory{Name: "outreach", New: func(raw json.RawMessage, dir string) (crmsim.CRM, error) {
		var creds Credentials
		if len(raw) > 0 {
			_ = json.Unmarshal(raw, &creds) // a damaged entry is replaced
		}
		if creds.RefreshToken == "" || creds.ClientID == "" {
			creds = NewCredentials()
		}
		return Open(creds, crmsim.RecordsPath(dir, "outreach"))
	}}
}

// New returns an empty Outreach, in memory only, accepting creds.
func New(creds Credentials) *CRM {
	c, _ := Open(creds, "") // without a file, nothing can fail
	return c
}

// Open returns the Outreach accepting creds that keeps its prospects in
// the file at path ("": in memory only), with the prospects it holds.
func Open(creds Credentials, path string) (*CRM, error) {
	c := &CRM{sim: crmsim.NewSim(10000, time.Hour), creds: creds, tokens: crmsim.NewTokens(2 * time.Hour)}
	c.clear()
	store, err := crmsim.OpenRecords(c.sim, path, emailKeys)
	if err != nil {
		return nil, fmt.Errorf("outreach: %w", err)
	}
	c.store = store
	for _, p := range store.All() {
		c.next = max(c.next, p.ID+1)
	}
	return c, nil
}

// NewCredentials returns new sandbox credentials.
func NewCredentials() Credentials { return crmsim.NewOAuthClient() }

// Name implements crmsim.CRM.
func (c *CRM) Name() string { return "outreach" }

// Sim implements crmsim.CRM.
func (c *CRM) Sim() *crmsim.Sim { return c.sim }

// Credentials implements crmsim.CRM.
func (c *CRM) Credentials() any { return c.creds }

// ExpireTokens ends every access token issued so far, as their two hours
// passing would.
func (c *CRM) ExpireTokens() { c.tokens.Expire() }

func (c *CRM) clear() {
	c.next = 1
}

// Reset implements crmsim.CRM: the prospects and their file are emptied.
func (c *CRM) Reset() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clear()
	return c.store.Reset()
}

// Close implements crmsim.CRM.
func (c *CRM) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return errors.Join(c.store.Close(), c.sim.Close())
}

// getLocked reads prospect id: a copy, kept by saveLocked.
func (c *CRM) getLocked(id int) (*prospect, bool) {
	p, ok := c.store.Get(strconv.Itoa(id))
	return &p, ok
}

// saveLocked keeps p's new state.
func (c *CRM) saveLocked(p *prospect) { c.store.Put(strconv.Itoa(p.ID), *p) }

// unlockAnswer writes the request's changes to the records file, unlocks,
// and answers v, or the failure to keep the prospects.
func (c *CRM) unlockAnswer(w http.ResponseWriter, r *http.Request, timeout bool, status int, v any) {
	err := c.store.Commit()
	c.mu.Unlock()
	if err != nil {
		writeErr(w, http.StatusInternalServerError, errorObject{ID: "internalServerError", Title: "Internal Server Error", Detail: "the emulator could not keep its prospects: " + err.Error()})
		return
	}
	crmsim.Answer(w, r, timeout, status, mediaType, v)
}

// Stored implements crmsim.CRM.
func (c *CRM) Stored() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.store.Len()
}

// Register implements crmsim.CRM.
func (c *CRM) Register(mux *http.ServeMux, prefix string) {
	mux.HandleFunc("POST "+prefix+"/oauth/token", c.token)
	base := prefix + "/api/v2/prospects"
	mux.Handle("GET "+base, c.guard(c.list))
	mux.Handle("POST "+base, c.guard(c.create))
	mux.Handle("GET "+base+"/{id}", c.guard(c.get))
	mux.Handle("PATCH "+base+"/{id}", c.guard(c.update))
	mux.Handle("DELETE "+base+"/{id}", c.guard(c.delete))
}

type errorObject struct {
	ID     string            `json:"id"`
	Title  string            `json:"title"`
	Detail string            `json:"detail,omitempty"`
	Source map[string]string `json:"source,omitempty"`
}

func writeErr(w http.ResponseWriter, status int, e errorObject) {
	crmsim.WriteJSON(w, status, mediaType, map[string]any{"errors": []errorObject{e}})
}

func (c *CRM) token(w http.ResponseWriter, r *http.Request) {
	c.tokens.RefreshGrant(w, r, c.creds, map[string]any{"scope": "prospects.all", "created_at": time.Now().Unix()})
}

// guard checks the token, the quota, the faults and the media type.
func (c *CRM) guard(h func(w http.ResponseWriter, r *http.Request, timeout bool)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !c.tokens.Valid(tok) {
			writeErr(w, http.StatusUnauthorized, errorObject{ID: "unauthorized", Title: "Unauthorized", Detail: "The access token is invalid or has expired."})
			return
		}
		a := c.sim.Admit()
		if a.Verdict == crmsim.Down {
			crmsim.Refuse(w)
			return
		}
		c.sim.Latency(r)
		reset := a.Quota.Reset
		w.Header().Set("X-RateLimit-Limit", strconv.Itoa(a.Quota.Limit))
		w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(a.Quota.Remaining))
		w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
		switch a.Verdict {
		case crmsim.Limited:
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(time.Until(reset).Seconds()+0.999))))
			writeErr(w, http.StatusTooManyRequests, errorObject{ID: "rateLimitExceeded", Title: "Rate Limit Exceeded",
				Detail: fmt.Sprintf("You have exceeded your permitted rate limit of %d; please try again at %s.", a.Quota.Limit, reset.UTC().Format("2006-01-02T15:04:05"))})
			return
		case crmsim.Fail5xx:
			writeErr(w, http.StatusServiceUnavailable, errorObject{ID: "scheduledServerMaintenance", Title: "Service Unavailable", Detail: "Please try again shortly."})
			return
		}
		if r.Method == http.MethodPost || r.Method == http.MethodPatch {
			if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != mediaType {
				writeErr(w, http.StatusUnsupportedMediaType, errorObject{ID: "unsupportedMediaType", Title: "Unsupported Media Type",
					Detail: "Expected Content-Type header to be 'application/vnd.api+json'."})
				return
			}
		}
		h(w, r, a.Timeout)
	})
}

type resource struct {
	Type       string         `json:"type"`
	ID         any            `json:"id,omitempty"`
	Attributes map[string]any `json:"attributes"`
}

func (p *prospect) resource() resource {
	attrs := maps.Clone(p.Attributes)
	attrs["createdAt"], attrs["updatedAt"] = p.CreatedAt.Format(time.RFC3339), p.UpdatedAt.Format(time.RFC3339)
	return resource{Type: "prospect", ID: p.ID, Attributes: attrs}
}

func emails(attrs map[string]any) []string {
	var out []string
	list, _ := attrs["emails"].([]any)
	for _, e := range list {
		if s, ok := e.(string); ok {
			out = append(out, strings.ToLower(s))
		}
	}
	return out
}

// emailKeys indexes a prospect by each of its emails, lower-cased.
func emailKeys(p *prospect) []string { return emails(p.Attributes) }

// withEmail yields the ids of the prospects with email, lower-cased.
func (c *CRM) withEmail(email string) iter.Seq[int] {
	return func(yield func(int) bool) {
		for id := range c.store.Find(email) {
			if n, err := strconv.Atoi(id); err == nil && !yield(n) {
				return
			}
		}
	}
}

// decode reads a JSON:API document and checks its attributes.
func decode(w http.ResponseWriter, r *http.Request, id string) (map[string]any, bool) {
	var doc struct {
		Data *resource `json:"data"`
	}
	if err := crmsim.ReadJSON(w, r, &doc); err != nil || doc.Data == nil {
		writeErr(w, http.StatusBadRequest, errorObject{ID: "badRequest", Title: "Bad Request", Detail: "The request body is not a JSON:API document."})
		return nil, false
	}
	if doc.Data.Type != "prospect" || (id != "" && fmt.Sprint(doc.Data.ID) != id) {
		writeErr(w, http.StatusConflict, errorObject{ID: "typeOrIdMismatch", Title: "Conflict", Detail: "data.type must be prospect and data.id must match the URL"})
		return nil, false
	}
	for k, v := range doc.Data.Attributes {
		if !slices.Contains(attributes, k) {
			writeErr(w, http.StatusUnprocessableEntity, errorObject{ID: "validationError", Title: "Validation Error",
				Detail: "Unknown attribute " + k + ".", Source: map[string]string{"pointer": "/data/attributes/" + k}})
			return nil, false
		}
		if k == "emails" {
			if _, ok := v.([]any); !ok && v != nil {
				writeErr(w, http.StatusUnprocessableEntity, errorObject{ID: "validationError", Title: "Validation Error",
					Detail: "Emails must be a list.", Source: map[string]string{"pointer": "/data/attributes/emails"}})
				return nil, false
			}
		}
	}
	return doc.Data.Attributes, true
}

func (c *CRM) create(w http.ResponseWriter, r *http.Request, timeout bool) {
	attrs, ok := decode(w, r, "")
	if !ok {
		return
	}
	now := time.Now().UTC()
	c.mu.Lock()
	for _, e := range emails(attrs) {
		if _, taken := c.store.First(e); taken {
			c.sim.Duplicate() // Outreach does not stop it; a faithful client never does it
		}
	}
	p := &prospect{ID: c.next, Attributes: attrs, CreatedAt: now, UpdatedAt: now}
	c.next++
	c.saveLocked(p)
	c.unlockAnswer(w, r, timeout, http.StatusCreated, map[string]any{"data": p.resource()})
}

func (c *CRM) find(w http.ResponseWriter, r *http.Request) (*prospect, bool) {
	id, err := strconv.Atoi(r.PathValue("id"))
	p, ok := c.getLocked(id)
	if err != nil || !ok {
		writeErr(w, http.StatusNotFound, errorObject{ID: "resourceNotFound", Title: "Resource Not Found",
			Detail: fmt.Sprintf("Could not find 'prospect' with ID '%s'.", r.PathValue("id"))})
		return nil, false
	}
	return p, true
}

func (c *CRM) get(w http.ResponseWriter, r *http.Request, _ bool) {
	c.mu.Lock()
	p, ok := c.find(w, r)
	var out resource
	if ok {
		out = p.resource()
	}
	c.mu.Unlock()
	if ok {
		crmsim.WriteJSON(w, http.StatusOK, mediaType, map[string]any{"data": out})
	}
}

func (c *CRM) update(w http.ResponseWriter, r *http.Request, timeout bool) {
	attrs, ok := decode(w, r, r.PathValue("id"))
	if !ok {
		return
	}
	c.mu.Lock()
	p, ok := c.find(w, r)
	if !ok {
		c.mu.Unlock()
		return
	}
	for k, v := range attrs {
		p.Attributes[k] = v
	}
	p.UpdatedAt = time.Now().UTC()
	c.saveLocked(p)
	c.unlockAnswer(w, r, timeout, http.StatusOK, map[string]any{"data": p.resource()})
}

func (c *CRM) delete(w http.ResponseWriter, r *http.Request, timeout bool) {
	c.mu.Lock()
	p, ok := c.find(w, r)
	if !ok {
		c.mu.Unlock()
		return
	}
	c.store.Delete(strconv.Itoa(p.ID))
	c.unlockAnswer(w, r, timeout, http.StatusNoContent, nil)
}

// Package hubspot emulates HubSpot's CRM v3 contacts API: private-app
// bearer auth, single and batch object endpoints (create, read, update,
// upsert by email, archive), HubSpot's error bodies, its ten-secondly rate
// limit with the X-HubSpot-RateLimit-* headers and the 429 body.
package hubspot

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
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

// MaxBatch is the most inputs a batch request may carry.
const MaxBatch = 100

// Default quota of a Professional private app: 190 requests per 10 s.
const (
	defaultLimit  = 190
	defaultWindow = 10 * time.Second
)

// Properties a contact accepts; any other is PROPERTY_DOESNT_EXIST.
var knownProperties = map[string]bool{
	"email": true, "firstname": true, "lastname": true, "phone": true, "mobilephone": true,
	"company": true, "jobtitle": true, "website": true, "address": true, "city": true,
	"state": true, "zip": true, "country": true, "lifecyclestage": true, "hs_lead_status": true,
}

// contact is one stored contact, as kept in the records file.
type contact struct {
	ID         string            `json:"id"`
	Properties map[string]string `json:"properties"`
	CreatedAt  time.Time         `json:"createdAt"`
	UpdatedAt  time.Time         `json:"updatedAt"`
	Archived   bool              `json:"archived,omitempty"`
}

// Credentials are the private app token and, for the OAuth alternative,
// an app's client and refresh token.
type Credentials struct {
	Token string `json:"token"`
	crmsim.OAuthClient
}

// NewCredentials returns new sandbox credentials.
func NewCredentials() Credentials {
	return Credentials{Token: "pat-na1-" + crmsim.NewOAuthClient().ClientSecret, OAuthClient: crmsim.NewOAuthClient()}
}

// accessTokenTTL is how long HubSpot's OAuth access tokens live.
const accessTokenTTL = 30 * time.Minute

// CRM is the emulated HubSpot.
type CRM struct {
	sim    *crmsim.Sim
	creds  Credentials
	tokens *crmsim.Tokens // OAuth access tokens

	mu     sync.Mutex
	store  *crmsim.Store[contact] // by HubSpot id, archived ones too; indexed by emailKeys
	nextID int
	live   int // contacts not archived
}

var _ crmsim.CRM = (*CRM)(nil)

// Factory builds the emulated HubSpot for crmsim.Open: its contacts are
// kept in <dir>/hubspot.db.
func Factory() crmsim.Factory {
	return crmsim.Factory{Name: "hubspot", New: func(raw json.RawMessage, dir string) (crmsim.CRM, error) {
		var creds Credentials
		if len(raw) > 0 {
			_ = json.Unmarshal(raw, &creds) // a damaged entry is replaced
		}
		if fresh := NewCredentials(); creds.Token == "" {
			creds = fresh
		} else if creds.RefreshToken == "" { // a file from before the OAuth alternative
			creds.OAuthClient = fresh.OAuthClient
		}
		return Open(creds, crmsim.RecordsPath(dir, "hubspot"))
	}}
}

// New returns an empty HubSpot, in memory only, accepting creds.
func New(creds Credentials) *CRM {
	c, _ := Open(creds, "") // without a file, nothing can fail
	return c
}

// Open returns the HubSpot accepting creds that keeps its contacts in the
// file at path ("": in memory only), with the contacts it holds.
func Open(creds Credentials, path string) (*CRM, error) {
	c := &CRM{sim: crmsim.NewSim(defaultLimit, defaultWindow), creds: creds, tokens: crmsim.NewTokens(accessTokenTTL)}
	c.clear()
	store, err := crmsim.OpenRecords(c.sim, path, emailKeys)
	if err != nil {
		return nil, fmt.Errorf("hubspot: %w", err)
	}
	c.store = store
	for id, ct := range store.All() {
		if n, err := strconv.Atoi(id); err == nil {
			c.nextID = max(c.nextID, n+1)
		}
		if !ct.Archived {
			c.live++
		}
	}
	return c, nil
}

// emailKeys indexes a live contact by its email (lower-cased by setProp);
// an archived one leaves the index.
func emailKeys(ct *contact) []string {
	if e := ct.Properties["email"]; e != "" && !ct.Archived {
		return []string{e}
	}
	return nil
}

// byEmail returns the id of the live contact with email, lower-cased.
func (c *CRM) byEmail(email string) (string, bool) {
	if email == "" {
		return "", false
	}
	return c.store.First(email)
}

// Name implements crmsim.CRM.
func (c *CRM) Name() string { return "hubspot" }

// Sim implements crmsim.CRM.
func (c *CRM) Sim() *crmsim.Sim { return c.sim }

// Credentials implements crmsim.CRM.
func (c *CRM) Credentials() any { return c.creds }

// ExpireTokens ends every OAuth access token issued so far, as their 30
// minutes passing would.
func (c *CRM) ExpireTokens() { c.tokens.Expire() }

func (c *CRM) clear() {
	c.nextID, c.live = 1001, 0
}

// Reset implements crmsim.CRM: the contacts and their file are emptied.
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

// getLocked reads the contact with HubSpot id id, archived or not: a copy,
// kept by saveLocked.
func (c *CRM) getLocked(id string) (*contact, bool) {
	ct, ok := c.store.Get(id)
	return &ct, ok
}

// saveLocked keeps ct's new state.
func (c *CRM) saveLocked(ct *contact) { c.store.Put(ct.ID, *ct) }

// commitLocked writes the changes of a request to the records file.
func (c *CRM) commitLocked() error { return c.store.Commit() }

// unlockAnswer commits the request's changes, unlocks, and answers v, or
// the failure to keep the contacts.
func (c *CRM) unlockAnswer(w http.ResponseWriter, r *http.Request, timeout bool, status int, v any) {
	err := c.commitLocked()
	c.mu.Unlock()
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "INTERNAL_ERROR", "the emulator could not keep its contacts: "+err.Error())
		return
	}
	crmsim.Answer(w, r, timeout, status, "application/json;charset=utf-8", v)
}

// Stored implements crmsim.CRM: contacts not archived.
func (c *CRM) Stored() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live
}

// Register implements crmsim.CRM.
func (c *CRM) Register(mux *http.ServeMux, prefix string) {
	mux.HandleFunc("POST "+prefix+"/oauth/v1/token", func(w http.ResponseWriter, r *http.Request) {
		c.tokens.RefreshGrant(w, r, c.creds.OAuthClient, nil)
	})
	base := prefix + "/crm/v3/objects/contacts"
	mux.Handle("POST "+base+"/batch/upsert", c.guard(c.batchUpsert))
	mux.Handle("POST "+base+"/batch/update", c.guard(c.batchUpdate))
	mux.Handle("POST "+base+"/batch/archive", c.guard(c.batchArchive))
	mux.Handle("POST "+base+"/batch/read", c.guard(c.batchRead))
	mux.Handle("POST "+base+"/batch/create", c.guard(c.batchCreate))
	mux.Handle("POST "+base+"/search", c.guard(c.search))
	mux.Handle("POST "+base, c.guard(c.create))
	mux.Handle("GET "+base, c.guard(c.list))
	mux.Handle("GET "+base+"/{id}", c.guard(c.get))
	mux.Handle("PATCH "+base+"/{id}", c.guard(c.update))
	mux.Handle("DELETE "+base+"/{id}", c.guard(c.archive))
}

// errorBody is HubSpot's error envelope.
type errorBody struct {
	Status        string            `json:"status"`
	Message       string            `json:"message"`
	CorrelationID string            `json:"correlationId"`
	Category      string            `json:"category,omitempty"`
	SubCategory   string            `json:"subCategory,omitempty"`
	Context       map[string]any    `json:"context,omitempty"`
	Errors        []errorDetail     `json:"errors,omitempty"`
	Links         map[string]string `json:"links,omitempty"`
	// Rate-limit bodies.
	ErrorType  string `json:"errorType,omitempty"`
	PolicyName string `json:"policyName,omitempty"`
}

type errorDetail struct {
	Message string         `json:"message"`
	Code    string         `json:"code,omitempty"`
	In      string         `json:"in,omitempty"`
	Context map[string]any `json:"context,omitempty"`
}

func correlationID() string {
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", time.Now().UnixNano()&0xffffffff, time.Now().UnixNano())
}

func writeErr(w http.ResponseWriter, status int, category, msg string, details ...errorDetail) {
	crmsim.WriteJSON(w, status, "application/json;charset=utf-8", errorBody{
		Status: "error", Message: msg, CorrelationID: correlationID(), Category: category, Errors: details,
	})
}

// guard applies auth, the quota and faults before h, and the rate-limit
// headers to every answer.
func (c *CRM) guard(h func(w http.ResponseWriter, r *http.Request, timeout bool, partial float64)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		private := ok && c.creds.Token != "" && subtle.ConstantTimeCompare([]byte(auth), []byte(c.creds.Token)) == 1
		if issued, expiredFor := c.tokens.Check(auth); !private && issued && expiredFor > 0 {
			writeErr(w, http.StatusUnauthorized, "EXPIRED_AUTHENTICATION",
				fmt.Sprintf("The OAuth token used to make this call expired %d second(s) ago.", int(expiredFor.Seconds())))
			return
		} else if !private && !issued {
			writeErr(w, http.StatusUnauthorized, "INVALID_AUTHENTICATION",
				"Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview")
			return
		}
		a := c.sim.Admit()
		if a.Verdict == crmsim.Down {
			crmsim.Refuse(w)
			return
		}
		c.sim.Latency(r)
		h2 := w.Header()
		h2.Set("X-HubSpot-RateLimit-Interval-Milliseconds", strconv.FormatInt(a.Quota.Window.Milliseconds(), 10))
		h2.Set("X-HubSpot-RateLimit-Max", strconv.Itoa(a.Quota.Limit))
		h2.Set("X-HubSpot-RateLimit-Remaining", strconv.Itoa(a.Quota.Remaining))
		switch a.Verdict {
		case crmsim.Limited:
			wait := max(time.Until(a.Quota.Reset), time.Second)
			h2.Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
			crmsim.WriteJSON(w, http.StatusTooManyRequests, "application/json;charset=utf-8", errorBody{
				Status: "error", Message: "You have reached your ten_secondly_rolling limit.", ErrorType: "RATE_LIMIT",
				CorrelationID: correlationID(), PolicyName: "TEN_SECONDLY_ROLLING", Category: "RATE_LIMITS",
			})
			return
		case crmsim.Fail5xx:
			writeErr(w, http.StatusBadGateway, "INTERNAL_ERROR", "The server encountered a temporary error; please retry.")
			return
		}
		if r.Method == http.MethodPost || r.Method == http.MethodPatch {
			if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
				writeErr(w, http.StatusUnsupportedMediaType, "VALIDATION_ERROR", "Content-Type must be application/json")
				return
			}
		}
		h(w, r, a.Timeout, a.Partial)
	})
}

type input struct {
	ID                 string            `json:"id,omitempty"`
	IDProperty         string            `json:"idProperty,omitempty"`
	Properties         map[string]string `json:"properties,omitempty"`
	ObjectWriteTraceID string            `json:"objectWriteTraceId,omitempty"`
}

type batchRequest struct {
	Inputs     []input  `json:"inputs"`
	IDProperty string   `json:"idProperty,omitempty"`
	Properties []string `json:"properties,omitempty"`
}

type objectJSON struct {
	ID         string         `json:"id"`
	Properties map[string]any `json:"properties"`
	CreatedAt  time.Time      `json:"createdAt"`
	UpdatedAt  time.Time      `json:"updatedAt"`
	Archived   bool           `json:"archived"`
	ArchivedAt *time.Time     `json:"archivedAt,omitempty"`
	New        *bool          `json:"new,omitempty"`
}

type batchResponse struct {
	Status      string       `json:"status"`
	Results     []objectJSON `json:"results"`
	Errors      []errorBody  `json:"errors,omitempty"`
	NumErrors   int          `json:"numErrors,omitempty"`
	RequestedAt time.Time    `json:"requestedAt,omitzero"`
	StartedAt   time.Time    `json:"startedAt"`
	CompletedAt time.Time    `json:"completedAt"`
}

// defaultProperties are the properties a read returns when it names none.
var defaultProperties = []string{"email", "firstname", "lastname"}

// property returns a contact's property, the ones HubSpot computes
// included, and whether it has a value.
func (ct *contact) property(name string) (string, bool) {
	switch name {
	case "hs_object_id":
		return ct.ID, true
	case "createdate":
		return ct.CreatedAt.Format(time.RFC3339Nano), true
	case "lastmodifieddate":
		return ct.UpdatedAt.Format(time.RFC3339Nano), true
	}
	v, ok := ct.Properties[name]
	return v, ok
}

// json renders ct with the properties named (every one it has when props
// is nil, as write answers do), and always the three HubSpot sets.
func (ct *contact) json(isNew *bool, props []string) objectJSON {
	var out map[string]any
	if props == nil {
		out = make(map[string]any, len(ct.Properties)+3)
		for k, v := range ct.Properties {
			out[k] = v
		}
	} else {
		out = make(map[string]any, len(props)+3)
		for _, p := range props {
			if v, ok := ct.property(p); ok {
				out[p] = v
			} else {
				out[p] = nil // a property asked for without a value reads as null
			}
		}
	}
	for _, p := range []string{"hs_object_id", "createdate", "lastmodifieddate"} {
		out[p], _ = ct.property(p)
	}
	o := objectJSON{ID: ct.ID, Properties: out, CreatedAt: ct.CreatedAt, UpdatedAt: ct.UpdatedAt, Archived: ct.Archived, New: isNew}
	if ct.Archived {
		o.ArchivedAt = &ct.UpdatedAt
	}
	return o
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := crmsim.ReadJSON(w, r, v); err != nil {
		writeErr(w, http.StatusBadRequest, "VALIDATION_ERROR", "Invalid input JSON on line 1: "+err.Error())
		return false
	}
	return true
}

// validateProperties returns the per-property errors of props.
func validateProperties(props map[string]string) []errorDetail {
	var out []errorDetail
	// Unknown properties are reported in name order; sorting only when
	// there are some spares the common case a sort per record.
	if !allKnown(props) {
		for _, k := range slices.Sorted(maps.Keys(props)) {
			if !knownProperties[k] {
				out = append(out, errorDetail{Message: fmt.Sprintf("Property \"%s\" does not exist", k), Code: "PROPERTY_DOESNT_EXIST", Context: map[string]any{"propertyName": []string{k}}})
			}
		}
	}
	if e, ok := props["email"]; ok && e != "" && !validEmail(e) {
		out = append(out, errorDetail{Message: fmt.Sprintf("Email address %s is invalid", e), Code: "INVALID_EMAIL", In: "email"})
	}
	return out
}

// allKnown reports whether every property of props exists.
func allKnown(props map[string]string) bool {
	for k := range props {
		if !knownProperties[k] {
			return false
		}
	}
	return true
}

func validEmail(e string) bool {
	local, domain, ok := strings.Cut(e, "@")
	return ok && local != "" && strings.Contains(domain, ".") && !strings.ContainsAny(e, " ,;<>") && !strings.HasSuffix(domain, ".")
}

func checkBatch(w http.ResponseWriter, req *batchRequest) bool {
	if len(req.Inputs) == 0 {
		writeErr(w, http.StatusBadRequest, "VALIDATION_ERROR", "Batch input must contain at least one input")
		return false
	}
	if len(req.Inputs) > MaxBatch {
		writeErr(w, http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("The maximum number of inputs supported in a batch request is %d, but %d inputs were provided", MaxBatch, len(req.Inputs)))
		return false
	}
	return true
}

func (c *CRM) batchUpsert(w http.ResponseWriter, r *http.Request, timeout bool, partial float64) {
	var req batchRequest
	if !decode(w, r, &req) || !checkBatch(w, &req) {
		return
	}
	seen := map[string]bool{}
	for i, in := range req.Inputs {
		if in.IDProperty != "email" {
			writeErr(w, http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("inputs[%d].idProperty must name a unique property such as email; got %q", i, in.IDProperty))
			return
		}
		key := strings.ToLower(in.ID)
		if seen[key] {
			writeErr(w, http.StatusBadRequest, "VALIDATION_ERROR", "Duplicate IDs found in batch input: ["+in.ID+"]. IDs must be unique")
			return
		}
		seen[key] = true
	}
	resp := batchResponse{Status: "COMPLETE", Results: []objectJSON{}, StartedAt: time.Now().UTC()}
	c.mu.Lock()
	for _, in := range req.Inputs {
		if errs := validateProperties(in.Properties); len(errs) > 0 || !validEmail(in.ID) {
			if len(errs) == 0 {
				errs = []errorDetail{{Message: fmt.Sprintf("Email address %s is invalid", in.ID), Code: "INVALID_EMAIL", In: "id"}}
			}
			resp.Errors = append(resp.Errors, errorBody{Status: "error", Category: "VALIDATION_ERROR", Message: "Property values were not valid: " + errs[0].Message,
				Context: map[string]any{"ids": []string{in.ID}}, Errors: errs})
			continue
		}
		if c.sim.Roll(partial) {
			resp.Errors = append(resp.Errors, temporaryFailure(in.ID))
			continue
		}
		ct, isNew := c.upsertLocked(in)
		c.wrote(ct, "upsert", in.Properties)
		resp.Results = append(resp.Results, ct.json(&isNew, nil))
	}
	c.answerBatch(w, r, timeout, http.StatusOK, resp)
}

// answerBatch commits, unlocks and sends a batch answer: ok, or 207 with
// numErrors when some inputs failed.
func (c *CRM) answerBatch(w http.ResponseWriter, r *http.Request, timeout bool, ok int, resp batchResponse) {
	resp.CompletedAt = time.Now().UTC()
	status := ok
	if len(resp.Errors) > 0 {
		status = http.StatusMultiStatus
		resp.NumErrors = len(resp.Errors)
	}
	c.unlockAnswer(w, r, timeout, status, resp)
}

// temporaryFailure is a batch input's error for a partial-batch fault.
func temporaryFailure(id string) errorBody {
	return errorBody{Status: "error", Category: "INTERNAL_ERROR", SubCategory: "TEMPORARY",
		Message: "Temporary failure writing this record; retry.", Context: map[string]any{"ids": []string{id}}}
}

// batchUpdate answers POST .../batch/update: inputs by HubSpot id (or by
// idProperty), a result per contact found, OBJECT_NOT_FOUND for the others.
func (c *CRM) batchUpdate(w http.ResponseWriter, r *http.Request, timeout bool, partial float64) {
	var req batchRequest
	if !decode(w, r, &req) || !checkBatch(w, &req) {
		return
	}
	resp := batchResponse{Status: "COMPLETE", Results: []objectJSON{}, StartedAt: time.Now().UTC()}
	c.mu.Lock()
	for _, in := range req.Inputs {
		if errs := validateProperties(in.Properties); len(errs) > 0 {
			resp.Errors = append(resp.Errors, errorBody{Status: "error", Category: "VALIDATION_ERROR", Message: "Property values were not valid: " + errs[0].Message,
				Context: map[string]any{"ids": []string{in.ID}}, Errors: errs})
			continue
		}
		ct, ok := c.lookupLocked(in.ID, in.IDProperty)
		switch {
		case !ok:
			resp.Errors = append(resp.Errors, errorBody{Status: "error", Category: "OBJECT_NOT_FOUND", Message: "Could not get some CONTACT objects, they may be deleted or not exist. Check that ids are valid.",
				Context: map[string]any{"ids": []string{in.ID}}})
		case c.sim.Roll(partial):
			resp.Errors = append(resp.Errors, temporaryFailure(in.ID))
		default:
			c.updateLocked(ct, in.Properties)
			c.wrote(ct, "update", in.Properties)
			resp.Results = append(resp.Results, ct.json(nil, nil))
		}
	}
	c.answerBatch(w, r, timeout, http.StatusOK, resp)
}

// wrote adds a write to the history of ct's email.
func (c *CRM) wrote(ct *contact, op string, props map[string]string) {
	values := make(map[string]any, len(props))
	for k, v := range props {
		values[k] = v
	}
	c.sim.Wrote(ct.Properties["email"], op, ct.ID, values)
}

// updateLocked sets props on ct, keeping the email index right.
func (c *CRM) updateLocked(ct *contact, props map[string]string) {
	for k, v := range props {
		setProp(ct.Properties, k, v)
	}
	ct.UpdatedAt = time.Now().UTC()
	c.saveLocked(ct)
}

// upsertLocked creates or updates the contact whose email is in.ID.
func (c *CRM) upsertLocked(in input) (*contact, bool) {
	email := strings.ToLower(in.ID)
	now := time.Now().UTC()
	if id, ok := c.byEmail(email); ok {
		ct, _ := c.getLocked(id)
		for k, v := range in.Properties {
			setProp(ct.Properties, k, v)
		}
		ct.Properties["email"] = email
		ct.UpdatedAt = now
		c.saveLocked(ct)
		return ct, false
	}
	ct := c.createLocked(in.Properties, now)
	ct.Properties["email"] = email
	c.saveLocked(ct)
	return ct, true
}

func (c *CRM) createLocked(props map[string]string, now time.Time) *contact {
	ct := &contact{ID: strconv.Itoa(c.nextID), Properties: map[string]string{}, CreatedAt: now, UpdatedAt: now}
	c.nextID++
	c.live++
	for k, v := range props {
		setProp(ct.Properties, k, v)
	}
	c.saveLocked(ct)
	return ct
}

// setProp sets a property; an empty string clears it, as in HubSpot.
func setProp(props map[string]string, k, v string) {
	if v == "" {
		delete(props, k)
		return
	}
	if k == "email" {
		v = strings.ToLower(v)
	}
	props[k] = v
}

func (c *CRM) batchArchive(w http.ResponseWriter, r *http.Request, timeout bool, _ float64) {
	var req batchRequest
	if !decode(w, r, &req) || !checkBatch(w, &req) {
		return
	}
	c.mu.Lock()
	for _, in := range req.Inputs {
		c.archiveLocked(in.ID)
	}
	c.unlockAnswer(w, r, timeout, http.StatusNoContent, nil)
}

func (c *CRM) archiveLocked(id string) bool {
	ct, ok := c.getLocked(id)
	if !ok || ct.Archived {
		return false
	}
	ct.Archived = true
	c.wrote(ct, "archive", nil)
	c.live--
	ct.UpdatedAt = time.Now().UTC()
	c.saveLocked(ct)
	return true
}

// lookupLocked finds a live contact by id, or by email when idProperty is
// "email".
func (c *CRM) lookupLocked(id, idProperty string) (*contact, bool) {
	if idProperty == "email" {
		id, _ = c.byEmail(strings.ToLower(id))
	}
	ct, ok := c.getLocked(id)
	if !ok || ct.Archived {
		return nil, false
	}
	return ct, true
}

// wantArchived reads the archived query parameter: true reads archived
// contacts only, as HubSpot does.
func wantArchived(r *http.Request) bool { return r.URL.Query().Get("archived") == "true" }

// readLocked finds a contact by id (or idProperty) among the archived ones
// when archived is set, else among the live ones.
func (c *CRM) readLocked(id, idProperty string, archived bool) (*contact, bool) {
	if !archived {
		return c.lookupLocked(id, idProperty)
	}
	if idProperty == "email" {
		for _, ct := range c.store.All() { // archived contacts leave the email index
			if ct.Archived && strings.EqualFold(ct.Properties["email"], id) {
				return &ct, true
			}
		}
		return nil, false
	}
	ct, ok := c.getLocked(id)
	return ct, ok && ct.Archived
}

// queryProperties reads the properties parameter (repeated, or
// comma-separated); nil when absent.
func queryProperties(r *http.Request) []string {
	var out []string
	for _, v := range r.URL.Query()["properties"] {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// orDefault is props, or the properties a read returns by default.
func orDefault(props []string) []string {
	if len(props) == 0 {
		return defaultProperties
	}
	return props
}

func (c *CRM) batchRead(w http.ResponseWriter, r *http.Request, _ bool, _ float64) {
	var req batchRequest
	if !decode(w, r, &req) || !checkBatch(w, &req) {
		return
	}
	if req.IDProperty != "" && req.IDProperty != "email" && req.IDProperty != "hs_object_id" {
		writeErr(w, http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("idProperty %s is not a unique property", req.IDProperty))
		return
	}
	archived := wantArchived(r)
	resp := batchResponse{Status: "COMPLETE", Results: []objectJSON{}, StartedAt: time.Now().UTC()}
	var missing []string
	c.mu.Lock()
	for _, in := range req.Inputs {
		if ct, ok := c.readLocked(in.ID, req.IDProperty, archived); ok {
			resp.Results = append(resp.Results, ct.json(nil, orDefault(req.Properties)))
		} else {
			missing = append(missing, in.ID)
		}
	}
	c.mu.Unlock()
	resp.CompletedAt = time.Now().UTC()
	status := http.StatusOK
	if len(missing) > 0 {
		status = http.StatusMultiStatus
		resp.NumErrors = 1
		resp.Errors = []errorBody{{Status: "error", Category: "OBJECT_NOT_FOUND",
			Message: "Could not get some CONTACT objects, they may be deleted or not exist. Check that ids are valid.",
			Context: map[string]any{"ids": missing}}}
	}
	crmsim.WriteJSON(w, status, "application/json;charset=utf-8", resp)
}

// batchCreate answers POST .../batch/create: 201 when every input was
// created. An input whose email is already stored fails the whole batch
// with 409 CONFLICT, unless every input carries an objectWriteTraceId: then
// the others are created and the answer is a 207 with an error per input
// that failed.
func (c *CRM) batchCreate(w http.ResponseWriter, r *http.Request, timeout bool, partial float64) {
	var req batchRequest
	if !decode(w, r, &req) || !checkBatch(w, &req) {
		return
	}
	multi := true
	for _, in := range req.Inputs {
		multi = multi && in.ObjectWriteTraceID != ""
	}
	c.mu.Lock()
	if !multi {
		for _, in := range req.Inputs {
			if errs := validateProperties(in.Properties); len(errs) > 0 {
				c.mu.Unlock()
				writeErr(w, http.StatusBadRequest, "VALIDATION_ERROR", "Property values were not valid: "+errs[0].Message, errs...)
				return
			}
			if id, ok := c.byEmail(strings.ToLower(in.Properties["email"])); ok {
				c.mu.Unlock()
				writeErr(w, http.StatusConflict, "CONFLICT", "Contact already exists. Existing ID: "+id)
				return
			}
		}
	}
	resp := batchResponse{Status: "COMPLETE", Results: []objectJSON{}, StartedAt: time.Now().UTC()}
	for _, in := range req.Inputs {
		email := strings.ToLower(in.Properties["email"])
		var e *errorBody
		if errs := validateProperties(in.Properties); len(errs) > 0 {
			e = &errorBody{Status: "error", Category: "VALIDATION_ERROR", Message: "Property values were not valid: " + errs[0].Message, Errors: errs}
		} else if id, ok := c.byEmail(email); ok {
			e = &errorBody{Status: "error", Category: "CONFLICT", Message: "Contact already exists. Existing ID: " + id}
		} else if c.sim.Roll(partial) {
			tf := temporaryFailure(in.ObjectWriteTraceID)
			e = &tf
		}
		if e != nil {
			e.Context = map[string]any{"objectWriteTraceId": []string{in.ObjectWriteTraceID}}
			resp.Errors = append(resp.Errors, *e)
			continue
		}
		ct := c.createLocked(in.Properties, time.Now().UTC())
		resp.Results = append(resp.Results, ct.json(nil, nil))
	}
	c.answerBatch(w, r, timeout, http.StatusCreated, resp)
}

// decodeInput reads a single-object body and checks its properties,
// answering the error itself when they are not valid.
func decodeInput(w http.ResponseWriter, r *http.Request) (input, bool) {
	var in input
	if !decode(w, r, &in) {
		return in, false
	}
	if errs := validateProperties(in.Properties); len(errs) > 0 {
		writeErr(w, http.StatusBadRequest, "VALIDATION_ERROR", "Property values were not valid", errs...)
		return in, false
	}
	return in, true
}

func (c *CRM) create(w http.ResponseWriter, r *http.Request, timeout bool, _ float64) {
	in, ok := decodeInput(w, r)
	if !ok {
		return
	}
	email := strings.ToLower(in.Properties["email"])
	c.mu.Lock()
	if id, ok := c.byEmail(email); ok {
		c.mu.Unlock()
		writeErr(w, http.StatusConflict, "CONFLICT", "Contact already exists. Existing ID: "+id)
		return
	}
	ct := c.createLocked(in.Properties, time.Now().UTC())
	c.wrote(ct, "create", in.Properties)
	c.unlockAnswer(w, r, timeout, http.StatusCreated, ct.json(nil, nil))
}

func notFound(w http.ResponseWriter) {
	writeErr(w, http.StatusNotFound, "OBJECT_NOT_FOUND", "Object not found.  objectId are usually numeric.")
}

func (c *CRM) get(w http.ResponseWriter, r *http.Request, _ bool, _ float64) {
	c.mu.Lock()
	ct, ok := c.readLocked(r.PathValue("id"), r.URL.Query().Get("idProperty"), wantArchived(r))
	var out objectJSON
	if ok {
		out = ct.json(nil, orDefault(queryProperties(r)))
	}
	c.mu.Unlock()
	if !ok {
		notFound(w)
		return
	}
	crmsim.WriteJSON(w, http.StatusOK, "application/json;charset=utf-8", out)
}

func (c *CRM) update(w http.ResponseWriter, r *http.Request, timeout bool, _ float64) {
	in, ok := decodeInput(w, r)
	if !ok {
		return
	}
	c.mu.Lock()
	ct, ok := c.lookupLocked(r.PathValue("id"), r.URL.Query().Get("idProperty"))
	if !ok {
		c.mu.Unlock()
		notFound(w)
		return
	}
	if e := in.Properties["email"]; e != "" {
		if other, taken := c.byEmail(strings.ToLower(e)); taken && other != ct.ID {
			c.mu.Unlock()
			writeErr(w, http.StatusConflict, "CONFLICT", "Contact already exists. Existing ID: "+other)
			return
		}
	}
	c.updateLocked(ct, in.Properties)
	c.wrote(ct, "update", in.Properties)
	c.unlockAnswer(w, r, timeout, http.StatusOK, ct.json(nil, nil))
}

func (c *CRM) archive(w http.ResponseWriter, r *http.Request, timeout bool, _ float64) {
	c.mu.Lock()
	c.archiveLocked(r.PathValue("id"))
	c.unlockAnswer(w, r, timeout, http.StatusNoContent, nil)
}

// sortedIDs returns the ids of the contacts keep selects, in id order.
func (c *CRM) sortedIDs(keep func(*contact) bool) []*contact {
	out := make([]*contact, 0, c.store.Len())
	for _, ct := range c.store.All() {
		if keep(&ct) {
			out = append(out, &ct)
		}
	}
	slices.SortFunc(out, func(a, b *contact) int { return cmpID(a.ID, b.ID) })
	return out
}

func cmpID(a, b string) int {
	x, _ := strconv.Atoi(a)
	y, _ := strconv.Atoi(b)
	return x - y
}

func (c *CRM) list(w http.ResponseWriter, r *http.Request, _ bool, _ float64) {
	limit := 10
	if v, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && v > 0 {
		limit = min(v, 100)
	}
	after, _ := strconv.Atoi(r.URL.Query().Get("after"))
	archived := wantArchived(r)
	props := orDefault(queryProperties(r))
	c.mu.Lock()
	cts := c.sortedIDs(func(ct *contact) bool {
		n, _ := strconv.Atoi(ct.ID)
		return ct.Archived == archived && n > after
	})
	resp := struct {
		Results []objectJSON `json:"results"`
		Paging  any          `json:"paging,omitempty"`
	}{Results: []objectJSON{}}
	for i, ct := range cts {
		if i == limit {
			next := cts[i-1].ID
			resp.Paging = map[string]any{"next": map[string]string{"after": next, "link": r.URL.Path + "?after=" + next}}
			break
		}
		resp.Results = append(resp.Results, ct.json(nil, props))
	}
	c.mu.Unlock()
	crmsim.WriteJSON(w, http.StatusOK, "application/json;charset=utf-8", resp)
}

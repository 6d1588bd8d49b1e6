// Package hubspot emulates HubSpot's CRM v3 contacts API: private-app
// bearer auth, single and batch object endpoints (create, read, update,
// upsert by email, archive), HubSpot's error bodies, its ten-secondly rate
// limit with the X-HubSpot-RateLimit-* headers and the 429 body.
package hubspot

import (
	"crypto/subtle"
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

type contact struct {
	ID         string
	Properties map[string]string
	CreatedAt  time.Time
	UpdatedAt  time.Time
	Archived   bool
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

	mu      sync.Mutex
	byID    map[string]*contact
	byEmail map[string]string
	nextID  int
	live    int // contacts not archived
}

var _ crmsim.CRM = (*CRM)(nil)

// New returns an empty HubSpot accepting token.
func New(creds Credentials) *CRM {
	c := &CRM{sim: crmsim.NewSim(defaultLimit, defaultWindow), creds: creds, tokens: crmsim.NewTokens(accessTokenTTL)}
	c.Reset()
	return c
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

// Reset implements crmsim.CRM.
func (c *CRM) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byID, c.byEmail, c.nextID, c.live = map[string]*contact{}, map[string]string{}, 1001, 0
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
	ID         string            `json:"id,omitempty"`
	IDProperty string            `json:"idProperty,omitempty"`
	Properties map[string]string `json:"properties,omitempty"`
}

type batchRequest struct {
	Inputs     []input  `json:"inputs"`
	IDProperty string   `json:"idProperty,omitempty"`
	Properties []string `json:"properties,omitempty"`
}

type objectJSON struct {
	ID         string            `json:"id"`
	Properties map[string]string `json:"properties"`
	CreatedAt  time.Time         `json:"createdAt"`
	UpdatedAt  time.Time         `json:"updatedAt"`
	Archived   bool              `json:"archived"`
	New        *bool             `json:"new,omitempty"`
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

func (ct *contact) json(isNew *bool) objectJSON {
	props := maps.Clone(ct.Properties)
	props["hs_object_id"] = ct.ID
	props["createdate"] = ct.CreatedAt.Format(time.RFC3339Nano)
	props["lastmodifieddate"] = ct.UpdatedAt.Format(time.RFC3339Nano)
	return objectJSON{ID: ct.ID, Properties: props, CreatedAt: ct.CreatedAt, UpdatedAt: ct.UpdatedAt, Archived: ct.Archived, New: isNew}
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
		resp.Results = append(resp.Results, ct.json(&isNew))
	}
	c.mu.Unlock()
	answerBatch(w, r, timeout, resp)
}

// answerBatch sends a batch answer: 200, or 207 with numErrors when some
// inputs failed.
func answerBatch(w http.ResponseWriter, r *http.Request, timeout bool, resp batchResponse) {
	resp.CompletedAt = time.Now().UTC()
	status := http.StatusOK
	if len(resp.Errors) > 0 {
		status = http.StatusMultiStatus
		resp.NumErrors = len(resp.Errors)
	}
	crmsim.Answer(w, r, timeout, status, "application/json;charset=utf-8", resp)
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
			resp.Results = append(resp.Results, ct.json(nil))
		}
	}
	c.mu.Unlock()
	answerBatch(w, r, timeout, resp)
}

// updateLocked sets props on ct, keeping the email index right.
func (c *CRM) updateLocked(ct *contact, props map[string]string) {
	oldEmail := ct.Properties["email"]
	for k, v := range props {
		setProp(ct.Properties, k, v)
	}
	if e := ct.Properties["email"]; e != oldEmail {
		delete(c.byEmail, oldEmail)
		if e != "" {
			c.byEmail[e] = ct.ID
		}
	}
	ct.UpdatedAt = time.Now().UTC()
}

// upsertLocked creates or updates the contact whose email is in.ID.
func (c *CRM) upsertLocked(in input) (*contact, bool) {
	email := strings.ToLower(in.ID)
	now := time.Now().UTC()
	if id, ok := c.byEmail[email]; ok {
		ct := c.byID[id]
		for k, v := range in.Properties {
			setProp(ct.Properties, k, v)
		}
		ct.Properties["email"] = email
		ct.UpdatedAt = now
		return ct, false
	}
	ct := c.createLocked(in.Properties, now)
	ct.Properties["email"] = email
	c.byEmail[email] = ct.ID
	return ct, true
}

func (c *CRM) createLocked(props map[string]string, now time.Time) *contact {
	ct := &contact{ID: strconv.Itoa(c.nextID), Properties: map[string]string{}, CreatedAt: now, UpdatedAt: now}
	c.nextID++
	c.live++
	for k, v := range props {
		setProp(ct.Properties, k, v)
	}
	c.byID[ct.ID] = ct
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
	c.mu.Unlock()
	crmsim.Answer(w, r, timeout, http.StatusNoContent, "", nil)
}

func (c *CRM) archiveLocked(id string) bool {
	ct, ok := c.byID[id]
	if !ok || ct.Archived {
		return false
	}
	ct.Archived = true
	c.live--
	ct.UpdatedAt = time.Now().UTC()
	delete(c.byEmail, ct.Properties["email"])
	return true
}

// lookupLocked finds a live contact by id, or by email when idProperty is
// "email".
func (c *CRM) lookupLocked(id, idProperty string) (*contact, bool) {
	if idProperty == "email" {
		id = c.byEmail[strings.ToLower(id)]
	}
	ct, ok := c.byID[id]
	if !ok || ct.Archived {
		return nil, false
	}
	return ct, true
}

func (c *CRM) batchRead(w http.ResponseWriter, r *http.Request, _ bool, _ float64) {
	var req batchRequest
	if !decode(w, r, &req) || !checkBatch(w, &req) {
		return
	}
	resp := batchResponse{Status: "COMPLETE", Results: []objectJSON{}, StartedAt: time.Now().UTC()}
	var missing []string
	c.mu.Lock()
	for _, in := range req.Inputs {
		if ct, ok := c.lookupLocked(in.ID, req.IDProperty); ok {
			resp.Results = append(resp.Results, ct.json(nil))
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
	if id, ok := c.byEmail[email]; ok && email != "" {
		c.mu.Unlock()
		writeErr(w, http.StatusConflict, "CONFLICT", "Contact already exists. Existing ID: "+id)
		return
	}
	ct := c.createLocked(in.Properties, time.Now().UTC())
	if email != "" {
		c.byEmail[email] = ct.ID
	}
	out := ct.json(nil)
	c.mu.Unlock()
	crmsim.Answer(w, r, timeout, http.StatusCreated, "application/json;charset=utf-8", out)
}

func (c *CRM) get(w http.ResponseWriter, r *http.Request, _ bool, _ float64) {
	c.mu.Lock()
	ct, ok := c.lookupLocked(r.PathValue("id"), r.URL.Query().Get("idProperty"))
	var out objectJSON
	if ok {
		out = ct.json(nil)
	}
	c.mu.Unlock()
	if !ok {
		writeErr(w, http.StatusNotFound, "OBJECT_NOT_FOUND", "Object not found.  objectId are usually numeric.")
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
	var out objectJSON
	if ok {
		c.updateLocked(ct, in.Properties)
		out = ct.json(nil)
	}
	c.mu.Unlock()
	if !ok {
		writeErr(w, http.StatusNotFound, "OBJECT_NOT_FOUND", "Object not found.  objectId are usually numeric.")
		return
	}
	crmsim.Answer(w, r, timeout, http.StatusOK, "application/json;charset=utf-8", out)
}

func (c *CRM) archive(w http.ResponseWriter, r *http.Request, timeout bool, _ float64) {
	c.mu.Lock()
	c.archiveLocked(r.PathValue("id"))
	c.mu.Unlock()
	crmsim.Answer(w, r, timeout, http.StatusNoContent, "", nil)
}

func (c *CRM) list(w http.ResponseWriter, r *http.Request, _ bool, _ float64) {
	limit := 10
	if v, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && v > 0 {
		limit = min(v, 100)
	}
	after, _ := strconv.Atoi(r.URL.Query().Get("after"))
	c.mu.Lock()
	ids := make([]int, 0, len(c.byID))
	for id, ct := range c.byID {
		n, _ := strconv.Atoi(id)
		if !ct.Archived && n > after {
			ids = append(ids, n)
		}
	}
	slices.Sort(ids)
	resp := struct {
		Results []objectJSON `json:"results"`
		Paging  any          `json:"paging,omitempty"`
	}{Results: []objectJSON{}}
	for i, n := range ids {
		if i == limit {
			next := strconv.Itoa(ids[i-1])
			resp.Paging = map[string]any{"next": map[string]string{"after": next, "link": r.URL.Path + "?after=" + next}}
			break
		}
		resp.Results = append(resp.Results, c.byID[strconv.Itoa(n)].json(nil))
	}
	c.mu.Unlock()
	crmsim.WriteJSON(w, http.StatusOK, "application/json;charset=utf-8", resp)
}

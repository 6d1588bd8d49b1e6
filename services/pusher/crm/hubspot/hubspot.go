// Package hubspot is the pusher's HubSpot plugin: private-app bearer auth
// or, as the alternative, OAuth 2.0 with a refresh token; contacts written with batch upsert by email (up to 100 per request) and
// deleted with batch read by email then batch archive; per-item results
// from the 200/207 body, 429s with their policy and the
// X-HubSpot-RateLimit-* headers understood.
package hubspot

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/recordsync/record-sync/services/pusher/crm"
	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/fastjson"
	"github.com/recordsync/record-sync/shared/httpbody"
	"github.com/recordsync/record-sync/shared/mapping"
)

// MaxBatch is the most inputs HubSpot takes in one batch request.
const MaxBatch = 100

// properties are the contact properties HubSpot accepts (a portal's own
// custom properties can be added with WithProperties).
var properties = []string{
	"email", "firstname", "lastname", "phone", "mobilephone", "company", "jobtitle", "website",
	"address", "city", "state", "zip", "country", "lifecyclestage", "hs_lead_status",
}

// defaultFields maps System A's fields to HubSpot contact properties.
var defaultFields = []mapping.Field{
	{From: "email", To: "email", Fn: []string{"trim", "lower"}},
	{From: "first_name", To: "firstname"},
	{From: "last_name", To: "lastname"},
	{From: "phone", To: "phone", Fn: []string{"string"}},
	{From: "mobile", To: "mobilephone", Fn: []string{"string"}},
	{From: "company", To: "company"},
	{From: "title", To: "jobtitle"},
	{From: "website", To: "website"},
	{From: "city", To: "city"},
	{From: "state", To: "state"},
	{From: "zip", To: "zip", Fn: []string{"string"}},
	{From: "country", To: "country"},
}

// Client is the HubSpot plugin.
type Client struct {
	*crm.Conn
	token string             // a private app's, or
	oauth *crm.RefreshTokens // an OAuth app's access tokens
}

var (
	_ crm.CRM           = (*Client)(nil)
	_ crm.QuotaReporter = (*Client)(nil)
)

// New returns a plugin authenticating with a private app token.
func New(token string, timeout time.Duration) *Client {
	return &Client{Conn: crm.NewConn(timeout), token: token}
}

// OAuthCredentials are an OAuth app's client and the refresh token of the
// portal that installed it.
type OAuthCredentials struct {
	ClientID, ClientSecret, RefreshToken string
}

// NewOAuth returns a plugin authenticating with OAuth 2.0 access tokens got
// with a refresh token from POST /oauth/v1/token, renewed before they
// expire (30 minutes) and when HubSpot answers 401.
func NewOAuth(creds OAuthCredentials, timeout time.Duration) *Client {
	conn := crm.NewConn(timeout)
	return &Client{Conn: conn, oauth: crm.NewRefreshTokens(creds.ClientID, creds.ClientSecret, creds.RefreshToken, "/oauth/v1/token", conn.HTTP)}
}

// Name implements crm.CRM.
func (c *Client) Name() string { return "hubspot" }

// MaxBatch implements crm.CRM.
func (c *Client) MaxBatch() int { return MaxBatch }

// Schema implements crm.CRM: contacts and leads are both HubSpot contacts;
// a lead is marked with lifecyclestage "lead".
func (c *Client) Schema(objectType string) (mapping.Schema, bool) {
	switch objectType {
	case event.ObjectContact:
		return mapping.Schema{Fields: properties, Default: mapping.Mapping{Fields: defaultFields}}, true
	case event.ObjectLead:
		fields := append(slices.Clone(defaultFields), mapping.Field{To: "lifecyclestage", Const: "lead"})
		return mapping.Schema{Fields: properties, Default: mapping.Mapping{Fields: fields}}, true
	}
	return mapping.Schema{}, false
}

// Identify implements crm.CRM: HubSpot matches contacts by email.
func (c *Client) Identify(_ *event.Event, fields map[string]any) (string, error) {
	return crm.EmailIdentity(c.Name(), fields, "email")
}

// Payload implements crm.CRM: the batch input of the record.
func (c *Client) Payload(rec crm.Record) any {
	if rec.Event.Operation == event.OpDelete {
		return map[string]any{"archive_by": "email", "id": rec.Identity}
	}
	return upsertInput(rec)
}

// upsertInput is the batch upsert input of rec. HubSpot property values
// are strings; a null clears the property (sent as "").
func upsertInput(rec crm.Record) input {
	props := make(map[string]any, len(rec.Fields))
	for k, v := range rec.Fields {
		props[k] = mapping.ToString(v)
	}
	if rec.Identity == "" { // an update by HubSpot id (no email in the event)
		return input{ID: rec.CRMID, Properties: props}
	}
	return input{ID: rec.Identity, IDProperty: "email", Properties: props}
}

// Push implements crm.CRM.
func (c *Client) Push(ctx context.Context, apiHost string, recs []crm.Record) []crm.Result {
	results := make([]crm.Result, len(recs))
	var upserts, updates, deletes []int
	for i, r := range recs {
		switch {
		case r.Event.Operation == event.OpDelete:
			deletes = append(deletes, i)
		case r.Identity == "":
			updates = append(updates, i) // known only by its HubSpot id
		default:
			upserts = append(upserts, i)
		}
	}
	host := strings.TrimRight(apiHost, "/")
	if len(upserts) > 0 {
		c.write(ctx, host, "upsert", recs, upserts, results)
	}
	if len(updates) > 0 {
		c.write(ctx, host, "update", recs, updates, results)
	}
	if len(deletes) > 0 {
		c.delete(ctx, host, recs, deletes, results)
	}
	return results
}

type input struct {
	ID         string         `json:"id"`
	IDProperty string         `json:"idProperty,omitempty"`
	Properties map[string]any `json:"properties,omitempty"`
}

type batchResponse struct {
	Results []struct {
		ID string `json:"id"`
		// Properties holds only what results are matched by: decoding
		// every property a contact has would cost a map per record.
		Properties struct {
			Email string `json:"email"`
		} `json:"properties"`
	} `json:"results"`
	Errors []apiError `json:"errors"`
}

type apiError struct {
	Status   string `json:"status"`
	Message  string `json:"message"`
	Category string `json:"category"`
	Context  struct {
		IDs []string `json:"ids"`
	} `json:"context"`
	Errors []struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"errors"`
	PolicyName string `json:"policyName"`
}

// batchPath is where the contacts' batch endpoints are.
const batchPath = "/crm/v3/objects/contacts/batch/"

// write sends recs[idx] with batch upsert by email, or batch update by
// HubSpot id (op "update"), and reads a result per record.
func (c *Client) write(ctx context.Context, host, op string, recs []crm.Record, idx []int, results []crm.Result) {
	inputs := make([]input, len(idx))
	for j, i := range idx {
		inputs[j] = upsertInput(recs[i])
	}
	var resp batchResponse
	if res, ok := c.call(ctx, host, batchPath+op, map[string]any{"inputs": inputs}, &resp); !ok {
		setAll(results, idx, res)
		return
	}
	// Results and errors name an upsert's input by email, an update's by id.
	byID := op == "update"
	ok := make(map[string]string, len(resp.Results))
	for _, r := range resp.Results {
		if byID {
			ok[r.ID] = r.ID
		} else {
			ok[strings.ToLower(r.Properties.Email)] = r.ID
		}
	}
	failed := itemErrors(resp.Errors)
	for _, i := range idx {
		key := recs[i].Identity
		if byID {
			key = recs[i].CRMID
		}
		if crmID, found := ok[key]; found {
			results[i] = crm.Result{Class: crm.OK, CRMID: crmID}
		} else if res, found := failed[key]; found {
			results[i] = res
		} else {
			results[i] = crm.Result{Class: crm.Transient, Code: "MISSING_RESULT", Message: "HubSpot returned no result for this input"}
		}
	}
}

// itemErrors maps the per-input errors of a 207 body to results by input id.
func itemErrors(errs []apiError) map[string]crm.Result {
	out := map[string]crm.Result{}
	for _, e := range errs {
		res := crm.Result{Class: crm.Permanent, Code: e.Category, Message: e.Message}
		if raw, err := fastjson.Marshal(e); err == nil {
			res.Excerpt = crm.Excerpt(raw)
		}
		if len(e.Errors) > 0 && e.Errors[0].Code != "" {
			res.Code = e.Errors[0].Code
		}
		switch e.Category {
		case "INTERNAL_ERROR", "RATE_LIMITS", "LOCKED", "TIMEOUT":
			res.Class = crm.Transient
		}
		for _, id := range e.Context.IDs {
			out[strings.ToLower(id)] = res
		}
	}
	return out
}

func (c *Client) delete(ctx context.Context, host string, recs []crm.Record, idx []int, results []crm.Result) {
	// Records known by email are looked up first; those known only by
	// their HubSpot id (deleted by record id alone) are archived by it.
	var inputs []input
	var archive []input
	for _, i := range idx {
		if recs[i].Identity == "" {
			archive = append(archive, input{ID: recs[i].CRMID})
		} else {
			inputs = append(inputs, input{ID: recs[i].Identity})
		}
	}
	ids := make(map[string]string, len(inputs))
	if len(inputs) > 0 {
		var found batchResponse
		res, ok := c.call(ctx, host, batchPath+"read", map[string]any{"idProperty": "email", "inputs": inputs, "properties": []string{"email"}}, &found)
		if !ok {
			setAll(results, idx, res)
			return
		}
		for _, r := range found.Results {
			ids[strings.ToLower(r.Properties.Email)] = r.ID
			archive = append(archive, input{ID: r.ID})
		}
	}
	if len(archive) > 0 {
		if res, ok := c.call(ctx, host, batchPath+"archive", map[string]any{"inputs": archive}, nil); !ok {
			setAll(results, idx, res)
			return
		}
	}
	for _, i := range idx {
		// A contact that is not there is as deleted as HubSpot can make it.
		id := recs[i].CRMID
		if recs[i].Identity != "" {
			id = ids[recs[i].Identity]
		}
		results[i] = crm.Result{Class: crm.OK, CRMID: id}
	}
}

func setAll(results []crm.Result, idx []int, res crm.Result) {
	for _, i := range idx {
		results[i] = res
	}
}

// call POSTs body as JSON to path under host; for a 200, 204 or 207 it
// decodes the answer into out and reports ok, otherwise it returns the
// classified failure. With OAuth, a 401 gets a new access token and one
// more try.
func (c *Client) call(ctx context.Context, host, path string, body, out any) (crm.Result, bool) {
	b, err := fastjson.Marshal(body)
	if err != nil {
		return crm.Result{Class: crm.Permanent, Code: "ENCODE", Message: err.Error()}, false
	}
	for attempt := 0; ; attempt++ {
		auth := c.token
		if c.oauth != nil {
			tok, err := c.oauth.Token(host, attempt > 0)
			if err != nil {
				return crm.Result{Class: crm.Transient, Code: "AUTH", Message: err.Error(), Whole: true}, false
			}
			auth = tok.AccessToken
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, host+path, bytes.NewReader(b))
		if err != nil {
			return crm.Result{Class: crm.Permanent, Code: "REQUEST", Message: err.Error()}, false
		}
		req.Header.Set("Authorization", "Bearer "+auth)
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return crm.FromError(err), false
		}
		c.noteQuota(resp.Header)
		raw, err := httpbody.Read(io.LimitReader(resp.Body, 32<<20), resp.ContentLength)
		_ = resp.Body.Close()
		if err != nil {
			return crm.FromError(err), false
		}
		if resp.StatusCode == http.StatusUnauthorized && c.oauth != nil && attempt == 0 {
			continue
		}
		return answer(resp, raw, out)
	}
}

// answer classifies HubSpot's answer raw to one request, decoding a
// success into out.
func answer(resp *http.Response, raw []byte, out any) (crm.Result, bool) {
	switch resp.StatusCode {
	case http.StatusOK, http.StatusMultiStatus, http.StatusNoContent:
		if out != nil && len(raw) > 0 {
			if err := fastjson.Unmarshal(raw, out); err != nil {
				return crm.Result{Class: crm.Transient, Code: "DECODE", Message: "undecodable HubSpot answer: " + err.Error()}, false
			}
		}
		return crm.Result{}, true
	}
	var e apiError
	_ = fastjson.Unmarshal(raw, &e) // the status alone classifies an unreadable body
	code := e.Category
	if resp.StatusCode == http.StatusTooManyRequests && e.PolicyName != "" {
		code = "RATE_LIMIT:" + e.PolicyName
	}
	msg := e.Message
	if msg == "" {
		msg = strings.TrimSpace(string(raw[:min(len(raw), 200)]))
	}
	res := crm.FromStatus(resp.StatusCode, resp.Header, code, msg)
	res.Excerpt = crm.Excerpt(raw)
	return res, false
}

func (c *Client) noteQuota(h http.Header) {
	maxV, err1 := strconv.Atoi(h.Get("X-HubSpot-RateLimit-Max"))
	rem, err2 := strconv.Atoi(h.Get("X-HubSpot-RateLimit-Remaining"))
	ms, err3 := strconv.Atoi(h.Get("X-HubSpot-RateLimit-Interval-Milliseconds"))
	if err1 != nil || err2 != nil || err3 != nil {
		return
	}
	c.SetQuota(crm.Quota{Limit: maxV, Remaining: rem, Window: time.Duration(ms) * time.Millisecond, Known: true})
}

// Package hubspot is the pusher's HubSpot plugin: private-app bearer auth
// or, as the alternative, OAuth 2.0 with a refresh token; contacts written with batch upsert by email (up to 100 per request) and
// deleted with batch read by email then batch archive; per-item results
// from the 200/207 body, 429s with their policy and the
// X-HubSpot-RateLimit-* headers understood.
package hubspot

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/recordsync/record-sync/crm"
	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/fastjson"
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
	c := &Client{token: token}
	c.Conn = crm.NewConn(c.api(), timeout)
	return c
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
	c := &Client{}
	c.Conn = crm.NewConn(c.api(), timeout)
	c.oauth = crm.NewRefreshTokens(creds.ClientID, creds.ClientSecret, creds.RefreshToken, "/oauth/v1/token", c.Conn)
	return c
}

// api is how HubSpot's API is called: a bearer token (renewed on a 401
// with OAuth), errors as {"status","message","category"}, the
// X-HubSpot-RateLimit-* headers.
func (c *Client) api() crm.API {
	return crm.API{Name: "HubSpot", Session: c.session, Failure: failure, Quota: quota,
		Refused: func(a crm.Answer) bool { return a.Status == http.StatusUnauthorized && c.oauth != nil }}
}

// session returns the private app token, or an OAuth access token of the
// host (a new one when the last was refused).
func (c *Client) session(_ context.Context, ep crm.Endpoint, refused *crm.Session) (crm.Session, error) {
	base := ep.URL("")
	if c.oauth == nil {
		return crm.Session{Base: base, Token: c.token}, nil
	}
	tok, err := c.oauth.Token(base, refused != nil)
	if err != nil {
		return crm.Session{}, err
	}
	return crm.Session{Base: base, Token: tok.AccessToken}, nil
}

// Name implements crm.CRM.
func (c *Client) Name() string { return Name }

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
func (c *Client) Push(ctx context.Context, ep crm.Endpoint, recs []crm.Record) []crm.Result {
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
	if len(upserts) > 0 {
		c.write(ctx, ep, "upsert", recs, upserts, results)
	}
	if len(updates) > 0 {
		c.write(ctx, ep, "update", recs, updates, results)
	}
	if len(deletes) > 0 {
		c.delete(ctx, ep, recs, deletes, results)
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
func (c *Client) write(ctx context.Context, ep crm.Endpoint, op string, recs []crm.Record, idx []int, results []crm.Result) {
	inputs := make([]input, len(idx))
	for j, i := range idx {
		inputs[j] = upsertInput(recs[i])
	}
	var resp batchResponse
	if _, res, ok := c.Call(ctx, ep, http.MethodPost, batchPath+op, map[string]any{"inputs": inputs}, &resp); !ok {
		crm.Fail(results, idx, res)
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
			results[i] = crm.Result{Class: crm.Transient, Code: crm.CodeMissingResult, Message: "HubSpot returned no result for this input"}
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

func (c *Client) delete(ctx context.Context, ep crm.Endpoint, recs []crm.Record, idx []int, results []crm.Result) {
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
		_, res, ok := c.Call(ctx, ep, http.MethodPost, batchPath+"read", map[string]any{"idProperty": "email", "inputs": inputs, "properties": []string{"email"}}, &found)
		if !ok {
			crm.Fail(results, idx, res)
			return
		}
		for _, r := range found.Results {
			ids[strings.ToLower(r.Properties.Email)] = r.ID
			archive = append(archive, input{ID: r.ID})
		}
	}
	if len(archive) > 0 {
		if _, res, ok := c.Call(ctx, ep, http.MethodPost, batchPath+"archive", map[string]any{"inputs": archive}, nil); !ok {
			crm.Fail(results, idx, res)
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

// failure classifies HubSpot's refusal of a request: its category is the
// code, a 429's policy name says which limit.
func failure(a crm.Answer) crm.Result {
	var e apiError
	_ = fastjson.Unmarshal(a.Body, &e) // the status alone classifies an unreadable body
	code := e.Category
	if a.Status == http.StatusTooManyRequests && e.PolicyName != "" {
		code = "RATE_LIMIT:" + e.PolicyName
	}
	msg := e.Message
	if msg == "" {
		msg = strings.TrimSpace(string(a.Body[:min(len(a.Body), 200)]))
	}
	return crm.FromStatus(a.Status, a.Header, code, msg)
}

// quota reads the X-HubSpot-RateLimit-* headers.
func quota(h http.Header) (crm.Quota, bool) {
	maxV, err1 := strconv.Atoi(h.Get("X-HubSpot-RateLimit-Max"))
	rem, err2 := strconv.Atoi(h.Get("X-HubSpot-RateLimit-Remaining"))
	ms, err3 := strconv.Atoi(h.Get("X-HubSpot-RateLimit-Interval-Milliseconds"))
	if err1 != nil || err2 != nil || err3 != nil {
		return crm.Quota{}, false
	}
	return crm.Quota{Limit: maxV, Remaining: rem, Window: time.Duration(ms) * time.Millisecond, Known: true}, true
}

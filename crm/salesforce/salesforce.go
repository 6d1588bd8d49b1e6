// Package salesforce is the pusher's Salesforce plugin: the OAuth 2.0 JWT
// bearer flow (RS256) with the token cached and renewed on
// INVALID_SESSION_ID; writes as sObject Collections upserts by an external
// id field holding System A's record id (up to 200 per request), so a
// redelivered push updates the same record; deletes by external id; per
// record results mapped; REQUEST_LIMIT_EXCEEDED and Sforce-Limit-Info
// understood.
package salesforce

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/recordsync/record-sync/crm"
	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/fastjson"
	"github.com/recordsync/record-sync/shared/mapping"
)

// MaxBatch is the most records of one sObject Collections request.
const MaxBatch = 200

// ExternalID is the external id field that holds System A's record id.
const ExternalID = "RecordSync_Id__c"

// APIVersion is the REST API version used.
const APIVersion = "v60.0"

var objects = map[string]string{event.ObjectContact: "Contact", event.ObjectLead: "Lead"}

var schemas = map[string]mapping.Schema{
	event.ObjectContact: {
		Fields: []string{"FirstName", "LastName", "Email", "Phone", "MobilePhone", "Title", "AccountId"},
		Default: mapping.Mapping{Fields: []mapping.Field{
			{From: "first_name", To: "FirstName"}, {From: "last_name", To: "LastName"},
			{From: "email", To: "Email", Fn: []string{"trim", "lower"}}, {From: "phone", To: "Phone", Fn: []string{"string"}},
			{From: "mobile", To: "MobilePhone", Fn: []string{"string"}}, {From: "title", To: "Title"},
		}},
	},
	event.ObjectLead: {
		Fields: []string{"FirstName", "LastName", "Company", "Email", "Phone", "Title", "Status"},
		Default: mapping.Mapping{Fields: []mapping.Field{
			{From: "first_name", To: "FirstName"}, {From: "last_name", To: "LastName"}, {From: "company", To: "Company"},
			{From: "email", To: "Email", Fn: []string{"trim", "lower"}}, {From: "phone", To: "Phone", Fn: []string{"string"}},
			{From: "title", To: "Title"},
		}},
	},
}

// Credentials are the connected app's JWT bearer settings.
type Credentials struct {
	ConsumerKey string
	Username    string
	Key         *rsa.PrivateKey
	// LoginURL is where tokens are asked for (the org's login host; for
	// the emulator, its /salesforce prefix).
	LoginURL string
	// Audience is https://login.salesforce.com or https://test.salesforce.com.
	Audience string
}

// Client is the Salesforce plugin.
type Client struct {
	*crm.Conn
	creds Credentials

	mu          sync.Mutex
	accessToken string
	instance    string
}

var (
	_ crm.CRM           = (*Client)(nil)
	_ crm.QuotaReporter = (*Client)(nil)
)

// New returns a plugin for the connected app creds.
func New(creds Credentials, timeout time.Duration) *Client {
	c := &Client{creds: creds}
	c.Conn = crm.NewConn(crm.API{Name: "Salesforce", Session: c.session, Refused: refused, Failure: failure, Quota: quota}, timeout)
	return c
}

// Name implements crm.CRM.
func (c *Client) Name() string { return Name }

// MaxBatch implements crm.CRM.
func (c *Client) MaxBatch() int { return MaxBatch }

// Schema implements crm.CRM.
func (c *Client) Schema(objectType string) (mapping.Schema, bool) {
	s, ok := schemas[objectType]
	return s, ok
}

// Identify implements crm.CRM: records are matched by the external id
// field, which holds System A's record id.
func (c *Client) Identify(ev *event.Event, _ map[string]any) (string, error) {
	if ev.RecordID == "" {
		return "", fmt.Errorf("salesforce matches records by %s: %w", ExternalID, crm.ErrMissingIdentity)
	}
	return ev.RecordID, nil
}

// Payload implements crm.CRM: the collection record of rec.
func (c *Client) Payload(rec crm.Record) any {
	if rec.Event.Operation == event.OpDelete {
		return map[string]any{"delete": map[string]string{"type": sobject(rec.Event), ExternalID: rec.Identity}}
	}
	return collectionRecord(rec)
}

func sobject(ev *event.Event) string {
	if o, ok := objects[ev.ObjectType]; ok {
		return o
	}
	return "Contact"
}

func collectionRecord(rec crm.Record) map[string]any {
	out := make(map[string]any, len(rec.Fields)+2)
	for k, v := range rec.Fields {
		out[k] = v
	}
	out["attributes"] = map[string]string{"type": sobject(rec.Event)}
	out[ExternalID] = rec.Identity
	return out
}

// Push implements crm.CRM. Upserts go by sObject type, one collection
// request per type; deletes by type too: a SOQL query finds the record
// ids of the external ids, and one collection request deletes them.
func (c *Client) Push(ctx context.Context, ep crm.Endpoint, recs []crm.Record) []crm.Result {
	results := make([]crm.Result, len(recs))
	upserts, deletes := map[string][]int{}, map[string][]int{}
	for i, r := range recs {
		if r.Event.Operation == event.OpDelete {
			deletes[sobject(r.Event)] = append(deletes[sobject(r.Event)], i)
		} else {
			upserts[sobject(r.Event)] = append(upserts[sobject(r.Event)], i)
		}
	}
	for typ, idx := range upserts {
		c.upsert(ctx, ep, typ, recs, idx, results)
	}
	for typ, idx := range deletes {
		c.delete(ctx, ep, typ, recs, idx, results)
	}
	return results
}

// maxQueryLen bounds the SOQL of one query: it travels in the URL, which
// Salesforce takes up to about 16,000 characters.
const maxQueryLen = 12_000

// delete removes the records recs[idx] of type typ: their ids by a query
// (split when the external ids make it long), then one collections delete.
// A record Salesforce does not hold is as deleted as it can make it.
func (c *Client) delete(ctx context.Context, ep crm.Endpoint, typ string, recs []crm.Record, idx []int, results []crm.Result) {
	ids := make(map[string]string, len(idx)) // external id -> record id
	for start := 0; start < len(idx); {
		q := "SELECT Id, " + ExternalID + " FROM " + typ + " WHERE " + ExternalID + " IN ("
		end := start
		for ; end < len(idx) && (end == start || len(q) < maxQueryLen); end++ {
			if end > start {
				q += ", "
			}
			q += "'" + soqlEscape(recs[idx[end]].Identity) + "'"
		}
		q += ")"
		var found struct {
			Records []map[string]any `json:"records"`
		}
		if _, res, ok := c.Call(ctx, ep, http.MethodGet, "/query?q="+url.QueryEscape(q), nil, &found); !ok {
			crm.Fail(results, idx, res)
			return
		}
		for _, r := range found.Records {
			id, _ := r["Id"].(string)
			ext, _ := r[ExternalID].(string)
			ids[ext] = id
		}
		start = end
	}
	var toDelete []string
	var deleting []int // of idx
	for _, i := range idx {
		if id, ok := ids[recs[i].Identity]; ok {
			toDelete = append(toDelete, id)
			deleting = append(deleting, i)
		} else {
			results[i] = crm.Result{Class: crm.OK}
		}
	}
	if len(toDelete) == 0 {
		return
	}
	var items []itemResult
	a, res, ok := c.Call(ctx, ep, http.MethodDelete, "/composite/sobjects?allOrNone=false&ids="+strings.Join(toDelete, ","), nil, &items)
	if ok && len(items) != len(toDelete) {
		ok, res = false, c.Undecodable(a, fmt.Sprintf("%d results for %d records", len(items), len(toDelete)))
	}
	if !ok {
		crm.Fail(results, deleting, res)
		return
	}
	for j, i := range deleting {
		r := itemOutcome(items[j])
		if r.Code == "ENTITY_IS_DELETED" {
			r = crm.Result{Class: crm.OK}
		}
		r.CRMID = toDelete[j]
		results[i] = r
	}
}

// soqlEscape escapes s for a quoted SOQL string literal.
func soqlEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s)
}

type itemResult struct {
	ID      *string `json:"id"`
	Success bool    `json:"success"`
	Errors  []struct {
		StatusCode string `json:"statusCode"`
		ErrorCode  string `json:"errorCode"`
		Message    string `json:"message"`
	} `json:"errors"`
}

func (c *Client) upsert(ctx context.Context, ep crm.Endpoint, typ string, recs []crm.Record, idx []int, results []crm.Result) {
	records := make([]map[string]any, len(idx))
	for j, i := range idx {
		records[j] = collectionRecord(recs[i])
	}
	var items []itemResult
	a, res, ok := c.Call(ctx, ep, http.MethodPatch, "/composite/sobjects/"+typ+"/"+ExternalID, map[string]any{"allOrNone": false, "records": records}, &items)
	if ok && len(items) != len(idx) {
		ok, res = false, c.Undecodable(a, fmt.Sprintf("%d results for %d records", len(items), len(idx)))
	}
	if !ok {
		crm.Fail(results, idx, res)
		return
	}
	for j, i := range idx {
		results[i] = itemOutcome(items[j])
	}
}

// itemOutcome classifies one record's result in a collections answer.
func itemOutcome(it itemResult) crm.Result {
	if it.Success && it.ID != nil {
		return crm.Result{Class: crm.OK, CRMID: *it.ID}
	}
	r := crm.Result{Class: crm.Permanent, Code: crm.CodeUnknown, Message: "the record was not saved"}
	if len(it.Errors) > 0 {
		e := it.Errors[0]
		r.Code, r.Message = e.ErrorCode+e.StatusCode, e.Message
	}
	if b, err := fastjson.Marshal(it); err == nil {
		r.Excerpt = crm.Excerpt(b)
	}
	switch r.Code {
	case "UNABLE_TO_LOCK_ROW", "API_TEMPORARILY_UNAVAILABLE", "SERVER_UNAVAILABLE":
		r.Class = crm.Transient
	}
	return r
}

// apiError is one error of Salesforce's error body, a list.
type apiError struct {
	Message   string `json:"message"`
	ErrorCode string `json:"errorCode"`
}

// firstError returns the first error of an error body (empty when it is
// not one: the status alone classifies an unreadable body).
func firstError(body []byte) (code, msg string) {
	var errs []apiError
	_ = fastjson.Unmarshal(body, &errs)
	if len(errs) == 0 {
		return "", strings.TrimSpace(string(body[:min(len(body), 200)]))
	}
	return errs[0].ErrorCode, errs[0].Message
}

// refused: Salesforce answers an expired or revoked token with
// INVALID_SESSION_ID.
func refused(a crm.Answer) bool {
	if a.Status/100 == 2 {
		return false
	}
	code, _ := firstError(a.Body)
	return code == "INVALID_SESSION_ID"
}

// failure classifies Salesforce's refusal of a request. Salesforce answers
// its API limit with a 403 REQUEST_LIMIT_EXCEEDED and no Retry-After: it
// is waited out for a minute.
func failure(a crm.Answer) crm.Result {
	code, msg := firstError(a.Body)
	res := crm.FromStatus(a.Status, a.Header, code, msg)
	if code == "REQUEST_LIMIT_EXCEEDED" {
		res.Class, res.RetryAfter = crm.RateLimited, time.Minute
	}
	return res
}

// session returns the cached token and the REST base of its instance, or
// gets a token with a JWT bearer assertion (after refused, a new one).
func (c *Client) session(ctx context.Context, ep crm.Endpoint, refused *crm.Session) (crm.Session, error) {
	if refused != nil {
		c.dropToken(refused.Token)
	}
	token, instance, err := c.token(ctx, ep)
	if err != nil {
		return crm.Session{}, err
	}
	return crm.Session{Base: instance + "/services/data/" + APIVersion, Token: token}, nil
}

// token returns the cached token and instance, or gets them.
func (c *Client) token(ctx context.Context, ep crm.Endpoint) (token, instance string, err error) {
	c.mu.Lock()
	token, instance = c.accessToken, c.instance
	c.mu.Unlock()
	if token != "" {
		return token, instance, nil
	}
	login := c.creds.LoginURL
	if login == "" {
		login = ep.Host
	}
	assertion, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": c.creds.ConsumerKey, "sub": c.creds.Username, "aud": c.creds.Audience,
		"exp": time.Now().Add(2 * time.Minute).Unix(),
	}).SignedString(c.creds.Key)
	if err != nil {
		return "", "", fmt.Errorf("sign assertion: %w", err)
	}
	form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {assertion}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(login, "/")+"/services/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		return "", "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	a, err := c.Authenticate(req)
	if err != nil {
		return "", "", fmt.Errorf("token: %w", err)
	}
	var out struct {
		AccessToken string `json:"access_token"`
		InstanceURL string `json:"instance_url"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.Unmarshal(a.Body, &out); err != nil {
		return "", "", fmt.Errorf("token answer: %w", err)
	}
	if a.Status != http.StatusOK || out.AccessToken == "" {
		return "", "", errors.New("token refused: " + out.Error + ": " + out.Description)
	}
	token, instance = out.AccessToken, strings.TrimRight(out.InstanceURL, "/")
	c.mu.Lock()
	c.accessToken, c.instance = token, instance
	c.mu.Unlock()
	return token, instance, nil
}

func (c *Client) dropToken(token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.accessToken == token {
		c.accessToken = ""
	}
}

// quota reads "api-usage=18/5000" from Sforce-Limit-Info.
func quota(h http.Header) (crm.Quota, bool) {
	_, usage, ok := strings.Cut(h.Get("Sforce-Limit-Info"), "api-usage=")
	if !ok {
		return crm.Quota{}, false
	}
	usage, _, _ = strings.Cut(usage, ";")
	used, limit, ok := strings.Cut(strings.TrimSpace(usage), "/")
	if !ok {
		return crm.Quota{}, false
	}
	u, err1 := strconv.Atoi(used)
	l, err2 := strconv.Atoi(limit)
	if err1 != nil || err2 != nil {
		return crm.Quota{}, false
	}
	return crm.Quota{Limit: l, Remaining: l - u, Known: true}, true
}

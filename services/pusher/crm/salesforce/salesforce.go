// Package salesforce is the pusher's Salesforce plugin: the OAuth 2.0 JWT
// bearer flow (RS256) with the token cached and renewed on
// INVALID_SESSION_ID; writes as sObject Collections upserts by an external
// id field holding System A's record id (up to 200 per request), so a
// redelivered push updates the same record; deletes by external id; per
// record results mapped; REQUEST_LIMIT_EXCEEDED and Sforce-Limit-Info
// understood.
package salesforce

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/recordsync/record-sync/services/pusher/crm"
	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/fastjson"
	"github.com/recordsync/record-sync/shared/httpbody"
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

	mu       sync.Mutex
	token    string
	instance string
}

var (
	_ crm.CRM           = (*Client)(nil)
	_ crm.QuotaReporter = (*Client)(nil)
)

// New returns a plugin for the connected app creds.
func New(creds Credentials, timeout time.Duration) *Client {
	return &Client{Conn: crm.NewConn(timeout), creds: creds}
}

// Name implements crm.CRM.
func (c *Client) Name() string { return "salesforce" }

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
func (c *Client) Push(ctx context.Context, apiHost string, recs []crm.Record) []crm.Result {
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
		c.upsert(ctx, apiHost, typ, recs, idx, results)
	}
	for typ, idx := range deletes {
		c.delete(ctx, apiHost, typ, recs, idx, results)
	}
	return results
}

// maxQueryLen bounds the SOQL of one query: it travels in the URL, which
// Salesforce takes up to about 16,000 characters.
const maxQueryLen = 12_000

// delete removes the records recs[idx] of type typ: their ids by a query
// (split when the external ids make it long), then one collections delete.
// A record Salesforce does not hold is as deleted as it can make it.
func (c *Client) delete(ctx context.Context, apiHost, typ string, recs []crm.Record, idx []int, results []crm.Result) {
	fail := func(idx []int, res crm.Result, raw []byte) {
		res.Excerpt = crm.Excerpt(raw)
		for _, i := range idx {
			results[i] = res
		}
	}
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
		res, raw, ok := c.call(ctx, apiHost, http.MethodGet, "/query?q="+url.QueryEscape(q), nil)
		if !ok {
			fail(idx, res, raw)
			return
		}
		var found struct {
			Records []map[string]any `json:"records"`
		}
		if err := fastjson.Unmarshal(raw, &found); err != nil {
			fail(idx, crm.Result{Class: crm.Transient, Code: "DECODE", Message: "unexpected Salesforce answer", Whole: true}, raw)
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
	for _, i := range idx {
		if id, ok := ids[recs[i].Identity]; ok {
			toDelete = append(toDelete, id)
		} else {
			results[i] = crm.Result{Class: crm.OK}
		}
	}
	if len(toDelete) == 0 {
		return
	}
	res, raw, ok := c.call(ctx, apiHost, http.MethodDelete, "/composite/sobjects?allOrNone=false&ids="+strings.Join(toDelete, ","), nil)
	var items []itemResult
	if ok {
		if err := fastjson.Unmarshal(raw, &items); err != nil || len(items) != len(toDelete) {
			ok, res = false, crm.Result{Class: crm.Transient, Code: "DECODE", Message: "unexpected Salesforce answer", Whole: true}
		}
	}
	byID := make(map[string]crm.Result, len(items))
	for j, it := range items {
		r := itemOutcome(it)
		if r.Code == "ENTITY_IS_DELETED" {
			r = crm.Result{Class: crm.OK}
		}
		r.CRMID = toDelete[j]
		byID[toDelete[j]] = r
	}
	for _, i := range idx {
		id, ok2 := ids[recs[i].Identity]
		switch {
		case !ok2:
		case !ok:
			results[i] = res
			results[i].Excerpt = crm.Excerpt(raw)
		default:
			results[i] = byID[id]
		}
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

func (c *Client) upsert(ctx context.Context, apiHost, typ string, recs []crm.Record, idx []int, results []crm.Result) {
	body := map[string]any{"allOrNone": false, "records": func() []map[string]any {
		out := make([]map[string]any, len(idx))
		for j, i := range idx {
			out[j] = collectionRecord(recs[i])
		}
		return out
	}()}
	res, raw, ok := c.call(ctx, apiHost, http.MethodPatch, "/composite/sobjects/"+typ+"/"+ExternalID, body)
	if !ok {
		res.Excerpt = crm.Excerpt(raw)
		for _, i := range idx {
			results[i] = res
		}
		return
	}
	var items []itemResult
	if err := fastjson.Unmarshal(raw, &items); err != nil || len(items) != len(idx) {
		for _, i := range idx {
			results[i] = crm.Result{Class: crm.Transient, Code: "DECODE", Message: "unexpected Salesforce answer", Excerpt: crm.Excerpt(raw), Whole: true}
		}
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
	r := crm.Result{Class: crm.Permanent, Code: "UNKNOWN", Message: "the record was not saved"}
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

// call sends one REST request under the instance's data path, getting or
// renewing the token as needed. ok means a 2xx; otherwise res classifies
// the failure.
func (c *Client) call(ctx context.Context, apiHost, method, path string, body any) (res crm.Result, raw []byte, ok bool) {
	for attempt := 0; attempt < 2; attempt++ {
		token, instance, err := c.session(ctx, apiHost)
		if err != nil {
			return crm.Result{Class: crm.Transient, Code: "AUTH", Message: err.Error(), Whole: true}, nil, false
		}
		var rd io.Reader
		if body != nil {
			b, err := fastjson.Marshal(body)
			if err != nil {
				return crm.Result{Class: crm.Permanent, Code: "ENCODE", Message: err.Error()}, nil, false
			}
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequestWithContext(ctx, method, instance+"/services/data/"+APIVersion+path, rd)
		if err != nil {
			return crm.Result{Class: crm.Permanent, Code: "REQUEST", Message: err.Error()}, nil, false
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return crm.FromError(err), nil, false
		}
		raw, err = httpbody.Read(io.LimitReader(resp.Body, 32<<20), resp.ContentLength)
		_ = resp.Body.Close()
		if err != nil {
			return crm.FromError(err), nil, false
		}
		c.noteLimit(resp.Header.Get("Sforce-Limit-Info"))
		if resp.StatusCode/100 == 2 {
			return crm.Result{}, raw, true
		}
		var errs []struct {
			Message   string `json:"message"`
			ErrorCode string `json:"errorCode"`
		}
		_ = fastjson.Unmarshal(raw, &errs) // the status alone classifies an unreadable body
		code, msg := "", strings.TrimSpace(string(raw[:min(len(raw), 200)]))
		if len(errs) > 0 {
			code, msg = errs[0].ErrorCode, errs[0].Message
		}
		if code == "INVALID_SESSION_ID" && attempt == 0 {
			c.dropToken(token)
			continue // renew the token once, then try again
		}
		res = crm.FromStatus(resp.StatusCode, resp.Header, code, msg)
		if code == "REQUEST_LIMIT_EXCEEDED" {
			// Salesforce answers its limit with a 403 and no Retry-After.
			res.Class, res.RetryAfter = crm.RateLimited, time.Minute
		}
		return res, raw, false
	}
	return crm.Result{Class: crm.Transient, Code: "INVALID_SESSION_ID", Message: "the session was refused after a new token", Whole: true}, nil, false
}

// session returns the cached token, or gets one with a JWT bearer
// assertion.
func (c *Client) session(ctx context.Context, apiHost string) (token, instance string, err error) {
	c.mu.Lock()
	token, instance = c.token, c.instance
	c.mu.Unlock()
	if token != "" {
		return token, instance, nil
	}
	login := c.creds.LoginURL
	if login == "" {
		login = apiHost
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
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return "", "", fmt.Errorf("token: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		InstanceURL string `json:"instance_url"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		return "", "", fmt.Errorf("token answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK || out.AccessToken == "" {
		return "", "", errors.New("token refused: " + out.Error + ": " + out.Description)
	}
	token, instance = out.AccessToken, strings.TrimRight(out.InstanceURL, "/")
	c.mu.Lock()
	c.token, c.instance = token, instance
	c.mu.Unlock()
	return token, instance, nil
}

func (c *Client) dropToken(token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token == token {
		c.token = ""
	}
}

// noteLimit reads "api-usage=18/5000" from Sforce-Limit-Info.
func (c *Client) noteLimit(h string) {
	_, usage, ok := strings.Cut(h, "api-usage=")
	if !ok {
		return
	}
	usage, _, _ = strings.Cut(usage, ";")
	used, limit, ok := strings.Cut(strings.TrimSpace(usage), "/")
	if !ok {
		return
	}
	u, err1 := strconv.Atoi(used)
	l, err2 := strconv.Atoi(limit)
	if err1 != nil || err2 != nil {
		return
	}
	c.SetQuota(crm.Quota{Limit: l, Remaining: l - u, Known: true})
}

// Package outreach is the pusher's Outreach plugin: OAuth 2.0 with a
// refresh token (golang.org/x/oauth2), JSON:API prospects. Outreach has no
// upsert, so a record is looked up by email, then updated or created, and
// the CRM id is remembered so that the next change needs no lookup; a
// redelivered create finds the prospect the first one made. 429s and the
// X-RateLimit-* headers are understood.
package outreach

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/recordsync/record-sync/crm"
	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/fastjson"
	"github.com/recordsync/record-sync/shared/mapping"
)

// MaxBatch is one: Outreach has no batch write, and the rate limit counts
// requests, so each push is one record (one or two requests).
const MaxBatch = 1

const mediaType = "application/vnd.api+json"

// listAttributes are attributes Outreach holds as lists.
var listAttributes = map[string]bool{"emails": true, "workPhones": true, "mobilePhones": true, "tags": true}

var schema = mapping.Schema{
	Fields: []string{"firstName", "lastName", "emails", "title", "company", "workPhones", "mobilePhones",
		"addressCity", "addressState", "addressZip", "addressCountry", "tags"},
	Default: mapping.Mapping{Fields: []mapping.Field{
		{From: "email", To: "emails", Fn: []string{"trim", "lower"}},
		{From: "first_name", To: "firstName"}, {From: "last_name", To: "lastName"},
		{From: "title", To: "title"}, {From: "company", To: "company"},
		{From: "phone", To: "workPhones", Fn: []string{"string"}}, {From: "mobile", To: "mobilePhones", Fn: []string{"string"}},
		{From: "city", To: "addressCity"}, {From: "state", To: "addressState"}, {From: "zip", To: "addressZip", Fn: []string{"string"}},
		{From: "country", To: "addressCountry"},
	}},
}

// Credentials are the OAuth client and its refresh token.
type Credentials struct {
	ClientID, ClientSecret, RefreshToken string
}

// Client is the Outreach plugin.
type Client struct {
	*crm.Conn
	creds Credentials

	tokens *crm.RefreshTokens

	mu  sync.Mutex
	ids map[string]int // email -> prospect id
}

var (
	_ crm.CRM           = (*Client)(nil)
	_ crm.QuotaReporter = (*Client)(nil)
)

// New returns the plugin.
func New(creds Credentials, timeout time.Duration) *Client {
	c := &Client{creds: creds, ids: map[string]int{}}
	c.Conn = crm.NewConn(crm.API{Name: "Outreach", MediaType: mediaType, Session: c.session, Failure: failure, Quota: quota,
		Refused: func(a crm.Answer) bool { return a.Status == http.StatusUnauthorized }}, timeout)
	c.tokens = crm.NewRefreshTokens(creds.ClientID, creds.ClientSecret, creds.RefreshToken, "/oauth/token", c.Conn)
	return c
}

// session returns an access token of the host (a new one when the last
// was refused).
func (c *Client) session(_ context.Context, ep crm.Endpoint, refused *crm.Session) (crm.Session, error) {
	base := ep.URL("")
	tok, err := c.tokens.Token(base, refused != nil)
	if err != nil {
		return crm.Session{}, err
	}
	return crm.Session{Base: base, Token: tok.AccessToken}, nil
}

// Name implements crm.CRM.
func (c *Client) Name() string { return Name }

// MaxBatch implements crm.CRM.
func (c *Client) MaxBatch() int { return MaxBatch }

// Schema implements crm.CRM: contacts and leads are prospects.
func (c *Client) Schema(objectType string) (mapping.Schema, bool) {
	return schema, objectType == event.ObjectContact || objectType == event.ObjectLead
}

// Identify implements crm.CRM: prospects are found by email.
func (c *Client) Identify(_ *event.Event, fields map[string]any) (string, error) {
	return crm.EmailIdentity(c.Name(), fields, "emails")
}

// Payload implements crm.CRM: the JSON:API document of a create.
func (c *Client) Payload(rec crm.Record) any {
	if rec.Event.Operation == event.OpDelete {
		return map[string]any{"delete_prospect_with_email": rec.Identity}
	}
	return document(rec, 0)
}

func document(rec crm.Record, id int) map[string]any {
	attrs := make(map[string]any, len(rec.Fields))
	for k, v := range rec.Fields {
		if listAttributes[k] {
			if v == nil || v == "" {
				attrs[k] = []string{}
			} else {
				attrs[k] = []any{v}
			}
			continue
		}
		attrs[k] = v
	}
	data := map[string]any{"type": "prospect", "attributes": attrs}
	if id != 0 {
		data["id"] = id
	}
	return map[string]any{"data": data}
}

// Push implements crm.CRM.
func (c *Client) Push(ctx context.Context, ep crm.Endpoint, recs []crm.Record) []crm.Result {
	out := make([]crm.Result, len(recs))
	for i, r := range recs {
		out[i] = c.push(ctx, ep, r)
	}
	return out
}

func (c *Client) push(ctx context.Context, ep crm.Endpoint, r crm.Record) crm.Result {
	var id int
	if r.Identity == "" { // an update or delete without the email: the prospect id is known
		var err error
		if id, err = strconv.Atoi(r.CRMID); err != nil {
			return crm.Result{Class: crm.Permanent, Code: crm.CodeMissingIdentity, Message: "no email and no Outreach prospect id " + r.CRMID}
		}
	} else {
		var res crm.Result
		var ok bool
		if id, res, ok = c.find(ctx, ep, r.Identity); !ok {
			return res
		}
	}
	if r.Event.Operation == event.OpDelete {
		if id == 0 {
			return crm.Result{Class: crm.OK}
		}
		a, res, _ := c.Call(ctx, ep, http.MethodDelete, "/api/v2/prospects/"+strconv.Itoa(id), nil, nil)
		if a.Status == http.StatusNoContent || a.Status == http.StatusNotFound {
			c.forget(r.Identity)
			return crm.Result{Class: crm.OK, CRMID: strconv.Itoa(id)}
		}
		return res
	}
	var doc struct {
		Data struct {
			ID int `json:"id"`
		} `json:"data"`
	}
	if id != 0 {
		a, res, ok := c.Call(ctx, ep, http.MethodPatch, "/api/v2/prospects/"+strconv.Itoa(id), document(r, id), &doc)
		switch {
		case ok:
			return crm.Result{Class: crm.OK, CRMID: strconv.Itoa(id)}
		case a.Status == http.StatusNotFound:
			if r.Identity == "" {
				return crm.Result{Class: crm.Permanent, Code: "resourceNotFound",
					Message: "the Outreach prospect " + r.CRMID + " no longer exists, and the event carries no email to create it again"}
			}
			c.forget(r.Identity) // deleted in Outreach since: create it again
		default:
			return res
		}
	}
	if _, res, ok := c.Call(ctx, ep, http.MethodPost, "/api/v2/prospects", document(r, 0), &doc); !ok {
		return res
	}
	c.remember(r.Identity, doc.Data.ID)
	return crm.Result{Class: crm.OK, CRMID: strconv.Itoa(doc.Data.ID)}
}

// find returns the prospect id of email (0 when there is none), from
// memory or by a lookup.
func (c *Client) find(ctx context.Context, ep crm.Endpoint, email string) (int, crm.Result, bool) {
	c.mu.Lock()
	id, known := c.ids[email]
	c.mu.Unlock()
	if known {
		return id, crm.Result{}, true
	}
	var list struct {
		Data []struct {
			ID int `json:"id"`
		} `json:"data"`
	}
	if _, res, ok := c.Call(ctx, ep, http.MethodGet, "/api/v2/prospects?filter[emails]="+url.QueryEscape(email), nil, &list); !ok {
		return 0, res, false
	}
	if len(list.Data) == 0 {
		return 0, crm.Result{}, true
	}
	c.remember(email, list.Data[0].ID)
	return list.Data[0].ID, crm.Result{}, true
}

func (c *Client) remember(email string, id int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.ids) > 100_000 {
		c.ids = map[string]int{} // bounded: a lookup brings an id back
	}
	c.ids[email] = id
}

func (c *Client) forget(email string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.ids, email)
}

// failure classifies Outreach's refusal of a request: the JSON:API error's
// id is the code.
func failure(a crm.Answer) crm.Result {
	var e struct {
		Errors []struct {
			ID     string `json:"id"`
			Detail string `json:"detail"`
		} `json:"errors"`
	}
	_ = fastjson.Unmarshal(a.Body, &e) // the status alone classifies an unreadable body
	code, msg := "", strings.TrimSpace(string(a.Body[:min(len(a.Body), 200)]))
	if len(e.Errors) > 0 {
		code, msg = e.Errors[0].ID, e.Errors[0].Detail
	}
	return crm.FromStatus(a.Status, a.Header, code, msg)
}

// quota reads the X-RateLimit-* headers.
func quota(h http.Header) (crm.Quota, bool) {
	limit, err1 := strconv.Atoi(h.Get("X-RateLimit-Limit"))
	rem, err2 := strconv.Atoi(h.Get("X-RateLimit-Remaining"))
	if err1 != nil || err2 != nil {
		return crm.Quota{}, false
	}
	q := crm.Quota{Limit: limit, Remaining: rem, Window: time.Hour, Known: true}
	if reset, err := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64); err == nil {
		q.Reset = time.Unix(reset, 0)
	}
	return q, true
}

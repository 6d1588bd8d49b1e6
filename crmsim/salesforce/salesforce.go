// Package salesforce emulates the parts of Salesforce's REST API a sync
// needs: the OAuth 2.0 JWT bearer token flow (RS256 signature, issuer,
// subject, audience and expiry checked), sObject Collections upserts by an
// external id field (up to 200 records, a result per record), single
// reads and deletes by external id, Salesforce's error arrays, the
// Sforce-Limit-Info header and REQUEST_LIMIT_EXCEEDED past the quota.
package salesforce

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/recordsync/record-sync/crmsim"
)

// MaxBatch is the most records of one sObject Collections request.
const MaxBatch = 200

// ExternalID is the external id field the emulated org has on Contact and
// Lead.
const ExternalID = "RecordSync_Id__c"

// APIVersion is the REST API version the emulator serves.
const APIVersion = "v60.0"

var fields = map[string][]string{
	"Contact": {"FirstName", "LastName", "Email", "Phone", "MobilePhone", "Title", "AccountId", ExternalID},
	"Lead":    {"FirstName", "LastName", "Company", "Email", "Phone", "Title", "Status", ExternalID},
}

var required = map[string][]string{"Contact": {"LastName"}, "Lead": {"LastName", "Company"}}

// Credentials are what a JWT bearer client needs.
type Credentials struct {
	ConsumerKey string `json:"consumer_key"`
	Username    string `json:"username"`
	PrivateKey  string `json:"private_key" doc:"PEM, PKCS#1"`
	Audience    string `json:"audience"`
}

type record struct {
	ID     string
	Type   string
	Fields map[string]any
}

// CRM is the emulated Salesforce org.
type CRM struct {
	sim   *crmsim.Sim
	creds Credentials
	pub   *rsa.PublicKey

	tokens *crmsim.Tokens

	mu    sync.Mutex
	byID  map[string]*record
	byExt map[string]string // type + "/" + external id -> id
	next  int
}

var _ crmsim.CRM = (*CRM)(nil)

// New returns an empty org that trusts creds' key pair.
func New(creds Credentials) (*CRM, error) {
	block, _ := pem.Decode([]byte(creds.PrivateKey))
	if block == nil {
		return nil, fmt.Errorf("salesforce: private key is not PEM")
	}
	key, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("salesforce: private key: %w", err)
	}
	c := &CRM{sim: crmsim.NewSim(1000, time.Minute), creds: creds, pub: &key.PublicKey, tokens: crmsim.NewTokens(2 * time.Hour)}
	c.Reset()
	return c, nil
}

// NewCredentials generates a sandbox key pair and identity.
func NewCredentials() (Credentials, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return Credentials{}, err
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	var b [8]byte
	_, _ = rand.Read(b[:])
	return Credentials{ConsumerKey: "3MVG9sim" + hex.EncodeToString(b[:]), Username: "integration@recordsync.sandbox",
		PrivateKey: string(pemKey), Audience: "https://test.salesforce.com"}, nil
}

// Name implements crmsim.CRM.
func (c *CRM) Name() string { return "salesforce" }

// Sim implements crmsim.CRM.
func (c *CRM) Sim() *crmsim.Sim { return c.sim }

// Credentials implements crmsim.CRM.
func (c *CRM) Credentials() any { return c.creds }

// ExpireTokens ends every access token issued so far.
func (c *CRM) ExpireTokens() { c.tokens.Expire() }

// Reset implements crmsim.CRM.
func (c *CRM) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byID, c.byExt, c.next = map[string]*record{}, map[string]string{}, 1
}

// Stored implements crmsim.CRM.
func (c *CRM) Stored() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byID)
}

// Register implements crmsim.CRM.
func (c *CRM) Register(mux *http.ServeMux, prefix string) {
	mux.HandleFunc("POST "+prefix+"/services/oauth2/token", c.token)
	base := prefix + "/services/data/" + APIVersion
	mux.Handle("PATCH "+base+"/composite/sobjects/{type}/{field}", c.guard(c.upsert))
	mux.Handle("GET "+base+"/sobjects/{type}/{field}/{value}", c.guard(c.get))
	mux.Handle("DELETE "+base+"/sobjects/{type}/{field}/{value}", c.guard(c.deleteByExt))
	mux.Handle("DELETE "+base+"/composite/sobjects", c.guard(c.deleteCollection))
	mux.Handle("GET "+base+"/query", c.guard(c.query))
}

// apiError is one entry of Salesforce's error array.
type apiError struct {
	Message   string   `json:"message"`
	ErrorCode string   `json:"errorCode"`
	Fields    []string `json:"fields,omitempty"`
}

func writeErrs(w http.ResponseWriter, status int, code, msg string) {
	crmsim.WriteJSON(w, status, "application/json;charset=UTF-8", []apiError{{Message: msg, ErrorCode: code}})
}

func (c *CRM) token(w http.ResponseWriter, r *http.Request) {
	fail := func(desc string) {
		crmsim.WriteJSON(w, http.StatusBadRequest, "application/json;charset=UTF-8", map[string]string{"error": "invalid_grant", "error_description": desc})
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		crmsim.WriteJSON(w, http.StatusBadRequest, "application/json;charset=UTF-8", map[string]string{"error": "unsupported_grant_type", "error_description": "grant type not supported"})
		return
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(r.PostForm.Get("assertion"), claims, func(*jwt.Token) (any, error) { return c.pub, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithExpirationRequired(), jwt.WithIssuer(c.creds.ConsumerKey),
		jwt.WithAudience("https://login.salesforce.com", "https://test.salesforce.com"))
	switch {
	case err != nil && strings.Contains(err.Error(), "aud"):
		fail("audience is invalid")
		return
	case err != nil && strings.Contains(err.Error(), "iss"):
		fail("invalid client credentials")
		return
	case err != nil:
		fail("invalid assertion: " + err.Error())
		return
	}
	if exp, _ := claims.GetExpirationTime(); exp != nil && time.Until(exp.Time) > 3*time.Minute+5*time.Second {
		fail("expired access/refresh token: the assertion must expire within 3 minutes")
		return
	}
	sub, _ := claims["sub"].(string)
	if prn, ok := claims["prn"].(string); ok {
		sub = prn
	}
	if subtle.ConstantTimeCompare([]byte(sub), []byte(c.creds.Username)) != 1 {
		fail("user hasn't approved this consumer")
		return
	}
	tok, _ := c.tokens.Issue("00Dsim!")
	scheme := "http://"
	crmsim.WriteJSON(w, http.StatusOK, "application/json;charset=UTF-8", map[string]string{
		"access_token": tok, "scope": "api", "instance_url": scheme + r.Host + "/salesforce",
		"id": scheme + r.Host + "/salesforce/id/00Dsim/005sim", "token_type": "Bearer", "issued_at": fmt.Sprint(time.Now().UnixMilli()),
	})
}

// guard checks the session, the quota and the faults before h, and sets
// Sforce-Limit-Info on every answer.
func (c *CRM) guard(h func(w http.ResponseWriter, r *http.Request, timeout bool, partial float64)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !c.tokens.Valid(tok) {
			writeErrs(w, http.StatusUnauthorized, "INVALID_SESSION_ID", "Session expired or invalid")
			return
		}
		a := c.sim.Admit()
		if a.Verdict == crmsim.Down {
			crmsim.Refuse(w)
			return
		}
		c.sim.Latency(r)
		w.Header().Set("Sforce-Limit-Info", fmt.Sprintf("api-usage=%d/%d", a.Quota.Limit-a.Quota.Remaining, a.Quota.Limit))
		switch a.Verdict {
		case crmsim.Limited:
			writeErrs(w, http.StatusForbidden, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
			return
		case crmsim.Fail5xx:
			writeErrs(w, http.StatusServiceUnavailable, "SERVER_UNAVAILABLE", "Server is unavailable; please try again.")
			return
		}
		if r.Method == http.MethodPatch || r.Method == http.MethodPost {
			if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
				writeErrs(w, http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE",
					fmt.Sprintf("MediaType of '%s' is not supported by this resource", r.Header.Get("Content-Type")))
				return
			}
		}
		h(w, r, a.Timeout, a.Partial)
	})
}

// itemResult is one record's result in an sObject Collections answer; its
// errors carry statusCode (not errorCode, as whole-request errors do).
type itemResult struct {
	ID      *string     `json:"id"`
	Success bool        `json:"success"`
	Errors  []itemError `json:"errors"`
	Created bool        `json:"created,omitempty"`
}

type itemError struct {
	StatusCode string   `json:"statusCode"`
	Message    string   `json:"message"`
	Fields     []string `json:"fields"`
}

func (c *CRM) upsert(w http.ResponseWriter, r *http.Request, timeout bool, partial float64) {
	typ, field := r.PathValue("type"), r.PathValue("field")
	known, ok := fields[typ]
	if !ok {
		writeErrs(w, http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
		return
	}
	if field != ExternalID {
		writeErrs(w, http.StatusNotFound, "NOT_FOUND", "Provided external ID field does not exist or is not accessible: "+field)
		return
	}
	var req struct {
		AllOrNone bool             `json:"allOrNone"`
		Records   []map[string]any `json:"records"`
	}
	if err := crmsim.ReadJSON(w, r, &req); err != nil {
		writeErrs(w, http.StatusBadRequest, "JSON_PARSER_ERROR", err.Error())
		return
	}
	if len(req.Records) == 0 || len(req.Records) > MaxBatch {
		writeErrs(w, http.StatusBadRequest, "INVALID_FIELD", fmt.Sprintf("Maximum number of records allowed is %d; got %d", MaxBatch, len(req.Records)))
		return
	}
	out := make([]itemResult, len(req.Records))
	c.mu.Lock()
	for i, rec := range req.Records {
		out[i] = c.upsertLocked(typ, known, rec, partial)
	}
	c.mu.Unlock()
	crmsim.Answer(w, r, timeout, http.StatusOK, "application/json;charset=UTF-8", out)
}

func (c *CRM) upsertLocked(typ string, known []string, rec map[string]any, partial float64) itemResult {
	fail := func(code, msg string, f ...string) itemResult {
		return itemResult{Errors: []itemError{{StatusCode: code, Message: msg, Fields: append([]string{}, f...)}}}
	}
	attrs, _ := rec["attributes"].(map[string]any)
	if t, _ := attrs["type"].(string); t != typ {
		return fail("INVALID_TYPE", "attributes.type must be "+typ)
	}
	ext, _ := rec[ExternalID].(string)
	if ext == "" {
		return fail("REQUIRED_FIELD_MISSING", "Required fields are missing: ["+ExternalID+"]", ExternalID)
	}
	for k := range rec {
		if k != "attributes" && !slices.Contains(known, k) {
			return fail("INVALID_FIELD", "No such column '"+k+"' on entity '"+typ+"'", k)
		}
	}
	if c.sim.Roll(partial) {
		return fail("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record")
	}
	key := typ + "/" + ext
	existing, exists := c.byExt[key]
	if !exists {
		for _, f := range required[typ] {
			if v, _ := rec[f].(string); v == "" {
				return fail("REQUIRED_FIELD_MISSING", "Required fields are missing: ["+f+"]", f)
			}
		}
		id := fmt.Sprintf("003sim%012d", c.next)
		c.next++
		stored := &record{ID: id, Type: typ, Fields: map[string]any{}}
		for k, v := range rec {
			if k != "attributes" {
				stored.Fields[k] = v
			}
		}
		c.byID[id], c.byExt[key] = stored, id
		return itemResult{ID: &id, Success: true, Errors: []itemError{}, Created: true}
	}
	stored := c.byID[existing]
	for k, v := range rec {
		if k != "attributes" {
			stored.Fields[k] = v
		}
	}
	return itemResult{ID: &stored.ID, Success: true, Errors: []itemError{}}
}

func (c *CRM) lookup(w http.ResponseWriter, r *http.Request) (*record, bool) {
	if r.PathValue("field") != ExternalID {
		writeErrs(w, http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
		return nil, false
	}
	id, ok := c.byExt[r.PathValue("type")+"/"+r.PathValue("value")]
	if !ok {
		writeErrs(w, http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
		return nil, false
	}
	return c.byID[id], true
}

func (c *CRM) get(w http.ResponseWriter, r *http.Request, _ bool, _ float64) {
	c.mu.Lock()
	rec, ok := c.lookup(w, r)
	var out map[string]any
	if ok {
		out = maps.Clone(rec.Fields)
		out["Id"] = rec.ID
		out["attributes"] = map[string]string{"type": rec.Type, "url": "/services/data/" + APIVersion + "/sobjects/" + rec.Type + "/" + rec.ID}
	}
	c.mu.Unlock()
	if ok {
		crmsim.WriteJSON(w, http.StatusOK, "application/json;charset=UTF-8", out)
	}
}

func (c *CRM) deleteByExt(w http.ResponseWriter, r *http.Request, timeout bool, _ float64) {
	c.mu.Lock()
	rec, ok := c.lookup(w, r)
	if ok {
		delete(c.byID, rec.ID)
		delete(c.byExt, rec.Type+"/"+r.PathValue("value"))
	}
	c.mu.Unlock()
	if !ok {
		return
	}
	crmsim.Answer(w, r, timeout, http.StatusNoContent, "", nil)
}

// queryPattern is the one SOQL statement the emulator answers: records of
// a type by external id.
var queryPattern = regexp.MustCompile(`(?i)^\s*SELECT\s+Id\s*,\s*` + ExternalID + `\s+FROM\s+(\w+)\s+WHERE\s+` + ExternalID + `\s+IN\s*\((.*)\)\s*$`)

// soqlString matches one quoted SOQL string literal.
var soqlString = regexp.MustCompile(`\s*'((?:[^'\\]|\\.)*)'\s*(,|$)`)

// query answers GET /query?q=SELECT Id, RecordSync_Id__c FROM <type>
// WHERE RecordSync_Id__c IN ('a', 'b'); other statements get
// MALFORMED_QUERY, as a real org's parser would for what it cannot read.
func (c *CRM) query(w http.ResponseWriter, r *http.Request, _ bool, _ float64) {
	m := queryPattern.FindStringSubmatch(r.URL.Query().Get("q"))
	if m == nil {
		writeErrs(w, http.StatusBadRequest, "MALFORMED_QUERY", "The emulator reads only: SELECT Id, "+ExternalID+" FROM <type> WHERE "+ExternalID+" IN ('...')")
		return
	}
	typ := m[1]
	if _, ok := fields[typ]; !ok {
		writeErrs(w, http.StatusBadRequest, "INVALID_TYPE", "sObject type '"+typ+"' is not supported.")
		return
	}
	var values []string
	for rest := m[2]; rest != ""; {
		lit := soqlString.FindStringSubmatchIndex(rest)
		if lit == nil || lit[0] != 0 {
			writeErrs(w, http.StatusBadRequest, "MALFORMED_QUERY", "unexpected token in the IN list: "+rest)
			return
		}
		values = append(values, strings.NewReplacer(`\'`, `'`, `\\`, `\`).Replace(rest[lit[2]:lit[3]]))
		rest = rest[lit[1]:]
	}
	records := []map[string]any{}
	c.mu.Lock()
	for _, v := range values {
		if id, ok := c.byExt[typ+"/"+v]; ok {
			records = append(records, map[string]any{"attributes": map[string]string{"type": typ, "url": "/services/data/" + APIVersion + "/sobjects/" + typ + "/" + id},
				"Id": id, ExternalID: v})
		}
	}
	c.mu.Unlock()
	crmsim.WriteJSON(w, http.StatusOK, "application/json;charset=UTF-8", map[string]any{"totalSize": len(records), "done": true, "records": records})
}

// deleteCollection answers DELETE /composite/sobjects?ids=a,b&allOrNone=false:
// up to 200 record ids, a result per id in order.
func (c *CRM) deleteCollection(w http.ResponseWriter, r *http.Request, timeout bool, partial float64) {
	ids := strings.Split(r.URL.Query().Get("ids"), ",")
	if len(ids) == 0 || ids[0] == "" || len(ids) > MaxBatch {
		writeErrs(w, http.StatusBadRequest, "INVALID_FIELD", fmt.Sprintf("ids: between 1 and %d record ids are allowed", MaxBatch))
		return
	}
	out := make([]itemResult, len(ids))
	c.mu.Lock()
	for i, id := range ids {
		rec, ok := c.byID[id]
		switch {
		case !ok:
			out[i] = itemResult{ID: &ids[i], Errors: []itemError{{StatusCode: "ENTITY_IS_DELETED", Message: "entity is deleted", Fields: []string{}}}}
		case c.sim.Roll(partial):
			out[i] = itemResult{ID: &ids[i], Errors: []itemError{{StatusCode: "UNABLE_TO_LOCK_ROW", Message: "unable to obtain exclusive access to this record", Fields: []string{}}}}
		default:
			delete(c.byID, id)
			delete(c.byExt, rec.Type+"/"+fmt.Sprint(rec.Fields[ExternalID]))
			out[i] = itemResult{ID: &ids[i], Success: true, Errors: []itemError{}}
		}
	}
	c.mu.Unlock()
	crmsim.Answer(w, r, timeout, http.StatusOK, "application/json;charset=UTF-8", out)
}

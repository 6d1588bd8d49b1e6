// Package salesforce emulates the REST API of a Salesforce org as clients
// use it, at every API version from v31.0 to CurrentVersion: the OAuth 2.0
// JWT bearer token flow (RS256 signature, issuer, subject, audience and
// expiry checked) and the identity URL; the version list and resources;
// the global and per-object describe; create, retrieve (with fields),
// update and delete by Id; upsert, retrieve and delete by external id;
// sObject Collections create, update, upsert, retrieve and delete (up to
// 200 records, allOrNone); query and queryAll of a SOQL subset with
// nextRecordsUrl paging; limits; Salesforce's error arrays, the
// Sforce-Limit-Info header and REQUEST_LIMIT_EXCEEDED past the quota.
// Deleted records stay in the recycle bin: reads answer ENTITY_IS_DELETED
// and queryAll returns them with IsDeleted true.
package salesforce

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"regexp"
	"strconv"
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

// APIVersion is the REST API version record-sync's own plugin calls; the
// emulator serves every version from v31.0 to CurrentVersion.
const APIVersion = "v60.0"

// Credentials are what a JWT bearer client needs.
type Credentials struct {
	ConsumerKey string `json:"consumer_key"`
	Username    string `json:"username"`
	PrivateKey  string `json:"private_key" doc:"PEM, PKCS#1"`
	Audience    string `json:"audience"`
}

// record is one stored sObject record, as kept in the records file.
type record struct {
	ID       string         `json:"id"`
	Type     string         `json:"type"`
	Fields   map[string]any `json:"fields"`
	Created  time.Time      `json:"created"`
	Modified time.Time      `json:"modified"`
	Deleted  bool           `json:"deleted,omitempty"`
}

// CRM is the emulated Salesforce org.
type CRM struct {
	sim   *crmsim.Sim
	creds Credentials
	pub   *rsa.PublicKey

	tokens *crmsim.Tokens

	mu      sync.Mutex
	store   *crmsim.Store[record] // by id, deleted ones too: the recycle bin; indexed by extKeys
	next    int
	live    int
	cursors cursors
}

var _ crmsim.CRM = (*CRM)(nil)

// Factory builds the emulated org for crmsim.Open: its records are kept in
// <dir>/salesforce.db.
func Factory() crmsim.Factory {
	return crmsim.Factory{Name: "salesforce", New: func(raw json.RawMessage, dir string) (crmsim.CRM, error) {
		var creds Credentials
		if len(raw) > 0 {
			_ = json.Unmarshal(raw, &creds) // a damaged entry is replaced
		}
		if creds.PrivateKey == "" || creds.ConsumerKey == "" {
			var err error
			if creds, err = NewCredentials(); err != nil {
				return nil, err
			}
		}
		return Open(creds, crmsim.RecordsPath(dir, "salesforce"))
	}}
}

// New returns an empty org, in memory only, that trusts creds' key pair.
func New(creds Credentials) (*CRM, error) { return Open(creds, "") }

// Open returns the org that trusts creds' key pair and keeps its records
// in the file at path ("": in memory only), with the records it holds.
func Open(creds Credentials, path string) (*CRM, error) {
	block, _ := pem.Decode([]byte(creds.PrivateKey))
	if block == nil {
		return nil, fmt.Errorf("salesforce: private key is not PEM")
	}
	key, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("salesforce: private key: %w", err)
	}
	c := &CRM{sim: crmsim.NewSim(1000, time.Minute), creds: creds, pub: &key.PublicKey, tokens: crmsim.NewTokens(2 * time.Hour)}
	c.clear()
	store, err := crmsim.OpenRecords(c.sim, path, extKeys)
	if err != nil {
		return nil, fmt.Errorf("salesforce: %w", err)
	}
	c.store = store
	for id, rec := range store.All() {
		if len(id) == 18 {
			if n, err := strconv.Atoi(id[6:15]); err == nil {
				c.next = max(c.next, n+1)
			}
		}
		c.addLive(&rec)
	}
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

func (c *CRM) clear() {
	c.next, c.live = 1, 0
	c.cursors = cursors{byID: map[string]*cursor{}}
}

// Reset implements crmsim.CRM: the records, the recycle bin and the
// records file are emptied.
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

// Stored implements crmsim.CRM: records not deleted.
func (c *CRM) Stored() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live
}

// commitLocked writes the changes of a request to the records file.
func (c *CRM) commitLocked() error { return c.store.Commit() }

// getLocked reads the record with id id (18 characters), deleted ones
// included: a copy, kept by putLocked.
func (c *CRM) getLocked(id string) (*record, bool) {
	r, ok := c.store.Get(id)
	return &r, ok
}

// putLocked keeps r's new state.
func (c *CRM) putLocked(r *record) { c.store.Put(r.ID, *r) }

// extKeys indexes a live record by its type and lower-cased external id.
func extKeys(r *record) []string {
	if ext, _ := r.Fields[ExternalID].(string); ext != "" && !r.Deleted {
		return []string{extKey(r.Type, ext)}
	}
	return nil
}

func extKey(typ, ext string) string { return typ + "/" + strings.ToLower(ext) }

// byExt returns the id of the live record of type typ with external id
// ext.
func (c *CRM) byExt(typ, ext string) (string, bool) { return c.store.First(extKey(typ, ext)) }

// Register implements crmsim.CRM.
func (c *CRM) Register(mux *http.ServeMux, prefix string) {
	mux.HandleFunc("POST "+prefix+"/services/oauth2/token", c.token)
	mux.HandleFunc("GET "+prefix+"/id/{org}/{user}", c.identity)
	mux.HandleFunc("GET "+prefix+"/services/data", c.versions)
	mux.HandleFunc("GET "+prefix+"/services/data/{$}", c.versions)
	base := prefix + "/services/data/{version}"
	routes := []struct {
		pattern string
		h       handler
	}{
		{"GET " + base, c.resources},
		{"GET " + base + "/{$}", c.resources},
		{"GET " + base + "/limits", c.limits},
		{"GET " + base + "/limits/{$}", c.limits},
		{"GET " + base + "/sobjects", c.describeGlobal},
		{"GET " + base + "/sobjects/{$}", c.describeGlobal},
		{"GET " + base + "/sobjects/{type}", c.objectInfo},
		{"POST " + base + "/sobjects/{type}", c.create},
		{"GET " + base + "/sobjects/{type}/describe", c.describe},
		{"GET " + base + "/sobjects/{type}/describe/{$}", c.describe},
		{"GET " + base + "/sobjects/{type}/{id}", c.retrieve},
		{"PATCH " + base + "/sobjects/{type}/{id}", c.update},
		{"DELETE " + base + "/sobjects/{type}/{id}", c.destroy},
		{"GET " + base + "/sobjects/{type}/{field}/{value}", c.retrieveByExt},
		{"PATCH " + base + "/sobjects/{type}/{field}/{value}", c.upsertOne},
		{"POST " + base + "/sobjects/{type}/{field}/{value}", c.upsertOne},
		{"DELETE " + base + "/sobjects/{type}/{field}/{value}", c.destroyByExt},
		{"POST " + base + "/composite/sobjects", c.createMany},
		{"PATCH " + base + "/composite/sobjects", c.updateMany},
		{"DELETE " + base + "/composite/sobjects", c.destroyMany},
		{"POST " + base + "/composite/sobjects/{type}", c.retrieveMany},
		{"GET " + base + "/composite/sobjects/{type}", c.retrieveMany},
		{"PATCH " + base + "/composite/sobjects/{type}/{field}", c.upsertMany},
		{"GET " + base + "/query", c.query(false)},
		{"GET " + base + "/query/{$}", c.query(false)},
		{"GET " + base + "/queryAll", c.query(true)},
		{"GET " + base + "/queryAll/{$}", c.query(true)},
		{"GET " + base + "/query/{locator}", c.queryMore},
		{"GET " + base + "/queryAll/{locator}", c.queryMore},
	}
	for _, rt := range routes {
		mux.Handle(rt.pattern, c.guard(rt.h))
	}
}

// apiError is one entry of Salesforce's error array.
type apiError struct {
	Message   string   `json:"message"`
	ErrorCode string   `json:"errorCode"`
	Fields    []string `json:"fields,omitempty"`
}

const contentType = "application/json;charset=UTF-8"

func writeErrs(w http.ResponseWriter, status int, code, msg string, fields ...string) {
	crmsim.WriteJSON(w, status, contentType, []apiError{{Message: msg, ErrorCode: code, Fields: fields}})
}

func notFound(w http.ResponseWriter) {
	writeErrs(w, http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
}

func (c *CRM) token(w http.ResponseWriter, r *http.Request) {
	fail := func(desc string) {
		crmsim.WriteJSON(w, http.StatusBadRequest, contentType, map[string]string{"error": "invalid_grant", "error_description": desc})
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		crmsim.WriteJSON(w, http.StatusBadRequest, contentType, map[string]string{"error": "unsupported_grant_type", "error_description": "grant type not supported"})
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
	instance := "http://" + r.Host + "/salesforce"
	crmsim.WriteJSON(w, http.StatusOK, contentType, map[string]string{
		"access_token": tok, "scope": "api", "instance_url": instance,
		"id": instance + "/id/" + orgID + "/" + userID, "token_type": "Bearer", "issued_at": strconv.FormatInt(time.Now().UnixMilli(), 10),
	})
}

// The org's and the integration user's ids.
const (
	orgID  = "00Dsim000000001AAA"
	userID = "005sim000000001AAA"
)

// identity answers the identity URL of the token response, with the
// token in the Authorization header or in oauth_token.
func (c *CRM) identity(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		tok = r.URL.Query().Get("oauth_token")
	}
	if !c.tokens.Valid(tok) {
		http.Error(w, "Bad_OAuth_Token", http.StatusForbidden)
		return
	}
	if r.PathValue("org") != orgID || r.PathValue("user") != userID {
		http.Error(w, "Bad_Id", http.StatusNotFound)
		return
	}
	crmsim.WriteJSON(w, http.StatusOK, contentType, map[string]any{
		"id": "http://" + r.Host + r.URL.Path, "user_id": userID, "organization_id": orgID, "username": c.creds.Username,
		"display_name": "Integration User", "active": true, "user_type": "STANDARD",
	})
}

// versions answers GET /services/data/: every version served, oldest
// first, without authentication (as the real endpoint).
func (c *CRM) versions(w http.ResponseWriter, _ *http.Request) {
	out := make([]map[string]string, 0, CurrentVersion-FirstVersion+1)
	for v := FirstVersion; v <= CurrentVersion; v++ {
		out = append(out, map[string]string{"label": versionLabel(v), "url": fmt.Sprintf("/services/data/v%d.0", v), "version": fmt.Sprintf("%d.0", v)})
	}
	crmsim.WriteJSON(w, http.StatusOK, contentType, out)
}

var versionPattern = regexp.MustCompile(`^v(\d+)\.0$`)

// version returns the API version a path names, 0 when it is not one the
// emulator serves.
func version(r *http.Request) int {
	m := versionPattern.FindStringSubmatch(r.PathValue("version"))
	if m == nil {
		return 0
	}
	v, _ := strconv.Atoi(m[1])
	if v < FirstVersion || v > CurrentVersion {
		return 0
	}
	return v
}

// call is one admitted REST request.
type call struct {
	w       http.ResponseWriter
	r       *http.Request
	version int
	base    string // "/services/data/vNN.0", as attributes.url carries it
	timeout bool
	partial float64
}

type handler func(call)

// guard checks the version, the session, the quota and the faults before
// h, and sets Sforce-Limit-Info on every answer.
func (c *CRM) guard(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := version(r)
		if v == 0 {
			notFound(w)
			return
		}
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
		if (r.Method == http.MethodPatch || r.Method == http.MethodPost) && r.ContentLength != 0 {
			if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
				writeErrs(w, http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE",
					fmt.Sprintf("MediaType of '%s' is not supported by this resource", r.Header.Get("Content-Type")))
				return
			}
		}
		h(call{w: w, r: r, version: v, base: fmt.Sprintf("/services/data/v%d.0", v), timeout: a.Timeout, partial: a.Partial})
	})
}

// resources answers the version root: the resources it has.
func (c *CRM) resources(k call) {
	out := map[string]string{}
	for _, name := range []string{"sobjects", "query", "queryAll", "limits", "composite"} {
		out[name] = k.base + "/" + name
	}
	out["identity"] = "http://" + k.r.Host + "/salesforce/id/" + orgID + "/" + userID
	crmsim.WriteJSON(k.w, http.StatusOK, contentType, out)
}

// limits answers GET limits: the emulated quota as DailyApiRequests.
func (c *CRM) limits(k call) {
	q := c.sim.Faults()
	limit := 1000
	if q.RateLimit > 0 {
		limit = q.RateLimit
	}
	used := 0
	if info := k.w.Header().Get("Sforce-Limit-Info"); info != "" {
		_, _ = fmt.Sscanf(info, "api-usage=%d/%d", &used, &limit)
	}
	entry := func(maxN, remaining int) map[string]int { return map[string]int{"Max": maxN, "Remaining": remaining} }
	crmsim.WriteJSON(k.w, http.StatusOK, contentType, map[string]any{
		"DailyApiRequests":                  entry(limit, limit-used),
		"DailyBulkApiBatches":               entry(15000, 15000),
		"DataStorageMB":                     entry(1024, 1024),
		"FileStorageMB":                     entry(1024, 1024),
		"ConcurrentAsyncGetReportInstances": entry(200, 200),
	})
}

func (c *CRM) describeGlobal(k call) {
	list := []map[string]any{}
	for _, name := range []string{"Contact", "Lead"} {
		list = append(list, objects[name].summary(k.base))
	}
	crmsim.WriteJSON(k.w, http.StatusOK, contentType, map[string]any{"encoding": "UTF-8", "maxBatchSize": MaxBatch, "sobjects": list})
}

func (c *CRM) objectInfo(k call) {
	o, ok := objectFor(k.r.PathValue("type"))
	if !ok {
		notFound(k.w)
		return
	}
	crmsim.WriteJSON(k.w, http.StatusOK, contentType, map[string]any{"objectDescribe": o.summary(k.base), "recentItems": []any{}})
}

func (c *CRM) describe(k call) {
	o, ok := objectFor(k.r.PathValue("type"))
	if !ok {
		notFound(k.w)
		return
	}
	crmsim.WriteJSON(k.w, http.StatusOK, contentType, o.describe(k.base))
}

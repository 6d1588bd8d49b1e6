package crmsim

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"sync"
	"time"
)

// Tokens issues and checks the access tokens of an emulated CRM's OAuth
// flow.
type Tokens struct {
	mu     sync.Mutex
	issued map[string]time.Time
	ttl    time.Duration
}

// NewTokens returns a token store whose tokens live ttl.
func NewTokens(ttl time.Duration) *Tokens {
	return &Tokens{issued: map[string]time.Time{}, ttl: ttl}
}

// Issue returns a new access token with prefix, and how long it lives.
func (t *Tokens) Issue(prefix string) (string, time.Duration) {
	var b [24]byte
	_, _ = rand.Read(b[:])
	tok := prefix + hex.EncodeToString(b[:])
	t.mu.Lock()
	defer t.mu.Unlock()
	t.issued[tok] = time.Now().Add(t.ttl)
	return tok, t.ttl
}

// Valid reports whether tok was issued and has not expired.
func (t *Tokens) Valid(tok string) bool {
	issued, expiredFor := t.Check(tok)
	return issued && expiredFor == 0
}

// Check reports whether tok was issued and, if it has expired, how long
// ago (0 while it is valid).
func (t *Tokens) Check(tok string) (issued bool, expiredFor time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	exp, ok := t.issued[tok]
	if !ok {
		return false, 0
	}
	return true, max(time.Since(exp), 0)
}

// SetTTL sets how long tokens issued from now on live.
func (t *Tokens) SetTTL(d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ttl = d
}

// Expire ends every token issued so far, as their lifetime passing would.
func (t *Tokens) Expire() {
	t.mu.Lock()
	defer t.mu.Unlock()
	past := time.Now().Add(-time.Second)
	for tok := range t.issued {
		t.issued[tok] = past
	}
}

// OAuthClient is an OAuth 2.0 client an emulated CRM knows, with the
// refresh token it was given.
type OAuthClient struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	RefreshToken string `json:"refresh_token"`
}

// NewOAuthClient returns new sandbox client credentials.
func NewOAuthClient() OAuthClient {
	return OAuthClient{ClientID: "sim-" + secret(8), ClientSecret: secret(24), RefreshToken: secret(24)}
}

func secret(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// RefreshGrant answers an OAuth 2.0 token request with the refresh_token
// grant (client credentials in the form or in basic auth) as the CRMs'
// token endpoints do: a new access token from t, with extra fields, or the
// RFC 6749 error.
func (t *Tokens) RefreshGrant(w http.ResponseWriter, r *http.Request, client OAuthClient, extra map[string]any) {
	if err := r.ParseForm(); err != nil {
		WriteJSON(w, http.StatusBadRequest, "application/json", map[string]string{"error": "invalid_request"})
		return
	}
	f := r.PostForm
	if f.Get("grant_type") != "refresh_token" {
		WriteJSON(w, http.StatusBadRequest, "application/json", map[string]string{"error": "unsupported_grant_type"})
		return
	}
	id, sec := f.Get("client_id"), f.Get("client_secret")
	if id == "" {
		id, sec, _ = r.BasicAuth()
	}
	if id != client.ClientID || subtle.ConstantTimeCompare([]byte(sec), []byte(client.ClientSecret)) != 1 {
		WriteJSON(w, http.StatusUnauthorized, "application/json", map[string]string{"error": "invalid_client", "error_description": "Client authentication failed"})
		return
	}
	if subtle.ConstantTimeCompare([]byte(f.Get("refresh_token")), []byte(client.RefreshToken)) != 1 {
		WriteJSON(w, http.StatusBadRequest, "application/json", map[string]string{"error": "invalid_grant", "error_description": "The provided authorization grant is invalid, expired or revoked"})
		return
	}
	tok, ttl := t.Issue("")
	body := map[string]any{"access_token": tok, "token_type": "bearer", "expires_in": int(ttl.Seconds()), "refresh_token": client.RefreshToken}
	for k, v := range extra {
		body[k] = v
	}
	WriteJSON(w, http.StatusOK, "application/json", body)
}

package crmsim

import (
	"crypto/rand"
	"encoding/hex"
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
	t.mu.Lock()
	defer t.mu.Unlock()
	exp, ok := t.issued[tok]
	return ok && time.Now().Before(exp)
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
	t.issued = map[string]time.Time{}
}

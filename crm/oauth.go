package crm

import (
	"context"
	"sync"

	"golang.org/x/oauth2"
)

// RefreshTokens hands out the OAuth 2.0 access tokens of a plugin that
// holds a refresh token (golang.org/x/oauth2): one cached token per API
// host, got from the host's token endpoint, renewed before it expires and
// when the CRM refuses it. Safe for concurrent use.
type RefreshTokens struct {
	clientID, clientSecret, refreshToken string
	tokenPath                            string
	conn                                 *Conn

	mu      sync.Mutex
	sources map[string]oauth2.TokenSource // by API host
}

// NewRefreshTokens returns the tokens of a client, got from tokenPath under
// each API host (Outreach: "/oauth/token", HubSpot: "/oauth/v1/token")
// through conn's client (token requests take no permit: see
// Conn.Authenticate).
func NewRefreshTokens(clientID, clientSecret, refreshToken, tokenPath string, conn *Conn) *RefreshTokens {
	return &RefreshTokens{clientID: clientID, clientSecret: clientSecret, refreshToken: refreshToken, tokenPath: tokenPath,
		conn: conn, sources: map[string]oauth2.TokenSource{}}
}

// Token returns an access token for host; renew drops the cached one and
// gets a new one (after the CRM refused it).
func (r *RefreshTokens) Token(host string, renew bool) (*oauth2.Token, error) {
	r.mu.Lock()
	ts, ok := r.sources[host]
	if !ok || renew {
		cfg := &oauth2.Config{ClientID: r.clientID, ClientSecret: r.clientSecret,
			Endpoint: oauth2.Endpoint{TokenURL: host + r.tokenPath, AuthStyle: oauth2.AuthStyleInParams}}
		ctx := context.WithValue(context.Background(), oauth2.HTTPClient, r.conn.http)
		ts = oauth2.ReuseTokenSource(nil, cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: r.refreshToken}))
		r.sources[host] = ts
	}
	r.mu.Unlock()
	return ts.Token()
}

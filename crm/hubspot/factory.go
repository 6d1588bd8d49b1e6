package hubspot

import (
	"encoding/json"

	"github.com/recordsync/record-sync/crm"
	"github.com/recordsync/record-sync/shared/config"
)

// Name is the HubSpot target's name.
const Name = "hubspot"

// TokenEnv names the variable that, when set, holds a private app token,
// in place of the credentials file's.
const TokenEnv = "RECORDSYNC_HUBSPOT_TOKEN"

// credentials is HubSpot's entry in the credentials file: a private app's
// token or, without one, an OAuth app's client and refresh token.
type credentials struct {
	Token        string `json:"token"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	RefreshToken string `json:"refresh_token"`
}

// Factory returns how record-sync builds the HubSpot plugin. Its entry in
// the credentials file is {"token"} (a private app) or {"client_id",
// "client_secret", "refresh_token"} (an OAuth app); RECORDSYNC_HUBSPOT_TOKEN
// replaces the token. Defaults: batches of 100 (HubSpot's most), 1,080
// requests a minute (HubSpot allows 190 per 10 s), 8 in flight.
func Factory() crm.Factory {
	return crm.Factory{
		Name:     Name,
		Defaults: config.Override{BatchSize: new(MaxBatch), RateLimitPerMinute: new(1080), Concurrency: new(8)},
		New: func(raw json.RawMessage, o crm.Options) (crm.CRM, bool, error) {
			var c credentials
			if err := crm.DecodeCredentials(Name, raw, &c); err != nil {
				return nil, false, err
			}
			if t := o.Env(TokenEnv); t != "" {
				c.Token = t
			}
			if c.Token == "" && c.ClientID != "" && c.RefreshToken != "" {
				return NewOAuth(OAuthCredentials{ClientID: c.ClientID, ClientSecret: c.ClientSecret, RefreshToken: c.RefreshToken}, o.Timeout), true, nil
			}
			return New(c.Token, o.Timeout), c.Token != "", nil
		},
	}
}

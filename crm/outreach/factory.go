package outreach

import (
	"encoding/json"

	"github.com/recordsync/record-sync/crm"
	"github.com/recordsync/record-sync/shared/config"
)

// Name is the Outreach target's name.
const Name = "outreach"

// credentials is Outreach's entry in the credentials file.
type credentials struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	RefreshToken string `json:"refresh_token"`
}

// Factory returns how record-sync builds the Outreach plugin. Its entry in
// the credentials file is {"client_id", "client_secret", "refresh_token"}.
// Defaults: one record a request (Outreach has no batch write), 150
// requests a minute (Outreach allows 10,000 an hour), 4 in flight.
func Factory() crm.Factory {
	return crm.Factory{
		Name:     Name,
		Defaults: config.Override{BatchSize: new(MaxBatch), RateLimitPerMinute: new(150), Concurrency: new(4)},
		New: func(raw json.RawMessage, o crm.Options) (crm.CRM, bool, error) {
			var c credentials
			if err := crm.DecodeCredentials(Name, raw, &c); err != nil {
				return nil, false, err
			}
			return New(Credentials(c), o.Timeout), c.ClientID != "" && c.RefreshToken != "", nil
		},
	}
}

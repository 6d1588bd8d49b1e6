package salesforce

import (
	"encoding/json"
	"fmt"

	"github.com/golang-jwt/jwt/v5"

	"github.com/recordsync/record-sync/crm"
	"github.com/recordsync/record-sync/shared/config"
)

// Name is the Salesforce target's name.
const Name = "salesforce"

// credentials is Salesforce's entry in the credentials file.
type credentials struct {
	ConsumerKey string `json:"consumer_key"`
	Username    string `json:"username"`
	PrivateKey  string `json:"private_key"` // PEM
	Audience    string `json:"audience"`
	LoginURL    string `json:"login_url"`
}

// Factory returns how record-sync builds the Salesforce plugin. Its entry
// in the credentials file is {"consumer_key", "username", "private_key"
// (PEM), "audience"} and, optionally, "login_url" (the api_host when
// absent). Defaults: collections of 200 (Salesforce's most), 900 requests a
// minute, 16 in flight.
func Factory() crm.Factory {
	return crm.Factory{
		Name:     Name,
		Defaults: config.Override{BatchSize: new(MaxBatch), RateLimitPerMinute: new(900), Concurrency: new(16)},
		New: func(raw json.RawMessage, o crm.Options) (crm.CRM, bool, error) {
			var c credentials
			if err := crm.DecodeCredentials(Name, raw, &c); err != nil {
				return nil, false, err
			}
			creds := Credentials{ConsumerKey: c.ConsumerKey, Username: c.Username, Audience: c.Audience, LoginURL: c.LoginURL}
			if c.PrivateKey != "" {
				key, err := jwt.ParseRSAPrivateKeyFromPEM([]byte(c.PrivateKey))
				if err != nil {
					return nil, false, fmt.Errorf("salesforce private key: %w", err)
				}
				creds.Key = key
			}
			return New(creds, o.Timeout), creds.Key != nil && creds.ConsumerKey != "", nil
		},
	}
}

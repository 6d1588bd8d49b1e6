package outreach_test

import (
	"testing"
	"time"

	"github.com/recordsync/record-sync/crm/crmtest"
	"github.com/recordsync/record-sync/crm/outreach"
	simout "github.com/recordsync/record-sync/crmsim/outreach"
)

func harness(t *testing.T) crmtest.Harness {
	t.Helper()
	creds := simout.NewCredentials()
	sim := simout.New(creds)
	c := outreach.New(outreach.Credentials{ClientID: creds.ClientID, ClientSecret: creds.ClientSecret, RefreshToken: creds.RefreshToken}, 2*time.Second)
	return crmtest.Harness{Client: c, Sim: sim, ExpireTokens: sim.ExpireTokens}
}

// TestContract: with no upsert in Outreach, "a redelivered create makes no
// second record" is the lookup before each create.
func TestContract(t *testing.T) { crmtest.Run(t, harness) }

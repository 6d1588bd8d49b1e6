package salesforce_test

import (
	"testing"

	"github.com/recordsync/record-sync/crm/crmtest"
	"github.com/recordsync/record-sync/crm/salesforce"
	simsf "github.com/recordsync/record-sync/crmsim/salesforce"
)

// TestFactoryReadsEmulatorCredentials: the factory builds a plugin ready
// to push from the entry the emulator writes to credentials.json, and one
// that is not ready from none.
func TestFactoryReadsEmulatorCredentials(t *testing.T) {
	creds, err := simsf.NewCredentials()
	if err != nil {
		t.Fatal(err)
	}
	sim, err := simsf.New(creds)
	if err != nil {
		t.Fatal(err)
	}
	crmtest.FactoryReadsCredentials(t, salesforce.Factory(), sim.Credentials())
}

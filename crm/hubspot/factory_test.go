package hubspot_test

import (
	"testing"

	"github.com/recordsync/record-sync/crm/crmtest"
	"github.com/recordsync/record-sync/crm/hubspot"
	simhubspot "github.com/recordsync/record-sync/crmsim/hubspot"
)

// TestFactoryReadsEmulatorCredentials: the factory builds a plugin ready
// to push from the entry the emulator writes to credentials.json, and one
// that is not ready from none.
func TestFactoryReadsEmulatorCredentials(t *testing.T) {
	sim := simhubspot.New(simhubspot.NewCredentials())
	crmtest.FactoryReadsCredentials(t, hubspot.Factory(), sim.Credentials())
}

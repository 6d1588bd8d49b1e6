package outreach_test

import (
	"testing"

	"github.com/recordsync/record-sync/crm/crmtest"
	"github.com/recordsync/record-sync/crm/outreach"
	simout "github.com/recordsync/record-sync/crmsim/outreach"
)

// TestFactoryReadsEmulatorCredentials: the factory builds a plugin ready
// to push from the entry the emulator writes to credentials.json, and one
// that is not ready from none.
func TestFactoryReadsEmulatorCredentials(t *testing.T) {
	sim := simout.New(simout.NewCredentials())
	crmtest.FactoryReadsCredentials(t, outreach.Factory(), sim.Credentials())
}

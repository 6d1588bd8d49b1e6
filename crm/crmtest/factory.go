package crmtest

import (
	"encoding/json"
	"testing"

	"github.com/recordsync/record-sync/crm"
)

// FactoryReadsCredentials checks that f builds a plugin ready to push
// from creds, the entry its emulator writes to credentials.json, and one
// that is not ready from no entry.
func FactoryReadsCredentials(t *testing.T, f crm.Factory, creds any) {
	t.Helper()
	raw, err := json.Marshal(creds)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		raw      json.RawMessage
		complete bool
	}{
		{"the emulator's entry", raw, true},
		{"no entry", nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, complete, err := f.New(tt.raw, crm.Options{})
			if err != nil || complete != tt.complete || c.Name() != f.Name {
				t.Fatalf("plugin %v, complete %v, %v; want complete %v", c, complete, err, tt.complete)
			}
			_ = c.Close()
		})
	}
}

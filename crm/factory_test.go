package crm_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/recordsync/record-sync/crm"
	"github.com/recordsync/record-sync/crm/hubspot"
	"github.com/recordsync/record-sync/crm/outreach"
)

// TestBuild: the registry is built from factories, each plugin with its
// own entry of the credentials; the pusher leaves out a plugin without
// them, yet every target stays known.
func TestBuild(t *testing.T) {
	fs := []crm.Factory{hubspot.Factory(), outreach.Factory()}
	creds := crm.Credentials{"hubspot": json.RawMessage(`{"token":"pat-1"}`)}
	tests := []struct {
		name      string
		fs        []crm.Factory
		creds     crm.Credentials
		needCreds bool
		names     []string
		missing   []string
		err       string
	}{
		{name: "every plugin for ingest", fs: fs, creds: creds, names: []string{"hubspot", "outreach"}},
		{name: "the pusher leaves out one without credentials", fs: fs, creds: creds, needCreds: true, names: []string{"hubspot"}, missing: []string{"outreach"}},
		{name: "credentials that do not decode", fs: fs, creds: crm.Credentials{"outreach": json.RawMessage(`[1]`)}, err: "credentials of outreach"},
		{name: "two factories of one name", fs: []crm.Factory{hubspot.Factory(), hubspot.Factory()}, err: "registered twice"},
		{name: "a plugin named otherwise", fs: []crm.Factory{func() crm.Factory { f := hubspot.Factory(); f.Name = "other"; return f }()}, err: "named \"hubspot\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, missing, err := crm.Build(tt.fs, tt.creds, crm.Options{}, tt.needCreds)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one saying %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = r.Close() })
			if !slices.Equal(r.Names(), tt.names) || !slices.Equal(missing, tt.missing) {
				t.Fatalf("registered %v, missing %v; want %v and %v", r.Names(), missing, tt.names, tt.missing)
			}
			if !slices.Equal(r.Targets(), []string{"hubspot", "outreach"}) || len(r.Defaults()) != 2 || r.MaxBatch("outreach") != outreach.MaxBatch {
				t.Fatalf("known targets %v, defaults %v", r.Targets(), r.Defaults())
			}
		})
	}
}

// TestTokenFromEnvironment: RECORDSYNC_HUBSPOT_TOKEN is HubSpot's own
// variable, read through Options.Getenv.
func TestTokenFromEnvironment(t *testing.T) {
	getenv := func(k string) string {
		if k == hubspot.TokenEnv {
			return "pat-env"
		}
		return ""
	}
	r, missing, err := crm.Build([]crm.Factory{hubspot.Factory()}, nil, crm.Options{Getenv: getenv}, true)
	if err != nil || len(missing) != 0 || len(r.Names()) != 1 {
		t.Fatalf("registered %v, missing %v, %v", r.Names(), missing, err)
	}
}

package app_test

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/recordsync/record-sync/app"
	"github.com/recordsync/record-sync/shared/telemetry"
)

// TestPusherWithoutCredentials: a pusher started with no credentials says
// so once, naming the targets and the file it looked for, and a valid
// override stored for those targets is applied, not refused as
// "batch_size: must be 1 to 0" (as it was when the registry forgot the
// targets left out for want of credentials).
func TestPusherWithoutCredentials(t *testing.T) {
	s := startDev(t)
	if r := s.call("POST", "/v1/sync/config-override", adminKey, map[string]any{"target": "salesforce", "batch_size": 50}); r.Status != 200 {
		t.Fatalf("override: %d %s", r.Status, r.Raw)
	}
	env := app.Env{CRMSimAddr: strings.TrimPrefix(s.info.CRMSimURL, "http://"), CRMCredentials: filepath.Join(t.TempDir(), "none.json")}
	reg, missing, err := app.Registry(env, true)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(slices.Sorted(slices.Values(missing)), ",") != "hubspot,outreach,salesforce" {
		t.Fatalf("missing %v", missing)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	app.LogMissingCredentials(log, env, missing)
	metrics, err := telemetry.NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	m, err := app.OpenMesh(context.Background(), s.operator(), "pusher", env, reg, metrics, log)
	if err != nil {
		t.Fatal(err)
	}
	if p := m.Configs.Problems(); len(p) > 0 {
		t.Errorf("valid override not applied: %v", p)
	}
	if got, _ := m.Configs.Get("salesforce"); got.BatchSize != 50 {
		t.Errorf("salesforce batch_size %d, want the override's 50", got.BatchSize)
	}
	out := logs.String()
	if strings.Contains(out, "must be 1 to 0") || strings.Contains(out, "config_not_applied") {
		t.Errorf("a valid override reported as bad:\n%s", out)
	}
	if n := strings.Count(out, "crm_without_credentials"); n != 1 {
		t.Errorf("%d lines about the missing credentials, want 1:\n%s", n, out)
	}
	for _, w := range []string{"hubspot", "outreach", "salesforce", "none.json", `"file_found":false`, "RECORDSYNC_CRM_CREDENTIALS"} {
		if !strings.Contains(out, w) {
			t.Errorf("the credentials line does not say %s:\n%s", w, out)
		}
	}
}

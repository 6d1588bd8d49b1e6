package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/recordsync/record-sync/app"
	"github.com/recordsync/record-sync/services/ingest"
	"github.com/recordsync/record-sync/shared/status"
)

// verify runs `recordsync verify --json` against s with args, and returns
// its summary and drift lines.
func (s *devStack) verify(args ...string) (ingest.VerifyCounts, []ingest.VerifyLine) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env := app.Env{HTTPAddr: strings.TrimPrefix(s.info.HTTPURL, "http://"), AdminKeys: []string{adminKey}}
	var out, errOut bytes.Buffer
	if err := app.RunVerify(ctx, env, append(args, "--json"), &out, &errOut); err != nil {
		s.t.Fatalf("verify %v: %v\n%s%s", args, err, out.String(), errOut.String())
	}
	var sum ingest.VerifyCounts
	var drifts []ingest.VerifyLine
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var l ingest.VerifyLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			s.t.Fatalf("verify line %q: %v", sc.Text(), err)
		}
		switch l.Type {
		case "drift":
			drifts = append(drifts, l)
		case "summary":
			sum = *l.Counts
		case "error":
			s.t.Fatalf("verify reported an error: %s", sc.Text())
		}
	}
	return sum, drifts
}

// verifyText runs `recordsync verify` against s with args and returns what
// it prints on stdout and stderr.
func (s *devStack) verifyText(args ...string) (string, string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env := app.Env{HTTPAddr: strings.TrimPrefix(s.info.HTTPURL, "http://"), AdminKeys: []string{adminKey}}
	var out, errOut bytes.Buffer
	if err := app.RunVerify(ctx, env, args, &out, &errOut); err != nil {
		s.t.Fatalf("verify %v: %v\n%s%s", args, err, out.String(), errOut.String())
	}
	return out.String(), errOut.String()
}

func TestVerifyFindsAndRepairsDrift(t *testing.T) {
	s := startDev(t)
	ids := []string{"v-1", "v-2", "v-3"}
	for i, id := range ids {
		ev := contact(id, id+"@example.com", map[string]any{"first_name": "First" + id, "last_name": "Last"})
		ev["targets"] = []string{"hubspot", "salesforce"}
		if r := s.call("POST", "/v1/sync/", syncKey, ev); r.Status != 202 {
			t.Fatalf("event %d: %d %s", i, r.Status, r.Raw)
		}
	}
	crmIDs := map[string]string{}
	for _, id := range ids {
		crmIDs[id] = *s.waitState(id, "hubspot", status.StateSynced).CRMID
		s.waitState(id, "salesforce", status.StateSynced)
	}

	// A clean run reports no drift, on both CRMs.
	for _, target := range []string{"hubspot", "salesforce"} {
		sum, drifts := s.verify("--target", target)
		if sum.Checked != 3 || sum.InSync != 3 || len(drifts) != 0 || sum.Differs+sum.Missing+sum.Present+sum.Failed != 0 {
			t.Fatalf("%s: a clean run: %+v, drifts %+v", target, sum, drifts)
		}
		human, bar := s.verifyText("--target", target, "--sample", "2")
		if !strings.Contains(human, target+": checked 2 of 3 walked") || !strings.Contains(human, "2 in sync, 0 differ, 0 missing") ||
			!strings.Contains(bar, "[##############################] 2/2 checked, 0 drifted") {
			t.Fatalf("%s: the summary line %q, the progress bar %q", target, human, bar)
		}
	}
	remote := s.call("GET", "/v1/sync/records/v-1/remote?target=hubspot", syncKey, nil)
	if remote.Status != 200 || remote.Body["drift"] != "in_sync" {
		t.Fatalf("remote view of a clean record: %d %s", remote.Status, remote.Raw)
	}
	if pushed := remote.Body["last_pushed"].(map[string]any)["fields"].(map[string]any); pushed["firstname"] != "Firstv-1" || pushed["email"] != "v-1@example.com" {
		t.Fatalf("last pushed fields: %s", remote.Raw)
	}

	// Someone changes v-1 and deletes v-2 in HubSpot itself.
	if r := s.hubspot("PATCH", "/crm/v3/objects/contacts/"+crmIDs["v-1"], map[string]any{"properties": map[string]any{"firstname": "Changed"}}); r.Status != 200 {
		t.Fatalf("change in HubSpot: %d %s", r.Status, r.Raw)
	}
	if r := s.hubspot("DELETE", "/crm/v3/objects/contacts/"+crmIDs["v-2"], nil); r.Status != 204 {
		t.Fatalf("delete in HubSpot: %d %s", r.Status, r.Raw)
	}
	remote = s.call("GET", "/v1/sync/records/v-1/remote?target=hubspot", syncKey, nil)
	differs, _ := remote.Body["differs"].([]any)
	if remote.Body["drift"] != "differs" || len(differs) != 1 || differs[0].(map[string]any)["field"] != "firstname" ||
		differs[0].(map[string]any)["remote"] != "Changed" || differs[0].(map[string]any)["pushed"] != "Firstv-1" {
		t.Fatalf("remote view of a changed record: %s", remote.Raw)
	}
	if r := s.call("GET", "/v1/sync/records/v-2/remote?target=hubspot", syncKey, nil); r.Body["drift"] != "missing" || r.Body["remote"].(map[string]any)["found"] != false {
		t.Fatalf("remote view of a deleted record: %s", r.Raw)
	}

	sum, drifts := s.verify("--target", "hubspot", "--since", "1h")
	got := map[string]ingest.Drift{}
	for _, d := range drifts {
		got[d.RecordID] = d.Drift
		if d.Repaired {
			t.Fatalf("repaired without --repair: %+v", d)
		}
	}
	if sum.Checked != 3 || sum.InSync != 1 || sum.Differs != 1 || sum.Missing != 1 || got["v-1"] != ingest.DriftDiffers || got["v-2"] != ingest.DriftMissing {
		t.Fatalf("drift: %+v %v", sum, got)
	}

	// With --repair both are re-enqueued and synced back.
	out, _ := s.verifyText("--target", "hubspot", "--repair")
	if !strings.Contains(out, "firstname: pushed \"Firstv-1\", CRM holds \"Changed\"") || !strings.Contains(out, "(re-enqueued)") ||
		!strings.Contains(out, "2 repaired") {
		t.Fatalf("repair: %s", out)
	}
	for _, id := range []string{"v-1", "v-2"} {
		s.waitFor(id, "hubspot", "synced again by the repair", func(t *status.Target) bool {
			return t.Generation == 1 && t.State == status.StateSynced
		})
	}
	c := s.hubspot("GET", "/crm/v3/objects/contacts/v-1@example.com?idProperty=email&properties=firstname", nil)
	if props, _ := c.Body["properties"].(map[string]any); props["firstname"] != "Firstv-1" {
		t.Fatalf("v-1 in HubSpot after the repair: %s", c.Raw)
	}
	if c := s.hubspot("GET", "/crm/v3/objects/contacts/v-2@example.com?idProperty=email", nil); c.Status != 200 {
		t.Fatalf("v-2 in HubSpot after the repair: %d %s", c.Status, c.Raw)
	}
	sum, drifts = s.verify("--target", "hubspot")
	if sum.InSync != 3 || len(drifts) != 0 {
		t.Fatalf("after the repair: %+v %+v", sum, drifts)
	}
	metrics := string(s.call("GET", "/metrics", "", nil).Raw)
	for _, want := range []string{`recordsync_verify_records_total{result="differs",target="hubspot"} 2`, `recordsync_verify_records_total{result="missing",target="hubspot"} 2`, `recordsync_verify_repaired_total{target="hubspot"} 2`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

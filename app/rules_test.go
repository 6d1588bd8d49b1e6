package app_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/recordsync/record-sync/shared/mapping"
	"github.com/recordsync/record-sync/shared/rules"
	"github.com/recordsync/record-sync/shared/status"
)

// awaitRule posts events made by mk (with a new record id each time) until
// one is decided by rule, as the rules service applies a change within a
// second of its write; it returns how long that took.
func (s *devStack) awaitRule(mk func(id string) map[string]any, state status.State, rule string) time.Duration {
	s.t.Helper()
	start := time.Now()
	for i := 0; time.Since(start) < 10*time.Second; i++ {
		id := fmt.Sprintf("await-%s-%d", rule, i)
		if r := s.call("POST", "/v1/sync/", syncKey, mk(id)); r.Status != http.StatusAccepted {
			s.t.Fatalf("POST: %d %s", r.Status, r.Raw)
		}
		st := s.waitFor(id, "hubspot", "a decision", func(t *status.Target) bool { return t.State != status.StateQueued })
		if st.State == state && st.RuleID != nil && *st.RuleID == rule {
			return time.Since(start)
		}
		waitTick(50 * time.Millisecond)
	}
	s.t.Fatalf("no event was decided by rule %s", rule)
	return 0
}

func TestRulesChangeThroughKV(t *testing.T) {
	s := startDev(t)
	ctx := context.Background()
	kv, err := s.js.KeyValue(ctx, "sync_rules")
	if err != nil {
		t.Fatal(err)
	}
	// Straight into KV, as `nats kv put sync_rules rules ...` does.
	set := `{"rules":[{"id":"eu-only","kind":"expr","when":"data.country not in [\"FR\", \"DE\"]","message":"only EU contacts"}]}`
	if _, err := kv.PutString(ctx, rules.Key, set); err != nil {
		t.Fatal(err)
	}
	took := s.awaitRule(func(id string) map[string]any {
		return contact(id, id+"@example.com", map[string]any{"country": "US"})
	}, status.StateSkippedByRule, "eu-only")
	t.Logf("a rule written to KV decided an event %v after the write", took)
	s.call("POST", "/v1/sync/", syncKey, contact("fr-1", "fr1@example.com", map[string]any{"country": "FR"}))
	s.waitState("fr-1", "hubspot", status.StateSynced)

	// A broken set is not applied: the last good one stays, and /readyz
	// and GET /v1/sync/rules say why.
	if _, err := kv.PutString(ctx, rules.Key, `{"rules":[{"id":"x","kind":"expr","when":"data.a +"}]}`); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := s.call("GET", "/readyz", "", nil)
		if r.Status == 200 && strings.Contains(string(r.Raw), "not applied") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz never reported the broken rule set: %s", r.Raw)
		}
		waitTick(50 * time.Millisecond)
	}
	if r := s.call("GET", "/v1/sync/rules", adminKey, nil); !strings.Contains(fmt.Sprint(r.Body["problem"]), "body.rules[0].when") {
		t.Fatalf("GET rules does not name the problem: %s", r.Raw)
	}
	if m := s.call("GET", "/metrics", "", nil); !strings.Contains(string(m.Raw), `recordsync_config_not_applied{kind="rules",service="ingest"} 1`) {
		t.Fatalf("the metric does not report the rule set that is not applied:\n%s", grepLines(string(m.Raw), "recordsync_config_not_applied"))
	}
	s.awaitRule(func(id string) map[string]any {
		return contact(id, id+"@example.com", map[string]any{"country": "US"})
	}, status.StateSkippedByRule, "eu-only")
}

func TestStripAndMappingChange(t *testing.T) {
	s := startDev(t)
	got := s.call("GET", "/v1/sync/rules", adminKey, nil)
	set := map[string]any{"revision": got.Body["revision"], "rules": []any{
		map[string]any{"id": "require-email", "kind": "require", "fields": []string{"email"}, "operations": []string{"create", "update"}},
		map[string]any{"id": "no-phone", "kind": "disallow", "fields": []string{"phone"}, "action": "strip"},
	}}
	if r := s.call("POST", "/v1/sync/rules", adminKey, set); r.Status != 200 {
		t.Fatalf("rules: %d %s", r.Status, r.Raw)
	}

	m := s.call("GET", "/v1/sync/mappings/hubspot/contact", adminKey, nil)
	if m.Status != 200 || m.Body["revision"] != 0.0 || len(m.Body["effective"].([]any)) == 0 {
		t.Fatalf("default mapping: %d %s", m.Status, m.Raw)
	}
	bad := s.call("POST", "/v1/sync/mappings/hubspot/contact", adminKey, map[string]any{"revision": 0, "fields": []any{
		map[string]any{"from": "first_name", "to": "first_name_upper"}, map[string]any{"from": "x", "to": "country", "fn": []string{"shout"}}}})
	if bad.Status != 422 || !strings.Contains(locations(bad.Body), "body.fields[0].to") || !strings.Contains(locations(bad.Body), "body.fields[1].fn[0]") {
		t.Fatalf("bad mapping: %d %s", bad.Status, bad.Raw)
	}
	newMapping := map[string]any{"fields": []any{
		map[string]any{"from": "first_name", "to": "firstname", "fn": []string{"trim", "upper"}},
		map[string]any{"to": "lifecyclestage", "const": "customer"},
		map[string]any{"from": "country", "to": "country", "default": "GB"},
	}}
	ok := s.call("POST", "/v1/sync/mappings/hubspot/contact", adminKey, newMapping, "If-Match", `"0"`)
	if ok.Status != 200 || ok.Body["revision"].(float64) == 0 {
		t.Fatalf("mapping: %d %s", ok.Status, ok.Raw)
	}
	if stale := s.call("POST", "/v1/sync/mappings/hubspot/contact", adminKey, newMapping, "If-Match", `"0"`); stale.Status != 409 {
		t.Fatalf("stale mapping revision: %d %s", stale.Status, stale.Raw)
	}

	ev := contact("map-1", "map1@example.com", map[string]any{"first_name": " ada ", "phone": "+44 1"})
	p := s.call("POST", "/v1/sync/preview", syncKey, ev)
	hs := p.Body["targets"].(map[string]any)["hubspot"].(map[string]any)
	props := hs["payload"].(map[string]any)["properties"].(map[string]any)
	if props["firstname"] != "ADA" || props["lifecyclestage"] != "customer" || props["country"] != "GB" || props["phone"] != nil {
		t.Fatalf("preview: %s", p.Raw)
	}
	if r := s.call("POST", "/v1/sync/", syncKey, ev); r.Status != 202 {
		t.Fatalf("POST: %d %s", r.Status, r.Raw)
	}
	s.waitState("map-1", "hubspot", status.StateSynced)
	c := s.hubspot("GET", "/crm/v3/objects/contacts/map1@example.com?idProperty=email&properties=firstname,lifecyclestage,country,phone", nil)
	got2 := c.Body["properties"].(map[string]any)
	if got2["firstname"] != "ADA" || got2["lifecyclestage"] != "customer" || got2["country"] != "GB" || got2["phone"] != nil {
		t.Fatalf("contact in HubSpot: %s", c.Raw)
	}

	// A mapping written straight to KV that does not validate is not applied.
	kv, err := s.js.KeyValue(context.Background(), "sync_rules")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.PutString(context.Background(), mapping.Key("hubspot", "contact"), `{"fields":[{"from":"a","to":"nope"}]}`); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := s.call("GET", "/v1/sync/mappings/hubspot/contact", adminKey, nil)
		if strings.Contains(fmt.Sprint(r.Body["problem"]), "nope") {
			if eff := fmt.Sprint(r.Body["effective"]); !strings.Contains(eff, "customer") {
				t.Fatalf("the last good mapping is not the one in force: %s", r.Raw)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the broken mapping was never reported: %s", r.Raw)
		}
		waitTick(50 * time.Millisecond)
	}
}

// grepLines returns the lines of text that contain s.
func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

package rules_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/rules"
)

var targets = []string{"hubspot", "salesforce", "outreach"}

func TestEvaluate(t *testing.T) {
	set := rules.Set{Rules: []rules.Rule{
		{ID: "need-email", Kind: rules.KindRequire, Fields: []string{"email"}, Operations: []string{"create", "update"}},
		{ID: "no-ssn", Kind: rules.KindDisallow, Fields: []string{"ssn"}},
		{ID: "strip-notes", Kind: rules.KindDisallow, Fields: []string{"notes", "internal"}, Action: rules.ActionStrip},
		{ID: "dns", Kind: rules.KindSkipFlag, Field: "do_not_sync"},
		{ID: "sf-company", Kind: rules.KindRequire, Fields: []string{"company"}, Targets: []string{"salesforce"}, ObjectTypes: []string{"lead"}, Message: "Salesforce leads need a company"},
		{ID: "na-only", Kind: rules.KindExpr, When: `data.country not in ["US", "CA"]`, Targets: []string{"outreach"}},
		{ID: "no-test", Kind: rules.KindExpr, When: `record_id startsWith "test-"`, Action: rules.ActionReject},
		{ID: "adults", Kind: rules.KindExpr, When: `data.age != nil && data.age < 18`, Targets: []string{"hubspot"}},
	}}
	c, errs := rules.Compile(set, targets)
	if errs != nil {
		t.Fatal(errs)
	}
	email := func(extra map[string]any) map[string]any {
		d := map[string]any{"email": "a@b.co"}
		for k, v := range extra {
			d[k] = v
		}
		return d
	}
	tests := []struct {
		name   string
		record string
		object string
		op     event.Operation
		data   map[string]any
		target string
		want   rules.Decision
	}{
		{"passes", "c-1", "", event.OpCreate, email(nil), "hubspot", rules.Decision{Action: rules.Pass}},
		{"missing email rejected", "c-1", "", event.OpCreate, map[string]any{"first_name": "A"}, "hubspot", rules.Decision{Action: rules.Reject, RuleID: "need-email", Reason: "required field email is missing or blank"}},
		{"blank email rejected", "c-1", "", event.OpUpdate, map[string]any{"email": "  "}, "hubspot", rules.Decision{Action: rules.Reject, RuleID: "need-email", Reason: "required field email is missing or blank"}},
		{"null email rejected", "c-1", "", event.OpUpdate, map[string]any{"email": nil}, "hubspot", rules.Decision{Action: rules.Reject, RuleID: "need-email", Reason: "required field email is missing or blank"}},
		{"delete needs no email", "c-1", "", event.OpDelete, nil, "hubspot", rules.Decision{Action: rules.Pass}},
		{"disallowed field rejects", "c-1", "", event.OpCreate, email(map[string]any{"ssn": "x"}), "hubspot", rules.Decision{Action: rules.Reject, RuleID: "no-ssn", Reason: "field ssn is not allowed"}},
		{"disallowed null still rejects", "c-1", "", event.OpCreate, email(map[string]any{"ssn": nil}), "hubspot", rules.Decision{Action: rules.Reject, RuleID: "no-ssn", Reason: "field ssn is not allowed"}},
		{"strip fields", "c-1", "", event.OpCreate, email(map[string]any{"notes": "x", "internal": 1.0}), "hubspot", rules.Decision{Action: rules.Pass, Strip: []string{"notes", "internal"}}},
		{"strip then skip keeps the strip list", "c-1", "", event.OpCreate, email(map[string]any{"notes": "x", "do_not_sync": true}), "hubspot", rules.Decision{Action: rules.Skip, RuleID: "dns", Reason: "do_not_sync is true", Strip: []string{"notes"}}},
		{"flag skips", "c-1", "", event.OpCreate, email(map[string]any{"do_not_sync": true}), "hubspot", rules.Decision{Action: rules.Skip, RuleID: "dns", Reason: "do_not_sync is true"}},
		{"false flag passes", "c-1", "", event.OpCreate, email(map[string]any{"do_not_sync": false}), "hubspot", rules.Decision{Action: rules.Pass}},
		{"string flag is not true", "c-1", "", event.OpCreate, email(map[string]any{"do_not_sync": "true"}), "hubspot", rules.Decision{Action: rules.Pass}},
		{"target and object scoped rule", "c-1", "lead", event.OpCreate, email(nil), "salesforce", rules.Decision{Action: rules.Reject, RuleID: "sf-company", Reason: "Salesforce leads need a company"}},
		{"object scope excludes contacts", "c-1", "contact", event.OpCreate, email(nil), "salesforce", rules.Decision{Action: rules.Pass}},
		{"target scope excludes others", "c-1", "lead", event.OpCreate, email(nil), "hubspot", rules.Decision{Action: rules.Pass}},
		{"expression skips", "c-1", "", event.OpCreate, email(map[string]any{"country": "FR"}), "outreach", rules.Decision{Action: rules.Skip, RuleID: "na-only", Reason: `data.country not in ["US", "CA"] is true`}},
		{"expression passes", "c-1", "", event.OpCreate, email(map[string]any{"country": "CA"}), "outreach", rules.Decision{Action: rules.Pass}},
		{"missing field in expression is nil", "c-1", "", event.OpCreate, email(nil), "outreach", rules.Decision{Action: rules.Skip, RuleID: "na-only", Reason: `data.country not in ["US", "CA"] is true`}},
		{"expression rejects", "test-1", "", event.OpCreate, email(nil), "hubspot", rules.Decision{Action: rules.Reject, RuleID: "no-test", Reason: `record_id startsWith "test-" is true`}},
		{"numeric expression", "c-1", "", event.OpCreate, email(map[string]any{"age": 12.0}), "hubspot", rules.Decision{Action: rules.Skip, RuleID: "adults", Reason: "data.age != nil && data.age < 18 is true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := &event.Event{RecordID: tt.record, ObjectType: tt.object, Operation: tt.op, Data: tt.data}
			if diff := cmp.Diff(tt.want, c.Evaluate(ev, tt.target)); diff != "" {
				t.Fatalf("decision (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExpressionErrorRejects(t *testing.T) {
	c, errs := rules.Compile(rules.Set{Rules: []rules.Rule{{ID: "age", Kind: rules.KindExpr, When: `data.age < 18`}}}, targets)
	if errs != nil {
		t.Fatal(errs)
	}
	d := c.Evaluate(&event.Event{RecordID: "c", Operation: event.OpCreate, Data: map[string]any{"age": "twelve"}}, "hubspot")
	if d.Action != rules.Reject || !d.Error || !strings.Contains(d.Reason, "could not be evaluated") {
		t.Fatalf("decision %+v", d)
	}
}

func TestCompileErrors(t *testing.T) {
	set := rules.Set{Rules: []rules.Rule{
		{ID: "", Kind: rules.KindRequire, Fields: []string{"a"}},
		{ID: "dup", Kind: rules.KindRequire},
		{ID: "dup", Kind: "teleport"},
		{ID: "d", Kind: rules.KindDisallow, Fields: []string{""}, Action: "skip"},
		{ID: "s", Kind: rules.KindSkipFlag},
		{ID: "e", Kind: rules.KindExpr, When: "data.x +"},
		{ID: "e2", Kind: rules.KindExpr, When: `"not a bool"`},
		{ID: "e3", Kind: rules.KindExpr},
		{ID: "scope", Kind: rules.KindSkipFlag, Field: "f", Targets: []string{"pipedrive"}, Operations: []string{"merge"}, ObjectTypes: []string{"deal"}},
		{ID: "range", Kind: rules.KindExpr, When: "all(1..100000000, {# > 0})"},
		{ID: "repeat", Kind: rules.KindExpr, When: `len(repeat("a", 100000000)) > 0`},
	}}
	_, errs := rules.Compile(set, targets)
	var got []string
	for _, e := range errs {
		got = append(got, e.Location)
	}
	want := []string{
		"body.rules[0].id", "body.rules[1].fields", "body.rules[2].id", "body.rules[2].kind",
		"body.rules[3].fields[0]", "body.rules[3].action", "body.rules[4].field", "body.rules[5].when", "body.rules[6].when",
		"body.rules[7].when", "body.rules[8].targets[0]", "body.rules[8].object_types[0]", "body.rules[8].operations[0]",
		"body.rules[9].when", "body.rules[10].when",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("locations (-want +got):\n%s\n%v", diff, errs)
	}
}

func TestParseStrict(t *testing.T) {
	if _, err := rules.Parse([]byte(`{"rules":[{"id":"a","kind":"require","fields":["x"],"colour":1}]}`), targets); err == nil {
		t.Fatal("unknown field accepted")
	}
	if _, err := rules.Parse([]byte(`{"rules":[]}`), targets); err != nil {
		t.Fatalf("empty set refused: %v", err)
	}
}

func TestStripData(t *testing.T) {
	d := rules.Decision{Strip: []string{"b"}}
	data := map[string]any{"a": 1, "b": 2}
	if got := d.StripData(data); len(got) != 1 || got["a"] != 1 || len(data) != 2 {
		t.Fatalf("strip: %v, source %v", got, data)
	}
}

// FuzzRules parses arbitrary rule documents and evaluates what compiles on
// arbitrary data: nothing may panic, and a decision always names its rule.
func FuzzRules(f *testing.F) {
	f.Add([]byte(`{"rules":[{"id":"a","kind":"require","fields":["email"]}]}`), []byte(`{"email":""}`))
	f.Add([]byte(`{"rules":[{"id":"x","kind":"expr","when":"data.n > 3 && data.s matches \"^a\"","action":"reject"}]}`), []byte(`{"n":4,"s":"abc"}`))
	f.Add([]byte(`{"rules":[{"id":"d","kind":"disallow","fields":["a"],"action":"strip"},{"id":"f","kind":"skip_flag","field":"dns"}]}`), []byte(`{"a":null,"dns":true}`))
	f.Add([]byte(`{"rules":[{"id":"x","kind":"expr","when":"len(data) > 1 || record_id == target"}]}`), []byte(`{"n":[1,2]}`))
	f.Fuzz(func(t *testing.T, doc, data []byte) {
		c, err := rules.Parse(doc, targets)
		if err != nil {
			return
		}
		var m map[string]any
		if json.Unmarshal(data, &m) != nil {
			return
		}
		for _, op := range []event.Operation{event.OpCreate, event.OpDelete} {
			d := c.Evaluate(&event.Event{RecordID: "r", Operation: op, Data: m}, "hubspot")
			if d.Action != rules.Pass && d.RuleID == "" {
				t.Fatalf("decision %+v names no rule", d)
			}
		}
	})
}

// typicalSet is 20 rules of every kind, none of which fires on
// typicalEvent, so every rule is evaluated.
func typicalSet() rules.Set {
	var s rules.Set
	for i := range 5 {
		s.Rules = append(s.Rules,
			rules.Rule{ID: fmt.Sprint("req-", i), Kind: rules.KindRequire, Fields: []string{"email", "last_name"}},
			rules.Rule{ID: fmt.Sprint("dis-", i), Kind: rules.KindDisallow, Fields: []string{"ssn"}, Action: rules.ActionStrip},
			rules.Rule{ID: fmt.Sprint("flag-", i), Kind: rules.KindSkipFlag, Field: "do_not_sync"},
			rules.Rule{ID: fmt.Sprint("expr-", i), Kind: rules.KindExpr, When: `data.country not in ["US", "CA", "GB"]`},
		)
	}
	return s
}

var typicalEvent = &event.Event{RecordID: "c-123", Operation: event.OpUpdate, ObjectType: event.ObjectContact, Data: map[string]any{
	"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace", "phone": "+44 20 7946 0000",
	"country": "GB", "company": "Analytical Engines", "do_not_sync": false, "score": 42.0,
}}

// BenchmarkEvaluate evaluates a 20-rule set (5 of each kind) on a typical
// event; rules/s is per rule.
func BenchmarkEvaluate(b *testing.B) {
	c, errs := rules.Compile(typicalSet(), targets)
	if errs != nil {
		b.Fatal(errs)
	}
	b.ReportAllocs()
	for b.Loop() {
		if d := c.Evaluate(typicalEvent, "hubspot"); d.Action != rules.Pass {
			b.Fatal(d)
		}
	}
	b.ReportMetric(float64(b.N*c.Len())/b.Elapsed().Seconds(), "rules/s")
}

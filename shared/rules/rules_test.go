package rules_test

import (
	"testing"

	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/rules"
)

var targets = []string{"hubspot", "salesforce"}

func TestEvaluate(t *testing.T) {
	set := rules.Set{Rules: []rules.Rule{
		{ID: "need-email", Kind: rules.KindRequire, Fields: []string{"email"}, Operations: []string{"create", "update"}},
		{ID: "dns", Kind: rules.KindSkipFlag, Field: "do_not_sync"},
		{ID: "sf-company", Kind: rules.KindRequire, Fields: []string{"company"}, Targets: []string{"salesforce"}, Message: "Salesforce leads need a company"},
	}}
	c, errs := rules.Compile(set, targets)
	if errs != nil {
		t.Fatal(errs)
	}
	tests := []struct {
		name   string
		op     event.Operation
		data   map[string]any
		target string
		action rules.Action
		rule   string
	}{
		{"passes", event.OpCreate, map[string]any{"email": "a@b.co"}, "hubspot", rules.Pass, ""},
		{"missing email rejected", event.OpCreate, map[string]any{"first_name": "A"}, "hubspot", rules.Reject, "need-email"},
		{"blank email rejected", event.OpUpdate, map[string]any{"email": "  "}, "hubspot", rules.Reject, "need-email"},
		{"delete needs no email", event.OpDelete, nil, "hubspot", rules.Pass, ""},
		{"flag skips", event.OpCreate, map[string]any{"email": "a@b.co", "do_not_sync": true}, "hubspot", rules.Skip, "dns"},
		{"false flag passes", event.OpCreate, map[string]any{"email": "a@b.co", "do_not_sync": false}, "hubspot", rules.Pass, ""},
		{"string flag is not true", event.OpCreate, map[string]any{"email": "a@b.co", "do_not_sync": "true"}, "hubspot", rules.Pass, ""},
		{"target-scoped rule", event.OpCreate, map[string]any{"email": "a@b.co"}, "salesforce", rules.Reject, "sf-company"},
		{"target-scoped rule elsewhere", event.OpCreate, map[string]any{"email": "a@b.co"}, "hubspot", rules.Pass, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := &event.Event{RecordID: "c-1", Operation: tt.op, Data: tt.data}
			d := c.Evaluate(ev, tt.target)
			if d.Action != tt.action || d.RuleID != tt.rule {
				t.Fatalf("decision %+v, want %s by %q", d, tt.action, tt.rule)
			}
			if d.Action != rules.Pass && d.Reason == "" {
				t.Fatal("a decision without a reason")
			}
		})
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

func BenchmarkEvaluate(b *testing.B) {
	set := rules.Set{}
	for i := range 20 {
		set.Rules = append(set.Rules, rules.Rule{ID: "r" + string(rune('a'+i)), Kind: rules.KindRequire, Fields: []string{"email"}})
	}
	c, errs := rules.Compile(set, targets)
	if errs != nil {
		b.Fatal(errs)
	}
	ev := &event.Event{RecordID: "c-1", Operation: event.OpCreate, Data: map[string]any{"email": "a@b.co", "first_name": "Ada"}}
	b.ReportAllocs()
	for b.Loop() {
		c.Evaluate(ev, "hubspot")
	}
}

package event_test

import (
	"strings"
	"testing"
	"time"

	"github.com/recordsync/record-sync/shared/event"
)

func TestValidate(t *testing.T) {
	lim := event.DefaultLimits([]string{"hubspot", "salesforce"})
	lim.MaxFields = 3
	lim.MaxValueLen = 10
	ok := func() event.Event {
		return event.Event{RecordID: "c-1", Operation: event.OpCreate, Data: map[string]any{"email": "a@b.co"}}
	}
	tests := []struct {
		name   string
		mutate func(*event.Event)
		want   []string // locations, in order
	}{
		{"valid", func(*event.Event) {}, nil},
		{"valid delete without data", func(e *event.Event) { e.Operation, e.Data = event.OpDelete, nil }, nil},
		{"every id character", func(e *event.Event) { e.RecordID = "Az09._:@-" }, nil},
		{"missing record id", func(e *event.Event) { e.RecordID = "" }, []string{"body.record_id"}},
		{"record id too long", func(e *event.Event) { e.RecordID = strings.Repeat("a", 129) }, []string{"body.record_id"}},
		{"record id with slash", func(e *event.Event) { e.RecordID = "a/b" }, []string{"body.record_id"}},
		{"bad event id", func(e *event.Event) { e.EventID = "a b" }, []string{"body.event_id"}},
		{"bad object type", func(e *event.Event) { e.ObjectType = "deal" }, []string{"body.object_type"}},
		{"missing operation", func(e *event.Event) { e.Operation = "" }, []string{"body.operation"}},
		{"unknown operation", func(e *event.Event) { e.Operation = "upsert" }, []string{"body.operation"}},
		{"unknown and duplicate targets", func(e *event.Event) { e.Targets = []string{"hubspot", "x", "hubspot"} }, []string{"body.targets[1]", "body.targets[2]"}},
		{"too many fields", func(e *event.Event) { e.Data = map[string]any{"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0} }, []string{"body.data"}},
		{"value too long", func(e *event.Event) { e.Data["email"] = "abcdefghijk" }, []string{"body.data.email"}},
		{"nested value", func(e *event.Event) { e.Data["x"] = map[string]any{} }, []string{"body.data.x"}},
		{"array value", func(e *event.Event) { e.Data["x"] = []any{1.0} }, []string{"body.data.x"}},
		{"null, bool and number values", func(e *event.Event) { e.Data = map[string]any{"a": nil, "b": true, "c": 1.5} }, nil},
		{"create without data", func(e *event.Event) { e.Data = nil }, []string{"body.data"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := ok()
			tt.mutate(&e)
			errs := e.Validate("body", lim)
			var got []string
			for _, fe := range errs {
				got = append(got, fe.Location)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("errors at %v, want %v (%v)", got, tt.want, errs)
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	e := event.Event{RecordID: "c-1", Operation: event.OpDelete}
	e.Normalize([]string{"hubspot"}, now)
	if e.ObjectType != event.ObjectContact || len(e.Targets) != 1 || !strings.HasPrefix(e.EventID, "ev-") || !e.OccurredAt.Equal(now) {
		t.Fatalf("normalized: %+v", e)
	}
	kept := event.Event{EventID: "e-1", ObjectType: event.ObjectLead, Targets: []string{"salesforce"}, OccurredAt: now.Add(-time.Hour)}
	kept.Normalize([]string{"hubspot"}, now)
	if kept.EventID != "e-1" || kept.ObjectType != event.ObjectLead || kept.Targets[0] != "salesforce" || !kept.OccurredAt.Equal(now.Add(-time.Hour)) {
		t.Fatalf("normalize overwrote given values: %+v", kept)
	}
}

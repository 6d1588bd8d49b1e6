package event_test

import (
	"fmt"
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
		{"record id dot", func(e *event.Event) { e.RecordID = "." }, []string{"body.record_id"}},
		{"record id dot dot", func(e *event.Event) { e.RecordID = ".." }, []string{"body.record_id"}},
		{"record id three dots", func(e *event.Event) { e.RecordID = "..." }, nil},
		{"field name with NUL", func(e *event.Event) { e.Data["a\x00b"] = "x" }, []string{"body.data"}},
		{"field name not UTF-8", func(e *event.Event) { e.Data["a\xffb"] = "x" }, []string{"body.data"}},
		{"value not UTF-8", func(e *event.Event) { e.Data["email"] = "a\xff" }, []string{"body.data.email"}},
		{"occurred_at 9999", func(e *event.Event) { e.OccurredAt = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC) }, []string{"body.occurred_at"}},
		{"occurred_at year 1", func(e *event.Event) { e.OccurredAt = time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC) }, []string{"body.occurred_at"}},
		{"occurred_at 1999", func(e *event.Event) { e.OccurredAt = event.Earliest.Add(-time.Second) }, []string{"body.occurred_at"}},
		{"occurred_at 2000", func(e *event.Event) { e.OccurredAt = event.Earliest }, nil},
		{"occurred_at a minute ahead", func(e *event.Event) { e.OccurredAt = time.Now().Add(time.Minute) }, nil},
		{"occurred_at ten minutes ahead", func(e *event.Event) { e.OccurredAt = time.Now().Add(10 * time.Minute) }, []string{"body.occurred_at"}},
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

// TestValidateWindow: the occurred_at window is relative to the time of
// acceptance, with a configured maximum age.
func TestValidateWindow(t *testing.T) {
	accepted := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	lim := event.DefaultLimits([]string{"hubspot"})
	lim.MaxFuture, lim.MaxAge = time.Minute, 24*time.Hour
	tests := []struct {
		name string
		at   time.Time
		bad  bool
	}{
		{"now", accepted, false},
		{"59s ahead", accepted.Add(59 * time.Second), false},
		{"61s ahead", accepted.Add(61 * time.Second), true},
		{"23h ago", accepted.Add(-23 * time.Hour), false},
		{"25h ago", accepted.Add(-25 * time.Hour), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := event.Event{RecordID: "c-1", Operation: event.OpDelete, OccurredAt: tt.at}
			errs := e.ValidateAt("body", lim, accepted)
			if (len(errs) > 0) != tt.bad || (tt.bad && errs[0].Location != "body.occurred_at") {
				t.Fatalf("errors %v, want bad=%v", errs, tt.bad)
			}
		})
	}
}

// TestCheckJSON: what decoders accept silently is refused, at its field.
func TestCheckJSON(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string // locations, in order
	}{
		{"valid", `{"record_id":"c-1","operation":"create","data":{"email":"a@b.co","n":1.5e3,"x":null,"é":"ü\u00e9\ud83d\ude00"}}`, nil},
		{"invalid UTF-8 value", "{\"data\":{\"first_name\":\"\xff\xfeA\xff\"}}", []string{"body.data.first_name"}},
		{"invalid UTF-8 key", "{\"data\":{\"a\xffb\":\"x\"}}", []string{"body.data"}},
		{"lone surrogate value", `{"data":{"n":"\ud800"}}`, []string{"body.data.n"}},
		{"lone low surrogate key", `{"data":{"\udc00":"x"}}`, []string{"body.data"}},
		{"NUL in key", `{"data":{"a\u0000b":"x"}}`, []string{"body.data"}},
		{"NUL in value is text", `{"data":{"a":"x\u0000y"}}`, nil},
		{"duplicate top-level key", `{"record_id":"a","record_id":"b"}`, []string{"body.record_id"}},
		{"duplicate escaped key", `{"data":{"email":"a","\u0065mail":"b"}}`, []string{"body.data.email"}},
		{"duplicate among many keys", `{"data":{` + manyKeys(40) + `,"k7":1}}`, []string{"body.data.k7"}},
		{"duplicate in a batch event", `{"events":[{"a":1},{"a":1,"a":2}]}`, []string{"body.events[1].a"}},
		{"number out of range", `{"data":{"n":1e400}}`, []string{"body.data.n"}},
		{"negative number out of range", `{"data":{"n":-1e400}}`, []string{"body.data.n"}},
		{"bad occurred_at", `{"occurred_at":"yesterday"}`, []string{"body.occurred_at"}},
		{"bad occurred_at in a batch", `{"events":[{"occurred_at":"2026-13-01T00:00:00Z"}]}`, []string{"body.events[0].occurred_at"}},
		{"occurred_at as a data field is data", `{"data":{"occurred_at":"soon"}}`, nil},
		{"syntax error is the decoder's", `{"a":1,"a":}`, nil},
		{"trailing data is the decoder's", `{"a":1,"a":2} x`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, fe := range event.CheckJSON([]byte(tt.doc), "body") {
				got = append(got, fe.Location)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("errors at %v, want %v", got, tt.want)
			}
		})
	}
}

func manyKeys(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`"k%d":%d`, i, i)
	}
	return strings.Join(parts, ",")
}

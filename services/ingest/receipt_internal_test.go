package ingest

import (
	"encoding/base64"
	"encoding/json"
	"reflect"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/fastjson"
)

// tricky are strings a receipt's fields may hold that JSON must escape, or
// that encoding/json escapes and JSON need not.
var tricky = []string{"", "plain-id", `quote " and \ backslash`, "tab\tnew\nline\x00nul\x1f", "<html> & co", "é ü 漢字 🙂", "line\u2028sep\u2029"}

// TestReceiptJSON: a receipt built by hand decodes to what was put in,
// and, for what encoding/json does not escape further, reads byte for byte
// as encoding/json writes it.
func TestReceiptJSON(t *testing.T) {
	occurred := time.Date(2026, 12, 3, 10, 11, 12, 123456789, time.FixedZone("", 5*3600+1800))
	for _, s := range tricky {
		for _, targets := range [][]string{nil, {}, {"hubspot"}, {"hubspot", s}} {
			r := receipt{EventID: s, Operation: "update", Targets: targets, OccurredAt: occurred, At: time.Date(2026, 12, 3, 10, 11, 13, 0, time.UTC)}
			got := r.appendJSON(nil)
			var back receipt
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatalf("%q: %s does not decode: %v", s, got, err)
			}
			if !back.OccurredAt.Equal(r.OccurredAt) || !back.At.Equal(r.At) {
				t.Errorf("%s: times %v %v, want %v %v", got, back.OccurredAt, back.At, r.OccurredAt, r.At)
			}
			back.OccurredAt, back.At = r.OccurredAt, r.At
			if !reflect.DeepEqual(back, r) {
				t.Errorf("%s decodes to %+v, want %+v", got, back, r)
			}
			if want, _ := json.Marshal(r); s == "plain-id" && string(got) != string(want) {
				t.Errorf("built %s, encoding/json writes %s", got, want)
			}
		}
	}
}

// FuzzReceiptJSON: any valid UTF-8 id comes back from the JSON as it was.
func FuzzReceiptJSON(f *testing.F) {
	for _, s := range tricky {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			t.Skip("the edge refuses invalid UTF-8")
		}
		var back receipt
		if err := json.Unmarshal(receipt{EventID: s, Targets: []string{s}}.appendJSON(nil), &back); err != nil || back.EventID != s || back.Targets[0] != s {
			t.Fatalf("%q came back as %q (%v)", s, back.EventID, err)
		}
	})
}

// BenchmarkReceiptToken: a token per accepted event, its payload built by
// hand (now) and by the generic encoder (before), each signed alike.
func BenchmarkReceiptToken(b *testing.B) {
	s := &Service{receiptKey: receiptKey([]string{"k"}, nil)}
	ev := &event.Event{EventID: "e-0123456789", RecordID: "r-0123456789", Operation: event.OpUpdate, Targets: []string{"hubspot", "salesforce"},
		OccurredAt: time.Date(2026, 12, 3, 10, 11, 12, 123456789, time.UTC)}
	at := time.Now()
	b.Run("by-hand", func(b *testing.B) {
		for b.Loop() {
			_ = s.receiptToken(ev, at)
		}
	})
	b.Run("generic", func(b *testing.B) {
		enc := base64.RawURLEncoding
		for b.Loop() {
			payload, _ := fastjson.Marshal(receipt{EventID: ev.EventID, Operation: string(ev.Operation), Targets: ev.Targets, OccurredAt: ev.OccurredAt, At: at.UTC()})
			_ = enc.EncodeToString(payload) + "." + enc.EncodeToString(s.receiptMAC(ev.RecordID, payload))
		}
	})
}

package fastjson_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/fastjson"
	"github.com/recordsync/record-sync/shared/mesh"
)

// work is a full work message: 200 items, as the rules service sends them.
func work() []byte {
	var w mesh.Work
	for i := range mesh.MaxWorkItems {
		w.Items = append(w.Items, mesh.Item{Event: event.Event{EventID: fmt.Sprintf("e-%d", i), RecordID: fmt.Sprintf("m-%d", i),
			Operation: event.OpCreate, OccurredAt: time.Date(2026, 11, 25, 10, 0, 0, i, time.UTC), Targets: []string{"hubspot", "salesforce"},
			Data: map[string]any{"email": fmt.Sprintf("m%d@example.com", i), "first_name": "Ada", "last_name": "Lovelace"}},
			Trace: map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}})
	}
	b, _ := json.Marshal(w)
	return b
}

// BenchmarkDecodeWork compares decoding a work message with encoding/json,
// with fastjson's strict decoder, and with fastjson.Unmarshal, as the
// pusher does it (mesh.DecodeWork).
func BenchmarkDecodeWork(b *testing.B) {
	data := work()
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			var w mesh.Work
			if err := json.Unmarshal(data, &w); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fastjson", func(b *testing.B) {
		for b.Loop() {
			var w mesh.Work
			if err := fastjson.DecodeStrict(data, &w); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fastjson-unmarshal", func(b *testing.B) {
		for b.Loop() {
			var w mesh.Work
			if err := fastjson.Unmarshal(data, &w); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkEncodeWork compares encoding a work message.
func BenchmarkEncodeWork(b *testing.B) {
	var w mesh.Work
	_ = json.Unmarshal(work(), &w)
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(&w)
		}
	})
	b.Run("fastjson", func(b *testing.B) {
		for b.Loop() {
			_, _ = fastjson.Marshal(&w)
		}
	})
}

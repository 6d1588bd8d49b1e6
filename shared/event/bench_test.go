package event_test

import (
	"testing"

	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/fastjson"
)

var typical = []byte(`{"event_id":"e-1","record_id":"c-1","operation":"update","data":{"email":"p1@example.com","first_name":"Ada","last_name":"Lovelace","phone":"+44 20 7946 0000","do_not_sync":false}}`)

// BenchmarkCheckJSON is the cost of CheckJSON on a typical event, to set
// against BenchmarkDecodeStrict's.
func BenchmarkCheckJSON(b *testing.B) {
	for b.Loop() {
		if errs := event.CheckJSON(typical, "body"); len(errs) > 0 {
			b.Fatal(errs)
		}
	}
}

// BenchmarkDecodeStrict is the cost of decoding a typical event.
func BenchmarkDecodeStrict(b *testing.B) {
	for b.Loop() {
		var ev event.Event
		if err := fastjson.DecodeStrict(typical, &ev); err != nil {
			b.Fatal(err)
		}
	}
}

package pusher

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/recordsync/record-sync/crm"
	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/mesh"
)

func item(record string, op event.Operation, at int, data map[string]any) mesh.Item {
	return mesh.Item{Event: event.Event{RecordID: record, EventID: fmt.Sprintf("%s-%d", record, at), Operation: op,
		OccurredAt: time.Unix(int64(at), 0), Data: data}}
}

func TestCoalesce(t *testing.T) {
	tests := []struct {
		name string
		in   []mesh.Item
		want []mesh.Item
	}{
		{
			name: "distinct records stay apart, in order",
			in:   []mesh.Item{item("a", event.OpCreate, 1, map[string]any{"x": 1}), item("b", event.OpCreate, 2, map[string]any{"x": 2})},
			want: []mesh.Item{item("a", event.OpCreate, 1, map[string]any{"x": 1}), item("b", event.OpCreate, 2, map[string]any{"x": 2})},
		},
		{
			name: "updates merge, later fields win, a create stays a create",
			in:   []mesh.Item{item("a", event.OpCreate, 1, map[string]any{"x": 1, "y": 1}), item("a", event.OpUpdate, 2, map[string]any{"y": 2, "z": 2})},
			want: []mesh.Item{{Event: event.Event{RecordID: "a", EventID: "a-2", Operation: event.OpCreate, OccurredAt: time.Unix(2, 0), Data: map[string]any{"x": 1, "y": 2, "z": 2}}}},
		},
		{
			name: "a delete replaces what came before, keeping its fields to identify the record by",
			in:   []mesh.Item{item("a", event.OpUpdate, 1, map[string]any{"email": "a@x"}), item("a", event.OpDelete, 2, nil)},
			want: []mesh.Item{item("a", event.OpDelete, 2, map[string]any{"email": "a@x"})},
		},
		{
			name: "a create then a delete without data is a delete by the create's identity",
			in:   []mesh.Item{item("a", event.OpCreate, 1, map[string]any{"email": "a@x", "x": 1}), item("a", event.OpDelete, 2, map[string]any{})},
			want: []mesh.Item{item("a", event.OpDelete, 2, map[string]any{"email": "a@x", "x": 1})},
		},
		{
			name: "a create after a delete starts afresh",
			in:   []mesh.Item{item("a", event.OpDelete, 1, nil), item("a", event.OpCreate, 2, map[string]any{"x": 2})},
			want: []mesh.Item{item("a", event.OpCreate, 2, map[string]any{"x": 2})},
		},
		{
			name: "an older event arriving later does not win",
			in:   []mesh.Item{item("a", event.OpUpdate, 5, map[string]any{"x": 5}), item("a", event.OpUpdate, 1, map[string]any{"x": 1, "y": 1})},
			want: []mesh.Item{{Event: event.Event{RecordID: "a", EventID: "a-5", Operation: event.OpUpdate, OccurredAt: time.Unix(5, 0), Data: map[string]any{"x": 5, "y": 1}}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in []pending
			for i, it := range tt.in {
				in = append(in, pending{item: it, msg: i})
			}
			var got []mesh.Item
			for _, p := range coalesce(in) {
				got = append(got, p.item)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Fatalf("coalesce (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWaves(t *testing.T) {
	recs := func(ids ...string) []crm.Record {
		var out []crm.Record
		for _, id := range ids {
			out = append(out, crm.Record{Identity: id})
		}
		return out
	}
	tests := []struct {
		name string
		recs []crm.Record
		size int
		want [][][]int
	}{
		{"fits", recs("a", "b", "c"), 3, [][][]int{{{0, 1, 2}}}},
		{"splits at size, one wave", recs("a", "b", "c"), 2, [][][]int{{{0, 1}, {2}}}},
		{"one identity twice goes to the next wave", recs("a", "b", "a", "c"), 10, [][][]int{{{0, 1, 3}}, {{2}}}},
		{"across requests of a wave too", recs("a", "b", "c", "a"), 2, [][][]int{{{0, 1}, {2}}, {{3}}}},
		{"three times", recs("a", "a", "a"), 10, [][][]int{{{0}}, {{1}}, {{2}}}},
		{"none", nil, 5, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, waves(tt.recs, tt.size)); diff != "" {
				t.Fatalf("waves (-want +got):\n%s", diff)
			}
		})
	}
}

package mesh

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/recordsync/record-sync/shared/natstest"
	"github.com/recordsync/record-sync/shared/status"
)

// TestStatusChangesSplitToFit: a pusher's round of thousands of synced
// records, each change with its data, is more than one message may hold;
// it is stored as several messages of at most MaxStatusBytes, in order,
// counted, and published again it is recognised as a duplicate.
func TestStatusChangesSplitToFit(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv, "operator")
	ctx := context.Background()
	if err := Ensure(ctx, js, Options{}); err != nil {
		t.Fatal(err)
	}
	const n = 20_000
	changes := make([]status.Change, n)
	for i := range changes {
		changes[i] = status.Change{RecordID: "r-" + strconv.Itoa(i), Target: "hubspot", State: status.StateSynced,
			Pushed: &status.Pushed{Data: status.Data(`{"email":"r` + strconv.Itoa(i) + `@example.com","note":"` + strings.Repeat("x", 500) + `"}`)}}
	}
	for range 2 {
		fs, err := PublishStatusAsync(js, "pusher", "round-1", changes)
		if err != nil {
			t.Fatal(err)
		}
		if err := WaitAcks(ctx, fs); err != nil {
			t.Fatal(err)
		}
	}
	st, err := js.Stream(ctx, StreamStatus)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs < 10 {
		t.Fatalf("%d changes of 500 bytes and more in %d messages", n, info.State.Msgs)
	}
	next := 0
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Data) > MaxStatusBytes {
			t.Fatalf("message %d: %d bytes, more than %d", seq, len(m.Data), MaxStatusBytes)
		}
		var b StatusBatch
		if err := DecodeStrict(m.Data, &b); err != nil {
			t.Fatal(err)
		}
		if m.Header.Get(HeaderCount) != strconv.Itoa(len(b.Changes)) {
			t.Fatalf("message %d counts %s, holds %d", seq, m.Header.Get(HeaderCount), len(b.Changes))
		}
		for _, c := range b.Changes {
			if c.RecordID != "r-"+strconv.Itoa(next) {
				t.Fatalf("change %d is %s: out of order, or stored twice", next, c.RecordID)
			}
			next++
		}
	}
	if next != n {
		t.Fatalf("%d changes stored, want %d (the second publish is a duplicate)", next, n)
	}
}

package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/mesh"
)

// FuzzEdge sends the real handler of the HTTP edge arbitrary bodies,
// Content-Types and Idempotency-Keys on the three operations that take
// events, and checks what it answers against what it stores:
//   - no answer is a 5xx;
//   - an answer of 4xx stored nothing on SYNC_IN;
//   - a 2xx is given only for a body (or, in a batch, for the events) that
//     the shared validator accepts, as the rules service will judge it;
//   - every event accepted, re-read from JetStream, means what was sent
//     (record, operation, data, targets, ids, time), with the defaults
//     filled in.
//
// go test runs the seeds; `make fuzz` (and .ci/run) fuzzes for a while.
func FuzzEdge(f *testing.F) {
	seeds := []struct {
		op       uint8
		ct, idem string
		body     string
	}{
		{0, "application/json", "", `{"record_id":"c-1","operation":"create","data":{"email":"a@b.co","n":1.5,"ok":true,"x":null}}`},
		{0, "application/json; charset=utf-8", "k-1", `{"record_id":"c-2","operation":"delete","targets":["hubspot"],"occurred_at":"2026-11-25T10:00:00Z"}`},
		{0, "text/plain", "", `{"record_id":"c-3","operation":"delete"}`},
		{0, "", "", `{"record_id":"c-3","operation":"delete"}`},
		{0, "application/json", "", "{\"record_id\":\"c-4\",\"operation\":\"create\",\"data\":{\"a\":\"\xff\"}}"},
		{0, "application/json", "", `{"record_id":"c-5","record_id":"c-6","operation":"delete"}`},
		{0, "application/json", "", `{"record_id":"c-7","operation":"create","data":{"n":1e400}}`},
		{0, "application/json", "", `{"record_id":"c-8","operation":"delete","occurred_at":"9999-12-31T00:00:00Z"}`},
		{0, "application/json", "", `{"record_id":"..","operation":"delete"}`},
		{0, "application/json", "", `{"record_id":"c-9","operation":"create","data":{"a\u0000":"x","h":"<&>\u2028"}}`},
		{0, "application/json", "", `[]`},
		{0, "application/json", "", `{"record_id":"c-10",`},
		{1, "application/json", "", `{"events":[{"record_id":"b-1","operation":"delete"},{"record_id":"b 2","operation":"delete"}]}`},
		{1, "application/json", "", `{"events":[{"record_id":7,"operation":"delete"},{"record_id":"b-3","operation":"update","data":{"email":"<x>"}}]}`},
		{1, "application/json", "", `[{"record_id":"b-4","operation":"delete"}]`},
		{1, "application/vnd.x+json", "", `{"events":[]}`},
		{2, "application/json", "", `{"record_id":"p-1","operation":"create","data":{"email":"a@b.co"}}`},
	}
	for _, s := range seeds {
		f.Add(s.op, s.ct, s.idem, []byte(s.body))
	}
	e := edgeWith(f, "fast", nil)
	h := e.svc.Handler()
	doc := checker(f, e.svc)
	lim := event.DefaultLimits([]string{"hubspot"})
	ctx := context.Background()
	// Batches go to SYNC_IN, single events to SYNC_GATHER.
	var streams []jetstream.Stream
	for _, name := range []string{mesh.StreamIn, mesh.StreamGather} {
		st, err := e.js.Stream(ctx, name)
		if err != nil {
			f.Fatal(err)
		}
		streams = append(streams, st)
	}
	lastSeqs := func(t *testing.T) []uint64 {
		var out []uint64
		for _, st := range streams {
			info, err := st.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, info.State.LastSeq)
		}
		return out
	}
	f.Fuzz(func(t *testing.T, op uint8, ct, idem string, body []byte) {
		path := []string{"/v1/sync/", "/v1/sync/batch", "/v1/sync/preview"}[op%3]
		if op%3 == 2 && !testing.Short() && fuzzing() {
			// A preview may ask the CRM (this edge's is unreachable), a
			// second per call: fuzzing keeps to the operations that store.
			return
		}
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("X-API-Key", benchKey)
		if ct = headerValue(ct); ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		if idem = headerValue(idem); idem != "" {
			req.Header.Set("Idempotency-Key", idem)
		}
		before := lastSeqs(t)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		after := lastSeqs(t)
		added := uint64(0)
		for i := range after {
			added += after[i] - before[i]
		}
		doc.Check(t, req, rec.Code, rec.Header(), rec.Body.Bytes())
		code := rec.Code
		if code >= 500 {
			t.Fatalf("%s: %d %s", path, code, rec.Body.Bytes())
		}
		if code >= 400 {
			if added != 0 {
				t.Fatalf("%s: %d, but %d messages stored", path, code, added)
			}
			return
		}
		if !jsonUTF8(ct) {
			t.Fatalf("%s: %d for Content-Type %q", path, code, ct)
		}
		var stored []event.Event
		for i, st := range streams {
			stored = append(stored, storedEvents(t, st, before[i]+1, after[i])...)
		}
		switch op % 3 {
		case 0:
			sent := mustValid(t, body, "body", lim)
			var ans ingestAccepted
			if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil {
				t.Fatal(err)
			}
			switch {
			case ans.Duplicate && len(stored) == 0:
			case len(stored) == 1:
				sameMeaning(t, sent, body, stored[0], idem)
			default:
				t.Fatalf("one event accepted, %d stored (duplicate %v)", len(stored), ans.Duplicate)
			}
		case 1:
			var raw struct{ Events []json.RawMessage }
			if err := json.Unmarshal(body, &raw); err != nil {
				t.Fatalf("batch %d for an undecodable body: %v", code, err)
			}
			var ans struct{ Results []ingestAccepted }
			if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil {
				t.Fatal(err)
			}
			var accepted []int
			dup := false
			for i, r := range ans.Results {
				if r.Status == "accepted" {
					accepted = append(accepted, i)
					dup = dup || r.Duplicate
				}
			}
			if len(accepted) == 0 {
				t.Fatalf("batch %d with no event accepted: %s", code, rec.Body.Bytes())
			}
			if len(stored) == 0 && dup {
				return
			}
			if len(stored) != len(accepted) {
				t.Fatalf("batch: %d events accepted, %d stored", len(accepted), len(stored))
			}
			for j, i := range accepted {
				sent := mustValid(t, raw.Events[i], "body.events[0]", lim)
				sameMeaning(t, sent, raw.Events[i], stored[j], "")
			}
		case 2:
			mustValid(t, body, "body", lim)
			if added != 0 {
				t.Fatalf("preview stored %d messages", added)
			}
		}
	})
}

// fuzzing reports whether the test runs under -fuzz, not on its seeds.
func fuzzing() bool {
	f := flag.Lookup("test.fuzz")
	return f != nil && f.Value.String() != ""
}

type ingestAccepted struct {
	Status    string `json:"status"`
	Duplicate bool   `json:"duplicate"`
}

// headerValue is s as a client could send it in a header.
func headerValue(s string) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r > 0x7e {
			return -1
		}
		return r
	}, s))
}

// jsonUTF8 is the oracle of the Content-Types a body may have.
func jsonUTF8(ct string) bool {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || (mt != "application/json" && (!strings.HasPrefix(mt, "application/") || !strings.HasSuffix(mt, "+json"))) {
		return false
	}
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8")
}

// mustValid fails unless the shared validator, as the rules service runs
// it, accepts raw; it returns the event.
func mustValid(t *testing.T, raw []byte, prefix string, lim event.Limits) event.Event {
	t.Helper()
	var ev event.Event
	if err := event.DecodeStrict(raw, prefix, &ev); err != nil {
		t.Fatalf("accepted, but the validator refuses %q: %v", raw, err)
	}
	if errs := ev.Validate(prefix, lim); len(errs) > 0 {
		t.Fatalf("accepted, but the validator refuses %q: %v", raw, errs)
	}
	return ev
}

// storedEvents reads the events of the messages from..to of stream
// (SYNC_IN or SYNC_GATHER), each checked as the rules service checks it.
func storedEvents(t *testing.T, stream jetstream.Stream, from, to uint64) []event.Event {
	t.Helper()
	var out []event.Event
	lim := event.DefaultLimits([]string{"hubspot"})
	for seq := from; seq <= to; seq++ {
		m, err := stream.GetMsg(context.Background(), seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var events []event.Event
		if m.Subject == mesh.SubjectInBatch || m.Subject == mesh.SubjectInGathered {
			var b mesh.Batch
			if err := event.DecodeStrict(m.Data, "body", &b); err != nil {
				t.Fatalf("stored batch refused by the rules' decoder: %v", err)
			}
			events = b.Events
		} else {
			var ev event.Event
			if err := event.DecodeStrict(m.Data, "body", &ev); err != nil {
				t.Fatalf("stored event refused by the rules' decoder: %v", err)
			}
			events = []event.Event{ev}
		}
		for _, ev := range events {
			if errs := ev.ValidateAt("body", lim, m.Time); len(errs) > 0 {
				t.Fatalf("stored event refused by the rules' validator: %v", errs)
			}
		}
		out = append(out, events...)
	}
	return out
}

// sameMeaning fails unless got, as stored, means what raw said: every
// field sent is stored as sent (numbers as the float64 they are), and the
// defaults are filled in.
func sameMeaning(t *testing.T, sent event.Event, raw []byte, got event.Event, idem string) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	wantData := map[string]any{}
	if d, ok := m["data"].(map[string]any); ok {
		wantData = d
	}
	gotData := got.Data
	if gotData == nil {
		gotData = map[string]any{}
	}
	if diff := cmp.Diff(wantData, gotData); diff != "" {
		t.Fatalf("data stored differs from data sent %q: %s", raw, diff)
	}
	if got.RecordID != m["record_id"] || string(got.Operation) != m["operation"] {
		t.Fatalf("stored %s %s, sent %q", got.RecordID, got.Operation, raw)
	}
	switch {
	case m["event_id"] != nil && got.EventID != m["event_id"],
		m["event_id"] == nil && idem != "" && got.EventID != idem,
		got.EventID == "":
		t.Fatalf("stored event id %q, sent %q (Idempotency-Key %q)", got.EventID, raw, idem)
	}
	if ot, _ := m["object_type"].(string); (ot != "" && got.ObjectType != ot) || (ot == "" && got.ObjectType != event.ObjectContact) {
		t.Fatalf("stored object type %q, sent %q", got.ObjectType, raw)
	}
	if len(sent.Targets) > 0 && !cmp.Equal(sent.Targets, got.Targets) || len(got.Targets) == 0 {
		t.Fatalf("stored targets %v, sent %q", got.Targets, raw)
	}
	if !sent.OccurredAt.IsZero() && !sent.OccurredAt.Equal(got.OccurredAt) || got.OccurredAt.IsZero() {
		t.Fatalf("stored occurred_at %v, sent %q", got.OccurredAt, raw)
	}
	if time.Since(got.OccurredAt) < -event.DefaultMaxFuture {
		t.Fatalf("stored occurred_at %v is in the future", got.OccurredAt)
	}
}

package ingest_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/services/ingest"
	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/mesh"
)

// answer is a response read whole.
type answer struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

// send makes a request with the sync key; ct is the Content-Type ("-" for
// none).
func send(t *testing.T, method, url, ct, body string, hdr ...string) answer {
	t.Helper()
	a, err := request(method, url, ct, body, hdr...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// request is send without the test: it may run in any goroutine.
func request(method, url, ct, body string, hdr ...string) (answer, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("X-API-Key", benchKey)
	if ct != "-" {
		req.Header.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, header: resp.Header}
	a.raw, _ = io.ReadAll(resp.Body)
	_ = json.Unmarshal(a.raw, &a.body)
	return a, nil
}

// noRedirects is a client that shows redirects instead of following them.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// locs lists the locations a problem's errors name.
func locs(body map[string]any) []string {
	var out []string
	errs, _ := body["errors"].([]any)
	for _, e := range errs {
		if m, ok := e.(map[string]any); ok {
			out = append(out, fmt.Sprint(m["location"]))
		}
	}
	return out
}

// stored is how many messages SYNC_IN and SYNC_GATHER hold.
func stored(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	var n uint64
	for _, name := range []string{mesh.StreamIn, mesh.StreamGather} {
		st, err := js.Stream(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		n += info.State.Msgs
	}
	return n
}

// TestBadInputRefused: what the edge once accepted, or answered wrongly,
// is refused precisely, as a problem naming the field, storing nothing.
func TestBadInputRefused(t *testing.T) {
	e := edgeWith(t, "fast", nil)
	ts := e.server(t)
	const js = "application/json"
	ev := func(data string) string {
		return `{"record_id":"c-1","operation":"create","data":` + data + `}`
	}
	tests := []struct {
		name, method, path, ct, body string
		status                       int
		locations                    []string // each must be named
		noText                       string   // the answer must not contain it
	}{
		{name: "invalid UTF-8 in a value", path: "/v1/sync/", ct: js, body: ev("{\"first_name\":\"\xff\xfeA\xff\"}"), status: 422, locations: []string{"body.data.first_name"}},
		{name: "invalid UTF-8 in a field name", path: "/v1/sync/", ct: js, body: ev("{\"email\":\"a@b.co\",\"a\xffb\":\"x\"}"), status: 422, locations: []string{"body.data"}},
		{name: "lone surrogate", path: "/v1/sync/", ct: js, body: ev(`{"email":"\ud800"}`), status: 422, locations: []string{"body.data.email"}},
		{name: "NUL in a field name", path: "/v1/sync/", ct: js, body: ev(`{"email":"a@b.co","a\u0000b":"x"}`), status: 422, locations: []string{"body.data"}},
		{name: "duplicate key", path: "/v1/sync/", ct: js, body: `{"record_id":"c-1","record_id":"c-2","operation":"delete"}`, status: 422, locations: []string{"body.record_id"}},
		{name: "field name in other case", path: "/v1/sync/", ct: js, body: `{"reCord_id":"c-1","operAtion":"create","dAtA":{"email":"a@b.co"}}`, status: 422, locations: []string{"body.reCord_id", "body.operAtion", "body.dAtA"}},
		{name: "batch field name in other case", path: "/v1/sync/batch", ct: js, body: `{"Events":[{"record_id":"c-1","operation":"delete"}]}`, status: 422, locations: []string{"body.Events"}},
		{name: "event field name in other case in a batch", path: "/v1/sync/batch", ct: js, body: `{"events":[{"record_id":"c-1","Operation":"delete"}]}`, status: 422, locations: []string{"body.events[0].Operation"}},
		{name: "duplicate data key", path: "/v1/sync/", ct: js, body: ev(`{"email":"a@b.co","email":"b@b.co"}`), status: 422, locations: []string{"body.data.email"}},
		{name: "occurred_at 9999", path: "/v1/sync/", ct: js, body: `{"record_id":"c-1","operation":"delete","occurred_at":"9999-12-31T00:00:00Z"}`, status: 422, locations: []string{"body.occurred_at"}},
		{name: "occurred_at 0001", path: "/v1/sync/", ct: js, body: `{"record_id":"c-1","operation":"delete","occurred_at":"0001-01-01T00:00:00Z"}`, status: 422, locations: []string{"body.occurred_at"}},
		{name: "occurred_at not a time", path: "/v1/sync/", ct: js, body: `{"record_id":"c-1","operation":"delete","occurred_at":"yesterday"}`, status: 422, locations: []string{"body.occurred_at"}},
		{name: "occurred_at a number", path: "/v1/sync/", ct: js, body: `{"record_id":"c-1","operation":"delete","occurred_at":5}`, status: 422, locations: []string{"body.occurred_at"}},
		{name: "number out of range", path: "/v1/sync/", ct: js, body: ev(`{"n":1e400}`), status: 422, locations: []string{"body.data.n"}},
		{name: "record id dot", path: "/v1/sync/", ct: js, body: `{"record_id":".","operation":"delete"}`, status: 422, locations: []string{"body.record_id"}},
		{name: "record id dot dot", path: "/v1/sync/", ct: js, body: `{"record_id":"..","operation":"delete"}`, status: 422, locations: []string{"body.record_id"}},
		{name: "text/plain", path: "/v1/sync/", ct: "text/plain", body: ev(`{"email":"a@b.co"}`), status: 415, locations: []string{"header.Content-Type"}},
		{name: "form", path: "/v1/sync/", ct: "application/x-www-form-urlencoded", body: ev(`{"email":"a@b.co"}`), status: 415},
		{name: "XML", path: "/v1/sync/", ct: "application/xml", body: ev(`{"email":"a@b.co"}`), status: 415},
		{name: "no Content-Type", path: "/v1/sync/", ct: "-", body: ev(`{"email":"a@b.co"}`), status: 415},
		{name: "latin1", path: "/v1/sync/", ct: "application/json; charset=latin1", body: ev(`{"email":"a@b.co"}`), status: 415},
		{name: "415 on a batch", path: "/v1/sync/batch", ct: "text/plain", body: `{"events":[]}`, status: 415},
		{name: "415 on a preview", path: "/v1/sync/preview", ct: "text/csv", body: ev(`{"email":"a@b.co"}`), status: 415},
		{name: "bare array batch", path: "/v1/sync/batch", ct: js, body: `[{"record_id":"c-1","operation":"delete"}]`, status: 422, locations: []string{"body"}, noText: "ingest."},
		{name: "batch of invalid events only", path: "/v1/sync/batch", ct: js,
			body:   `{"events":[{"record_id":".","operation":"delete"},{"record_id":"c-2","operation":"delete","x":1},{"record_id":7,"operation":"delete"},{"record_id":"c-4","operation":"delete","occurred_at":"9999-01-01T00:00:00Z"}]}`,
			status: 422, locations: []string{"body.events[0].record_id", "body.events[1].x", "body.events[2].record_id", "body.events[3].occurred_at"}},
		{name: "405 is a problem", method: "GET", path: "/v1/sync/batch", status: 405},
		{name: "404 is a problem", method: "GET", path: "/v1/nothing", status: 404},
		{name: "a path to clean is a problem", method: "GET", path: "/v1/sync/status/a/../b", status: 307},
	}
	before := stored(t, e.js)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			a := send(t, method, ts.URL+tt.path, tt.ct, tt.body)
			if a.status != tt.status {
				t.Fatalf("status %d, want %d: %s", a.status, tt.status, a.raw)
			}
			if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
				t.Fatalf("Content-Type %q: %s", ct, a.raw)
			}
			if a.body["status"] != float64(tt.status) || a.body["detail"] == "" {
				t.Fatalf("not a problem: %s", a.raw)
			}
			got := " " + strings.Join(locs(a.body), " ") + " "
			for _, want := range tt.locations {
				if !strings.Contains(got, " "+want+" ") {
					t.Errorf("errors name%s, want %s among them: %s", got, want, a.raw)
				}
			}
			if tt.noText != "" && strings.Contains(string(a.raw), tt.noText) {
				t.Errorf("answer holds %q: %s", tt.noText, a.raw)
			}
			if strings.HasPrefix(tt.name, "batch of invalid") {
				if results, _ := a.body["results"].([]any); len(results) != 4 {
					t.Errorf("want 4 results: %s", a.raw)
				}
			}
		})
	}
	if after := stored(t, e.js); after != before {
		t.Fatalf("refused requests stored %d messages", after-before)
	}
}

// TestGoodInputAccepted: what must still be accepted is.
func TestGoodInputAccepted(t *testing.T) {
	e := edgeWith(t, "fast", nil)
	ts := e.server(t)
	tests := []struct {
		name, path, ct, body string
	}{
		{"charset utf-8", "/v1/sync/", "application/json; charset=UTF-8", `{"record_id":"g-1","operation":"delete"}`},
		{"a +json type", "/v1/sync/", "application/vnd.recordsync+json", `{"record_id":"g-2","operation":"delete"}`},
		{"no trailing slash", "/v1/sync", "application/json", `{"record_id":"g-3","operation":"delete"}`},
		{"three dots", "/v1/sync/", "application/json", `{"record_id":"...","operation":"delete"}`},
		{"NUL and HTML in a value", "/v1/sync/", "application/json", `{"record_id":"g-4","operation":"create","data":{"note":"a\u0000<b>&"}}`},
		{"occurred_at a minute ahead", "/v1/sync/", "application/json", `{"record_id":"g-5","operation":"delete","occurred_at":"` + time.Now().Add(time.Minute).UTC().Format(time.RFC3339) + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := send(t, http.MethodPost, ts.URL+tt.path, tt.ct, tt.body)
			if a.status != http.StatusAccepted {
				t.Fatalf("status %d: %s", a.status, a.raw)
			}
			url, _ := a.body["status_url"].(string)
			if st := send(t, http.MethodGet, ts.URL+url, "-", ""); st.status == http.StatusTemporaryRedirect || st.status == http.StatusMovedPermanently {
				t.Fatalf("status URL %s redirects: %d", url, st.status)
			}
		})
	}
}

// TestBatchEncodedPastMaxPayload: a batch under the body limit whose
// encoding once grew past what a NATS message holds (HTML characters
// escaped, defaults added) is accepted whole, in as many messages as it
// takes, none past max_payload; sent again, every event is a duplicate.
//
// The limits are an eighth of production's (a 1 MiB body, 1 MiB messages
// less 1 KiB for headers; 8 MiB and NATS's 8 MB max_payload in production),
// so that the test takes seconds under the race detector.
func TestBatchEncodedPastMaxPayload(t *testing.T) {
	const bodyLimit = 1 << 20
	e := edgeWith(t, "fast", func(c *ingest.Config) { c.MaxBatchBodyBytes, c.MaxMessageBytes = bodyLimit, bodyLimit-1<<10 })
	ts := e.server(t)
	const events = 500
	body := func(n int, fields int, value func(overhead int) string) string {
		ev := func(i int, v string) string {
			data := make([]string, fields)
			for f := range data {
				data[f] = fmt.Sprintf(`"f%d":%q`, f, v)
			}
			return fmt.Sprintf(`{"event_id":"big-%d-%03d","record_id":"big-%03d","operation":"create","data":{%s}}`, n, i, i, strings.Join(data, ","))
		}
		v := value(len(ev(0, "")))
		parts := make([]string, events)
		for i := range parts {
			parts[i] = ev(i, v)
		}
		return `{"events":[` + strings.Join(parts, ",") + `]}`
	}
	tests := []struct {
		name      string
		body      string
		wantSplit bool
	}{
		// Six times as large once escaped as HTML.
		{"HTML characters", body(0, 1, func(int) string { return strings.Repeat("<", 400) }), false},
		// As close to the body limit as it goes (8 MiB: 500 events of
		// 16.7 KB): the defaults the edge adds take it past max_payload.
		{"as large as the limit takes", body(1, 5, func(overhead int) string {
			return strings.Repeat("x", ((bodyLimit-4<<10)/events-overhead)/5)
		}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := stored(t, e.js)
			for round, dup := range []bool{false, true} {
				a := send(t, http.MethodPost, ts.URL+"/v1/sync/batch", "application/json", tt.body)
				if a.status != http.StatusAccepted {
					t.Fatalf("round %d: status %d: %.500s", round, a.status, a.raw)
				}
				for _, r := range a.body["results"].([]any) {
					if m := r.(map[string]any); m["status"] != "accepted" || (m["duplicate"] == true) != dup {
						t.Fatalf("round %d: result %v", round, m)
					}
				}
			}
			got := readIn(t, e.js, before+1)
			if len(got.events) != events || (got.messages > 1) != tt.wantSplit || got.largest > bodyLimit {
				t.Fatalf("%d-byte body: %d events stored in %d messages, the largest %d bytes", len(tt.body), len(got.events), got.messages, got.largest)
			}
			var sent mesh.Batch
			if err := json.Unmarshal([]byte(tt.body), &sent); err != nil {
				t.Fatal(err)
			}
			for i, ev := range got.events {
				if ev.RecordID != sent.Events[i].RecordID || fmt.Sprint(ev.Data) != fmt.Sprint(sent.Events[i].Data) {
					t.Fatalf("event %d stored as %s, sent as %s", i, ev.RecordID, sent.Events[i].RecordID)
				}
			}
		})
	}
}

// inbound is what SYNC_IN holds from a sequence on.
type inbound struct {
	events   []event.Event
	messages int
	largest  int
}

// readIn reads every message SYNC_IN holds from seq on.
func readIn(t *testing.T, js jetstream.JetStream, seq uint64) inbound {
	t.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, mesh.StreamIn)
	if err != nil {
		t.Fatal(err)
	}
	var in inbound
	for ; ; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return in
		}
		if err != nil {
			t.Fatal(err)
		}
		in.messages++
		in.largest = max(in.largest, len(m.Data)+len(m.Subject))
		if m.Subject == mesh.SubjectInBatch {
			var b mesh.Batch
			if err := json.Unmarshal(m.Data, &b); err != nil {
				t.Fatal(err)
			}
			in.events = append(in.events, b.Events...)
		} else {
			var ev event.Event
			if err := json.Unmarshal(m.Data, &ev); err != nil {
				t.Fatal(err)
			}
			in.events = append(in.events, ev)
		}
	}
}

// TestSlowBodyAnswered408: a body slower than the body read timeout is
// answered 408 with a problem, through the real server.
func TestSlowBodyAnswered408(t *testing.T) {
	e := edgeWith(t, "fast", func(c *ingest.Config) { c.BodyReadTimeout = 200 * time.Millisecond })
	addr := serve(t, e.svc)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/sync/ HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"record_id\":", benchKey)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a slow body: %v", err)
	}
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		t.Fatalf("%d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), raw)
	}
}

// TestHeadersTooLargeIsAProblem: a 431 written by net/http itself is a
// problem document too.
func TestHeadersTooLargeIsAProblem(t *testing.T) {
	e := edgeWith(t, "fast", func(c *ingest.Config) { c.MaxHeaderBytes = 4 << 10 })
	addr := serve(t, e.svc)
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/healthz", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 16<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var p map[string]any
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || resp.Header.Get("Content-Type") != "application/problem+json" ||
		json.Unmarshal(raw, &p) != nil || p["status"] != float64(431) {
		t.Fatalf("%d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), raw)
	}
}

// serve runs svc on a free port until the test ends.
func serve(t *testing.T, svc *ingest.Service) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return ln.Addr().String()
}

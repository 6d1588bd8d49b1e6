package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/fastjson"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/valid"
)

type syncInput struct {
	IdempotencyKey string `header:"Idempotency-Key" doc:"Used as event_id when the body has none" maxLength:"128"`
	RawBody        []byte `contentType:"application/json"`
}

// Accepted is the answer to an accepted event.
type Accepted struct {
	RecordID  string `json:"record_id"`
	EventID   string `json:"event_id"`
	Status    string `json:"status" enum:"accepted"`
	Duplicate bool   `json:"duplicate" doc:"The event was already accepted inside the duplicate window; it is processed once"`
	StatusURL string `json:"status_url" doc:"Where the record's status is read; its accepted receipt makes it read accepted (or later) from this answer on, on every replica"`
}

type syncOutput struct {
	Body Accepted
}

// prepare validates a decoded event and fills its defaults. prefix names
// its place in the body.
func (s *Service) prepare(ev *event.Event, prefix, idempotencyKey string) valid.Errors {
	errs := ev.Validate(prefix, s.limits())
	if idempotencyKey != "" {
		switch {
		case !event.ValidID(idempotencyKey):
			errs.Add("header.Idempotency-Key", event.IDRule, idempotencyKey)
		case ev.EventID != "" && ev.EventID != idempotencyKey:
			errs.Add("header.Idempotency-Key", "differs from body.event_id", idempotencyKey)
		default:
			ev.EventID = idempotencyKey
		}
	}
	if len(errs) > 0 {
		return errs
	}
	ev.Normalize(s.deps.Configs.DefaultTargets(), s.now())
	return nil
}

func (s *Service) limits() event.Limits {
	lim := s.cfg.Limits
	lim.Targets = s.deps.Registry.Names()
	return lim
}

// overBacklog returns a 503 with Retry-After when a target of ev has more
// pending work than its bound.
func (s *Service) overBacklog(targets []string) error {
	for _, t := range targets {
		tc, _ := s.deps.Configs.Get(t)
		if n := s.backlog.of(t); n > uint64(tc.MaxBacklog) {
			return huma.ErrorWithHeaders(
				huma.Error503ServiceUnavailable(fmt.Sprintf("the backlog of %s (%d pending) is past its bound of %d; retry later", t, n, tc.MaxBacklog)),
				http.Header{"Retry-After": {"5"}})
		}
	}
	return nil
}

// statusURL is where the status of ev's record is read, with the receipt
// of its acceptance (see accepted.go), so that it reads "accepted" until
// the status service records more.
func (s *Service) statusURL(ev *event.Event) string {
	return "/v1/sync/status/" + url.PathEscape(ev.RecordID) + "?accepted=" + s.receiptToken(ev, s.now())
}

// decodeEvent decodes and prepares the body of a single event; given says
// that the request gave the event's id (in the body or as its
// Idempotency-Key).
func (s *Service) decodeEvent(raw []byte, ev *event.Event, idempotencyKey string) (given bool, err error) {
	errs, err := decodeBody(raw, ev)
	if err != nil {
		return false, err
	}
	given = ev.EventID != "" || idempotencyKey != ""
	if len(errs) == 0 {
		errs = s.prepare(ev, "body", idempotencyKey)
	}
	if len(errs) > 0 {
		return false, validationProblem(errs)
	}
	return given, nil
}

func (s *Service) syncOne(ctx context.Context, in *syncInput) (*syncOutput, error) {
	var ev event.Event
	given, err := s.decodeEvent(in.RawBody, &ev, in.IdempotencyKey)
	if err != nil {
		return nil, err
	}
	if err := s.overBacklog(ev.Targets); err != nil {
		return nil, err
	}
	b, err := fastjson.MarshalNoEscape(&ev)
	if err != nil {
		return nil, huma.Error500InternalServerError("encode event")
	}
	if limit := s.maxMessage(); len(b) > limit {
		return nil, huma.Error413RequestEntityTooLarge(fmt.Sprintf("the event is %d bytes once encoded, more than the %d bytes a NATS message may hold here", len(b), limit))
	}
	var duplicate bool
	if s.gather != nil {
		res := s.gather.add(ctx, &gatherReq{ev: &ev, raw: b, trace: traceJSON(ctx), clientID: given})
		if res.err != nil {
			return nil, res.err
		}
		duplicate = res.duplicate
	} else {
		ack, err := s.publish(ctx, mesh.SubjectIn, ev.EventID, b, 1)
		if err != nil {
			return nil, err
		}
		duplicate = ack.Duplicate
	}
	s.accepted.Add(ctx, 1, metric.WithAttributes(attribute.String("endpoint", "single")))
	return &syncOutput{Body: Accepted{RecordID: ev.RecordID, EventID: ev.EventID, Status: "accepted", Duplicate: duplicate, StatusURL: s.statusURL(&ev)}}, nil
}

// traceJSON is the trace context of ctx as JSON, for a gathered message
// (nil when there is none).
func traceJSON(ctx context.Context) []byte {
	tc := mesh.TraceOf(ctx)
	if tc == nil {
		return nil
	}
	b, _ := fastjson.Marshal(tc)
	return b
}

// headerRoom is what a message's headers (message id, count, trace
// context) may take of NATS's max_payload, which counts them.
const headerRoom = 1 << 10

// maxMessage is the largest message body the edge publishes: NATS's
// max_payload, less room for the headers.
func (s *Service) maxMessage() int {
	limit := int(s.deps.NC.MaxPayload()) - headerRoom
	if s.cfg.MaxMessageBytes > 0 && s.cfg.MaxMessageBytes < limit {
		return s.cfg.MaxMessageBytes
	}
	return limit
}

// publish stores data, holding count events, on subject and returns once
// JetStream acknowledged it.
func (s *Service) publish(ctx context.Context, subject, msgID string, data []byte, count int) (*jetstream.PubAck, error) {
	if !s.deps.NC.IsConnected() {
		// Fail now rather than after the publish timeout: nothing is stored.
		return nil, huma.ErrorWithHeaders(huma.Error503ServiceUnavailable("NATS is unreachable; nothing was accepted, retry"),
			http.Header{"Retry-After": {"1"}})
	}
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(mesh.HeaderMsgID, msgID)
	m.Header.Set(mesh.HeaderCount, strconv.Itoa(count))
	mesh.InjectTrace(ctx, m.Header)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ack, err := s.deps.JS.PublishMsg(ctx, m)
	if errors.Is(err, nats.ErrMaxPayload) {
		// Permanent: the same body would be refused again.
		s.log.Error("publish_refused", "subject", subject, "bytes", len(data), "error", err.Error())
		return nil, huma.Error413RequestEntityTooLarge(fmt.Sprintf("the message is %d bytes, more than NATS accepts", len(data)))
	}
	if err != nil {
		s.log.Error("publish_failed", "subject", subject, "error", err.Error())
		return nil, huma.ErrorWithHeaders(huma.Error503ServiceUnavailable("the event could not be stored; nothing was accepted, retry"),
			http.Header{"Retry-After": {"1"}})
	}
	return ack, nil
}

type batchBody struct {
	Events []event.Event `json:"events" minItems:"1" maxItems:"500"`
}

// rawBatch is a batch whose events are decoded one by one, to tell which
// of them a decoding error belongs to.
type rawBatch struct {
	Events []json.RawMessage `json:"events"`
}

type batchInput struct {
	RawBody []byte `contentType:"application/json"`
}

// BatchResult is the outcome of one event of a batch.
type BatchResult struct {
	Index     int              `json:"index"`
	RecordID  string           `json:"record_id"`
	EventID   string           `json:"event_id,omitempty"`
	Status    string           `json:"status" enum:"accepted,error"`
	Duplicate bool             `json:"duplicate,omitempty"`
	StatusURL string           `json:"status_url,omitempty" doc:"Where the accepted event's record status is read"`
	Error     *huma.ErrorModel `json:"error,omitempty"`
}

type batchOutput struct {
	Status int
	Body   struct {
		Results []BatchResult `json:"results"`
	}
}

// BatchProblem is the answer to a batch of which no event was accepted: a
// problem whose errors name every bad field, with the result of each event.
type BatchProblem struct {
	// Schema is the link Huma writes on every answer of its error type.
	Schema string `json:"$schema,omitempty" format:"uri" readOnly:"true" doc:"A URL to the JSON Schema for this object."`
	huma.ErrorModel
	Results []BatchResult `json:"results,omitempty" doc:"The outcome of each event, in the order sent (absent when the batch as a whole was refused)"`
}

// decodeBatch decodes a batch body. The events of a body that decodes
// whole are checked against event.CheckJSON's errors; when it does not,
// each event is decoded alone, so that a wrong type refuses its event
// only. bad holds the field errors of each refused event by index.
func decodeBatch(raw []byte) (events []event.Event, bad map[int]valid.Errors, err error) {
	var body batchBody
	errs, err := decodeBody(raw, &body)
	if err != nil {
		return nil, nil, err
	}
	bad = map[int]valid.Errors{}
	var whole valid.Errors
	for _, e := range errs {
		if i, ok := eventIndex(e.Location); ok {
			bad[i] = append(bad[i], e)
		} else {
			whole = append(whole, e)
		}
	}
	if len(whole) == 0 {
		return body.Events, bad, nil
	}
	// What the body itself holds wrong ("Events", a second "events")
	// refuses the batch whole.
	var top valid.Errors
	for _, e := range event.CheckJSON(raw, "body") {
		if _, ok := eventIndex(e.Location); !ok {
			top = append(top, e)
		}
	}
	if len(top) > 0 {
		return nil, nil, validationProblem(top)
	}
	// A decoding error that names no event: decode the events one by one.
	var rb rawBatch
	if derr := fastjson.DecodeStrict(raw, &rb); derr != nil {
		fe, ok := fieldError(derr, "body")
		if !ok {
			return nil, nil, huma.Error400BadRequest("body is not valid JSON", &huma.ErrorDetail{Location: "body", Message: derr.Error()})
		}
		return nil, nil, validationProblem(valid.Errors{fe})
	}
	events = make([]event.Event, len(rb.Events))
	for i, r := range rb.Events {
		prefix := "body.events[" + strconv.Itoa(i) + "]"
		if derr := fastjson.DecodeStrict(r, &events[i]); derr != nil {
			fe, ok := fieldError(derr, prefix)
			if !ok {
				fe = valid.FieldError{Location: prefix, Message: derr.Error()}
			}
			bad[i] = append(bad[i], fe)
		}
	}
	return events, bad, nil
}

// eventIndex returns i of a location under body.events[i].
func eventIndex(loc string) (int, bool) {
	rest, ok := strings.CutPrefix(loc, "body.events[")
	if !ok {
		return 0, false
	}
	end := strings.IndexByte(rest, ']')
	if end < 0 {
		return 0, false
	}
	i, err := strconv.Atoi(rest[:end])
	return i, err == nil
}

func (s *Service) syncBatch(ctx context.Context, in *batchInput) (*batchOutput, error) {
	events, bad, err := decodeBatch(in.RawBody)
	if err != nil {
		return nil, err
	}
	if len(events) == 0 || len(events) > s.cfg.MaxBatch {
		return nil, validationProblem(valid.Errors{{Location: "body.events", Message: fmt.Sprintf("must hold 1 to %d events", s.cfg.MaxBatch), Value: len(events)}})
	}
	results := make([]BatchResult, len(events))
	var ok []event.Event
	var okIdx []int
	targets := map[string]bool{}
	for i := range events {
		ev := &events[i]
		results[i] = BatchResult{Index: i, RecordID: ev.RecordID}
		errs := bad[i]
		if len(errs) == 0 {
			errs = s.prepare(ev, "body.events["+strconv.Itoa(i)+"]", "")
		}
		if len(errs) > 0 {
			results[i].Status = "error"
			results[i].Error = &huma.ErrorModel{Title: http.StatusText(http.StatusUnprocessableEntity), Status: http.StatusUnprocessableEntity, Detail: "validation failed"}
			for _, e := range errs {
				results[i].Error.Errors = append(results[i].Error.Errors, &huma.ErrorDetail{Location: e.Location, Message: e.Message, Value: e.Value})
			}
			continue
		}
		for _, t := range ev.Targets {
			targets[t] = true
		}
		ok = append(ok, *ev)
		okIdx = append(okIdx, i)
	}
	if len(ok) > 0 {
		if err := s.overBacklog(keys(targets)); err != nil {
			return nil, err
		}
		outcomes := s.publishBatch(ctx, ok)
		accepted := 0
		for j, i := range okIdx {
			o := outcomes[j]
			if o.err != nil {
				results[i].Status = "error"
				results[i].Error = o.err
				continue
			}
			accepted++
			results[i].EventID, results[i].Status, results[i].Duplicate = ok[j].EventID, "accepted", o.duplicate
			results[i].StatusURL = s.statusURL(&ok[j])
		}
		s.accepted.Add(ctx, int64(accepted), metric.WithAttributes(attribute.String("endpoint", "batch")))
	}
	return batchAnswer(results)
}

// batchAnswer is 202 when every event was accepted, 207 when some were;
// when none was, the status all the refusals share (422 when they differ,
// or 207 when some could be retried and some not), with a problem body.
func batchAnswer(results []BatchResult) (*batchOutput, error) {
	out := &batchOutput{Status: http.StatusAccepted}
	out.Body.Results = results
	accepted, status := 0, 0
	var details []*huma.ErrorDetail
	for _, r := range results {
		if r.Status == "accepted" {
			accepted++
			continue
		}
		switch {
		case status == 0:
			status = r.Error.Status
		case status != r.Error.Status:
			status = -1
		}
		details = append(details, r.Error.Errors...)
	}
	switch {
	case accepted == len(results):
		return out, nil
	case accepted > 0:
		out.Status = http.StatusMultiStatus
		return out, nil
	}
	var hdr http.Header
	switch status {
	case http.StatusServiceUnavailable:
		hdr = http.Header{"Retry-After": {"1"}}
	case -1:
		for _, r := range results {
			if r.Error.Status == http.StatusServiceUnavailable {
				out.Status = http.StatusMultiStatus
				return out, nil
			}
		}
		status = http.StatusUnprocessableEntity
	}
	p := &BatchProblem{Results: results}
	p.Title, p.Status, p.Detail = http.StatusText(status), status, "no event of the batch was accepted; see results"
	p.Errors = details
	if hdr != nil {
		return nil, huma.ErrorWithHeaders(p, hdr)
	}
	return nil, p
}

// outcome is what became of one event of a batch when published.
type outcome struct {
	duplicate bool
	err       *huma.ErrorModel
}

// publishBatch stores the accepted events of a batch: as one message when
// it fits in what NATS takes, else in as few messages as fit, in order.
// The split depends only on the events, so a batch sent again splits the
// same way and each part is recognised as a duplicate. An event too large
// for a message on its own is refused with a 413.
func (s *Service) publishBatch(ctx context.Context, events []event.Event) []outcome {
	out := make([]outcome, len(events))
	limit := s.maxMessage()
	b, err := fastjson.MarshalNoEscape(mesh.Batch{Events: events})
	if err != nil {
		return fill(out, 0, len(events), problemOf(huma.Error500InternalServerError("encode batch")))
	}
	if len(b) <= limit {
		s.publishPart(ctx, b, events, out, 0)
		return out
	}
	const frame = len(`{"events":[]}`)
	start, size := 0, frame
	var parts [][]byte
	flush := func(end int) {
		if end > start {
			body := append(append([]byte(`{"events":[`), bytes.Join(parts, []byte(","))...), ']', '}')
			s.publishPart(ctx, body, events[start:end], out, start)
		}
		start, size, parts = end, frame, parts[:0]
	}
	for i := range events {
		eb, err := fastjson.MarshalNoEscape(&events[i])
		if err != nil {
			flush(i)
			out[i].err = problemOf(huma.Error500InternalServerError("encode event"))
			start = i + 1
			continue
		}
		if frame+len(eb) > limit {
			flush(i)
			out[i].err = problemOf(huma.Error413RequestEntityTooLarge(fmt.Sprintf("the event is %d bytes once encoded, more than the %d bytes a NATS message may hold here", len(eb), limit-frame)))
			start = i + 1
			continue
		}
		if size+len(eb)+1 > limit {
			flush(i)
		}
		parts = append(parts, eb)
		size += len(eb) + 1
	}
	flush(len(events))
	return out
}

// publishPart publishes the encoded events b, the events of out from at on.
func (s *Service) publishPart(ctx context.Context, b []byte, events []event.Event, out []outcome, at int) {
	ack, err := s.publish(ctx, mesh.SubjectInBatch, batchID(events), b, len(events))
	if err != nil {
		fill(out, at, at+len(events), problemOf(err))
		return
	}
	for i := at; i < at+len(events); i++ {
		out[i].duplicate = ack.Duplicate
	}
}

func fill(out []outcome, from, to int, p *huma.ErrorModel) []outcome {
	for i := from; i < to; i++ {
		out[i].err = p
	}
	return out
}

// problemOf is the problem body of an error of the edge.
func problemOf(err error) *huma.ErrorModel {
	var m *huma.ErrorModel
	if errors.As(err, &m) {
		return m
	}
	return &huma.ErrorModel{Title: http.StatusText(http.StatusInternalServerError), Status: http.StatusInternalServerError, Detail: err.Error()}
}

// batchID is the deduplication id of a batch: the hash of its event ids, so
// that a client resending the same batch is answered duplicate.
func batchID(events []event.Event) string {
	h := sha256.New()
	for _, ev := range events {
		h.Write([]byte(ev.EventID))
		h.Write([]byte{0})
	}
	return "batch:" + hex.EncodeToString(h.Sum(nil)[:16])
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

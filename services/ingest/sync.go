package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
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
	StatusURL string `json:"status_url"`
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
			errs.Add("header.Idempotency-Key", "must be 1-128 of A-Z a-z 0-9 . _ : @ -", idempotencyKey)
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

func (s *Service) statusURL(recordID string) string {
	return "/v1/sync/status/" + url.PathEscape(recordID)
}

func (s *Service) syncOne(ctx context.Context, in *syncInput) (*syncOutput, error) {
	var ev event.Event
	if err := decodeBody(in.RawBody, &ev); err != nil {
		return nil, err
	}
	if errs := s.prepare(&ev, "body", in.IdempotencyKey); len(errs) > 0 {
		return nil, validationProblem(errs)
	}
	if err := s.overBacklog(ev.Targets); err != nil {
		return nil, err
	}
	ack, err := s.publish(ctx, mesh.SubjectIn, ev.EventID, &ev, 1)
	if err != nil {
		return nil, err
	}
	s.accepted.Add(ctx, 1, metric.WithAttributes(attribute.String("endpoint", "single")))
	return &syncOutput{Body: Accepted{RecordID: ev.RecordID, EventID: ev.EventID, Status: "accepted", Duplicate: ack.Duplicate, StatusURL: s.statusURL(ev.RecordID)}}, nil
}

// publish stores v, holding count events, on subject and returns once
// JetStream acknowledged it.
func (s *Service) publish(ctx context.Context, subject, msgID string, v any, count int) (*jetstream.PubAck, error) {
	if !s.deps.NC.IsConnected() {
		// Fail now rather than after the publish timeout: nothing is stored.
		return nil, huma.ErrorWithHeaders(huma.Error503ServiceUnavailable("NATS is unreachable; nothing was accepted, retry"),
			http.Header{"Retry-After": {"1"}})
	}
	b, err := fastjson.Marshal(v)
	if err != nil {
		return nil, huma.Error500InternalServerError("encode event")
	}
	m := nats.NewMsg(subject)
	m.Data = b
	m.Header.Set(mesh.HeaderMsgID, msgID)
	m.Header.Set(mesh.HeaderCount, strconv.Itoa(count))
	mesh.InjectTrace(ctx, m.Header)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ack, err := s.deps.JS.PublishMsg(ctx, m)
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
	Error     *huma.ErrorModel `json:"error,omitempty"`
}

type batchOutput struct {
	Status int
	Body   struct {
		Results []BatchResult `json:"results"`
	}
}

func (s *Service) syncBatch(ctx context.Context, in *batchInput) (*batchOutput, error) {
	var body batchBody
	if err := decodeBody(in.RawBody, &body); err != nil {
		return nil, err
	}
	if len(body.Events) == 0 || len(body.Events) > s.cfg.MaxBatch {
		return nil, validationProblem(valid.Errors{{Location: "body.events", Message: fmt.Sprintf("must hold 1 to %d events", s.cfg.MaxBatch), Value: len(body.Events)}})
	}
	out := &batchOutput{Status: http.StatusAccepted}
	results := make([]BatchResult, len(body.Events))
	var ok []event.Event
	var okIdx []int
	targets := map[string]bool{}
	for i := range body.Events {
		ev := &body.Events[i]
		results[i] = BatchResult{Index: i, RecordID: ev.RecordID}
		if errs := s.prepare(ev, "body.events["+strconv.Itoa(i)+"]", ""); len(errs) > 0 {
			results[i].Status = "error"
			results[i].Error = &huma.ErrorModel{Title: "Unprocessable Entity", Status: http.StatusUnprocessableEntity, Detail: "validation failed"}
			for _, e := range errs {
				results[i].Error.Errors = append(results[i].Error.Errors, &huma.ErrorDetail{Location: e.Location, Message: e.Message, Value: e.Value})
			}
			out.Status = http.StatusMultiStatus
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
		ack, err := s.publish(ctx, mesh.SubjectInBatch, batchID(ok), mesh.Batch{Events: ok}, len(ok))
		if err != nil {
			return nil, err
		}
		s.accepted.Add(ctx, int64(len(ok)), metric.WithAttributes(attribute.String("endpoint", "batch")))
		for j, i := range okIdx {
			results[i].EventID = ok[j].EventID
			results[i].Status = "accepted"
			results[i].Duplicate = ack.Duplicate
		}
	}
	out.Body.Results = results
	return out, nil
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

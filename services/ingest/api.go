package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/fastjson"
	"github.com/recordsync/record-sync/shared/valid"
)

// register adds every operation of the contract to the API.
func (s *Service) register() {
	sync := []map[string][]string{{"apiKey": {}}}
	syncOp := func(op huma.Operation) huma.Operation {
		op.Security = sync
		op.Metadata = map[string]any{"role": roleSync}
		return op
	}
	adminOp := func(op huma.Operation) huma.Operation {
		op.Security = sync
		op.Metadata = map[string]any{"role": roleAdmin}
		op.Tags = []string{"admin"}
		return op
	}
	huma.Register(s.api, syncOp(huma.Operation{
		OperationID: "sync-event", Method: http.MethodPost, Path: "/v1/sync/",
		Summary:       "Submit one event",
		Description:   "Validates the event and answers 202 once JetStream has stored it. The same event_id (or Idempotency-Key) inside the duplicate window is answered 202 with duplicate: true and processed once.",
		DefaultStatus: http.StatusAccepted, MaxBodyBytes: s.cfg.MaxBodyBytes, Tags: []string{"sync"}, SkipValidateBody: true,
		Errors: []int{http.StatusUnauthorized, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity, http.StatusServiceUnavailable},
	}), s.syncOne)
	s.documentRawBody("/v1/sync/", reflect.TypeFor[event.Event]())

	huma.Register(s.api, syncOp(huma.Operation{
		OperationID: "sync-batch", Method: http.MethodPost, Path: "/v1/sync/batch",
		Summary:       "Submit up to 500 events",
		Description:   "Answers 202 when every event was accepted, else 207 with a result per event. Accepted events travel as one message, so they share one store write.",
		DefaultStatus: http.StatusAccepted, MaxBodyBytes: s.cfg.MaxBatchBodyBytes, Tags: []string{"sync"}, SkipValidateBody: true,
		Errors: []int{http.StatusUnauthorized, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity, http.StatusServiceUnavailable},
	}), s.syncBatch)
	s.documentRawBody("/v1/sync/batch", reflect.TypeFor[batchBody]())

	huma.Register(s.api, syncOp(huma.Operation{
		OperationID: "get-status", Method: http.MethodGet, Path: "/v1/sync/status/{record_id}",
		Summary: "Status of a record per target", Tags: []string{"sync"},
		Errors: []int{http.StatusUnauthorized, http.StatusNotFound},
	}), s.getStatus)

	huma.Register(s.api, syncOp(huma.Operation{
		OperationID: "stats", Method: http.MethodGet, Path: "/v1/sync/stats",
		Summary:     "Counts per target: events accepted, superseded, records per state",
		Description: "accepted = superseded + the records in each state + in_flight (0 at rest).",
		Tags:        []string{"sync"}, Errors: []int{http.StatusUnauthorized},
	}), s.stats)

	huma.Register(s.api, syncOp(huma.Operation{
		OperationID: "retry-record", Method: http.MethodPost, Path: "/v1/sync/retry/{record_id}",
		Summary:       "Re-enqueue a failed record",
		Description:   "Re-enqueues the dead-lettered event of the record for each failed target (or the one named) with its attempts reset.",
		DefaultStatus: http.StatusAccepted, Tags: []string{"sync"},
		Errors: []int{http.StatusUnauthorized, http.StatusNotFound, http.StatusConflict},
	}), s.retry)

	huma.Register(s.api, syncOp(huma.Operation{
		OperationID: "preview", Method: http.MethodPost, Path: "/v1/sync/preview",
		Summary:      "Dry run: rule decision and CRM payload per target",
		Description:  "Takes the body of POST /v1/sync/; nothing is enqueued or recorded.",
		MaxBodyBytes: s.cfg.MaxBodyBytes, Tags: []string{"sync"}, SkipValidateBody: true,
		Errors: []int{http.StatusUnauthorized, http.StatusUnprocessableEntity},
	}), s.preview)
	s.documentRawBody("/v1/sync/preview", reflect.TypeFor[event.Event]())

	huma.Register(s.api, adminOp(huma.Operation{
		OperationID: "get-rules", Method: http.MethodGet, Path: "/v1/sync/rules",
		Summary: "Read the rule set and its revision",
		Errors:  []int{http.StatusUnauthorized, http.StatusForbidden},
	}), s.getRules)
	huma.Register(s.api, adminOp(huma.Operation{
		OperationID: "put-rules", Method: http.MethodPost, Path: "/v1/sync/rules",
		Summary:     "Replace the rule set",
		Description: "Validates and compiles the whole set before storing it. Give the revision it replaces in If-Match or in the body; a stale revision is a 409.",
		Errors:      []int{http.StatusUnauthorized, http.StatusForbidden, http.StatusConflict, http.StatusUnprocessableEntity},
	}), s.putRules)
	huma.Register(s.api, adminOp(huma.Operation{
		OperationID: "list-mappings", Method: http.MethodGet, Path: "/v1/sync/mappings",
		Summary: "Field mappings of every target and object type",
		Errors:  []int{http.StatusUnauthorized, http.StatusForbidden},
	}), s.listMappings)
	huma.Register(s.api, adminOp(huma.Operation{
		OperationID: "get-mapping", Method: http.MethodGet, Path: "/v1/sync/mappings/{target}/{object_type}",
		Summary: "The field mapping of a target and object type, and its revision",
		Errors:  []int{http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound},
	}), s.getMapping)
	huma.Register(s.api, adminOp(huma.Operation{
		OperationID: "put-mapping", Method: http.MethodPost, Path: "/v1/sync/mappings/{target}/{object_type}",
		Summary:     "Replace the field mapping of a target and object type",
		Description: "Validated against the fields the CRM accepts before it is stored; applies to the next push. Give the revision replaced (0 when none is stored) in If-Match or the body.",
		Errors:      []int{http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusConflict, http.StatusUnprocessableEntity},
	}), s.putMapping)
	huma.Register(s.api, adminOp(huma.Operation{
		OperationID: "list-dead-letters", Method: http.MethodGet, Path: "/v1/sync/dlq",
		Summary: "The latest dead letter of each failed record of a target",
		Errors:  []int{http.StatusUnauthorized, http.StatusForbidden, http.StatusUnprocessableEntity},
	}), s.listDLQ)
	huma.Register(s.api, adminOp(huma.Operation{
		OperationID: "replay-dead-letters", Method: http.MethodPost, Path: "/v1/sync/dlq/replay",
		Summary:     "Re-enqueue dead letters in bulk by target, error code and time range",
		Description: "Each record whose status still shows its dead-lettered failure is re-enqueued with its attempts reset; dry_run counts without re-enqueuing. A replayed record that fails again is dead-lettered again with its new reason.",
		Errors:      []int{http.StatusUnauthorized, http.StatusForbidden, http.StatusUnprocessableEntity},
	}), s.replayDLQ)
	huma.Register(s.api, adminOp(huma.Operation{
		OperationID: "get-log-level", Method: http.MethodGet, Path: "/v1/sync/log-level",
		Summary: "The process's log level",
		Errors:  []int{http.StatusUnauthorized, http.StatusForbidden},
	}), s.getLogLevel)
	huma.Register(s.api, adminOp(huma.Operation{
		OperationID: "put-log-level", Method: http.MethodPut, Path: "/v1/sync/log-level",
		Summary: "Change the process's log level at runtime",
		Errors:  []int{http.StatusUnauthorized, http.StatusForbidden, http.StatusUnprocessableEntity},
	}), s.putLogLevel)
	huma.Register(s.api, adminOp(huma.Operation{
		OperationID: "get-config", Method: http.MethodGet, Path: "/v1/sync/config",
		Summary: "Effective configuration per target",
		Errors:  []int{http.StatusUnauthorized, http.StatusForbidden},
	}), s.getConfig)
	huma.Register(s.api, adminOp(huma.Operation{
		OperationID: "config-override", Method: http.MethodPost, Path: "/v1/sync/config-override",
		Summary:     "Change a target's configuration at runtime",
		Description: "Takes a partial configuration; applied to the next batch in every pusher. Answers with the effective configuration.",
		Errors:      []int{http.StatusUnauthorized, http.StatusForbidden, http.StatusUnprocessableEntity},
	}), s.configOverride)

	huma.Register(s.api, huma.Operation{
		OperationID: "healthz", Method: http.MethodGet, Path: "/healthz",
		Summary: "Liveness: the process answers", Tags: []string{"health"},
	}, s.healthz)
	huma.Register(s.api, huma.Operation{
		OperationID: "readyz", Method: http.MethodGet, Path: "/readyz",
		Summary: "Readiness: NATS and JetStream reachable; notes what an operator should know",
		Tags:    []string{"health"}, Errors: []int{http.StatusServiceUnavailable},
	}, s.readyz)
}

// documentRawBody replaces the binary schema Huma gives a RawBody input with
// the schema of t, so the OpenAPI description shows the real body while the
// handler decodes it once, strictly, and validates it with the same code the
// rules service runs on sync.in (hence SkipValidateBody on these
// operations).
func (s *Service) documentRawBody(path string, t reflect.Type) {
	op := s.api.OpenAPI().Paths[path].Post
	schema := s.api.OpenAPI().Components.Schemas.Schema(t, true, "")
	op.RequestBody.Required = true
	op.RequestBody.Content = map[string]*huma.MediaType{"application/json": {Schema: schema}}
}

// decodeBody decodes a JSON body strictly: a syntax error is a 400, an
// unknown field or a wrong type a 422 naming the field.
func decodeBody(raw []byte, v any) error {
	if len(raw) == 0 {
		return huma.Error400BadRequest("request body is required")
	}
	// A body fastjson refuses is decoded again by encoding/json, whose
	// error types the cases below read.
	err := fastjson.DecodeStrict(raw, v)
	if err == nil {
		return nil
	}
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return huma.Error400BadRequest("body is not valid JSON", &huma.ErrorDetail{Location: "body", Message: err.Error()})
	case errors.As(err, &typ):
		loc := "body"
		if typ.Field != "" {
			loc += "." + typ.Field
		}
		return huma.Error422UnprocessableEntity("validation failed", &huma.ErrorDetail{Location: loc, Message: "expected " + typ.Type.String() + ", got " + typ.Value})
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return huma.Error422UnprocessableEntity("validation failed", &huma.ErrorDetail{Location: "body." + name, Message: "unknown field"})
	}
	return huma.Error400BadRequest("body could not be read", &huma.ErrorDetail{Location: "body", Message: err.Error()})
}

// problemDetails converts field errors to Huma's problem details.
func problemDetails(errs valid.Errors) []error {
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = &huma.ErrorDetail{Location: e.Location, Message: e.Message, Value: e.Value}
	}
	return out
}

// validationProblem is the 422 for errs.
func validationProblem(errs valid.Errors) error {
	return huma.Error422UnprocessableEntity("validation failed", problemDetails(errs)...)
}

// healthOutput is the body of /healthz and /readyz.
type healthOutput struct {
	Body struct {
		Status string   `json:"status" enum:"ok,ready,not_ready"`
		Notes  []string `json:"notes,omitempty" doc:"What an operator should know; does not fail readiness"`
	}
}

func (s *Service) healthz(context.Context, *struct{}) (*healthOutput, error) {
	out := &healthOutput{}
	out.Body.Status = "ok"
	return out, nil
}

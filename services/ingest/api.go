package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"time"

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
		DefaultStatus: http.StatusAccepted, MaxBodyBytes: s.cfg.MaxBodyBytes, BodyReadTimeout: s.cfg.BodyReadTimeout, Tags: []string{"sync"}, SkipValidateBody: true,
		Errors: []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusRequestTimeout, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity, http.StatusServiceUnavailable},
	}), s.syncOne)
	s.documentRawBody("/v1/sync/", reflect.TypeFor[event.Event]())

	huma.Register(s.api, syncOp(huma.Operation{
		OperationID: "sync-batch", Method: http.MethodPost, Path: "/v1/sync/batch",
		Summary:       "Submit up to 500 events",
		Description:   "Answers 202 when every event was accepted, else 207 with a result per event. Accepted events travel as one message, so they share one store write.",
		DefaultStatus: http.StatusAccepted, MaxBodyBytes: s.cfg.MaxBatchBodyBytes, BodyReadTimeout: s.cfg.BatchBodyReadTimeout, Tags: []string{"sync"}, SkipValidateBody: true,
		Errors: []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusRequestTimeout, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity, http.StatusServiceUnavailable},
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
		MaxBodyBytes: s.cfg.MaxBodyBytes, BodyReadTimeout: s.cfg.BodyReadTimeout, Tags: []string{"sync"}, SkipValidateBody: true,
		Errors: []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusRequestTimeout, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity},
	}), s.preview)
	s.documentRawBody("/v1/sync/preview", reflect.TypeFor[event.Event]())

	huma.Register(s.api, syncOp(huma.Operation{
		OperationID: "get-remote", Method: http.MethodGet, Path: "/v1/sync/records/{record_id}/remote",
		Summary:     "What the CRM holds now for a record, what was last pushed, and the fields that differ",
		Description: "Reads the record back from the target's CRM (within its rate limit, shared with the pushers) and compares it with the event last pushed there, mapped with the mapping in force.",
		Tags:        []string{"sync"},
		Errors:      []int{http.StatusUnauthorized, http.StatusNotFound, http.StatusUnprocessableEntity, http.StatusNotImplemented, http.StatusServiceUnavailable},
	}), s.remote)

	huma.Register(s.api, adminOp(huma.Operation{
		OperationID: "verify", Method: http.MethodPost, Path: "/v1/sync/verify",
		Summary:     "Read back the records synced to a target and report drift (recordsync verify)",
		Description: "Walks KV sync_status for the records synced to the target (changed within since; a random sample of sample), reads them back from the CRM in batches within its rate limit (shared with the pushers), and streams application/x-ndjson lines: progress after each batch, one drift line per record missing in the CRM or differing from what was last pushed, and a summary. With repair, each drifted record's last pushed event is re-enqueued.",
		Errors:      []int{http.StatusUnauthorized, http.StatusForbidden, http.StatusUnprocessableEntity, http.StatusNotImplemented},
	}), s.verify)
	huma.Register(s.api, adminOp(huma.Operation{
		OperationID: "get-rules", Method: http.MethodGet, Path: "/v1/sync/rules",
		Summary: "Read the rule set and its revision",
		Errors:  []int{http.StatusUnauthorized, http.StatusForbidden},
	}), s.getRules)
	huma.Register(s.api, adminOp(huma.Operation{
		OperationID: "put-rules", Method: http.MethodPost, Path: "/v1/sync/rules",
		Summary:     "Replace the rule set",
		Description: "Validates and compiles the whole set before storing it. Give the revision it replaces in If-Match or in the body; a stale revision is a 409.",
		Errors:      []int{http.StatusUnauthorized, http.StatusForbidden, http.StatusConflict, http.StatusUnprocessableEntity, http.StatusPreconditionRequired},
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
		Errors:      []int{http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusConflict, http.StatusUnprocessableEntity, http.StatusPreconditionRequired},
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

// decodeBody decodes a JSON body of events strictly into v, checking first
// what decoders would accept silently (event.CheckJSON). It returns the
// field errors found (unknown fields, wrong types, invalid text, duplicate
// keys: a 422), or a 400 when the body is not JSON at all.
func decodeBody(raw []byte, v any) (valid.Errors, error) {
	if len(raw) == 0 {
		return nil, huma.Error400BadRequest("request body is required", &huma.ErrorDetail{Location: "body", Message: "is empty"})
	}
	errs := event.CheckJSON(raw, "body")
	if err := fastjson.DecodeStrict(raw, v); err != nil {
		fe, ok := fieldError(err, "body")
		var syn *json.SyntaxError
		if !ok && len(errs) > 0 && !errors.As(err, &syn) {
			// JSON, but not what the decoder takes, for the reasons found.
			return errs, nil
		}
		if !ok {
			return nil, huma.Error400BadRequest("body is not valid JSON", &huma.ErrorDetail{Location: "body", Message: err.Error()})
		}
		errs = append(errs, fe)
	}
	return errs, nil
}

// fieldError words a decoding error as the error of a field under prefix;
// false when the document is not JSON.
func fieldError(err error, prefix string) (valid.FieldError, bool) {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return valid.FieldError{}, false
	case errors.As(err, &typ):
		loc := prefix
		if typ.Field != "" {
			loc += "." + typ.Field
		}
		return valid.FieldError{Location: loc, Message: "expected " + jsonType(typ.Type) + ", got " + typ.Value}, true
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return valid.FieldError{Location: prefix + "." + name, Message: "unknown field"}, true
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return valid.FieldError{}, false
	}
	var perr *time.ParseError
	if errors.As(err, &perr) {
		return valid.FieldError{Location: prefix + ".occurred_at", Message: "must be an RFC 3339 time"}, true
	}
	return valid.FieldError{}, false
}

// jsonType names a Go type as the JSON type it decodes from.
func jsonType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		if t == reflect.TypeFor[time.Time]() {
			return "an RFC 3339 time string"
		}
		return "object"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	}
	return "a JSON value"
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

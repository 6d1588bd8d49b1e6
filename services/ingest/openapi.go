package ingest

import (
	"net/http"
	"reflect"
	"slices"
	"strconv"

	"github.com/danielgtaylor/huma/v2"
)

// descriptions of the operations whose registration gives none.
var descriptions = map[string]string{
	"get-status":        "The record's state per target (accepted, queued, skipped_by_rule, retrying, synced, failed), the event it belongs to, attempts, the last error, the CRM's id and the last transitions. With the accepted receipt of a status_url, an event accepted but not yet recorded reads accepted.",
	"get-rules":         "The rule set in force, with the revision to give back when replacing it; problem says why a stored set is not the one in force.",
	"list-mappings":     "Every target's field mapping per object type, with its revision.",
	"get-mapping":       "One target's field mapping for one object type, with the revision to give back when replacing it.",
	"list-dead-letters": "The latest dead letter of each record whose status still shows that failure, by target (every target when none is named), error code and time range.",
	"get-log-level":     "The log level of this process.",
	"put-log-level":     "Changes the log level of this process at once, until it restarts.",
	"get-config":        "The configuration in force for every target: defaults with the runtime overrides applied.",
	"healthz":           "Answers 200 while the process runs; it checks nothing else.",
	"readyz":            "Answers 200 when NATS and JetStream answer, else 503 with the reason; notes say what an operator should know without failing readiness.",
}

// finishOpenAPI completes the description Huma derives from the
// operations: every status an operation can answer, with its body; the
// batch's 207; nullable fields; servers, tags, licence; security: [] on
// the public operations.
func (s *Service) finishOpenAPI() {
	o := s.api.OpenAPI()
	o.Info.License = &huma.License{Name: "Proprietary: internal to System A's owner; no licence is granted", Identifier: "LicenseRef-Proprietary"}
	o.Info.Contact = &huma.Contact{Name: "record-sync maintainers"}
	o.Servers = []*huma.Server{{URL: "http://127.0.0.1:8080", Description: "recordsync dev on its default RECORDSYNC_HTTP_ADDR"}}
	o.Tags = []*huma.Tag{
		{Name: "sync", Description: "Submit events and follow records: System A's sync key (RECORDSYNC_API_KEYS) or an admin key."},
		{Name: "admin", Description: "Rules, mappings, configuration, dead letters, log level: an admin key (RECORDSYNC_ADMIN_KEYS)."},
		{Name: "health", Description: "Liveness and readiness, without a key."},
	}
	registry := o.Components.Schemas
	problem := registry.Schema(reflect.TypeFor[huma.ErrorModel](), true, "")
	batchProblem := registry.Schema(reflect.TypeFor[BatchProblem](), true, "")
	// last_error is null when there is none: the schema says so.
	if st := registry.Map()["StatusTarget"]; st != nil {
		if le := st.Properties["last_error"]; le != nil && le.Ref != "" {
			st.Properties["last_error"] = &huma.Schema{
				Description: "Why the record is retrying or failed; null when it is neither",
				OneOf:       []*huma.Schema{{Ref: le.Ref}, {Type: "null"}},
			}
		}
	}
	for _, item := range o.Paths {
		for _, op := range []*huma.Operation{item.Get, item.Post, item.Put} {
			if op == nil {
				continue
			}
			if op.Description == "" {
				op.Description = descriptions[op.OperationID]
			}
			role, _ := op.Metadata["role"].(string)
			codes := []int{http.StatusServiceUnavailable}
			if op.OperationID == "healthz" {
				codes = nil
			}
			if role == "" {
				op.Security = []map[string][]string{}
			} else {
				codes = append(codes, http.StatusUnauthorized)
			}
			if role == roleAdmin {
				codes = append(codes, http.StatusForbidden)
			}
			if op.RequestBody != nil {
				codes = append(codes, http.StatusBadRequest, http.StatusRequestTimeout, http.StatusRequestEntityTooLarge,
					http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity)
			}
			for _, c := range codes {
				key := strconv.Itoa(c)
				if op.Responses[key] == nil {
					op.Responses[key] = &huma.Response{Description: http.StatusText(c),
						Content: map[string]*huma.MediaType{"application/problem+json": {Schema: problem}}}
				}
			}
			if op.OperationID == "sync-batch" {
				ok := op.Responses[strconv.Itoa(http.StatusAccepted)]
				op.Responses[strconv.Itoa(http.StatusMultiStatus)] = &huma.Response{
					Description: "Some events were accepted, some not: the result of each, in the order sent",
					Content:     ok.Content,
				}
				for _, c := range []int{http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity, http.StatusServiceUnavailable} {
					op.Responses[strconv.Itoa(c)].Content = map[string]*huma.MediaType{"application/problem+json": {Schema: batchProblem}}
					op.Responses[strconv.Itoa(c)].Description = http.StatusText(c) + ": no event was accepted; results, when present, say why for each"
				}
			}
			for key, r := range op.Responses {
				if r.Description == "" || r.Description == "Error" {
					if c, err := strconv.Atoi(key); err == nil {
						r.Description = http.StatusText(c)
					}
				}
			}
			if len(op.Tags) == 0 {
				op.Tags = []string{"sync"}
			}
			slices.Sort(op.Tags)
		}
	}
}

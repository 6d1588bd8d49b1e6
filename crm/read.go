package crm

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Reader is implemented by plugins that can read records back from their
// CRM: the remote view of a record (GET /v1/sync/records/{id}/remote) and
// drift checks (recordsync verify) use it. A plugin without it still
// pushes; those two say the target cannot be read.
//
// Read returns what the CRM holds now for each of keys, in order, with
// Found false for a record it does not hold (never written, deleted,
// archived). Each key names a record as Push's records do: by CRMID when
// set, else by Identity; its Event gives the object type (nil: contact).
// keys holds at most MaxRead records. Every request goes through
// Conn.Call with a permit of ep.Permits, so reads share the pushers' rate
// limit. A failure of the whole read is a *ReadError. Safe for concurrent
// use, as Push is.
type Reader interface {
	// MaxRead is the most records one Read may carry.
	MaxRead() int
	Read(ctx context.Context, ep Endpoint, keys []Record) ([]Remote, error)
}

// Remote is what the CRM holds for one record.
type Remote struct {
	// Found is false when the CRM holds no such record.
	Found bool `json:"found"`
	// CRMID is the CRM's id of the record.
	CRMID string `json:"crm_id,omitempty"`
	// Fields are the record's fields under the CRM's names: those of the
	// plugin's schema that have a value.
	Fields map[string]any `json:"fields,omitempty"`
}

// ReadError is a read that failed as a whole, classified as a push's
// result is.
type ReadError struct{ Result Result }

// Error implements error.
func (e *ReadError) Error() string {
	return fmt.Sprintf("read: %s %s: %s", e.Result.Class, e.Result.Code, e.Result.Message)
}

// FieldDiff is one field whose value in the CRM is not what record-sync
// last pushed.
type FieldDiff struct {
	Field  string `json:"field"`
	Pushed any    `json:"pushed"`
	Remote any    `json:"remote"`
}

// Diff returns the fields of pushed whose remote value differs, sorted by
// field. Values compare as text, trimmed, with null, a missing field and
// "" alike, and an email (a value with an @) without regard to case, as
// CRMs store emails lower-cased. Fields the CRM holds that were not pushed
// are not compared.
func Diff(pushed, remote map[string]any) []FieldDiff {
	var out []FieldDiff
	for f, pv := range pushed {
		rv := remote[f]
		a, b := text(pv), text(rv)
		if a == b || (strings.Contains(a, "@") && strings.EqualFold(a, b)) {
			continue
		}
		out = append(out, FieldDiff{Field: f, Pushed: pv, Remote: rv})
	}
	slices.SortFunc(out, func(x, y FieldDiff) int { return strings.Compare(x.Field, y.Field) })
	return out
}

func text(v any) string {
	if v == nil {
		return ""
	}
	if s, ok := v.(string); ok {
		return strings.TrimSpace(s)
	}
	return strings.TrimSpace(fmt.Sprint(v))
}

// ObjectType is the object type of rec's event, contact when none.
func ObjectType(rec Record) string {
	if rec.Event == nil || rec.Event.ObjectType == "" {
		return "contact"
	}
	return rec.Event.ObjectType
}

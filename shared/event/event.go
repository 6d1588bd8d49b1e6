// Package event defines the record event that System A sends to record-sync,
// over HTTP or straight onto the NATS subject sync.in, and its validation.
//
// The same Validate runs at the HTTP edge and in the rules service, so an
// event published directly to NATS is held to exactly the rules an HTTP
// client is.
package event

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/recordsync/record-sync/shared/valid"
)

// Operation is what happened to the record in System A.
type Operation string

// The operations an event can carry.
const (
	OpCreate Operation = "create"
	OpUpdate Operation = "update"
	OpDelete Operation = "delete"
)

// Object types an event can carry.
const (
	ObjectContact = "contact"
	ObjectLead    = "lead"
)

// Event is one create, update or delete of a record in System A.
type Event struct {
	EventID    string         `json:"event_id,omitempty" doc:"Idempotency key; the Idempotency-Key header is used when absent; generated when both are absent." maxLength:"128" example:"e-9"`
	RecordID   string         `json:"record_id" doc:"System A's id of the record: 1-128 of A-Z a-z 0-9 . _ : @ -, not . or .." example:"c-123"`
	ObjectType string         `json:"object_type,omitempty" enum:"contact,lead" doc:"contact (default) or lead"`
	Operation  Operation      `json:"operation" enum:"create,update,delete"`
	Targets    []string       `json:"targets,omitempty" doc:"CRMs to sync to; the configured default targets when absent" example:"[\"hubspot\"]"`
	Data       map[string]any `json:"data,omitempty" doc:"Flat object of strings, numbers, booleans and nulls"`
	OccurredAt time.Time      `json:"occurred_at,omitzero" doc:"RFC 3339; orders events of one record; the time of acceptance when absent"`
}

// Limits bound what an event may carry. The zero value is not useful; use
// DefaultLimits.
type Limits struct {
	// MaxFields is the largest number of keys in Data.
	MaxFields int
	// MaxValueLen is the longest string value in Data, in bytes.
	MaxValueLen int
	// Targets are the target names an event may name.
	Targets []string
	// MaxFuture is how far after the time of acceptance occurred_at may
	// be (DefaultMaxFuture when zero): a clock running ahead is tolerated,
	// a date in the future is not, since it would order every later
	// event of the record before it.
	MaxFuture time.Duration
	// MaxAge, when positive, is how far before the time of acceptance
	// occurred_at may be. occurred_at is never before Earliest.
	MaxAge time.Duration
}

// DefaultMaxFuture is how far in the future occurred_at may be when
// Limits.MaxFuture is zero.
const DefaultMaxFuture = 5 * time.Minute

// Earliest is the earliest occurred_at an event may carry.
var Earliest = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// DefaultLimits are the limits used when none are configured.
func DefaultLimits(targets []string) Limits {
	return Limits{MaxFields: 100, MaxValueLen: 4096, Targets: targets}
}

const maxIDLen = 128

// IDRule words what ValidID accepts, for error messages.
const IDRule = `must be 1-128 of A-Z a-z 0-9 . _ : @ - (and not "." or "..")`

// ValidID reports whether s is a valid record or event id: 1-128 of
// A-Z a-z 0-9 . _ : @ -, other than "." and "..", which are path segments
// of their own and could not be part of a status URL.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > maxIDLen || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !idByte(s[i]) {
			return false
		}
	}
	return true
}

func idByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	case c == '.', c == '_', c == ':', c == '@', c == '-':
		return true
	}
	return false
}

// Normalize fills the defaults of an event that Validate accepted: the object
// type, the targets, the event id and the time.
func (e *Event) Normalize(defaultTargets []string, now time.Time) {
	if e.ObjectType == "" {
		e.ObjectType = ObjectContact
	}
	if len(e.Targets) == 0 {
		e.Targets = slices.Clone(defaultTargets)
	}
	if e.EventID == "" {
		e.EventID = NewID()
	}
	if e.OccurredAt.IsZero() {
		e.OccurredAt = now.UTC()
	}
}

// Validate checks an event accepted now against the contract and lim, and
// returns every problem found, each naming its field under prefix (for
// example "body" or "body.events[3]"). It returns nil for a valid event.
func (e *Event) Validate(prefix string, lim Limits) valid.Errors {
	return e.ValidateAt(prefix, lim, time.Now())
}

// ValidateAt is Validate for an event accepted at the time accepted: the
// window of occurred_at is relative to it, so that an event judged again
// later (by the rules service, from the time JetStream stored it) gets the
// same verdict.
func (e *Event) ValidateAt(prefix string, lim Limits, accepted time.Time) valid.Errors {
	var errs valid.Errors
	add := func(field, msg string, v any) { errs.Add(prefix+"."+field, msg, v) }
	if e.EventID != "" && !ValidID(e.EventID) {
		add("event_id", IDRule, e.EventID)
	}
	switch {
	case e.RecordID == "":
		add("record_id", "is required", nil)
	case !ValidID(e.RecordID):
		add("record_id", IDRule, e.RecordID)
	}
	switch e.ObjectType {
	case "", ObjectContact, ObjectLead:
	default:
		add("object_type", "must be contact or lead", e.ObjectType)
	}
	switch e.Operation {
	case OpCreate, OpUpdate, OpDelete:
	case "":
		add("operation", "is required", nil)
	default:
		add("operation", "must be create, update or delete", e.Operation)
	}
	seen := make(map[string]bool, len(e.Targets))
	for i, t := range e.Targets {
		switch {
		case !slices.Contains(lim.Targets, t):
			add(fmt.Sprintf("targets[%d]", i), "unknown target; known: "+strings.Join(lim.Targets, ", "), t)
		case seen[t]:
			add(fmt.Sprintf("targets[%d]", i), "duplicate target", t)
		}
		seen[t] = true
	}
	if len(e.Data) > lim.MaxFields {
		add("data", fmt.Sprintf("has %d fields, more than the limit of %d", len(e.Data), lim.MaxFields), nil)
	}
	for _, k := range sortedKeys(e.Data) {
		switch {
		case k == "" || len(k) > maxIDLen:
			add("data", "field names must be 1-128 bytes", k)
			continue
		case !utf8.ValidString(k):
			add("data", "field name is not valid UTF-8", strconv.QuoteToASCII(k))
			continue
		case strings.ContainsFunc(k, func(r rune) bool { return r < 0x20 || r == 0x7f }):
			add("data", "field name holds a NUL or another control character", strconv.QuoteToASCII(k))
			continue
		}
		switch v := e.Data[k].(type) {
		case nil, bool, float64, int, int64:
		case string:
			if len(v) > lim.MaxValueLen {
				add("data."+k, fmt.Sprintf("is longer than %d bytes", lim.MaxValueLen), nil)
			} else if !utf8.ValidString(v) {
				add("data."+k, "is not valid UTF-8", nil)
			}
		default:
			add("data."+k, "must be a string, number, boolean or null", nil)
		}
	}
	if e.Operation != OpDelete && e.Operation != "" && len(e.Data) == 0 {
		add("data", "is required for create and update", nil)
	}
	if !e.OccurredAt.IsZero() {
		maxFuture := lim.MaxFuture
		if maxFuture <= 0 {
			maxFuture = DefaultMaxFuture
		}
		at := e.OccurredAt.UTC().Format(time.RFC3339Nano)
		switch {
		case e.OccurredAt.Before(Earliest):
			add("occurred_at", "is before "+Earliest.Format(time.RFC3339), at)
		case lim.MaxAge > 0 && e.OccurredAt.Before(accepted.Add(-lim.MaxAge)):
			add("occurred_at", fmt.Sprintf("is more than %s in the past", lim.MaxAge), at)
		case e.OccurredAt.After(accepted.Add(maxFuture)):
			add("occurred_at", fmt.Sprintf("is more than %s in the future", maxFuture), at)
		}
	}
	return errs
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// NewID returns a random id suitable for an event id.
func NewID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails since Go 1.24.
	return "ev-" + hex.EncodeToString(b[:])
}

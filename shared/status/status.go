// Package status is the status model of record-sync: the states a record
// goes through per target, the changes the services publish, and how a
// change is applied so that a late change of an older event never
// overwrites a newer one.
package status

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/recordsync/record-sync/shared/fastjson"
)

// State is where a record stands for one target.
type State string

// The states, in the order a record normally passes them.
const (
	StateAccepted      State = "accepted"
	StateQueued        State = "queued"
	StateSkippedByRule State = "skipped_by_rule"
	StateRetrying      State = "retrying"
	StateSynced        State = "synced"
	StateFailed        State = "failed"
)

// rank orders the states of one event: a change never moves an event back
// to a lower rank (a late "queued" after "synced" is ignored).
func (s State) rank() int {
	switch s {
	case StateAccepted:
		return 0
	case StateQueued:
		return 1
	case StateRetrying:
		return 2
	default: // synced, failed, skipped_by_rule: final for this event.
		return 3
	}
}

// Final reports whether s ends the life of an event for a target.
func (s State) Final() bool { return s.rank() == 3 }

// Error classes of a failed push.
const (
	ClassTransient   = "transient"
	ClassRateLimited = "rate_limited"
	ClassPermanent   = "permanent"
)

// Error is why a record is retrying or failed.
type Error struct {
	Class        string `json:"class" enum:"transient,rate_limited,permanent"`
	Code         string `json:"code" doc:"The CRM's code, or record-sync's for rule and validation failures"`
	Message      string `json:"message"`
	Excerpt      string `json:"excerpt,omitempty" doc:"The start of the CRM's answer"`
	DeadLettered bool   `json:"dead_lettered"`
}

// Transition is one entry of a target's history.
type Transition struct {
	State State     `json:"state"`
	At    time.Time `json:"at"`
}

// HistoryLen is how many transitions a target keeps.
const HistoryLen = 20

// Target is the status of one record for one target.
type Target struct {
	State      State        `json:"state"`
	EventID    string       `json:"event_id"`
	Operation  string       `json:"operation"`
	Attempts   int          `json:"attempts"`
	CRMID      *string      `json:"crm_id"`
	LastError  *Error       `json:"last_error"`
	RuleID     *string      `json:"rule_id"`
	OccurredAt time.Time    `json:"occurred_at"`
	Generation int          `json:"generation,omitempty"`
	UpdatedAt  time.Time    `json:"updated_at"`
	History    []Transition `json:"history"`
	// LastPushed is the event last written to the CRM (the last synced
	// one), kept so that a read-back can compare what the CRM holds with
	// it and a repair can send it again.
	LastPushed *Pushed `json:"last_pushed,omitempty"`
}

// Pushed is the event record-sync last wrote to a target's CRM for a
// record, as the pusher had it (System A's data after the rules): the CRM
// payload is the target's mapping applied to Data.
type Pushed struct {
	EventID    string    `json:"event_id"`
	Operation  string    `json:"operation"`
	ObjectType string    `json:"object_type,omitempty"`
	OccurredAt time.Time `json:"occurred_at"`
	Data       Data      `json:"data,omitempty"`
	// At is when the CRM confirmed it.
	At time.Time `json:"at"`
}

// Data is a JSON object kept as its encoding: the status service carries a
// pushed event's data from the change to the record, and into the status
// bucket, without decoding it (a decoded map costs ten times the bytes,
// and its encoding was a tenth of the status service's CPU). Map decodes
// it where it is read.
type Data []byte

// DataOf encodes m as Data (nil for an empty m).
func DataOf(m map[string]any) (Data, error) {
	if len(m) == 0 {
		return nil, nil
	}
	return fastjson.Marshal(m)
}

// Map decodes d (nil for no data).
func (d Data) Map() (map[string]any, error) {
	if len(d) == 0 {
		return nil, nil
	}
	var m map[string]any
	if err := fastjson.Unmarshal(d, &m); err != nil {
		return nil, fmt.Errorf("status data: %w", err)
	}
	return m, nil
}

// MarshalJSON writes d as it is (null when empty).
func (d Data) MarshalJSON() ([]byte, error) {
	if len(d) == 0 {
		return []byte("null"), nil
	}
	return d, nil
}

// UnmarshalJSON keeps a copy of the object b (null: none).
func (d *Data) UnmarshalJSON(b []byte) error {
	switch {
	case string(b) == "null":
		*d = nil
	case len(b) == 0 || b[0] != '{':
		return fmt.Errorf("status data: want a JSON object, got %.20s", b)
	default:
		*d = append((*d)[:0:0], b...)
	}
	return nil
}

// Record is the status of one record for every target it was sent to; it is
// the value stored in KV sync_status.
type Record struct {
	RecordID string             `json:"record_id"`
	Targets  map[string]*Target `json:"targets"`
}

// Clone returns a copy of r that Apply can change without touching r.
// Apply replaces the pointed-to CRM id, rule id and error rather than
// changing them, so the copy shares those.
func (r *Record) Clone() Record {
	c := Record{RecordID: r.RecordID}
	if r.Targets != nil {
		c.Targets = make(map[string]*Target, len(r.Targets))
		for name, t := range r.Targets {
			tc := *t
			tc.History = slices.Clone(t.History)
			c.Targets[name] = &tc
		}
	}
	return c
}

// Change is one state change of one record for one target, as the services
// publish it.
type Change struct {
	RecordID   string    `json:"record_id"`
	Target     string    `json:"target"`
	EventID    string    `json:"event_id"`
	Operation  string    `json:"operation"`
	OccurredAt time.Time `json:"occurred_at"`
	Generation int       `json:"generation,omitempty"`
	State      State     `json:"state"`
	Attempts   int       `json:"attempts,omitempty"`
	CRMID      string    `json:"crm_id,omitempty"`
	RuleID     string    `json:"rule_id,omitempty"`
	Error      *Error    `json:"error,omitempty"`
	At         time.Time `json:"at"`
	// TraceID is the event's trace, for the logs.
	TraceID string `json:"trace_id,omitempty"`
	// Pushed, on a synced change, is the event the CRM confirmed.
	Pushed *Pushed `json:"pushed,omitempty"`
}

// newer compares the event and step of c with those of t: it reports
// whether c belongs after what t shows.
func (c *Change) newer(t *Target) bool {
	if !c.OccurredAt.Equal(t.OccurredAt) {
		return c.OccurredAt.After(t.OccurredAt)
	}
	if c.EventID != t.EventID {
		// Two events of one record at the same instant: the larger id wins,
		// the same way everywhere.
		return c.EventID > t.EventID
	}
	if c.Generation != t.Generation {
		return c.Generation > t.Generation
	}
	if c.State.rank() != t.State.rank() {
		return c.State.rank() > t.State.rank()
	}
	// Same rank: a later attempt of a retry, or a repeat.
	return c.State == StateRetrying && c.Attempts > t.Attempts
}

// Apply applies c to r and reports whether anything changed. A change that
// belongs to an older event, or to an earlier step of the same event, than
// what r shows is ignored.
func (r *Record) Apply(c Change) bool {
	if r.Targets == nil {
		r.Targets = make(map[string]*Target)
	}
	r.RecordID = c.RecordID
	t, ok := r.Targets[c.Target]
	if ok && !c.newer(t) {
		return false
	}
	if !ok {
		t = &Target{}
		r.Targets[c.Target] = t
	}
	if t.EventID != c.EventID {
		// A new event starts clean; the history runs on.
		// The CRM id stays: it names the same CRM record.
		t.LastError, t.RuleID = nil, nil
	}
	t.State = c.State
	t.EventID = c.EventID
	t.Operation = c.Operation
	t.OccurredAt = c.OccurredAt
	t.Generation = c.Generation
	t.Attempts = c.Attempts
	if c.CRMID != "" {
		id := c.CRMID
		t.CRMID = &id
	}
	if c.RuleID != "" {
		id := c.RuleID
		t.RuleID = &id
	}
	if c.Error != nil {
		e := *c.Error
		t.LastError = &e
	} else if c.State == StateSynced || c.State == StateQueued {
		t.LastError = nil
	}
	if c.State == StateSynced && c.Pushed != nil {
		t.LastPushed = c.Pushed
	}
	t.UpdatedAt = c.At
	t.History = append(t.History, Transition{State: c.State, At: c.At})
	if n := len(t.History); n > HistoryLen {
		t.History = append(t.History[:0], t.History[n-HistoryLen:]...)
	}
	return true
}

// Key returns the KV key of a record id. Record ids may hold ':' and '@',
// which KV keys may not, and '.', which KV treats as a token separator, so
// every byte outside A-Z a-z 0-9 _ - is written as '=' and two hex digits:
// "c-123" stays "c-123", "ada@x.io" becomes "ada=40x=2Eio".
func Key(recordID string) string {
	if keySafe(recordID) {
		return recordID // most ids: no copy
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(recordID) + 8)
	for i := 0; i < len(recordID); i++ {
		c := recordID[i]
		switch {
		case keyByte(c):
			b.WriteByte(c)
		default:
			b.WriteByte('=')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xF])
		}
	}
	return b.String()
}

// keyByte reports whether c stands for itself in a KV key.
func keyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// keySafe reports whether every byte of id stands for itself in a KV key.
func keySafe(id string) bool {
	for i := 0; i < len(id); i++ {
		if !keyByte(id[i]) {
			return false
		}
	}
	return true
}

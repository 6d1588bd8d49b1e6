// Package crm defines what a CRM plugin of the pusher is: how a record is
// identified in the CRM, how System A's fields become the CRM's, the largest
// batch the CRM accepts, and a batch push that classifies each record's
// result. Plugins live in sub-packages, one per CRM, and are put in a
// Registry explicitly at start-up.
package crm

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/mapping"
)

// Class is how a pushed record fared.
type Class int

// Classes of results.
const (
	// OK: the CRM confirmed the record; Result.CRMID is its id there.
	OK Class = iota
	// Transient: try again later (5xx, timeouts, a temporary item error).
	Transient
	// RateLimited: the CRM's limit was hit; try again after RetryAfter.
	RateLimited
	// Permanent: the CRM refused the record; retrying cannot help.
	Permanent
)

// String returns the class as status.Error.Class spells it.
func (c Class) String() string {
	switch c {
	case OK:
		return "ok"
	case Transient:
		return "transient"
	case RateLimited:
		return "rate_limited"
	default:
		return "permanent"
	}
}

// Record is one record to push: the event, its mapped fields and its
// identity in the CRM.
type Record struct {
	Event *event.Event
	// Identity is the record's key in the CRM (an email, an external id).
	Identity string
	// CRMID, set only on a delete whose event carries no identity (System
	// A deleting by record id alone), is the CRM's id of the record as its
	// last push answered it: the plugin deletes by that id.
	CRMID string
	// Fields are the mapped fields.
	Fields map[string]any
}

// Key is what names rec's record in the CRM: its identity, or the CRM's id.
func (r Record) Key() string {
	if r.Identity == "" {
		return "crm-id:" + r.CRMID
	}
	return r.Identity
}

// Result is the outcome of pushing one Record.
type Result struct {
	Class Class
	// CRMID is the CRM's id of the record, when the CRM said it.
	CRMID string
	// Code and Message are the CRM's, for failures.
	Code    string
	Message string
	// RetryAfter is how long the CRM asked to wait, for RateLimited.
	RetryAfter time.Duration
	// Excerpt is the start of what the CRM answered, for failures.
	Excerpt string
	// Whole is set when the whole request failed (no answer, 5xx, 429):
	// the CRM said nothing about this record in particular.
	Whole bool
}

// QuotaReporter is implemented by plugins that read the CRM's quota
// headers, so that the pusher slows down before the CRM refuses.
type QuotaReporter interface {
	// Quota is what the last response said of the CRM's limit.
	Quota() Quota
}

// Quota is what the CRM said about its limit in the last response.
type Quota struct {
	Remaining int
	Limit     int
	Window    time.Duration
	// Reset is when the CRM's window starts anew, when it says.
	Reset time.Time
	Known bool
}

// CRM is a CRM plugin.
//
// Lifecycle: the plugin is built with its credentials, Push may be called
// from one goroutine per target at a time and authenticates lazily (a
// token is fetched on first use and renewed when the CRM says it expired),
// Close releases connections. Push never returns fewer results than
// records: a failure of the whole request becomes that result for every
// record, so that the caller settles each one.
//
// The fields a record carries come from the target's mapping (the
// plugin's Schema default, or one stored in KV), applied by the caller.
type CRM interface {
	// Name is the target name ("hubspot").
	Name() string
	// MaxBatch is the most records one Push may carry.
	MaxBatch() int
	// Schema returns the fields the CRM accepts for an object type of
	// System A ("contact", "lead") and the default mapping to them.
	Schema(objectType string) (mapping.Schema, bool)
	// Identify returns the record's key in the CRM from the event and its
	// mapped fields, or an error wrapping ErrMissingIdentity; such an event
	// fails permanently.
	Identify(ev *event.Event, fields map[string]any) (string, error)
	// Payload returns what the CRM receives for rec, as Push would send it,
	// for previews.
	Payload(rec Record) any
	// Push writes recs (creates and updates as upserts by identity, deletes)
	// to the CRM at apiHost and returns one result per record, in order.
	// The pusher calls it from up to the target's concurrency goroutines
	// at once (never with one identity in two of them), so whatever a
	// plugin caches (tokens, ids) must be safe for concurrent use.
	Push(ctx context.Context, apiHost string, recs []Record) []Result
	// Close releases the plugin's resources.
	Close() error
}

// ErrMissingIdentity is returned by Identify for an event the CRM cannot
// match a record by.
var ErrMissingIdentity = errors.New("missing identity")

// EmailIdentity returns the email in fields[field], trimmed and
// lower-cased, for a CRM that matches records by email.
func EmailIdentity(crmName string, fields map[string]any, field string) (string, error) {
	e, _ := fields[field].(string)
	e = strings.ToLower(strings.TrimSpace(e))
	if e == "" {
		return "", fmt.Errorf("%s matches records by email, and the mapped record has none: %w", crmName, ErrMissingIdentity)
	}
	return e, nil
}

// Registry holds the CRM plugins by name.
type Registry struct {
	crms map[string]CRM
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{crms: map[string]CRM{}} }

// Register adds c; a second plugin of the same name is an error.
func (r *Registry) Register(c CRM) error {
	if _, dup := r.crms[c.Name()]; dup {
		return fmt.Errorf("crm %q registered twice", c.Name())
	}
	r.crms[c.Name()] = c
	return nil
}

// Get returns the plugin named name.
func (r *Registry) Get(name string) (CRM, bool) {
	c, ok := r.crms[name]
	return c, ok
}

// Names returns the registered names, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.crms))
	for n := range r.crms {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// MaxBatch returns the largest batch of the named CRM, 0 if unknown.
func (r *Registry) MaxBatch(name string) int {
	if c, ok := r.crms[name]; ok {
		return c.MaxBatch()
	}
	return 0
}

// Schemas returns the schema of every plugin and object type.
func (r *Registry) Schemas() mapping.Schemas {
	out := mapping.Schemas{}
	for name, c := range r.crms {
		out[name] = map[string]mapping.Schema{}
		for _, ot := range []string{event.ObjectContact, event.ObjectLead} {
			if sc, ok := c.Schema(ot); ok {
				out[name][ot] = sc
			}
		}
	}
	return out
}

// Close closes every plugin.
func (r *Registry) Close() error {
	var errs []error
	for _, c := range r.crms {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// All returns results, one per record, all equal to res.
func All(n int, res Result) []Result {
	out := make([]Result, n)
	for i := range out {
		out[i] = res
	}
	return out
}

// ExcerptLen is the most of a CRM answer a Result keeps.
const ExcerptLen = 300

// Excerpt returns the start of b, at most ExcerptLen bytes.
func Excerpt(b []byte) string {
	if len(b) > ExcerptLen {
		return string(b[:ExcerptLen]) + "..."
	}
	return string(b)
}

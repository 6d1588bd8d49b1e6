// Package crm defines what a CRM plugin is: how a record is identified in
// the CRM, how System A's fields become the CRM's, the largest batch the
// CRM accepts, and a batch push that classifies each record's result; the
// HTTP call path every plugin shares (Conn); and how plugins are built
// (Factory) into the Registry that ingest, rules and the pusher use.
// Plugins live in sub-packages, one per CRM; app's list of factories
// registers them explicitly at start-up.
package crm

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/recordsync/record-sync/shared/config"
	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/mapping"
)

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

// CRM is a CRM plugin: one per CRM, in a package of its own, which
// exports the Factory that builds it.
//
// Concurrency: every method is safe for concurrent use. The pusher calls
// Push from up to the target's concurrency goroutines at once, and the
// workers of several pushers in one process share one plugin; two
// concurrent Pushes never carry the same Record.Key. Whatever a plugin
// caches (tokens, ids) is guarded.
//
// Lifecycle: the plugin is built with its credentials and authenticates
// lazily (a token is got on first use and renewed when the CRM says it
// expired); Close releases its idle connections.
//
// Results: Push returns one filled result per record, in order: a failure
// of the whole request becomes that result, marked Whole, for every
// record it carried, so that the caller settles each one. A result left
// Unset, or missing, is a transient NO_RESULT to the pusher (Settle),
// never a success.
//
// Cancellation: a Push whose ctx has ended sends no further request and
// returns a Transient, Whole result (CANCELED, or TIMEOUT past its
// deadline) for every record it has not settled. A request in flight when
// ctx ends may have been applied by the CRM; pushes are idempotent upserts
// and deletes, so trying it again is safe.
//
// Close during Push: Close does not interrupt a Push in flight, which runs
// to its end (its ctx or the request timeout) and returns its results as
// always; the pusher calls Close once its workers have stopped.
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
	// for previews. It sends nothing.
	Payload(rec Record) any
	// Push writes recs (creates and updates as upserts by identity, deletes)
	// to the CRM at ep.Host, every request through Conn.Call with a permit
	// of ep.Permits, and returns one result per record, in order.
	Push(ctx context.Context, ep Endpoint, recs []Record) []Result
	// Close releases the plugin's idle connections.
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

// Registry holds the CRM plugins by name, and the targets it knows: every
// factory it was built from, with its defaults and largest batch, also
// those whose plugin was left out for want of credentials (Build).
type Registry struct {
	crms    map[string]CRM
	targets map[string]target
}

// target is what the registry knows of a target without its plugin.
type target struct {
	defaults config.Override
	maxBatch int
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{crms: map[string]CRM{}, targets: map[string]target{}} }

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

// Names returns the names of the registered plugins, sorted.
func (r *Registry) Names() []string {
	return slices.Sorted(maps.Keys(r.crms))
}

// Targets returns every target the registry knows, sorted: the registered
// plugins and those left out for want of credentials. Rules, event targets
// and configuration are validated against them.
func (r *Registry) Targets() []string {
	names := maps.Clone(r.targets)
	for n := range r.crms {
		names[n] = target{}
	}
	return slices.Sorted(maps.Keys(names))
}

// Defaults returns each known target's own starting configuration, as its
// factory gives it (config.LoadDefaults puts it over the common settings).
func (r *Registry) Defaults() map[string]config.Override {
	out := make(map[string]config.Override, len(r.targets))
	for n, t := range r.targets {
		out[n] = t.defaults
	}
	return out
}

// MaxBatch returns the largest batch of the named CRM, 0 if unknown.
func (r *Registry) MaxBatch(name string) int {
	if c, ok := r.crms[name]; ok {
		return c.MaxBatch()
	}
	return r.targets[name].maxBatch
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

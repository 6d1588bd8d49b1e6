package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/recordsync/record-sync/crm"
	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/ratelimit"
	"github.com/recordsync/record-sync/shared/status"
)

// Drift says how what a CRM holds for a record compares with what
// record-sync last pushed there.
type Drift string

// The drift of one record.
const (
	// DriftNone: the CRM holds what was last pushed.
	DriftNone Drift = "in_sync"
	// DriftDiffers: the CRM holds the record with other values.
	DriftDiffers Drift = "differs"
	// DriftMissing: the last push wrote the record; the CRM holds none.
	DriftMissing Drift = "missing"
	// DriftPresent: the last push deleted the record; the CRM holds it.
	DriftPresent Drift = "present_after_delete"
	// DriftUnknown: nothing pushed is on record (synced before
	// record-sync kept it) or the record cannot be named in the CRM.
	DriftUnknown Drift = "unknown"
)

// LastPushed is what record-sync last wrote to the CRM for a record.
type LastPushed struct {
	EventID   string    `json:"event_id"`
	Operation string    `json:"operation"`
	At        time.Time `json:"at" doc:"When the CRM confirmed it"`
	Fields    any       `json:"fields,omitempty" doc:"The CRM fields it wrote: the target's mapping in force applied to the event's data (the same as then unless the mapping changed since)"`
}

// RemoteView is what GET /v1/sync/records/{record_id}/remote answers.
type RemoteView struct {
	RecordID   string          `json:"record_id"`
	Target     string          `json:"target"`
	State      status.State    `json:"state" doc:"The record's status for the target"`
	EventID    string          `json:"event_id" doc:"The event its status belongs to"`
	CRMID      *string         `json:"crm_id"`
	Drift      Drift           `json:"drift" enum:"in_sync,differs,missing,present_after_delete,unknown"`
	Remote     *crm.Remote     `json:"remote" doc:"What the CRM holds now (null when it could not be asked)"`
	LastPushed *LastPushed     `json:"last_pushed" doc:"What record-sync last pushed (null when nothing is on record)"`
	Differs    []crm.FieldDiff `json:"differs" doc:"The pushed fields whose value in the CRM is different"`
	Note       string          `json:"note,omitempty"`
}

type remoteInput struct {
	RecordID string `path:"record_id" doc:"System A's record id"`
	Target   string `query:"target" required:"true" doc:"The target CRM to read"`
}

type remoteOutput struct {
	Body RemoteView
}

// reader returns the plugin of target that reads records back, or the
// problem to answer.
func (s *Service) reader(where, target string) (crm.CRM, crm.Reader, error) {
	c, ok := s.deps.Registry.Get(target)
	if !ok {
		return nil, nil, huma.Error422UnprocessableEntity("validation failed", &huma.ErrorDetail{Location: where, Message: "unknown target", Value: target})
	}
	r, ok := c.(crm.Reader)
	if !ok {
		return nil, nil, huma.Error501NotImplemented(target + "'s plugin cannot read records back (it does not implement crm.Reader)")
	}
	return c, r, nil
}

// remote reads what the CRM holds for a record now and compares it with
// what was last pushed.
func (s *Service) remote(ctx context.Context, in *remoteInput) (*remoteOutput, error) {
	c, r, err := s.reader("query.target", in.Target)
	if err != nil {
		return nil, err
	}
	rec, err := s.record(ctx, &recordInput{RecordID: in.RecordID, Target: in.Target})
	if err != nil {
		return nil, err
	}
	t := rec.Targets[in.Target]
	k := s.readKey(c, in.RecordID, t)
	view := RemoteView{RecordID: in.RecordID, Target: in.Target, State: t.State, EventID: t.EventID, CRMID: t.CRMID, Differs: []crm.FieldDiff{}, Note: k.note}
	if k.pushed != nil {
		view.LastPushed = &LastPushed{EventID: k.pushed.EventID, Operation: k.pushed.Operation, At: k.pushed.At}
		if k.pushed.Operation != string(event.OpDelete) {
			view.LastPushed.Fields = k.rec.Fields
		}
	}
	if !k.readable {
		view.Drift = DriftUnknown
		return &remoteOutput{Body: view}, nil
	}
	remotes, err := s.readCRM(ctx, r, in.Target, []crm.Record{k.rec})
	if err != nil {
		var re *crm.ReadError
		if errors.As(err, &re) {
			return nil, huma.Error503ServiceUnavailable(fmt.Sprintf("%s could not be read: %s %s: %s", in.Target, re.Result.Class, re.Result.Code, re.Result.Message))
		}
		return nil, huma.Error503ServiceUnavailable(in.Target + " could not be read: " + err.Error())
	}
	view.Remote = &remotes[0]
	view.Drift, view.Differs = k.compare(remotes[0])
	return &remoteOutput{Body: view}, nil
}

// readKey is how a record's status names it in the CRM, and what its last
// push wrote.
type readKey struct {
	recordID string
	target   *status.Target
	rec      crm.Record
	pushed   *status.Pushed
	readable bool   // the CRM can be asked for it
	note     string // why not, or what is unknown
}

// readKey names the record of t in c's CRM: the last pushed event mapped
// with the mapping in force (its identity and fields), and the CRM id its
// status holds.
func (s *Service) readKey(c crm.CRM, recordID string, t *status.Target) readKey {
	k := readKey{recordID: recordID, target: t, pushed: t.LastPushed}
	ev := &event.Event{RecordID: recordID, EventID: t.EventID, Operation: event.Operation(t.Operation)}
	var dataErr error
	if p := t.LastPushed; p != nil {
		var data map[string]any
		data, dataErr = p.Data.Map()
		ev = &event.Event{RecordID: recordID, EventID: p.EventID, ObjectType: p.ObjectType, Operation: event.Operation(p.Operation), Data: data, OccurredAt: p.OccurredAt}
	}
	rec, res := crm.Prepare(c, s.deps.Mappings, ev)
	rec.Event = ev
	if t.CRMID != nil {
		rec.CRMID = *t.CRMID
	}
	k.rec = rec
	switch {
	case dataErr != nil:
		k.note = "the last pushed event's data does not decode: " + dataErr.Error()
		k.readable = rec.CRMID != ""
	case res != nil && res.Code != crm.CodeMissingIdentity:
		k.note = "the last pushed event no longer maps: " + res.Message
		k.readable = rec.CRMID != ""
	case rec.Identity == "" && rec.CRMID == "":
		k.note = "the record has no identity nor CRM id to read it by"
	default:
		k.readable = true
	}
	if t.LastPushed == nil {
		k.note = "nothing pushed is on record for this target (synced before record-sync kept it, or never synced)"
	}
	return k
}

// compare classifies what the CRM holds against the last push.
func (k readKey) compare(r crm.Remote) (Drift, []crm.FieldDiff) {
	diffs := []crm.FieldDiff{}
	switch {
	case k.pushed == nil:
		return DriftUnknown, diffs
	case k.pushed.Operation == string(event.OpDelete):
		if r.Found {
			return DriftPresent, diffs
		}
		return DriftNone, diffs
	case !r.Found:
		return DriftMissing, diffs
	}
	if d := crm.Diff(k.rec.Fields, r.Fields); len(d) > 0 {
		return DriftDiffers, d
	}
	return DriftNone, diffs
}

// readCRM reads keys back from target's CRM at its configured host, with
// permits of the target's rate limit shared with every pusher.
func (s *Service) readCRM(ctx context.Context, r crm.Reader, target string, keys []crm.Record) ([]crm.Remote, error) {
	tc, ok := s.deps.Configs.Get(target)
	if !ok {
		return nil, fmt.Errorf("no configuration for %s", target)
	}
	ep := crm.Endpoint{Host: tc.APIHost, Permits: s.permits(target, tc.RateLimitPerMinute)}
	out, err := r.Read(ctx, ep, keys)
	if err == nil && len(out) != len(keys) {
		return nil, fmt.Errorf("%s read %d records for %d keys", target, len(out), len(keys))
	}
	return out, err
}

// permits returns the shared rate limit of target at perMinute, one per
// target and rate (its token bucket spreads this process's reads).
func (s *Service) permits(target string, perMinute int) *ratelimit.Permits {
	s.readsMu.Lock()
	defer s.readsMu.Unlock()
	key := fmt.Sprint(target, "/", perMinute)
	if p, ok := s.reads[key]; ok {
		return p
	}
	if s.reads == nil {
		s.reads = map[string]*ratelimit.Permits{}
	}
	p := ratelimit.NewShared(s.deps.JS, target, s.log).Permits(perMinute)
	s.reads[key] = p
	return p
}

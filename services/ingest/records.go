package ingest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/recordsync/record-sync/crm"
	"github.com/recordsync/record-sync/shared/dlq"
	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/rules"
	"github.com/recordsync/record-sync/shared/status"
)

type recordInput struct {
	RecordID string `path:"record_id" doc:"System A's record id"`
	Target   string `query:"target" doc:"Only this target"`
}

type statusInput struct {
	RecordID string `path:"record_id" doc:"System A's record id"`
	Target   string `query:"target" doc:"Only this target"`
	Accepted string `query:"accepted" maxLength:"2048" doc:"The receipt the status_url of a 202 carries: the status reads accepted (or later) for that event from the 202 on, before the status service has recorded it"`
}

type statusOutput struct {
	Body status.Record
}

func (s *Service) getStatus(ctx context.Context, in *statusInput) (*statusOutput, error) {
	rec, err := s.recordWith(ctx, &recordInput{RecordID: in.RecordID, Target: in.Target}, in.Accepted)
	if err != nil {
		return nil, err
	}
	return &statusOutput{Body: rec}, nil
}

// record reads a record's status, narrowed to in.Target when given.
func (s *Service) record(ctx context.Context, in *recordInput) (status.Record, error) {
	return s.recordWith(ctx, in, "")
}

// recordWith is record with the accepted event of a status receipt, when
// valid, overlaid.
func (s *Service) recordWith(ctx context.Context, in *recordInput, receiptToken string) (status.Record, error) {
	if !event.ValidID(in.RecordID) {
		return status.Record{}, huma.Error422UnprocessableEntity("validation failed", &huma.ErrorDetail{Location: "path.record_id", Message: event.IDRule, Value: in.RecordID})
	}
	rec, err := s.deps.Status.Get(ctx, in.RecordID)
	if err != nil && !errors.Is(err, status.ErrNotFound) {
		s.log.Error("status_read_failed", "record_id", in.RecordID, "error", err.Error())
		return rec, huma.Error503ServiceUnavailable("status is unavailable")
	}
	if receiptToken != "" {
		if r, ok := s.readReceipt(in.RecordID, receiptToken); ok {
			r.overlay(&rec, in.RecordID, in.Target)
			err = nil
		}
	}
	if errors.Is(err, status.ErrNotFound) || (err == nil && len(rec.Targets) == 0) {
		return rec, huma.Error404NotFound("no status for record " + in.RecordID + " (unknown, expired, or not yet routed: the status_url of the 202 reads accepted until it is)")
	}
	if in.Target != "" {
		t, ok := rec.Targets[in.Target]
		if !ok {
			return rec, huma.Error404NotFound("record " + in.RecordID + " was never sent to " + in.Target)
		}
		rec.Targets = map[string]*status.Target{in.Target: t}
	}
	return rec, nil
}

type retryOutput struct {
	Body struct {
		RecordID string   `json:"record_id"`
		Targets  []string `json:"targets" doc:"Targets re-enqueued"`
		Status   string   `json:"status" enum:"queued"`
	}
}

// retry re-enqueues the dead-lettered event of each failed target.
func (s *Service) retry(ctx context.Context, in *recordInput) (*retryOutput, error) {
	rec, err := s.record(ctx, in)
	if err != nil {
		return nil, err
	}
	var failed []string
	for name, t := range rec.Targets {
		if t.State == status.StateFailed && t.LastError != nil && t.LastError.DeadLettered {
			failed = append(failed, name)
		}
	}
	slices.Sort(failed)
	if len(failed) == 0 {
		states := make([]string, 0, len(rec.Targets))
		for name, t := range rec.Targets {
			states = append(states, name+": "+string(t.State))
		}
		slices.Sort(states)
		return nil, huma.Error409Conflict("record " + in.RecordID + " has no dead-lettered failure to retry (" + strings.Join(states, ", ") + ")")
	}
	for _, target := range failed {
		l, err := dlq.Latest(ctx, s.deps.JS, target, in.RecordID)
		if errors.Is(err, dlq.ErrNone) {
			return nil, huma.Error409Conflict(fmt.Sprintf("the dead letter of %s for %s is gone (expired?): resend the event", in.RecordID, target))
		}
		if err == nil {
			err = dlq.Requeue(ctx, s.deps.JS, s.deps.Status, l, "ingest")
		}
		if errors.Is(err, dlq.ErrNotFailed) {
			return nil, huma.Error409Conflict(fmt.Sprintf("record %s changed for %s while retrying: read its status again", in.RecordID, target))
		}
		if err != nil {
			return nil, huma.Error503ServiceUnavailable("could not re-enqueue: " + err.Error())
		}
	}
	s.log.Info("manual_retry", "record_id", in.RecordID, "targets", failed)
	out := &retryOutput{}
	out.Body.RecordID, out.Body.Targets, out.Body.Status = in.RecordID, failed, "queued"
	return out, nil
}

// PreviewTarget is what would happen to an event for one target.
type PreviewTarget struct {
	Decision rules.Decision `json:"decision"`
	Identity string         `json:"identity,omitempty" doc:"The record's key in the CRM, or crm-id:<id> when an update or delete without it goes by the CRM id its status holds"`
	Fields   map[string]any `json:"fields,omitempty" doc:"The mapped fields"`
	Payload  any            `json:"payload,omitempty" doc:"Exactly what the CRM would receive for this record"`
	Error    *status.Error  `json:"error,omitempty" doc:"Why the CRM could not be sent this event"`
}

type previewOutput struct {
	Body struct {
		Event   event.Event              `json:"event" doc:"The event with its defaults filled in"`
		Targets map[string]PreviewTarget `json:"targets"`
	}
}

// preview runs the rules and the mapping in force for each target, as the
// rules service and the pusher would, and enqueues and records nothing.
func (s *Service) preview(ctx context.Context, in *syncInput) (*previewOutput, error) {
	var ev event.Event
	if _, err := s.decodeEvent(in.RawBody, &ev, in.IdempotencyKey); err != nil {
		return nil, err
	}
	compiled, _ := s.deps.Rules.Current()
	out := &previewOutput{}
	out.Body.Event = ev
	out.Body.Targets = map[string]PreviewTarget{}
	for _, t := range ev.Targets {
		p := PreviewTarget{Decision: compiled.Evaluate(&ev, t)}
		if p.Decision.Action == rules.Pass {
			c, _ := s.deps.Registry.Get(t)
			routed := ev
			routed.Data = p.Decision.StripData(ev.Data)
			rec, res := crm.PrepareKnown(ctx, c, s.deps.Mappings, s.deps.Status, &routed)
			if res != nil {
				p.Error = &status.Error{Class: res.Class.String(), Code: res.Code, Message: res.Message}
			} else {
				p.Identity, p.Fields, p.Payload = rec.Key(), rec.Fields, c.Payload(rec)
			}
		}
		out.Body.Targets[t] = p
	}
	return out, nil
}

// TargetStats are the counts of one target.
type TargetStats struct {
	Accepted   int64            `json:"accepted" doc:"Events routed to this target"`
	Superseded int64            `json:"superseded" doc:"Events replaced by a newer event of the same record"`
	States     map[string]int64 `json:"states" doc:"Records per current state"`
	InFlight   int64            `json:"in_flight" doc:"Accepted events whose status is not yet recorded: accepted - superseded - the states; 0 at rest"`
}

type statsOutput struct {
	Body struct {
		Targets map[string]TargetStats `json:"targets"`
	}
}

// stats reads the counters the rules and status services keep.
func (s *Service) stats(ctx context.Context, _ *struct{}) (*statsOutput, error) {
	out := &statsOutput{}
	out.Body.Targets = map[string]TargetStats{}
	for _, t := range s.deps.Registry.Names() {
		counts, err := mesh.ReadCounts(ctx, s.deps.JS, t)
		if err != nil {
			return nil, huma.Error503ServiceUnavailable("stats are unavailable: " + err.Error())
		}
		ts := TargetStats{Accepted: counts[status.CountAccepted], Superseded: counts[status.CountSuperseded], States: map[string]int64{}}
		ts.InFlight = ts.Accepted - ts.Superseded
		for name, n := range counts {
			if name == status.CountAccepted || name == status.CountSuperseded {
				continue
			}
			ts.States[name] = n
			ts.InFlight -= n
		}
		out.Body.Targets[t] = ts
	}
	return out, nil
}

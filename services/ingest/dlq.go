package ingest

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/recordsync/record-sync/shared/dlq"
	"github.com/recordsync/record-sync/shared/valid"
)

// filter validates a dead-letter filter; where names its place ("query",
// "body").
func (s *Service) filter(where, target, code, since, until string) (dlq.Filter, error) {
	var errs valid.Errors
	f := dlq.Filter{Target: target, Code: code}
	if _, ok := s.deps.Registry.Get(target); !ok && target != "" {
		errs.Add(where+".target", "unknown target; known: "+strings.Join(s.deps.Registry.Names(), ", "), target)
	}
	for _, t := range []struct {
		loc, v string
		dst    *time.Time
	}{{where + ".since", since, &f.Since}, {where + ".until", until, &f.Until}} {
		v, err := dlq.ParseTime(t.v, s.now())
		if err != nil {
			errs.Add(t.loc, err.Error(), t.v)
		}
		*t.dst = v
	}
	if len(errs) > 0 {
		return f, validationProblem(errs)
	}
	return f, nil
}

type dlqListInput struct {
	Target string `query:"target" doc:"Only this target's dead letters (every target's when absent)"`
	Code   string `query:"code" doc:"Only this error code (the CRM's, or UNMAPPABLE, MAPPING_FAILED, ...)"`
	Since  string `query:"since" doc:"Only dead letters from this time on: a duration back from now (24h) or an RFC 3339 time"`
	Until  string `query:"until" doc:"Only dead letters before this time: a duration back from now or an RFC 3339 time"`
	Limit  int    `query:"limit" default:"100" minimum:"1" maximum:"10000"`
}

type dlqListOutput struct {
	Body struct {
		Letters []dlq.Letter `json:"letters" doc:"The latest dead letter of each record whose status still shows that failure, oldest first per target"`
		More    bool         `json:"more" doc:"More matched than the limit"`
	}
}

var errLimit = errors.New("limit reached")

func (s *Service) listDLQ(ctx context.Context, in *dlqListInput) (*dlqListOutput, error) {
	f, err := s.filter("query", in.Target, in.Code, in.Since, in.Until)
	if err != nil {
		return nil, err
	}
	out := &dlqListOutput{}
	out.Body.Letters = []dlq.Letter{}
	err = dlq.ListFailed(ctx, s.deps.JS, s.deps.Status, f, func(l dlq.Letter) error {
		if len(out.Body.Letters) == in.Limit {
			out.Body.More = true
			return errLimit
		}
		out.Body.Letters = append(out.Body.Letters, l)
		return nil
	})
	if err != nil && !errors.Is(err, errLimit) {
		return nil, huma.Error503ServiceUnavailable("dead letters are unavailable: " + err.Error())
	}
	return out, nil
}

type replayInput struct {
	Body struct {
		Target string `json:"target,omitempty" doc:"Only this target's dead letters (every target's when absent)"`
		Code   string `json:"code,omitempty" doc:"Only this error code"`
		Since  string `json:"since,omitempty" doc:"Only dead letters from this time on: a duration back from now (24h) or an RFC 3339 time"`
		Until  string `json:"until,omitempty" doc:"Only dead letters before this time: a duration back from now or an RFC 3339 time"`
		DryRun bool   `json:"dry_run,omitempty" doc:"Count what would be replayed and skipped, checking each record's status as a replay does; re-enqueue nothing"`
	}
}

// ReplayResult counts what a replay did.
type ReplayResult struct {
	Matched  int  `json:"matched" doc:"Dead letters that matched the filter"`
	Requeued int  `json:"requeued" doc:"Re-enqueued (0 in a dry run)"`
	Skipped  int  `json:"skipped" doc:"Matched, but the record has since synced or moved on to a newer event (counted in a dry run too)"`
	DryRun   bool `json:"dry_run"`
}

type replayOutput struct {
	Body ReplayResult
}

func (s *Service) replayDLQ(ctx context.Context, in *replayInput) (*replayOutput, error) {
	f, err := s.filter("body", in.Body.Target, in.Body.Code, in.Body.Since, in.Body.Until)
	if err != nil {
		return nil, err
	}
	res, err := dlq.Replay(ctx, s.deps.JS, s.deps.Status, f, in.Body.DryRun, "ingest", nil)
	if err != nil {
		return nil, huma.Error503ServiceUnavailable("replay stopped: " + err.Error())
	}
	s.log.Info("dlq_replayed", "target", f.Target, "code", f.Code, "matched", res.Matched, "requeued", res.Requeued, "dry_run", in.Body.DryRun)
	return &replayOutput{Body: ReplayResult{Matched: res.Matched, Requeued: res.Requeued, Skipped: res.Skipped, DryRun: in.Body.DryRun}}, nil
}

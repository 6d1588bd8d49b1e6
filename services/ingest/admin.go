package ingest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/recordsync/record-sync/shared/config"
	"github.com/recordsync/record-sync/shared/rules"
	"github.com/recordsync/record-sync/shared/valid"
)

type rulesOutput struct {
	ETag string `header:"ETag"`
	Body struct {
		Revision uint64       `json:"revision" doc:"Give it back in If-Match or the body to replace this set"`
		Rules    []rules.Rule `json:"rules"`
		Problem  string       `json:"problem,omitempty" doc:"Why the stored set is not the one in force"`
	}
}

func (s *Service) getRules(ctx context.Context, _ *struct{}) (*rulesOutput, error) {
	set, rev, err := s.deps.Rules.Read(ctx)
	if err != nil {
		return nil, huma.Error503ServiceUnavailable("rules are unavailable: " + err.Error())
	}
	out := &rulesOutput{ETag: strconv.Quote(strconv.FormatUint(rev, 10))}
	out.Body.Revision, out.Body.Rules, out.Body.Problem = rev, set.Rules, s.deps.Rules.Problem()
	return out, nil
}

type putRulesInput struct {
	IfMatch string `header:"If-Match" doc:"The revision replaced, as GET returned it in ETag"`
	Body    struct {
		Revision *uint64      `json:"revision,omitempty" doc:"The revision replaced, when If-Match is not used"`
		Rules    []rules.Rule `json:"rules"`
	}
}

func (s *Service) putRules(ctx context.Context, in *putRulesInput) (*rulesOutput, error) {
	var rev uint64
	switch {
	case in.IfMatch != "":
		v, err := strconv.ParseUint(strings.Trim(in.IfMatch, `"W/`), 10, 64)
		if err != nil {
			return nil, huma.Error422UnprocessableEntity("validation failed", &huma.ErrorDetail{Location: "header.If-Match", Message: "must be a revision number", Value: in.IfMatch})
		}
		rev = v
	case in.Body.Revision != nil:
		rev = *in.Body.Revision
	default:
		return nil, huma.Error428PreconditionRequired("give the revision you replace in If-Match or body.revision (GET /v1/sync/rules returns it), so that two admins cannot overwrite each other")
	}
	newRev, err := s.deps.Rules.Replace(ctx, rules.Set{Rules: in.Body.Rules}, rev)
	var errs valid.Errors
	switch {
	case errors.As(err, &errs):
		return nil, validationProblem(errs)
	case errors.Is(err, rules.ErrStaleRevision):
		_, cur, _ := s.deps.Rules.Read(ctx)
		return nil, huma.Error409Conflict(fmt.Sprintf("revision %d is not the current one (%d): read the rules again and reapply your change", rev, cur))
	case err != nil:
		return nil, huma.Error503ServiceUnavailable("rules could not be stored: " + err.Error())
	}
	s.log.Info("rules_replaced", "revision", newRev, "rules", len(in.Body.Rules))
	out := &rulesOutput{ETag: strconv.Quote(strconv.FormatUint(newRev, 10))}
	out.Body.Revision, out.Body.Rules = newRev, in.Body.Rules
	return out, nil
}

type configOutput struct {
	Body struct {
		DefaultTargets []string          `json:"default_targets"`
		Targets        []config.Target   `json:"targets"`
		Problems       map[string]string `json:"problems,omitempty" doc:"Targets whose KV value is not applied, and why"`
	}
}

func (s *Service) getConfig(context.Context, *struct{}) (*configOutput, error) {
	out := &configOutput{}
	out.Body.DefaultTargets = s.deps.Configs.DefaultTargets()
	for _, name := range s.deps.Configs.Targets() {
		t, _ := s.deps.Configs.Get(name)
		out.Body.Targets = append(out.Body.Targets, t)
	}
	out.Body.Problems = s.deps.Configs.Problems()
	return out, nil
}

type overrideInput struct {
	Body struct {
		Target string `json:"target" doc:"The target to change"`
		config.Override
	}
}

type overrideOutput struct {
	Body config.Target
}

func (s *Service) configOverride(ctx context.Context, in *overrideInput) (*overrideOutput, error) {
	maxBatch := s.deps.Registry.MaxBatch(in.Body.Target)
	if maxBatch == 0 {
		return nil, validationProblem(valid.Errors{{Location: "body.target", Message: "unknown target; known: " + strings.Join(s.deps.Registry.Names(), ", "), Value: in.Body.Target}})
	}
	t, err := s.deps.Configs.Set(ctx, in.Body.Target, in.Body.Override, maxBatch)
	var errs valid.Errors
	switch {
	case errors.As(err, &errs):
		return nil, validationProblem(errs)
	case err != nil:
		return nil, huma.Error503ServiceUnavailable("config could not be stored: " + err.Error())
	}
	s.log.Info("config_overridden", "target", t.Target, "batch_size", t.BatchSize, "enabled", t.Enabled)
	return &overrideOutput{Body: t}, nil
}

func (s *Service) readyz(ctx context.Context, _ *struct{}) (*healthOutput, error) {
	out := &healthOutput{}
	var why []string
	if !s.deps.NC.IsConnected() {
		why = append(why, "NATS is not connected")
	} else {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, err := s.deps.JS.AccountInfo(ctx); err != nil {
			why = append(why, "JetStream is not answering: "+err.Error())
		}
	}
	if p := s.deps.Rules.Problem(); p != "" {
		out.Body.Notes = append(out.Body.Notes, p)
	}
	for t, p := range s.deps.Configs.Problems() {
		out.Body.Notes = append(out.Body.Notes, "config of "+t+" not applied: "+p)
	}
	if len(why) > 0 {
		return nil, huma.Error503ServiceUnavailable("not ready: " + strings.Join(why, "; "))
	}
	out.Body.Status = "ready"
	return out, nil
}

package ingest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/recordsync/record-sync/shared/config"
	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/logging"
	"github.com/recordsync/record-sync/shared/mapping"
	"github.com/recordsync/record-sync/shared/mesh"
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

// errReadOnly answers a write of rules, mappings or config on an edge that
// has no connection as the admin NATS user.
func (s *Service) errReadOnly(what string) error {
	if !s.cfg.AdminReadOnly {
		return nil
	}
	return huma.Error503ServiceUnavailable(what + " cannot be changed through this edge: it has no connection as the admin NATS user " +
		"(set RECORDSYNC_NATS_ADMIN_PASSWORD; the ingest user may not write KV sync_rules or sync_config)")
}

func (s *Service) putRules(ctx context.Context, in *putRulesInput) (*rulesOutput, error) {
	if err := s.errReadOnly("rules"); err != nil {
		return nil, err
	}
	rev, err := revision(in.IfMatch, in.Body.Revision, "GET /v1/sync/rules")
	if err != nil {
		return nil, err
	}
	newRev, err := s.deps.Rules.Replace(ctx, rules.Set{Rules: in.Body.Rules}, rev)
	var errs valid.Errors
	switch {
	case errors.As(err, &errs):
		return nil, validationProblem(errs)
	case errors.Is(err, mesh.ErrStaleRevision):
		_, cur, _ := s.deps.Rules.Read(ctx)
		return nil, staleRevision(rev, cur, "rules")
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
	if err := s.errReadOnly("config"); err != nil {
		return nil, err
	}
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
			why = append(why, "NATS JetStream is not answering: "+err.Error())
		} else {
			why = append(why, s.unled(ctx)...)
		}
	}
	out.Body.Notes = append(out.Body.Notes, s.waitNotes()...)
	if p := s.deps.Rules.Problem(); p != "" {
		out.Body.Notes = append(out.Body.Notes, p)
	}
	for t, p := range s.deps.Configs.Problems() {
		out.Body.Notes = append(out.Body.Notes, "config of "+t+" not applied: "+p)
	}
	for _, p := range s.deps.Mappings.Problems() {
		out.Body.Notes = append(out.Body.Notes, p)
	}
	for _, c := range s.deps.Configs.Circuits() {
		if c.State != "closed" {
			out.Body.Notes = append(out.Body.Notes, fmt.Sprintf("the circuit of %s is %s since %s: its CRM failed repeatedly; its work waits", c.Target, c.State, c.Since.Format(time.RFC3339)))
		}
	}
	if len(why) > 0 {
		return nil, huma.Error503ServiceUnavailable("not ready: " + strings.Join(why, "; "))
	}
	out.Body.Status = "ready"
	return out, nil
}

// revision returns the revision a replacement names, from If-Match or the
// body; naming none is a 428, so that two admins cannot overwrite each
// other silently. get names where the current revision is read.
func revision(ifMatch string, body *uint64, get string) (uint64, error) {
	switch {
	case ifMatch != "":
		v, err := strconv.ParseUint(strings.Trim(strings.TrimPrefix(ifMatch, "W/"), `"`), 10, 64)
		if err != nil {
			return 0, huma.Error422UnprocessableEntity("validation failed", &huma.ErrorDetail{Location: "header.If-Match", Message: "must be a revision number", Value: ifMatch})
		}
		return v, nil
	case body != nil:
		return *body, nil
	}
	return 0, huma.Error428PreconditionRequired("give the revision you replace in If-Match or body.revision (" + get + " returns it; 0 when nothing is stored), so that two admins cannot overwrite each other")
}

func staleRevision(given, current uint64, what string) error {
	return huma.Error409Conflict(fmt.Sprintf("revision %d is not the current one (%d): read the %s again and reapply your change", given, current, what))
}

// MappingView is a target's mapping for one object type.
type MappingView struct {
	Target     string          `json:"target"`
	ObjectType string          `json:"object_type"`
	Revision   uint64          `json:"revision" doc:"0 when none is stored and the plugin's default applies"`
	Stored     mapping.Mapping `json:"stored" doc:"The stored mapping, or the default"`
	Effective  []mapping.Field `json:"effective" doc:"The mapping in force, base included"`
	Problem    string          `json:"problem,omitempty" doc:"Why the stored mapping is not the one in force"`
}

func (s *Service) mappingView(ctx context.Context, target, objectType string) (MappingView, error) {
	m, rev, err := s.deps.Mappings.Read(ctx, target, objectType)
	if errors.Is(err, mapping.ErrUnknown) {
		return MappingView{}, huma.Error404NotFound(fmt.Sprintf("no mapping for target %q and object type %q", target, objectType))
	}
	if err != nil {
		return MappingView{}, huma.Error503ServiceUnavailable("mappings are unavailable: " + err.Error())
	}
	v := MappingView{Target: target, ObjectType: objectType, Revision: rev, Stored: m,
		Problem: s.deps.Mappings.Problems()[mapping.Key(target, objectType)]}
	if c := s.deps.Mappings.Get(target, objectType); c != nil {
		v.Effective = c.Effective()
	}
	return v, nil
}

type mappingsOutput struct {
	Body struct {
		Mappings []MappingView `json:"mappings"`
	}
}

func (s *Service) listMappings(ctx context.Context, _ *struct{}) (*mappingsOutput, error) {
	out := &mappingsOutput{}
	out.Body.Mappings = []MappingView{}
	schemas := s.deps.Registry.Schemas()
	for _, target := range s.deps.Registry.Names() {
		for _, ot := range []string{event.ObjectContact, event.ObjectLead} {
			if _, ok := schemas[target][ot]; !ok {
				continue
			}
			v, err := s.mappingView(ctx, target, ot)
			if err != nil {
				return nil, err
			}
			out.Body.Mappings = append(out.Body.Mappings, v)
		}
	}
	return out, nil
}

type mappingInput struct {
	Target     string `path:"target"`
	ObjectType string `path:"object_type"`
}

type mappingOutput struct {
	ETag string `header:"ETag"`
	Body MappingView
}

func (s *Service) getMapping(ctx context.Context, in *mappingInput) (*mappingOutput, error) {
	v, err := s.mappingView(ctx, in.Target, in.ObjectType)
	if err != nil {
		return nil, err
	}
	return &mappingOutput{ETag: strconv.Quote(strconv.FormatUint(v.Revision, 10)), Body: v}, nil
}

type putMappingInput struct {
	Target     string `path:"target"`
	ObjectType string `path:"object_type"`
	IfMatch    string `header:"If-Match" doc:"The revision replaced, as GET returned it in ETag (0 when none is stored)"`
	Body       struct {
		Revision *uint64 `json:"revision,omitempty" doc:"The revision replaced, when If-Match is not used"`
		mapping.Mapping
	}
}

func (s *Service) putMapping(ctx context.Context, in *putMappingInput) (*mappingOutput, error) {
	if err := s.errReadOnly("mappings"); err != nil {
		return nil, err
	}
	rev, err := revision(in.IfMatch, in.Body.Revision, "GET /v1/sync/mappings/{target}/{object_type}")
	if err != nil {
		return nil, err
	}
	_, _, err = s.deps.Mappings.Replace(ctx, in.Target, in.ObjectType, in.Body.Mapping, rev)
	var errs valid.Errors
	switch {
	case errors.As(err, &errs):
		return nil, validationProblem(errs)
	case errors.Is(err, mapping.ErrUnknown):
		return nil, huma.Error404NotFound(err.Error())
	case errors.Is(err, mesh.ErrStaleRevision):
		_, cur, _ := s.deps.Mappings.Read(ctx, in.Target, in.ObjectType)
		return nil, staleRevision(rev, cur, "mapping")
	case err != nil:
		return nil, huma.Error503ServiceUnavailable("mapping could not be stored: " + err.Error())
	}
	s.log.Info("mapping_replaced", "target", in.Target, "object_type", in.ObjectType)
	return s.getMapping(ctx, &mappingInput{Target: in.Target, ObjectType: in.ObjectType})
}

type logLevelBody struct {
	Level string `json:"level" doc:"debug, info, warn or error"`
}

type logLevelOutput struct {
	Body logLevelBody
}

func (s *Service) getLogLevel(context.Context, *struct{}) (*logLevelOutput, error) {
	return &logLevelOutput{Body: logLevelBody{Level: strings.ToLower(s.deps.LogLevel.Level().String())}}, nil
}

type putLogLevelInput struct {
	Body logLevelBody
}

func (s *Service) putLogLevel(_ context.Context, in *putLogLevelInput) (*logLevelOutput, error) {
	if !slices.Contains(logging.Levels, strings.ToLower(in.Body.Level)) {
		return nil, validationProblem(valid.Errors{{Location: "body.level", Message: "must be one of " + strings.Join(logging.Levels, ", "), Value: in.Body.Level}})
	}
	s.deps.LogLevel.Set(logging.ParseLevel(in.Body.Level))
	s.log.Warn("log_level_changed", "level", in.Body.Level)
	return s.getLogLevel(context.Background(), nil)
}

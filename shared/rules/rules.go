// Package rules decides, per event and target, whether a record is synced:
// passed on, skipped (skipped_by_rule, with the deciding rule's id) or
// rejected (failed for good, with the rule's message). A rule set is
// compiled once per revision and evaluated for every event.
package rules

import (
	"fmt"
	"slices"
	"strings"

	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/valid"
)

// Kinds of rule.
const (
	// KindRequire rejects an event whose Fields are missing or empty.
	KindRequire = "require"
	// KindSkipFlag skips an event whose Field is true.
	KindSkipFlag = "skip_flag"
)

// Rule is one rule of a Set, as stored in KV sync_rules and sent to
// POST /v1/sync/rules.
type Rule struct {
	ID          string   `json:"id" doc:"Unique id (1-64 of A-Z a-z 0-9 _ . : -), shown in a record's status when the rule decides"`
	Description string   `json:"description,omitempty"`
	Kind        string   `json:"kind" doc:"require or skip_flag"`
	Fields      []string `json:"fields,omitempty" doc:"require: the fields that must be present and not empty"`
	Field       string   `json:"field,omitempty" doc:"skip_flag: the boolean field that skips the event when true"`
	Targets     []string `json:"targets,omitempty" doc:"Targets the rule applies to; all when empty"`
	Operations  []string `json:"operations,omitempty" doc:"Operations the rule applies to; all when empty"`
	Message     string   `json:"message,omitempty" doc:"Reason given when the rule rejects; a default is derived from the rule"`
}

// Set is a whole rule set. Rules are evaluated in order; the first rule that
// skips or rejects decides.
type Set struct {
	Rules []Rule `json:"rules"`
}

// Action is what a decision does with an event for a target.
type Action string

// Actions.
const (
	Pass   Action = "pass"
	Skip   Action = "skip"
	Reject Action = "reject"
)

// Decision is the outcome of evaluating a Set for one event and target.
type Decision struct {
	Action Action `json:"action" enum:"pass,skip,reject"`
	RuleID string `json:"rule_id,omitempty"`
	Reason string `json:"reason,omitempty"`
}

type compiled struct {
	Rule
	targets map[string]bool
	ops     map[event.Operation]bool
}

func (c *compiled) applies(ev *event.Event, target string) bool {
	return (c.targets == nil || c.targets[target]) && (c.ops == nil || c.ops[ev.Operation])
}

// Compiled is a validated Set ready for evaluation. It is immutable and safe
// for concurrent use.
type Compiled struct {
	set   Set
	rules []compiled
}

// Set returns the source of c.
func (c *Compiled) Set() Set { return c.set }

// Parse decodes a rule set strictly (unknown fields are an error) and
// compiles it.
func Parse(raw []byte, targets []string) (*Compiled, error) {
	var s Set
	if err := mesh.DecodeStrict(raw, &s); err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	c, errs := Compile(s, targets)
	if len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

// Compile validates s against the known targets and compiles it. Every
// problem is returned, each naming its rule ("body.rules[2].fields").
func Compile(s Set, targets []string) (*Compiled, valid.Errors) {
	var errs valid.Errors
	ids := map[string]bool{}
	c := &Compiled{set: s}
	for i, r := range s.Rules {
		at := fmt.Sprintf("body.rules[%d]", i)
		if !validRuleID(r.ID) {
			errs.Add(at+".id", "must be 1-64 of A-Z a-z 0-9 _ . : -", r.ID)
		} else if ids[r.ID] {
			errs.Add(at+".id", "duplicate rule id", r.ID)
		}
		ids[r.ID] = true
		cr := compiled{Rule: r}
		switch r.Kind {
		case KindRequire:
			if len(r.Fields) == 0 {
				errs.Add(at+".fields", "a require rule needs at least one field", nil)
			}
			for j, f := range r.Fields {
				if f == "" {
					errs.Add(fmt.Sprintf("%s.fields[%d]", at, j), "must not be empty", f)
				}
			}
		case KindSkipFlag:
			if r.Field == "" {
				errs.Add(at+".field", "a skip_flag rule needs a field", nil)
			}
		default:
			errs.Add(at+".kind", "must be require or skip_flag", r.Kind)
		}
		if len(r.Targets) > 0 {
			cr.targets = map[string]bool{}
			for j, t := range r.Targets {
				if !slices.Contains(targets, t) {
					errs.Add(fmt.Sprintf("%s.targets[%d]", at, j), "unknown target; known: "+strings.Join(targets, ", "), t)
				}
				cr.targets[t] = true
			}
		}
		if len(r.Operations) > 0 {
			cr.ops = map[event.Operation]bool{}
			for j, o := range r.Operations {
				switch op := event.Operation(o); op {
				case event.OpCreate, event.OpUpdate, event.OpDelete:
					cr.ops[op] = true
				default:
					errs.Add(fmt.Sprintf("%s.operations[%d]", at, j), "must be create, update or delete", o)
				}
			}
		}
		c.rules = append(c.rules, cr)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

func validRuleID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	allowed := func(r rune) bool {
		return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_.:-", r)
	}
	return !strings.ContainsFunc(id, func(r rune) bool { return !allowed(r) })
}

// Evaluate decides what happens to ev for target. The first rule that
// applies and fires decides; when none does, the event passes.
func (c *Compiled) Evaluate(ev *event.Event, target string) Decision {
	for i := range c.rules {
		r := &c.rules[i]
		if !r.applies(ev, target) {
			continue
		}
		switch r.Kind {
		case KindRequire:
			for _, f := range r.Fields {
				if empty(ev.Data[f]) {
					return Decision{Action: Reject, RuleID: r.ID, Reason: r.reason("required field " + f + " is missing or empty")}
				}
			}
		case KindSkipFlag:
			if b, ok := ev.Data[r.Field].(bool); ok && b {
				return Decision{Action: Skip, RuleID: r.ID, Reason: r.reason(r.Field + " is true")}
			}
		}
	}
	return Decision{Action: Pass}
}

func (c *compiled) reason(def string) string {
	if c.Message != "" {
		return c.Message
	}
	return def
}

func empty(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return strings.TrimSpace(v) == ""
	}
	return false
}

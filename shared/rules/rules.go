// Package rules decides, per event and target, whether a record is synced:
// passed on (possibly with fields stripped), skipped (skipped_by_rule, with
// the deciding rule's id) or rejected (failed for good, with the rule's
// message). A rule set is compiled once per revision and evaluated for
// every event.
package rules

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"

	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/valid"
)

// Kinds of rule.
const (
	// KindRequire rejects an event whose Fields are missing, null or blank.
	KindRequire = "require"
	// KindDisallow rejects an event that carries any of Fields, or strips
	// them (Action "strip").
	KindDisallow = "disallow"
	// KindSkipFlag skips an event whose Field is true.
	KindSkipFlag = "skip_flag"
	// KindExpr skips or rejects (Action) an event for which the expression
	// When is true.
	KindExpr = "expr"
)

// Actions a rule can take, and a decision's outcome.
const (
	ActionSkip   = "skip"
	ActionReject = "reject"
	ActionStrip  = "strip"
)

// Rule is one rule of a Set, as stored in KV sync_rules and sent to
// POST /v1/sync/rules.
type Rule struct {
	ID          string   `json:"id" doc:"Unique id (1-64 of A-Z a-z 0-9 _ . : -), shown in a record's status when the rule decides"`
	Description string   `json:"description,omitempty"`
	Kind        string   `json:"kind" doc:"require, disallow, skip_flag or expr"`
	Fields      []string `json:"fields,omitempty" doc:"require: fields that must be present and not blank; disallow: fields that must not be present"`
	Field       string   `json:"field,omitempty" doc:"skip_flag: the boolean field that skips the event when true"`
	When        string   `json:"when,omitempty" doc:"expr: a boolean expression (expr-lang) over data, operation, object_type, target, record_id" example:"data.country not in [\"US\", \"CA\"]"`
	Action      string   `json:"action,omitempty" doc:"disallow: reject (default) or strip; expr: skip (default) or reject"`
	Targets     []string `json:"targets,omitempty" doc:"Targets the rule applies to; all when empty"`
	Operations  []string `json:"operations,omitempty" doc:"Operations the rule applies to; all when empty"`
	ObjectTypes []string `json:"object_types,omitempty" doc:"Object types the rule applies to; all when empty"`
	Message     string   `json:"message,omitempty" doc:"Reason given when the rule skips or rejects; a default is derived from the rule"`
}

// Set is a whole rule set. Rules are evaluated in order: the first rule
// that skips or rejects decides; strip rules accumulate.
type Set struct {
	Rules []Rule `json:"rules"`
}

// Action is what a decision does with an event for a target.
type Action string

// Decisions.
const (
	Pass   Action = "pass"
	Skip   Action = "skip"
	Reject Action = "reject"
)

// Decision is the outcome of evaluating a Set for one event and target.
type Decision struct {
	Action Action   `json:"action" enum:"pass,skip,reject"`
	RuleID string   `json:"rule_id,omitempty"`
	Reason string   `json:"reason,omitempty"`
	Strip  []string `json:"strip,omitempty" doc:"Fields removed before the event goes to this target"`
	// Error is set when the deciding rule could not be evaluated on the
	// event (an expression failed); the event is rejected with it.
	Error bool `json:"error,omitempty"`
}

// Env is what an expression sees.
type Env struct {
	Data       map[string]any `expr:"data"`
	Operation  string         `expr:"operation"`
	ObjectType string         `expr:"object_type"`
	Target     string         `expr:"target"`
	RecordID   string         `expr:"record_id"`
}

type compiled struct {
	Rule
	targets map[string]bool
	ops     map[event.Operation]bool
	objects map[string]bool
	program *vm.Program
}

func (c *compiled) applies(ev *event.Event, target string) bool {
	return (c.targets == nil || c.targets[target]) && (c.ops == nil || c.ops[ev.Operation]) &&
		(c.objects == nil || c.objects[objectType(ev)])
}

func objectType(ev *event.Event) string {
	if ev.ObjectType == "" {
		return event.ObjectContact
	}
	return ev.ObjectType
}

// Compiled is a validated Set ready for evaluation. It is immutable and safe
// for concurrent use.
type Compiled struct {
	set   Set
	rules []compiled
	vms   sync.Pool
}

// Set returns the source of c.
func (c *Compiled) Set() Set { return c.set }

// Len is the number of rules.
func (c *Compiled) Len() int { return len(c.rules) }

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
	c.vms.New = func() any { return new(vm.VM) }
	for i, r := range s.Rules {
		at := fmt.Sprintf("body.rules[%d]", i)
		if !validRuleID(r.ID) {
			errs.Add(at+".id", "must be 1-64 of A-Z a-z 0-9 _ . : -", r.ID)
		} else if ids[r.ID] {
			errs.Add(at+".id", "duplicate rule id", r.ID)
		}
		ids[r.ID] = true
		cr := compiled{Rule: r}
		compileKind(&cr, at, &errs)
		cr.targets = set(r.Targets, at+".targets", targets, &errs)
		cr.objects = set(r.ObjectTypes, at+".object_types", []string{event.ObjectContact, event.ObjectLead}, &errs)
		if ops := set(r.Operations, at+".operations", []string{string(event.OpCreate), string(event.OpUpdate), string(event.OpDelete)}, &errs); ops != nil {
			cr.ops = map[event.Operation]bool{}
			for o := range ops {
				cr.ops[event.Operation(o)] = true
			}
		}
		c.rules = append(c.rules, cr)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

// compileKind checks the fields each kind needs and compiles expressions.
func compileKind(cr *compiled, at string, errs *valid.Errors) {
	r := &cr.Rule
	needFields := func() {
		if len(r.Fields) == 0 {
			errs.Add(at+".fields", "a "+r.Kind+" rule needs at least one field", nil)
		}
		for j, f := range r.Fields {
			if f == "" {
				errs.Add(fmt.Sprintf("%s.fields[%d]", at, j), "must not be empty", f)
			}
		}
	}
	actions := func(def string, allowed ...string) {
		if r.Action == "" {
			r.Action = def
		} else if !slices.Contains(allowed, r.Action) {
			errs.Add(at+".action", "must be "+strings.Join(allowed, " or "), r.Action)
		}
	}
	switch r.Kind {
	case KindRequire:
		needFields()
		actions(ActionReject, ActionReject)
	case KindDisallow:
		needFields()
		actions(ActionReject, ActionReject, ActionStrip)
	case KindSkipFlag:
		if r.Field == "" {
			errs.Add(at+".field", "a skip_flag rule needs a field", nil)
		}
		actions(ActionSkip, ActionSkip)
	case KindExpr:
		actions(ActionSkip, ActionSkip, ActionReject)
		if strings.TrimSpace(r.When) == "" {
			errs.Add(at+".when", "an expr rule needs an expression", nil)
			return
		}
		if err := guard(r.When); err != nil {
			errs.Add(at+".when", err.Error(), r.When)
			return
		}
		p, err := expr.Compile(r.When, expr.Env(Env{}), expr.AsBool(), expr.MaxNodes(500))
		if err != nil {
			errs.Add(at+".when", "does not compile: "+err.Error(), r.When)
			return
		}
		cr.program = p
	default:
		errs.Add(at+".kind", "must be require, disallow, skip_flag or expr", r.Kind)
	}
}

// guard refuses what would let one expression run for long on every
// event: ranges ("1..1000000") and repeat(). Event data is flat, so without
// them every loop is bounded by the expression's own size.
func guard(src string) error {
	tree, err := parser.Parse(src)
	if err != nil {
		return fmt.Errorf("does not compile: %w", err)
	}
	g := &guardVisitor{}
	ast.Walk(&tree.Node, g)
	return g.err
}

type guardVisitor struct{ err error }

func (g *guardVisitor) Visit(n *ast.Node) {
	if g.err != nil {
		return
	}
	switch x := (*n).(type) {
	case *ast.BinaryNode:
		if x.Operator == ".." {
			g.err = errors.New("ranges (a..b) are not allowed in rules")
		}
	case *ast.CallNode:
		if id, ok := x.Callee.(*ast.IdentifierNode); ok && id.Value == "repeat" {
			g.err = errors.New("repeat() is not allowed in rules")
		}
	case *ast.BuiltinNode:
		if x.Name == "repeat" {
			g.err = errors.New("repeat() is not allowed in rules")
		}
	}
}

// set validates a scope list against allowed values; nil means all.
func set(values []string, at string, allowed []string, errs *valid.Errors) map[string]bool {
	if len(values) == 0 {
		return nil
	}
	out := make(map[string]bool, len(values))
	for j, v := range values {
		if !slices.Contains(allowed, v) {
			errs.Add(fmt.Sprintf("%s[%d]", at, j), "must be one of "+strings.Join(allowed, ", "), v)
		}
		out[v] = true
	}
	return out
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

// Evaluate decides what happens to ev for target. Rules apply in order; the
// first that skips or rejects decides; strip rules add the fields to strip
// and go on. When none decides, the event passes.
func (c *Compiled) Evaluate(ev *event.Event, target string) Decision {
	d := Decision{Action: Pass}
	var env *Env
	for i := range c.rules {
		r := &c.rules[i]
		if !r.applies(ev, target) {
			continue
		}
		switch r.Kind {
		case KindRequire:
			for _, f := range r.Fields {
				if blank(ev.Data[f]) {
					return r.decide(Reject, "required field "+f+" is missing or blank", d.Strip)
				}
			}
		case KindDisallow:
			for _, f := range r.Fields {
				if _, ok := ev.Data[f]; !ok {
					continue
				}
				if r.Action == ActionStrip {
					if !slices.Contains(d.Strip, f) {
						d.Strip = append(d.Strip, f)
					}
					continue
				}
				return r.decide(Reject, "field "+f+" is not allowed", d.Strip)
			}
		case KindSkipFlag:
			if b, ok := ev.Data[r.Field].(bool); ok && b {
				return r.decide(Skip, r.Field+" is true", d.Strip)
			}
		case KindExpr:
			if env == nil {
				env = &Env{Data: ev.Data, Operation: string(ev.Operation), ObjectType: objectType(ev), Target: target, RecordID: ev.RecordID}
			}
			m := c.vms.Get().(*vm.VM)
			out, err := m.Run(r.program, *env)
			c.vms.Put(m)
			if err != nil {
				dec := r.decide(Reject, "rule "+r.ID+" could not be evaluated on this event: "+err.Error(), d.Strip)
				dec.Error = true
				return dec
			}
			if b, _ := out.(bool); b {
				act := Skip
				if r.Action == ActionReject {
					act = Reject
				}
				return r.decide(act, r.When+" is true", d.Strip)
			}
		}
	}
	return d
}

func (c *compiled) decide(a Action, def string, strip []string) Decision {
	reason := def
	if c.Message != "" {
		reason = c.Message
	}
	return Decision{Action: a, RuleID: c.ID, Reason: reason, Strip: strip}
}

func blank(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return strings.TrimSpace(v) == ""
	}
	return false
}

// StripData returns data without the fields of d.Strip (data itself when
// there is nothing to strip).
func (d Decision) StripData(data map[string]any) map[string]any {
	if len(d.Strip) == 0 {
		return data
	}
	out := make(map[string]any, len(data))
	for k, v := range data {
		if !slices.Contains(d.Strip, k) {
			out[k] = v
		}
	}
	return out
}

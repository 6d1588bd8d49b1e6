// Package mapping turns System A's fields into a CRM's: each target has a
// default mapping per object type (from its plugin), and an operator can
// replace or extend it with a declarative mapping kept in KV: rename, drop,
// constants, defaults, and value functions (trim, lower, upper, string, a
// date format). A mapping is validated against the fields the CRM accepts,
// so an unknown field is an error when the mapping is written, not a CRM
// 400 at push time.
package mapping

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/recordsync/record-sync/shared/valid"
)

// Field maps one CRM field.
type Field struct {
	// From is System A's field; empty with Const.
	From string `json:"from,omitempty" doc:"System A's field"`
	// To is the CRM's field.
	To string `json:"to" doc:"The CRM's field"`
	// Const is sent whatever the event holds.
	Const any `json:"const,omitempty" doc:"A constant to send instead of a field of the event"`
	// Default is sent when From is missing or null.
	Default any `json:"default,omitempty" doc:"Sent when the field is missing or null"`
	// Fn are applied in order: trim, lower, upper, string, date:<Go layout>.
	Fn []string `json:"fn,omitempty" doc:"Value functions, in order: trim, lower, upper, string, date:<Go layout>"`
}

// Mapping is a declarative mapping for one target and object type.
type Mapping struct {
	// Base is "default" (extend the plugin's default mapping: Fields
	// replace its entries with the same To and add others; Drop removes
	// entries by From) or "none" (Fields are the whole mapping).
	Base   string   `json:"base,omitempty" enum:"default,none" doc:"default (extend the plugin's mapping, the default) or none"`
	Fields []Field  `json:"fields"`
	Drop   []string `json:"drop,omitempty" doc:"System A fields of the base mapping not to send"`
}

// Schema is what a CRM accepts for one object type, and its default mapping.
type Schema struct {
	// Fields the CRM accepts.
	Fields []string
	// Default is the mapping used when none is stored.
	Default Mapping
}

// Bases.
const (
	BaseDefault = "default"
	BaseNone    = "none"
)

type fn func(any) (any, error)

type compiledField struct {
	Field
	fns []fn
}

// Compiled is a validated mapping, ready to apply. Immutable, safe for
// concurrent use.
type Compiled struct {
	source Mapping
	fields []compiledField
}

// Source returns the mapping as given.
func (c *Compiled) Source() Mapping { return c.source }

// Effective returns the whole mapping applied, base included.
func (c *Compiled) Effective() []Field {
	out := make([]Field, len(c.fields))
	for i, f := range c.fields {
		out[i] = f.Field
	}
	return out
}

// Compile validates m against schema and resolves its base. Each problem
// is named under prefix ("body.fields[2].to").
func Compile(m Mapping, schema Schema, prefix string) (*Compiled, valid.Errors) {
	var errs valid.Errors
	var fields []Field
	switch m.Base {
	case "", BaseDefault:
		for _, f := range schema.Default.Fields {
			if slices.Contains(m.Drop, f.From) && f.From != "" {
				continue
			}
			if slices.ContainsFunc(m.Fields, func(o Field) bool { return o.To == f.To }) {
				continue
			}
			fields = append(fields, f)
		}
		for i, d := range m.Drop {
			if !slices.ContainsFunc(schema.Default.Fields, func(f Field) bool { return f.From == d }) {
				errs.Add(fmt.Sprintf("%s.drop[%d]", prefix, i), "the default mapping has no field from "+d, d)
			}
		}
	case BaseNone:
		if len(m.Drop) > 0 {
			errs.Add(prefix+".drop", "drop needs base default", nil)
		}
	default:
		errs.Add(prefix+".base", "must be default or none", m.Base)
	}
	fields = append(fields, m.Fields...)
	c := &Compiled{source: m}
	seen := map[string]bool{}
	for i, f := range fields {
		at := fmt.Sprintf("%s.fields[%d]", prefix, i-(len(fields)-len(m.Fields)))
		if i < len(fields)-len(m.Fields) {
			at = prefix + ".base(" + f.To + ")"
		}
		cf := compiledField{Field: f}
		switch {
		case f.To == "":
			errs.Add(at+".to", "is required", nil)
		case !slices.Contains(schema.Fields, f.To):
			errs.Add(at+".to", "the CRM has no field "+f.To+"; known: "+strings.Join(schema.Fields, ", "), f.To)
		case seen[f.To]:
			errs.Add(at+".to", "mapped twice", f.To)
		}
		seen[f.To] = true
		if (f.From == "") == (f.Const == nil) {
			errs.Add(at, "needs exactly one of from and const", nil)
		}
		if f.Const != nil && f.Default != nil {
			errs.Add(at+".default", "a constant needs no default", nil)
		}
		for _, v := range []any{f.Const, f.Default} {
			if !scalar(v) {
				errs.Add(at, "const and default must be a string, number or boolean", v)
			}
		}
		for j, name := range f.Fn {
			g, err := parseFn(name)
			if err != nil {
				errs.Add(fmt.Sprintf("%s.fn[%d]", at, j), err.Error(), name)
				continue
			}
			cf.fns = append(cf.fns, g)
		}
		c.fields = append(c.fields, cf)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

func scalar(v any) bool {
	switch v.(type) {
	case nil, string, float64, bool, int:
		return true
	}
	return false
}

// Apply maps data. A field missing from data (and without a default) is
// not sent; a null is sent as null (the CRM clears the field). A value
// function that cannot apply (a date that does not parse) is an error
// naming the field.
func (c *Compiled) Apply(data map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(c.fields))
	var errs []error
	for i := range c.fields {
		f := &c.fields[i]
		var v any
		switch {
		case f.Const != nil:
			v = f.Const
		default:
			val, ok := data[f.From]
			switch {
			case (!ok || val == nil) && f.Default != nil:
				v = f.Default
			case !ok:
				continue
			default:
				v = val
			}
		}
		for _, g := range f.fns {
			var err error
			if v, err = g(v); err != nil {
				errs = append(errs, fmt.Errorf("%s -> %s: %w", f.From, f.To, err))
				break
			}
		}
		out[f.To] = v
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// parseFn returns the value function named name.
func parseFn(name string) (fn, error) {
	onString := func(g func(string) string) fn {
		return func(v any) (any, error) {
			switch s := v.(type) {
			case nil:
				return nil, nil
			case string:
				return g(s), nil
			}
			return nil, fmt.Errorf("%s needs a string, got %T", name, v)
		}
	}
	switch {
	case name == "trim":
		return onString(strings.TrimSpace), nil
	case name == "lower":
		return onString(strings.ToLower), nil
	case name == "upper":
		return onString(strings.ToUpper), nil
	case name == "string":
		return toString, nil
	case strings.HasPrefix(name, "date:"):
		layout := strings.TrimPrefix(name, "date:")
		if layout == "" || time.Date(2011, 3, 4, 5, 6, 7, 0, time.UTC).Format(layout) == layout { // no directive in it
			return nil, errors.New("date needs a Go layout such as date:2006-01-02")
		}
		return func(v any) (any, error) {
			s, ok := v.(string)
			if v == nil {
				return nil, nil
			}
			if !ok {
				return nil, fmt.Errorf("date needs a string, got %T", v)
			}
			for _, in := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
				if t, err := time.Parse(in, s); err == nil {
					return t.Format(layout), nil
				}
			}
			return nil, fmt.Errorf("date: %q is not an RFC 3339 time or a YYYY-MM-DD date", s)
		}, nil
	}
	return nil, errors.New("unknown function; known: trim, lower, upper, string, date:<layout>")
}

func toString(v any) (any, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		return v, nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	case bool:
		return strconv.FormatBool(v), nil
	}
	return fmt.Sprint(v), nil
}

// ToString writes a scalar as the string a CRM that takes only strings
// wants: numbers without exponent, booleans as true/false, null as "".
func ToString(v any) string {
	s, _ := toString(v)
	str, _ := s.(string)
	return str
}

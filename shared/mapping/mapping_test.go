package mapping_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/recordsync/record-sync/shared/mapping"
)

var schema = mapping.Schema{
	Fields: []string{"email", "firstname", "lastname", "phone", "lifecyclestage", "signup_date", "country"},
	Default: mapping.Mapping{Fields: []mapping.Field{
		{From: "email", To: "email", Fn: []string{"trim", "lower"}},
		{From: "first_name", To: "firstname"},
		{From: "last_name", To: "lastname"},
		{From: "phone", To: "phone", Fn: []string{"string"}},
	}},
}

func TestApply(t *testing.T) {
	data := map[string]any{"email": "  Ada@Example.COM ", "first_name": "Ada", "last_name": nil, "phone": 4420.0, "signup": "2026-11-25T10:30:00Z", "extra": "x"}
	tests := []struct {
		name string
		m    mapping.Mapping
		want map[string]any
	}{
		{"default mapping", mapping.Mapping{}, map[string]any{"email": "ada@example.com", "firstname": "Ada", "lastname": nil, "phone": "4420"}},
		{"rename and drop on the default", mapping.Mapping{Fields: []mapping.Field{{From: "first_name", To: "lastname"}}, Drop: []string{"first_name", "phone"}},
			map[string]any{"email": "ada@example.com", "lastname": "Ada"}},
		{"constant, default and functions", mapping.Mapping{Base: mapping.BaseNone, Fields: []mapping.Field{
			{To: "lifecyclestage", Const: "lead"},
			{From: "country", To: "country", Default: "US"},
			{From: "first_name", To: "firstname", Fn: []string{"upper"}},
			{From: "signup", To: "signup_date", Fn: []string{"date:02/01/2006"}},
		}}, map[string]any{"lifecyclestage": "lead", "country": "US", "firstname": "ADA", "signup_date": "25/11/2026"}},
		{"missing fields are not sent", mapping.Mapping{Base: mapping.BaseNone, Fields: []mapping.Field{{From: "nope", To: "email"}}}, map[string]any{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, errs := mapping.Compile(tt.m, schema, "body")
			if errs != nil {
				t.Fatal(errs)
			}
			got, err := c.Apply(data)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Fatalf("mapped (-want +got):\n%s", diff)
			}
		})
	}
}

func TestApplyErrors(t *testing.T) {
	c, errs := mapping.Compile(mapping.Mapping{Base: mapping.BaseNone, Fields: []mapping.Field{
		{From: "d", To: "signup_date", Fn: []string{"date:2006-01-02"}},
		{From: "n", To: "firstname", Fn: []string{"trim"}},
	}}, schema, "body")
	if errs != nil {
		t.Fatal(errs)
	}
	_, err := c.Apply(map[string]any{"d": "yesterday", "n": 3.0})
	if err == nil || !strings.Contains(err.Error(), "d -> signup_date") || !strings.Contains(err.Error(), "n -> firstname") {
		t.Fatalf("error %v should name both fields", err)
	}
}

func TestCompileErrors(t *testing.T) {
	m := mapping.Mapping{Base: "mine", Fields: []mapping.Field{
		{From: "a", To: "not_a_crm_field"},
		{From: "a"},
		{From: "a", To: "email"},
		{From: "b", To: "email"},
		{To: "firstname"},
		{From: "c", To: "lastname", Const: "x"},
		{To: "country", Const: "US", Default: "CA"},
		{From: "d", To: "phone", Fn: []string{"reverse", "date:yesterday"}},
		{To: "lifecyclestage", Const: map[string]any{"a": 1}},
	}}
	_, errs := mapping.Compile(m, schema, "body")
	var got []string
	for _, e := range errs {
		got = append(got, e.Location)
	}
	want := []string{"body.base", "body.fields[0].to", "body.fields[1].to", "body.fields[3].to", "body.fields[4]", "body.fields[5]",
		"body.fields[6].default", "body.fields[7].fn[0]", "body.fields[7].fn[1]", "body.fields[8]"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("locations (-want +got):\n%s\n%v", diff, errs)
	}
	_, errs = mapping.Compile(mapping.Mapping{Drop: []string{"nope"}}, schema, "body")
	if len(errs) != 1 || errs[0].Location != "body.drop[0]" {
		t.Fatalf("drop of a field the default does not map: %v", errs)
	}
}

// FuzzMapping compiles arbitrary mapping documents and applies what
// compiles to arbitrary data: nothing may panic, and only fields the CRM
// accepts come out.
func FuzzMapping(f *testing.F) {
	f.Add([]byte(`{"fields":[{"from":"a","to":"email","fn":["trim","lower"]}]}`), []byte(`{"a":" X@Y.z "}`))
	f.Add([]byte(`{"base":"none","fields":[{"to":"lifecyclestage","const":"lead"},{"from":"d","to":"signup_date","fn":["date:2006"]}]}`), []byte(`{"d":"2026-01-02"}`))
	f.Add([]byte(`{"drop":["phone"],"fields":[{"from":"x","to":"country","default":"US","fn":["upper","string"]}]}`), []byte(`{"x":null}`))
	f.Fuzz(func(t *testing.T, doc, data []byte) {
		var m mapping.Mapping
		if json.Unmarshal(doc, &m) != nil {
			return
		}
		c, errs := mapping.Compile(m, schema, "body")
		if errs != nil {
			return
		}
		var d map[string]any
		if json.Unmarshal(data, &d) != nil {
			return
		}
		out, err := c.Apply(d)
		if err != nil {
			return
		}
		for k := range out {
			if !strings.Contains(" "+strings.Join(schema.Fields, " ")+" ", " "+k+" ") {
				t.Fatalf("mapped to unknown field %q", k)
			}
		}
	})
}

// BenchmarkApply maps a typical event with the default mapping.
func BenchmarkApply(b *testing.B) {
	c, errs := mapping.Compile(mapping.Mapping{}, schema, "body")
	if errs != nil {
		b.Fatal(errs)
	}
	data := map[string]any{"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace", "phone": "+44 20 7946 0000",
		"country": "GB", "company": "Analytical Engines", "do_not_sync": false, "score": 42.0}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Apply(data); err != nil {
			b.Fatal(err)
		}
	}
}

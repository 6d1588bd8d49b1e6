package fastjson_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/recordsync/record-sync/shared/fastjson"
)

type doc struct {
	Name  string         `json:"name"`
	At    time.Time      `json:"at"`
	N     int            `json:"n,omitempty"`
	Data  map[string]any `json:"data,omitempty"`
	Inner *struct {
		X string `json:"x"`
	} `json:"inner,omitempty"`
}

// TestSameAsStandardLibrary checks that documents encode to the same bytes
// and decode to the same values as with encoding/json, and that refusals
// carry the standard library's errors.
func TestSameAsStandardLibrary(t *testing.T) {
	v := doc{Name: "a<b>&\u2028", At: time.Date(2026, 11, 25, 10, 0, 0, 123, time.UTC), Data: map[string]any{"z": 1.5, "a": "x", "m": []any{true, nil}}}
	want, _ := json.Marshal(v)
	got, err := fastjson.Marshal(v)
	if err != nil || string(got) != string(want) {
		t.Fatalf("Marshal = %s, %v; want %s", got, err, want)
	}
	var a, b doc
	if err := fastjson.DecodeStrict(want, &a); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(want, &b)
	if diff := cmp.Diff(b, a); diff != "" {
		t.Fatalf("decoded (-std +fast):\n%s", diff)
	}

	for _, in := range []string{
		`{"name":"a","extra":1}`,
		`{"name":"a"} {"name":"b"}`,
		`{"name":1}`,
		`{"name":"a"`,
		`{"at":"yesterday"}`,
		`{"name":"a"}]`,
		`{"name":"a"} }`,
		`{"name":"a"}x`,
	} {
		var d doc
		err := fastjson.DecodeStrict([]byte(in), &d)
		dec := json.NewDecoder(strings.NewReader(in))
		dec.DisallowUnknownFields()
		var s doc
		stdErr := dec.Decode(&s)
		if _, tokErr := dec.Token(); stdErr == nil && tokErr != io.EOF {
			stdErr = fmt.Errorf("unexpected data after the JSON value")
		}
		if err == nil || stdErr == nil || err.Error() != stdErr.Error() {
			t.Errorf("DecodeStrict(%s) = %v, want %v", in, err, stdErr)
		}
	}
	var d doc
	if err := fastjson.Unmarshal([]byte(`{"name":"a","n":"x"}`), &d); err == nil || err.Error() != json.Unmarshal([]byte(`{"name":"a","n":"x"}`), &doc{}).Error() {
		t.Errorf("Unmarshal error = %v", err)
	}
}

// TestMarshalNoEscape: HTML characters are kept as they are, as
// encoding/json writes them with SetEscapeHTML(false).
func TestMarshalNoEscape(t *testing.T) {
	v := map[string]any{"a": "<b>&amp;</b>", "n": 1.5, "u": "\u2028"}
	got, err := fastjson.MarshalNoEscape(v)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	enc := json.NewEncoder(&want)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	if string(got) != strings.TrimSuffix(want.String(), "\n") {
		t.Fatalf("got %s, want %s", got, want.String())
	}
}

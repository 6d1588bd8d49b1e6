package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/recordsync/record-sync/shared/fastjson"
	"github.com/recordsync/record-sync/shared/valid"
)

// CheckJSON reports what JSON decoders accept silently but an event must
// not carry, each error located under prefix as Validate locates its own
// ("body.data.email", "body.events[3].occurred_at"):
//   - a string, key or value, that is not valid UTF-8, raw or through a
//     \u escape of a lone surrogate (decoders would turn it into U+FFFD);
//   - a key holding a NUL or another control character;
//   - a key given twice in one object (decoders would keep the last);
//   - a field of an event (or a batch's "events") in other letter case,
//     "Data" or "reCord_id" (decoders match field names in any case);
//   - a number out of the range of a float64 (1e400);
//   - an occurred_at that is not an RFC 3339 time (decoders name no field).
//
// A document that is not syntactically JSON yields no errors (a raw
// control character in a string is left to the decoder): the decoder
// reports it. CheckJSON allocates only for objects with many keys and for
// the errors it returns.
func CheckJSON(data []byte, prefix string) valid.Errors {
	c := checker{data: data, prefix: prefix}
	c.skipSpace()
	if !c.value() {
		return nil
	}
	c.skipSpace()
	if c.pos != len(c.data) {
		return nil
	}
	return c.errs
}

// DecodeStrict decodes data, an event or a batch ({"events": [...]}), into
// v, as fastjson.DecodeStrict does, after CheckJSON. Its error is
// valid.Errors when CheckJSON found problems, else the decoder's.
func DecodeStrict(data []byte, prefix string, v any) error {
	if errs := CheckJSON(data, prefix); len(errs) > 0 {
		return errs
	}
	return fastjson.DecodeStrict(data, v)
}

// Reason words an error of DecodeStrict as the reason of a rejected message.
func Reason(prefix string, err error) string {
	var errs valid.Errors
	if errors.As(err, &errs) {
		return errs.Error()
	}
	return prefix + ": " + err.Error()
}

// frame is one level of nesting of the document: an object (key is the
// current key) or an array (index is the current index).
type frame struct {
	object bool
	key    []byte
	index  int
}

type checker struct {
	data   []byte
	pos    int
	prefix string
	stack  []frame
	errs   valid.Errors
}

// path is the location of the current value.
func (c *checker) path() string { return c.pathOf(c.stack) }

// objectPath is the location of the object whose key is being read.
func (c *checker) objectPath() string { return c.pathOf(c.stack[:len(c.stack)-1]) }

func (c *checker) pathOf(stack []frame) string {
	var b strings.Builder
	b.WriteString(c.prefix)
	for _, f := range stack {
		if f.object {
			b.WriteByte('.')
			b.Write(f.key)
		} else {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(f.index))
			b.WriteByte(']')
		}
	}
	return b.String()
}

func (c *checker) add(loc, msg string, v any) {
	if len(c.errs) < 100 {
		c.errs.Add(loc, msg, v)
	}
}

// atEventField reports whether the current value is a field of an event:
// of the document itself, or of an element of its "events".
func (c *checker) atEventField() bool {
	switch len(c.stack) {
	case 1:
		return c.stack[0].object
	case 3:
		return c.stack[0].object && string(c.stack[0].key) == "events" && !c.stack[1].object && c.stack[2].object
	}
	return false
}

func (c *checker) skipSpace() {
	for c.pos < len(c.data) {
		switch c.data[c.pos] {
		case ' ', '\t', '\n', '\r':
			c.pos++
		default:
			return
		}
	}
}

// value checks one JSON value; false means a syntax error.
func (c *checker) value() bool {
	if c.pos >= len(c.data) {
		return false
	}
	switch ch := c.data[c.pos]; {
	case ch == '{':
		return c.object()
	case ch == '[':
		return c.array()
	case ch == '"':
		s, ok, bad := c.str()
		if !ok {
			return false
		}
		if bad != "" {
			c.add(c.path(), bad, nil)
		} else if c.atEventField() && string(c.stack[len(c.stack)-1].key) == "occurred_at" {
			// Checked here, since decoders name no field for it, and the
			// zero time, year 1, would read as "absent" once decoded.
			if at, err := time.Parse(time.RFC3339, string(s)); err != nil {
				c.add(c.path(), "must be an RFC 3339 time, such as 2026-11-25T10:00:00Z", string(s))
			} else if at.Before(Earliest) {
				c.add(c.path(), "is before "+Earliest.Format(time.RFC3339), string(s))
			}
		}
		return true
	case ch == '-' || (ch >= '0' && ch <= '9'):
		return c.number()
	case ch == 't':
		return c.literal("true")
	case ch == 'f':
		return c.literal("false")
	case ch == 'n':
		return c.literal("null")
	}
	return false
}

func (c *checker) literal(w string) bool {
	if !bytes.HasPrefix(c.data[c.pos:], []byte(w)) {
		return false
	}
	c.pos += len(w)
	return true
}

func (c *checker) number() bool {
	start := c.pos
	exp := false
	for c.pos < len(c.data) {
		ch := c.data[c.pos]
		if ch == 'e' || ch == 'E' {
			exp = true
		} else if (ch < '0' || ch > '9') && ch != '-' && ch != '+' && ch != '.' {
			break
		}
		c.pos++
	}
	lit := c.data[start:c.pos]
	if !json.Valid(lit) {
		return false
	}
	// Without an exponent, only a number of more than 308 digits can be
	// out of range.
	if exp || len(lit) > 300 {
		if _, err := strconv.ParseFloat(string(lit), 64); err != nil {
			c.add(c.path(), "number out of range", nil)
		}
	}
	return true
}

func (c *checker) array() bool {
	c.pos++ // [
	c.stack = append(c.stack, frame{})
	defer func() { c.stack = c.stack[:len(c.stack)-1] }()
	c.skipSpace()
	if c.pos < len(c.data) && c.data[c.pos] == ']' {
		c.pos++
		return true
	}
	for i := 0; ; i++ {
		c.stack[len(c.stack)-1].index = i
		c.skipSpace()
		if !c.value() {
			return false
		}
		if more, ok := c.more(']'); !ok || !more {
			return ok
		}
	}
}

// more reads what follows a member or an element: a comma (more follow)
// or end, the closing bracket; ok is false for anything else, or for the
// end of the data.
func (c *checker) more(end byte) (more, ok bool) {
	c.skipSpace()
	if c.pos >= len(c.data) {
		return false, false
	}
	switch c.data[c.pos] {
	case ',':
		c.pos++
		return true, true
	case end:
		c.pos++
		return false, true
	}
	return false, false
}

func (c *checker) object() bool {
	c.pos++ // {
	c.stack = append(c.stack, frame{object: true})
	defer func() { c.stack = c.stack[:len(c.stack)-1] }()
	c.skipSpace()
	if c.pos < len(c.data) && c.data[c.pos] == '}' {
		c.pos++
		return true
	}
	var few [16][]byte
	seen := few[:0]
	var many map[string]bool
	for {
		c.skipSpace()
		if c.pos >= len(c.data) || c.data[c.pos] != '"' {
			return false
		}
		key, ok, bad := c.str()
		if !ok {
			return false
		}
		c.skipSpace()
		if c.pos >= len(c.data) || c.data[c.pos] != ':' {
			return false
		}
		c.pos++
		c.skipSpace()
		switch {
		case bad != "":
			q := strconv.QuoteToASCII(string(key))
			c.add(c.objectPath(), "field name "+bad, q)
			key = []byte(q)
		case bytes.ContainsFunc(key, func(r rune) bool { return r < 0x20 || r == 0x7f }):
			q := strconv.QuoteToASCII(string(key))
			c.add(c.objectPath(), "field name holds a NUL or another control character", q)
			key = []byte(q)
		default:
			dup := false
			if many != nil {
				dup = many[string(key)]
				many[string(key)] = true
			} else {
				for _, k := range seen {
					if bytes.Equal(k, key) {
						dup = true
						break
					}
				}
				if seen = append(seen, key); len(seen) == cap(few) {
					many = make(map[string]bool, 2*len(seen))
					for _, k := range seen {
						many[string(k)] = true
					}
				}
			}
			if dup {
				c.stack[len(c.stack)-1].key = key
				c.add(c.path(), "duplicate key", nil)
			}
		}
		c.stack[len(c.stack)-1].key = key
		if c.atEventField() {
			if want := caseVariant(key, len(c.stack) == 1); want != "" {
				c.add(c.path(), "unknown field: field names are case-sensitive (did you mean \""+want+"\"?)", nil)
			}
		}
		if string(key) == "occurred_at" && c.pos < len(c.data) && c.data[c.pos] != '"' && c.data[c.pos] != 'n' && c.atEventField() {
			c.add(c.path(), "must be an RFC 3339 time string", nil)
		}
		if !c.value() {
			return false
		}
		if more, ok := c.more('}'); !ok || !more {
			return ok
		}
	}
}

// str reads a string at c.pos: its value, false on a syntax error, and
// why it is not valid text when it is not. It leaves a raw control
// character, a syntax error, to the decoder; the search for the closing
// quote runs in the standard library's assembly.
func (c *checker) str() (s []byte, ok bool, bad string) {
	start := c.pos + 1
	j := start
	for {
		k := bytes.IndexByte(c.data[j:], '"')
		if k < 0 {
			return nil, false, ""
		}
		end := j + k
		n := 0
		for end-n-1 >= start && c.data[end-n-1] == '\\' {
			n++
		}
		if n%2 == 1 { // an escaped quote
			j = end + 1
			continue
		}
		raw := c.data[start:end]
		c.pos = end + 1
		if bytes.IndexByte(raw, '\\') >= 0 {
			return unescape(raw)
		}
		if !utf8.Valid(raw) {
			return bytes.ToValidUTF8(raw, []byte("\uFFFD")), true, "is not valid UTF-8"
		}
		return raw, true, ""
	}
}

// unescape decodes the body of a JSON string holding escapes.
func unescape(raw []byte) ([]byte, bool, string) {
	b := bytes.NewBuffer(make([]byte, 0, len(raw)))
	bad := ""
	if !utf8.Valid(raw) {
		bad = "is not valid UTF-8"
	}
	for i := 0; i < len(raw); i++ {
		ch := raw[i]
		if ch != '\\' {
			b.WriteByte(ch)
			continue
		}
		i++
		if i >= len(raw) {
			return nil, false, ""
		}
		switch raw[i] {
		case '"', '\\', '/':
			b.WriteByte(raw[i])
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			r, ok := hex4(raw, i+1)
			if !ok {
				return nil, false, ""
			}
			i += 4
			if utf16.IsSurrogate(r) {
				r2, ok2 := rune(-1), false
				if i+2 < len(raw) && raw[i+1] == '\\' && raw[i+2] == 'u' {
					r2, ok2 = hex4(raw, i+3)
				}
				if dec := utf16.DecodeRune(r, r2); ok2 && dec != utf8.RuneError {
					r = dec
					i += 6
				} else {
					bad = "is not valid UTF-8 (a lone UTF-16 surrogate escape)"
					r = utf8.RuneError
				}
			}
			b.WriteRune(r)
		default:
			return nil, false, ""
		}
	}
	return b.Bytes(), true, bad
}

func hex4(raw []byte, at int) (rune, bool) {
	if at+4 > len(raw) {
		return 0, false
	}
	var r rune
	for _, ch := range raw[at : at+4] {
		switch {
		case ch >= '0' && ch <= '9':
			r = r<<4 | rune(ch-'0')
		case ch >= 'a' && ch <= 'f':
			r = r<<4 | rune(ch-'a'+10)
		case ch >= 'A' && ch <= 'F':
			r = r<<4 | rune(ch-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// eventFields are the JSON names of Event's fields, and batchField a
// batch's.
var (
	eventFields = [][]byte{[]byte("event_id"), []byte("record_id"), []byte("object_type"), []byte("operation"), []byte("targets"), []byte("data"), []byte("occurred_at")}
	batchField  = []byte("events")
)

// caseVariant returns the field name that key spells in other letter case
// ("" when it spells none, or spells it exactly): the decoders would take
// it for that field. top adds a batch's "events".
func caseVariant(key []byte, top bool) string {
	for _, f := range eventFields {
		if bytes.EqualFold(key, f) {
			if bytes.Equal(key, f) {
				return ""
			}
			return string(f)
		}
	}
	if top && bytes.EqualFold(key, batchField) && !bytes.Equal(key, batchField) {
		return string(batchField)
	}
	return ""
}

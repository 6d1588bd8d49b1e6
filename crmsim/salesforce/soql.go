package salesforce

import (
	"cmp"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// soqlQuery is a parsed SOQL statement of the subset the emulator reads:
//
//	SELECT f1, f2 | COUNT() FROM Type
//	  [WHERE cond {AND|OR cond}]  -- cond: f op v | f [NOT] IN (v, ...) | f LIKE 'x%' | NOT cond | (cond)
//	  [ORDER BY f [ASC|DESC] [NULLS FIRST|LAST], ...] [LIMIT n] [OFFSET n]
//
// with op one of = != <> < <= > >= and v a quoted string, a number, true,
// false or null. Text comparisons ignore case, as SOQL's do.
type soqlQuery struct {
	Fields []string
	Count  bool
	Type   string
	Where  soqlExpr // nil: every record
	Order  []soqlOrder
	Limit  int // -1: none
	Offset int
}

type soqlOrder struct {
	Field      string
	Desc       bool
	NullsFirst bool
}

// soqlExpr is a condition of a WHERE clause.
type soqlExpr interface {
	match(get func(string) any) bool
	fields(add func(string))
}

type soqlAnd struct{ a, b soqlExpr }
type soqlOr struct{ a, b soqlExpr }
type soqlNot struct{ e soqlExpr }
type soqlCmp struct {
	Field string
	Op    string // = != < <= > >= LIKE IN NOTIN
	Vals  []any
}

func (e soqlAnd) match(g func(string) any) bool { return e.a.match(g) && e.b.match(g) }
func (e soqlOr) match(g func(string) any) bool  { return e.a.match(g) || e.b.match(g) }
func (e soqlNot) match(g func(string) any) bool { return !e.e.match(g) }
func (e soqlAnd) fields(add func(string))       { e.a.fields(add); e.b.fields(add) }
func (e soqlOr) fields(add func(string))        { e.a.fields(add); e.b.fields(add) }
func (e soqlNot) fields(add func(string))       { e.e.fields(add) }
func (e soqlCmp) fields(add func(string))       { add(e.Field) }

func (e soqlCmp) match(get func(string) any) bool {
	v := get(e.Field)
	switch e.Op {
	case "IN":
		for _, w := range e.Vals {
			if compare(v, w) == 0 {
				return true
			}
		}
		return false
	case "NOTIN":
		for _, w := range e.Vals {
			if compare(v, w) == 0 {
				return false
			}
		}
		return true
	case "LIKE":
		s, ok := v.(string)
		pat, _ := e.Vals[0].(string)
		return ok && likeRegexp(pat).MatchString(s)
	}
	w := e.Vals[0]
	if v == nil || w == nil {
		switch e.Op {
		case "=":
			return v == nil && w == nil
		case "!=":
			return (v == nil) != (w == nil)
		}
		return false
	}
	c := compare(v, w)
	switch e.Op {
	case "=":
		return c == 0
	case "!=":
		return c != 0
	case "<":
		return c < 0
	case "<=":
		return c <= 0
	case ">":
		return c > 0
	default: // >=
		return c >= 0
	}
}

// likeRegexp turns a SOQL LIKE pattern (% any run, _ one character) into a
// case-insensitive regular expression.
func likeRegexp(pat string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("(?is)^")
	for _, r := range pat {
		switch r {
		case '%':
			b.WriteString(".*")
		case '_':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// compare orders two field values: nil first, numbers as numbers, booleans
// false before true, everything else as text without regard to case.
func compare(a, b any) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	if x, ok := number(a); ok {
		if y, ok := number(b); ok {
			return cmp.Compare(x, y)
		}
	}
	if x, ok := a.(bool); ok {
		if y, ok := b.(bool); ok {
			switch {
			case x == y:
				return 0
			case !x:
				return -1
			}
			return 1
		}
	}
	return strings.Compare(strings.ToLower(fmt.Sprint(a)), strings.ToLower(fmt.Sprint(b)))
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	}
	return 0, false
}

// soqlError is a statement the parser cannot read: MALFORMED_QUERY.
type soqlError struct{ msg string }

func (e *soqlError) Error() string { return e.msg }

type token struct {
	kind byte // 'i' identifier, 's' string, 'n' number, 'p' punctuation, 0 end
	text string
	pos  int
}

func tokenize(q string) ([]token, error) {
	var out []token
	rs := []rune(q)
	for i := 0; i < len(rs); {
		r := rs[i]
		switch {
		case unicode.IsSpace(r):
			i++
		case unicode.IsLetter(r) || r == '_':
			j := i
			for j < len(rs) && (unicode.IsLetter(rs[j]) || unicode.IsDigit(rs[j]) || rs[j] == '_' || rs[j] == '.') {
				j++
			}
			out = append(out, token{'i', string(rs[i:j]), i})
			i = j
		case unicode.IsDigit(r) || (r == '-' && i+1 < len(rs) && unicode.IsDigit(rs[i+1])):
			j := i + 1
			for j < len(rs) && (unicode.IsDigit(rs[j]) || rs[j] == '.') {
				j++
			}
			out = append(out, token{'n', string(rs[i:j]), i})
			i = j
		case r == '\'':
			var b strings.Builder
			j := i + 1
			for ; j < len(rs) && rs[j] != '\''; j++ {
				if rs[j] == '\\' && j+1 < len(rs) {
					j++
					switch rs[j] {
					case 'n':
						b.WriteRune('\n')
					case 't':
						b.WriteRune('\t')
					default:
						b.WriteRune(rs[j])
					}
					continue
				}
				b.WriteRune(rs[j])
			}
			if j >= len(rs) {
				return nil, &soqlError{fmt.Sprintf("unterminated string literal at position %d", i)}
			}
			out = append(out, token{'s', b.String(), i})
			i = j + 1
		default:
			two := ""
			if i+1 < len(rs) {
				two = string(rs[i : i+2])
			}
			switch {
			case two == "!=" || two == "<>" || two == "<=" || two == ">=":
				out = append(out, token{'p', two, i})
				i += 2
			case strings.ContainsRune("(),=<>*", r):
				out = append(out, token{'p', string(r), i})
				i++
			default:
				return nil, &soqlError{fmt.Sprintf("unexpected character '%c' at position %d", r, i)}
			}
		}
	}
	return append(out, token{pos: len(rs)}), nil
}

type soqlParser struct {
	toks []token
	i    int
}

func (p *soqlParser) peek() token { return p.toks[p.i] }
func (p *soqlParser) next() token {
	t := p.toks[p.i]
	if t.kind != 0 {
		p.i++
	}
	return t
}

// keyword reports (and consumes) the next token when it is the keyword kw.
func (p *soqlParser) keyword(kw string) bool {
	if t := p.peek(); t.kind == 'i' && strings.EqualFold(t.text, kw) {
		p.i++
		return true
	}
	return false
}

func (p *soqlParser) punct(s string) bool {
	if t := p.peek(); t.kind == 'p' && t.text == s {
		p.i++
		return true
	}
	return false
}

func (p *soqlParser) fail(want string) error {
	t := p.peek()
	if t.kind == 0 {
		return &soqlError{"unexpected end of query, expecting " + want}
	}
	return &soqlError{fmt.Sprintf("unexpected token: '%s' at position %d, expecting %s", t.text, t.pos, want)}
}

func (p *soqlParser) ident(what string) (string, error) {
	if t := p.peek(); t.kind == 'i' {
		p.i++
		return t.text, nil
	}
	return "", p.fail(what)
}

var comparisons = map[string]bool{"=": true, "!=": true, "<>": true, "<": true, "<=": true, ">": true, ">=": true}

var reserved = map[string]bool{"SELECT": true, "FROM": true, "WHERE": true, "AND": true, "OR": true, "NOT": true, "IN": true,
	"LIKE": true, "ORDER": true, "BY": true, "LIMIT": true, "OFFSET": true, "ASC": true, "DESC": true, "NULLS": true}

// parseSOQL reads q, or says where it stops making sense.
func parseSOQL(q string) (*soqlQuery, error) {
	toks, err := tokenize(q)
	if err != nil {
		return nil, err
	}
	p := &soqlParser{toks: toks}
	out := &soqlQuery{Limit: -1}
	if !p.keyword("SELECT") {
		return nil, p.fail("SELECT")
	}
	if t := p.peek(); t.kind == 'i' && strings.EqualFold(t.text, "COUNT") && p.toks[p.i+1].text == "(" {
		p.i += 2
		if !p.punct(")") {
			return nil, p.fail("')'")
		}
		out.Count = true
	} else {
		for {
			f, err := p.ident("a field name")
			if err != nil {
				return nil, err
			}
			if reserved[strings.ToUpper(f)] {
				return nil, &soqlError{fmt.Sprintf("unexpected token: '%s', expecting a field name", f)}
			}
			out.Fields = append(out.Fields, f)
			if !p.punct(",") {
				break
			}
		}
	}
	if !p.keyword("FROM") {
		return nil, p.fail("FROM")
	}
	if out.Type, err = p.ident("an object name"); err != nil {
		return nil, err
	}
	if p.keyword("WHERE") {
		if out.Where, err = p.or(); err != nil {
			return nil, err
		}
	}
	if p.keyword("ORDER") {
		if !p.keyword("BY") {
			return nil, p.fail("BY")
		}
		for {
			f, err := p.ident("a field name")
			if err != nil {
				return nil, err
			}
			o := soqlOrder{Field: f}
			if p.keyword("DESC") {
				o.Desc = true
			} else {
				p.keyword("ASC")
			}
			o.NullsFirst = !o.Desc
			if p.keyword("NULLS") {
				switch {
				case p.keyword("FIRST"):
					o.NullsFirst = true
				case p.keyword("LAST"):
					o.NullsFirst = false
				default:
					return nil, p.fail("FIRST or LAST")
				}
			}
			out.Order = append(out.Order, o)
			if !p.punct(",") {
				break
			}
		}
	}
	if p.keyword("LIMIT") {
		if out.Limit, err = p.count(); err != nil {
			return nil, err
		}
	}
	if p.keyword("OFFSET") {
		if out.Offset, err = p.count(); err != nil {
			return nil, err
		}
	}
	if p.peek().kind != 0 {
		return nil, p.fail("end of query")
	}
	return out, nil
}

func (p *soqlParser) count() (int, error) {
	t := p.next()
	n, err := strconv.Atoi(t.text)
	if t.kind != 'n' || err != nil || n < 0 {
		return 0, &soqlError{fmt.Sprintf("unexpected token: '%s', expecting a non-negative integer", t.text)}
	}
	return n, nil
}

func (p *soqlParser) or() (soqlExpr, error) {
	e, err := p.and()
	for err == nil && p.keyword("OR") {
		var b soqlExpr
		if b, err = p.and(); err == nil {
			e = soqlOr{e, b}
		}
	}
	return e, err
}

func (p *soqlParser) and() (soqlExpr, error) {
	e, err := p.factor()
	for err == nil && p.keyword("AND") {
		var b soqlExpr
		if b, err = p.factor(); err == nil {
			e = soqlAnd{e, b}
		}
	}
	return e, err
}

func (p *soqlParser) factor() (soqlExpr, error) {
	if p.keyword("NOT") {
		e, err := p.factor()
		return soqlNot{e}, err
	}
	if p.punct("(") {
		e, err := p.or()
		if err != nil {
			return nil, err
		}
		if !p.punct(")") {
			return nil, p.fail("')'")
		}
		return e, nil
	}
	f, err := p.ident("a field name")
	if err != nil {
		return nil, err
	}
	c := soqlCmp{Field: f}
	switch t := p.peek(); {
	case p.keyword("IN"):
		c.Op = "IN"
	case p.keyword("NOT"):
		if !p.keyword("IN") {
			return nil, p.fail("IN")
		}
		c.Op = "NOTIN"
	case p.keyword("LIKE"):
		v := p.next()
		if v.kind != 's' {
			return nil, &soqlError{fmt.Sprintf("unexpected token: '%s', LIKE expects a string literal", v.text)}
		}
		c.Op, c.Vals = "LIKE", []any{v.text}
		return c, nil
	case t.kind == 'p' && comparisons[t.text]:
		p.i++
		c.Op = t.text
		if c.Op == "<>" {
			c.Op = "!="
		}
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		c.Vals = []any{v}
		return c, nil
	default:
		return nil, p.fail("an operator")
	}
	if !p.punct("(") {
		return nil, p.fail("'('")
	}
	for {
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		c.Vals = append(c.Vals, v)
		if p.punct(")") {
			return c, nil
		}
		if !p.punct(",") {
			return nil, p.fail("',' or ')'")
		}
	}
}

func (p *soqlParser) value() (any, error) {
	t := p.next()
	switch t.kind {
	case 's':
		return t.text, nil
	case 'n':
		f, err := strconv.ParseFloat(t.text, 64)
		if err != nil {
			return nil, &soqlError{"malformed number " + t.text}
		}
		return f, nil
	case 'i':
		switch strings.ToLower(t.text) {
		case "null":
			return nil, nil
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
	}
	return nil, &soqlError{fmt.Sprintf("unexpected token: '%s', expecting a literal value", t.text)}
}

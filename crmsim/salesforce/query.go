package salesforce

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/recordsync/record-sync/crmsim"
)

// Query batch sizes: 2000 records a page unless the client asks for fewer
// with Sforce-Query-Options: batchSize=N (200 to 2000).
const (
	defaultBatch = 2000
	minBatch     = 200
	maxCursors   = 50
)

// cursor is the rest of a query's result that nextRecordsUrl pages
// through.
type cursor struct {
	ids    []string
	fields []string
	batch  int
	total  int
}

// cursors are the open query locators, oldest dropped first past
// maxCursors (Salesforce also limits the open cursors of a user).
type cursors struct {
	byID  map[string]*cursor
	order []string
	next  int
}

func (cs *cursors) open(cur *cursor) string {
	cs.next++
	id := fmt.Sprintf("01gsim%09d", cs.next)
	cs.byID[id] = cur
	cs.order = append(cs.order, id)
	if len(cs.order) > maxCursors {
		delete(cs.byID, cs.order[0])
		cs.order = cs.order[1:]
	}
	return id
}

// batchSize reads Sforce-Query-Options.
func batchSize(r *http.Request) int {
	for _, opt := range strings.Split(r.Header.Get("Sforce-Query-Options"), ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(opt), "batchSize="); ok {
			if n, err := strconv.Atoi(v); err == nil {
				return min(max(n, minBatch), defaultBatch)
			}
		}
	}
	return defaultBatch
}

// query answers GET query?q= (live records) and queryAll?q= (the recycle
// bin too).
func (c *CRM) query(all bool) handler {
	return func(k call) {
		q, err := parseSOQL(k.r.URL.Query().Get("q"))
		if err != nil {
			var se *soqlError
			if errors.As(err, &se) {
				writeErrs(k.w, http.StatusBadRequest, "MALFORMED_QUERY", se.msg)
			} else {
				writeErrs(k.w, http.StatusBadRequest, "MALFORMED_QUERY", err.Error())
			}
			return
		}
		o, ok := objectFor(q.Type)
		if !ok {
			writeErrs(k.w, http.StatusBadRequest, "INVALID_TYPE", fmt.Sprintf("sObject type '%s' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names.", q.Type))
			return
		}
		if msg := resolveFields(o, q); msg != "" {
			writeErrs(k.w, http.StatusBadRequest, "INVALID_FIELD", msg)
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		candidates := make([]*record, 0, c.store.Len())
		for _, r := range c.store.All() {
			if r.Type == o.Name && (!r.Deleted || all) {
				candidates = append(candidates, &r)
			}
		}
		match := q.run(candidates)
		if q.Count {
			crmsim.WriteJSON(k.w, http.StatusOK, contentType, map[string]any{"totalSize": len(match), "done": true, "records": []any{}})
			return
		}
		ids := make([]string, len(match))
		for i, r := range match {
			ids[i] = r.ID
		}
		c.page(k, &cursor{ids: ids, fields: q.Fields, batch: batchSize(k.r), total: len(ids)}, "")
	}
}

// page answers one page of cur, opening a locator for the rest.
func (c *CRM) page(k call, cur *cursor, locator string) {
	n := min(cur.batch, len(cur.ids))
	records := make([]map[string]any, 0, n)
	for _, id := range cur.ids[:n] {
		if r, ok := c.getLocked(id); ok {
			records = append(records, r.json(k.base, cur.fields))
		}
	}
	body := map[string]any{"totalSize": cur.total, "done": n == len(cur.ids), "records": records}
	if rest := cur.ids[n:]; len(rest) > 0 {
		if locator == "" {
			locator = c.cursors.open(cur)
		}
		cur.ids = rest
		body["nextRecordsUrl"] = fmt.Sprintf("%s/query/%s-%d", k.base, locator, cur.total-len(rest))
	} else if locator != "" {
		delete(c.cursors.byID, locator)
	}
	crmsim.WriteJSON(k.w, http.StatusOK, contentType, body)
}

// queryMore answers GET query/{locator}-{offset}, the nextRecordsUrl of
// the page before.
func (c *CRM) queryMore(k call) {
	locator, offset, _ := strings.Cut(k.r.PathValue("locator"), "-")
	c.mu.Lock()
	defer c.mu.Unlock()
	cur, ok := c.cursors.byID[locator]
	if n, err := strconv.Atoi(offset); !ok || err != nil || n != cur.total-len(cur.ids) {
		writeErrs(k.w, http.StatusBadRequest, "INVALID_QUERY_LOCATOR", "invalid query locator")
		return
	}
	c.page(k, cur, locator)
}

// resolveFields puts the query's field names in their canonical case, or
// says which one the object does not have.
func resolveFields(o *object, q *soqlQuery) string {
	bad := ""
	canon := func(name string) string {
		f, ok := o.field(name)
		if !ok {
			if bad == "" {
				bad = fmt.Sprintf("No such column '%s' on entity '%s'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.", name, o.Name)
			}
			return name
		}
		return f.Name
	}
	for i, f := range q.Fields {
		q.Fields[i] = canon(f)
	}
	for i := range q.Order {
		q.Order[i].Field = canon(q.Order[i].Field)
	}
	if q.Where != nil {
		q.Where = canonExpr(q.Where, canon)
	}
	return bad
}

func canonExpr(e soqlExpr, canon func(string) string) soqlExpr {
	switch x := e.(type) {
	case soqlAnd:
		return soqlAnd{canonExpr(x.a, canon), canonExpr(x.b, canon)}
	case soqlOr:
		return soqlOr{canonExpr(x.a, canon), canonExpr(x.b, canon)}
	case soqlNot:
		return soqlNot{canonExpr(x.e, canon)}
	case soqlCmp:
		x.Field = canon(x.Field)
		return x
	}
	return e
}

// run returns the records of rs the query selects, in its order, past its
// offset and within its limit.
func (q *soqlQuery) run(rs []*record) []*record {
	var match []*record
	for _, r := range rs {
		if q.Where == nil || q.Where.match(r.value) {
			match = append(match, r)
		}
	}
	sortRecords(match, q.Order)
	match = match[min(q.Offset, len(match)):]
	if q.Limit >= 0 {
		match = match[:min(q.Limit, len(match))]
	}
	return match
}

// sortRecords orders records by the ORDER BY clause, then by Id (creation
// order) so that pages are stable.
func sortRecords(rs []*record, order []soqlOrder) {
	slices.SortFunc(rs, func(a, b *record) int {
		for _, o := range order {
			va, vb := a.value(o.Field), b.value(o.Field)
			if (va == nil) != (vb == nil) {
				if (va == nil) == o.NullsFirst {
					return -1
				}
				return 1
			}
			c := compare(va, vb)
			if o.Desc {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return strings.Compare(a.ID[3:], b.ID[3:])
	})
}

package outreach

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/recordsync/record-sync/crmsim"
)

// Paging of list requests: 50 a page unless page[size] says otherwise, at
// most 1000.
const (
	defaultPageSize = 50
	maxPageSize     = 1000
)

// sortable are the attributes a list may filter and sort on, besides the
// prospect's own attributes.
var listFields = map[string]bool{"id": true, "createdAt": true, "updatedAt": true}

// listQuery is a parsed list request.
type listQuery struct {
	filters map[string][]string // attribute -> values (any of), or one "low..high" range
	sorts   []string            // attribute, "-attribute" descending
	size    int
	offset  int
}

func known(attr string) bool { return listFields[attr] || slices.Contains(attributes, attr) }

func badRequest(w http.ResponseWriter, detail, param string) {
	writeErr(w, http.StatusBadRequest, errorObject{ID: "badRequest", Title: "Bad Request", Detail: detail, Source: map[string]string{"parameter": param}})
}

// parseList reads filter[...], sort, page[size] and page[after], answering
// the error itself when one is not valid.
func parseList(w http.ResponseWriter, r *http.Request) (*listQuery, bool) {
	q := &listQuery{filters: map[string][]string{}, size: defaultPageSize}
	for key, vals := range r.URL.Query() {
		switch {
		case strings.HasPrefix(key, "filter[") && strings.HasSuffix(key, "]"):
			attr := strings.TrimSuffix(strings.TrimPrefix(key, "filter["), "]")
			attr = strings.TrimSuffix(attr, "][") // newFilterSyntax: filter[x][]=a&filter[x][]=b
			if !known(attr) {
				badRequest(w, "Unknown filter attribute '"+attr+"' for prospect.", key)
				return nil, false
			}
			for _, v := range vals {
				if strings.Contains(v, "..") {
					q.filters[attr] = append(q.filters[attr], v)
					continue
				}
				q.filters[attr] = append(q.filters[attr], strings.Split(v, ",")...)
			}
		case key == "sort":
			for _, s := range strings.Split(vals[0], ",") {
				if !known(strings.TrimPrefix(s, "-")) {
					badRequest(w, "Unknown sort attribute '"+s+"' for prospect.", "sort")
					return nil, false
				}
				q.sorts = append(q.sorts, s)
			}
		case key == "page[size]" || key == "page[limit]":
			n, err := strconv.Atoi(vals[0])
			if err != nil || n < 1 || n > maxPageSize {
				badRequest(w, fmt.Sprintf("page[size] must be between 1 and %d.", maxPageSize), key)
				return nil, false
			}
			q.size = n
		case key == "page[after]":
			n, err := decodeCursor(vals[0])
			if err != nil {
				badRequest(w, "page[after] is not a cursor this API issued.", key)
				return nil, false
			}
			q.offset = n
		}
	}
	return q, true
}

// Cursors are opaque to clients; the emulator's encode the offset of the
// next page (a prospect created meanwhile can shift a page by one, where
// Outreach's keyset cursors would not).
func encodeCursor(n int) string {
	return base64.RawURLEncoding.EncodeToString([]byte("o:" + strconv.Itoa(n)))
}

func decodeCursor(s string) (int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return 0, err
	}
	v, ok := strings.CutPrefix(string(b), "o:")
	if !ok {
		return 0, fmt.Errorf("not a cursor")
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("not a cursor")
	}
	return n, nil
}

// field returns p's attribute as filters and sorts see it: a list for
// emails and tags, a string or number otherwise.
func (p *prospect) field(attr string) any {
	switch attr {
	case "id":
		return float64(p.ID)
	case "createdAt":
		return p.CreatedAt.Format(time.RFC3339)
	case "updatedAt":
		return p.UpdatedAt.Format(time.RFC3339)
	}
	return p.Attributes[attr]
}

func text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case string:
		return x
	}
	return fmt.Sprint(v)
}

// compareText orders two attribute values: numerically when both are numbers,
// else as text without regard to case.
func compareText(a, b string) int {
	x, errA := strconv.ParseFloat(a, 64)
	y, errB := strconv.ParseFloat(b, 64)
	if errA == nil && errB == nil {
		return cmp.Compare(x, y)
	}
	return strings.Compare(strings.ToLower(a), strings.ToLower(b))
}

// matches reports whether p passes every filter: for a list attribute,
// one of its values must be one of the filter's; a "low..high" filter
// (inf and neginf open-ended) is a range.
func (q *listQuery) matches(p *prospect) bool {
	for attr, want := range q.filters {
		v := p.field(attr)
		var have []string
		if list, ok := v.([]any); ok {
			for _, x := range list {
				have = append(have, text(x))
			}
		} else if v != nil {
			have = []string{text(v)}
		}
		ok := false
		for _, w := range want {
			for _, h := range have {
				if low, high, isRange := strings.Cut(w, ".."); isRange {
					ok = ok || ((low == "neginf" || compareText(h, low) >= 0) && (high == "inf" || compareText(h, high) <= 0))
				} else {
					ok = ok || compareText(h, w) == 0
				}
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// list answers GET /prospects: filtered, sorted (by id unless sort says
// otherwise) and paged by cursor, with links.next while more remain and
// meta.count the number that match.
func (c *CRM) list(w http.ResponseWriter, r *http.Request, _ bool) {
	q, ok := parseList(w, r)
	if !ok {
		return
	}
	c.mu.Lock()
	var match []*prospect
	if want := q.filters["emails"]; len(want) == 1 && !strings.Contains(want[0], "..") {
		for id := range c.withEmail(strings.ToLower(want[0])) {
			if p, ok := c.getLocked(id); ok && q.matches(p) {
				match = append(match, p)
			}
		}
	} else {
		for _, p := range c.store.All() {
			if q.matches(&p) {
				match = append(match, &p)
			}
		}
	}
	slices.SortFunc(match, func(a, b *prospect) int {
		for _, s := range q.sorts {
			attr := strings.TrimPrefix(s, "-")
			d := compareText(text(a.field(attr)), text(b.field(attr)))
			if strings.HasPrefix(s, "-") {
				d = -d
			}
			if d != 0 {
				return d
			}
		}
		return a.ID - b.ID
	})
	data := []resource{}
	end := min(q.offset+q.size, len(match))
	for _, p := range match[min(q.offset, len(match)):end] {
		data = append(data, p.resource())
	}
	c.mu.Unlock()
	self := "http://" + r.Host + r.URL.Path
	links := map[string]string{"first": self + "?" + pageQuery(r.URL.Query(), 0, q.size)}
	if end < len(match) {
		links["next"] = self + "?" + pageQuery(r.URL.Query(), end, q.size)
	}
	crmsim.WriteJSON(w, http.StatusOK, mediaType, map[string]any{"data": data, "meta": map[string]int{"count": len(match)}, "links": links})
}

// pageQuery is the list request's query with the page at offset.
func pageQuery(v url.Values, offset, size int) string {
	out := url.Values{}
	for k, vals := range v {
		if k != "page[after]" {
			out[k] = vals
		}
	}
	out.Set("page[size]", strconv.Itoa(size))
	if offset > 0 {
		out.Set("page[after]", encodeCursor(offset))
	}
	return out.Encode()
}

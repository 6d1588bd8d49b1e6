package hubspot

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/recordsync/record-sync/crmsim"
)

// Search limits of HubSpot's CRM search API.
const (
	maxSearchLimit   = 200
	maxFilterGroups  = 5
	maxGroupFilters  = 6
	maxFilters       = 18
	maxSearchResults = 10000
)

type searchFilter struct {
	PropertyName string   `json:"propertyName"`
	Operator     string   `json:"operator"`
	Value        *string  `json:"value"`
	HighValue    *string  `json:"highValue"`
	Values       []string `json:"values"`
}

type searchRequest struct {
	FilterGroups []struct {
		Filters []searchFilter `json:"filters"`
	} `json:"filterGroups"`
	Sorts      []json.RawMessage `json:"sorts"`
	Query      string            `json:"query"`
	Properties []string          `json:"properties"`
	Limit      *int              `json:"limit"`
	After      string            `json:"after"`
}

type searchSort struct {
	PropertyName string `json:"propertyName"`
	Direction    string `json:"direction"`
}

// searchable are the properties a search's query text is matched against
// (HubSpot's default searchable contact properties).
var searchable = []string{"firstname", "lastname", "email", "phone", "company", "hs_object_id"}

// search answers POST .../contacts/search: filter groups (OR of groups, AND
// within one), a query text, sorts, properties and paging by after. It
// never returns archived contacts. HubSpot's index lags writes by seconds;
// the emulator's does not.
func (c *CRM) search(w http.ResponseWriter, r *http.Request, _ bool, _ float64) {
	var req searchRequest
	if !decode(w, r, &req) {
		return
	}
	limit := 10
	if req.Limit != nil {
		limit = *req.Limit
	}
	sorts, err := checkSearch(&req, limit)
	if err != "" {
		writeErr(w, http.StatusBadRequest, "VALIDATION_ERROR", err)
		return
	}
	offset := 0
	if req.After != "" {
		n, convErr := strconv.Atoi(req.After)
		if convErr != nil || n < 0 {
			writeErr(w, http.StatusBadRequest, "VALIDATION_ERROR", "after must be a non-negative integer; got "+req.After)
			return
		}
		offset = n
	}
	if offset+limit > maxSearchResults {
		writeErr(w, http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("The search API can page through at most %d results", maxSearchResults))
		return
	}
	c.mu.Lock()
	matches := c.sortedIDs(func(ct *contact) bool { return !ct.Archived && matchSearch(ct, &req) })
	slices.SortStableFunc(matches, func(a, b *contact) int {
		for _, s := range sorts {
			va, _ := a.property(s.PropertyName)
			vb, _ := b.property(s.PropertyName)
			if d := compareValues(va, vb); d != 0 {
				if s.Direction == "DESCENDING" {
					return -d
				}
				return d
			}
		}
		return 0
	})
	resp := struct {
		Total   int          `json:"total"`
		Results []objectJSON `json:"results"`
		Paging  any          `json:"paging,omitempty"`
	}{Total: len(matches), Results: []objectJSON{}}
	props := orDefault(req.Properties)
	for i := offset; i < len(matches) && i < offset+limit; i++ {
		resp.Results = append(resp.Results, matches[i].json(nil, props))
	}
	c.mu.Unlock()
	if next := offset + limit; next < resp.Total {
		resp.Paging = map[string]any{"next": map[string]string{"after": strconv.Itoa(next)}}
	}
	crmsim.WriteJSON(w, http.StatusOK, "application/json;charset=utf-8", resp)
}

var operators = map[string]bool{"EQ": true, "NEQ": true, "LT": true, "LTE": true, "GT": true, "GTE": true, "BETWEEN": true,
	"IN": true, "NOT_IN": true, "HAS_PROPERTY": true, "NOT_HAS_PROPERTY": true, "CONTAINS_TOKEN": true, "NOT_CONTAINS_TOKEN": true}

// checkSearch validates a search request against HubSpot's limits; it
// returns its sorts, or the error message.
func checkSearch(req *searchRequest, limit int) ([]searchSort, string) {
	if limit < 0 || limit > maxSearchLimit {
		return nil, fmt.Sprintf("limit must be between 0 and %d; got %d", maxSearchLimit, limit)
	}
	if len(req.FilterGroups) > maxFilterGroups {
		return nil, fmt.Sprintf("Too many filter groups: %d. The maximum is %d.", len(req.FilterGroups), maxFilterGroups)
	}
	total := 0
	for _, g := range req.FilterGroups {
		if len(g.Filters) > maxGroupFilters {
			return nil, fmt.Sprintf("Too many filters in a filter group: %d. The maximum is %d.", len(g.Filters), maxGroupFilters)
		}
		total += len(g.Filters)
		for _, f := range g.Filters {
			if !operators[f.Operator] {
				return nil, fmt.Sprintf("Unknown filter operator %q on property %s", f.Operator, f.PropertyName)
			}
			if f.PropertyName == "" {
				return nil, "Each filter needs a propertyName"
			}
			needsValue := f.Operator != "HAS_PROPERTY" && f.Operator != "NOT_HAS_PROPERTY" && f.Operator != "IN" && f.Operator != "NOT_IN"
			if needsValue && f.Value == nil {
				return nil, fmt.Sprintf("Filter on %s with operator %s needs a value", f.PropertyName, f.Operator)
			}
			if f.Operator == "BETWEEN" && f.HighValue == nil {
				return nil, fmt.Sprintf("Filter on %s with operator BETWEEN needs a highValue", f.PropertyName)
			}
			if (f.Operator == "IN" || f.Operator == "NOT_IN") && len(f.Values) == 0 {
				return nil, fmt.Sprintf("Filter on %s with operator %s needs values", f.PropertyName, f.Operator)
			}
		}
	}
	if total > maxFilters {
		return nil, fmt.Sprintf("Too many filters: %d. The maximum is %d.", total, maxFilters)
	}
	var sorts []searchSort
	for _, raw := range req.Sorts {
		var s searchSort
		var name string
		switch {
		case json.Unmarshal(raw, &name) == nil: // the client's sorts are strings: a property name, "-name" descending
			s.PropertyName, s.Direction = strings.TrimPrefix(name, "-"), "ASCENDING"
			if strings.HasPrefix(name, "-") {
				s.Direction = "DESCENDING"
			}
		case json.Unmarshal(raw, &s) == nil && s.PropertyName != "":
			if s.Direction == "" {
				s.Direction = "ASCENDING"
			}
		default:
			return nil, "sorts: each sort is a property name or {propertyName, direction}; got " + string(raw)
		}
		if s.Direction != "ASCENDING" && s.Direction != "DESCENDING" {
			return nil, "sorts: direction must be ASCENDING or DESCENDING; got " + s.Direction
		}
		sorts = append(sorts, s)
	}
	return sorts, ""
}

func matchSearch(ct *contact, req *searchRequest) bool {
	if q := strings.ToLower(strings.TrimSpace(req.Query)); q != "" {
		found := false
		for _, p := range searchable {
			if v, ok := ct.property(p); ok && strings.Contains(strings.ToLower(v), q) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if len(req.FilterGroups) == 0 {
		return true
	}
	for _, g := range req.FilterGroups {
		all := true
		for _, f := range g.Filters {
			if !matchFilter(ct, f) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

func matchFilter(ct *contact, f searchFilter) bool {
	v, has := ct.property(f.PropertyName)
	has = has && v != ""
	val := ""
	if f.Value != nil {
		val = *f.Value
	}
	switch f.Operator {
	case "HAS_PROPERTY":
		return has
	case "NOT_HAS_PROPERTY":
		return !has
	case "IN", "NOT_IN":
		in := false
		for _, x := range f.Values {
			in = in || (has && compareValues(v, x) == 0)
		}
		return in == (f.Operator == "IN")
	case "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN":
		tok := strings.Trim(strings.ToLower(val), "*")
		return (has && strings.Contains(strings.ToLower(v), tok)) == (f.Operator == "CONTAINS_TOKEN")
	case "NEQ":
		return !has || compareValues(v, val) != 0
	}
	if !has {
		return false
	}
	d := compareValues(v, val)
	switch f.Operator {
	case "EQ":
		return d == 0
	case "LT":
		return d < 0
	case "LTE":
		return d <= 0
	case "GT":
		return d > 0
	case "GTE":
		return d >= 0
	default: // BETWEEN
		return d >= 0 && compareValues(v, *f.HighValue) <= 0
	}
}

// compareValues orders two property values: as numbers when both are,
// as instants when both are (RFC 3339 or milliseconds since the epoch),
// else as text without regard to case.
func compareValues(a, b string) int {
	x, errA := strconv.ParseFloat(a, 64)
	y, errB := strconv.ParseFloat(b, 64)
	if errA == nil && errB == nil {
		return cmp.Compare(x, y)
	}
	ta, okA := instant(a)
	tb, okB := instant(b)
	if okA && okB {
		return ta.Compare(tb)
	}
	return strings.Compare(strings.ToLower(a), strings.ToLower(b))
}

func instant(s string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.UnixMilli(ms), true
	}
	return time.Time{}, false
}

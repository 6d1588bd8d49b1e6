package salesforce

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"github.com/recordsync/record-sync/crm"
	"github.com/recordsync/record-sync/shared/event"
)

var _ crm.Reader = (*Client)(nil)

// Read implements crm.Reader: one SOQL query per sObject type for the
// records' external ids (System A's record ids, which every record has),
// split like a delete's when the ids make it long, selecting Id and the
// schema's fields. Deleted records (in the recycle bin) read as not found.
func (c *Client) Read(ctx context.Context, ep crm.Endpoint, keys []crm.Record) ([]crm.Remote, error) {
	out := make([]crm.Remote, len(keys))
	byType := map[string][]int{}
	for i, k := range keys {
		ev := k.Event
		if ev == nil {
			ev = &event.Event{}
		}
		byType[sobject(ev)] = append(byType[sobject(ev)], i)
	}
	for typ, idx := range byType {
		fields := schemas[event.ObjectContact].Fields
		if typ == objects[event.ObjectLead] {
			fields = schemas[event.ObjectLead].Fields
		}
		found := map[string]crm.Remote{}
		for start := 0; start < len(idx); {
			q := "SELECT Id, " + ExternalID + ", " + strings.Join(fields, ", ") + " FROM " + typ + " WHERE " + ExternalID + " IN ("
			end := start
			for ; end < len(idx) && (end == start || len(q) < maxQueryLen); end++ {
				if end > start {
					q += ", "
				}
				q += "'" + soqlEscape(keys[idx[end]].Identity) + "'"
			}
			q += ")"
			var resp struct {
				Records []map[string]any `json:"records"`
			}
			if _, res, ok := c.Call(ctx, ep, http.MethodGet, "/query?q="+url.QueryEscape(q), nil, &resp); !ok {
				return nil, &crm.ReadError{Result: res}
			}
			for _, r := range resp.Records {
				ext, _ := r[ExternalID].(string)
				id, _ := r["Id"].(string)
				rem := crm.Remote{Found: true, CRMID: id, Fields: map[string]any{}}
				for _, f := range fields {
					if v, ok := r[f]; ok && v != nil {
						rem.Fields[f] = v
					}
				}
				found[strings.ToLower(ext)] = rem
			}
			start = end
		}
		for _, i := range idx {
			out[i] = found[strings.ToLower(keys[i].Identity)]
		}
	}
	return out, nil
}

// MaxRead implements crm.Reader.
func (c *Client) MaxRead() int { return MaxBatch }

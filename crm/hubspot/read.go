package hubspot

import (
	"context"
	"net/http"
	"strings"

	"github.com/recordsync/record-sync/crm"
)

var _ crm.Reader = (*Client)(nil)

// readResponse is a batch read's answer with every property asked for.
type readResponse struct {
	Results []struct {
		ID         string            `json:"id"`
		Properties map[string]string `json:"properties"`
	} `json:"results"`
}

// Read implements crm.Reader: a batch read by HubSpot id for the records
// whose id is known, one by email (idProperty) for the others, each asking
// for the schema's properties. Archived contacts read as not found.
func (c *Client) Read(ctx context.Context, ep crm.Endpoint, keys []crm.Record) ([]crm.Remote, error) {
	out := make([]crm.Remote, len(keys))
	var byID, byEmail []int
	for i, k := range keys {
		if k.CRMID != "" {
			byID = append(byID, i)
		} else {
			byEmail = append(byEmail, i)
		}
	}
	for _, group := range []struct {
		idx        []int
		idProperty string
	}{{byID, ""}, {byEmail, "email"}} {
		if len(group.idx) == 0 {
			continue
		}
		inputs := make([]input, len(group.idx))
		for j, i := range group.idx {
			inputs[j] = input{ID: keys[i].CRMID}
			if group.idProperty != "" {
				inputs[j] = input{ID: keys[i].Identity}
			}
		}
		body := map[string]any{"inputs": inputs, "properties": properties}
		if group.idProperty != "" {
			body["idProperty"] = group.idProperty
		}
		var resp readResponse
		if _, res, ok := c.Call(ctx, ep, http.MethodPost, batchPath+"read", body, &resp); !ok {
			return nil, &crm.ReadError{Result: res}
		}
		found := make(map[string]crm.Remote, len(resp.Results))
		for _, r := range resp.Results {
			fields := make(map[string]any, len(r.Properties))
			for _, p := range properties {
				if v := r.Properties[p]; v != "" {
					fields[p] = v
				}
			}
			key := r.ID
			if group.idProperty != "" {
				key = strings.ToLower(r.Properties["email"])
			}
			found[key] = crm.Remote{Found: true, CRMID: r.ID, Fields: fields}
		}
		for _, i := range group.idx {
			key := keys[i].CRMID
			if group.idProperty != "" {
				key = strings.ToLower(keys[i].Identity)
			}
			out[i] = found[key]
		}
	}
	return out, nil
}

// MaxRead implements crm.Reader: a batch read takes 100 inputs.
func (c *Client) MaxRead() int { return MaxBatch }

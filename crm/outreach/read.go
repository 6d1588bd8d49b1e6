package outreach

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/recordsync/record-sync/crm"
)

var _ crm.Reader = (*Client)(nil)

// maxRead is how many prospects one read asks for by id: Outreach's
// default page.
const maxRead = 50

// MaxRead implements crm.Reader.
func (c *Client) MaxRead() int { return maxRead }

type prospectList struct {
	Data []struct {
		ID         int            `json:"id"`
		Attributes map[string]any `json:"attributes"`
	} `json:"data"`
}

// Read implements crm.Reader: the prospects whose id is known in one list
// request (filter[id]=1,2,3), the others one lookup by filter[emails] each.
// A list attribute (emails, phones) reads as its first value, as a push
// writes one.
func (c *Client) Read(ctx context.Context, ep crm.Endpoint, keys []crm.Record) ([]crm.Remote, error) {
	out := make([]crm.Remote, len(keys))
	var ids []string
	byID := map[string][]int{}
	for i, k := range keys {
		if k.CRMID != "" {
			if _, seen := byID[k.CRMID]; !seen {
				ids = append(ids, k.CRMID)
			}
			byID[k.CRMID] = append(byID[k.CRMID], i)
			continue
		}
		var list prospectList
		if _, res, ok := c.Call(ctx, ep, http.MethodGet, "/api/v2/prospects?filter[emails]="+url.QueryEscape(k.Identity), nil, &list); !ok {
			return nil, &crm.ReadError{Result: res}
		}
		if len(list.Data) > 0 {
			out[i] = remote(list.Data[0].ID, list.Data[0].Attributes)
		}
	}
	if len(ids) > 0 {
		var list prospectList
		path := "/api/v2/prospects?filter[id]=" + url.QueryEscape(strings.Join(ids, ",")) + "&page[size]=" + strconv.Itoa(len(ids))
		if _, res, ok := c.Call(ctx, ep, http.MethodGet, path, nil, &list); !ok {
			return nil, &crm.ReadError{Result: res}
		}
		for _, p := range list.Data {
			for _, i := range byID[strconv.Itoa(p.ID)] {
				out[i] = remote(p.ID, p.Attributes)
			}
		}
	}
	return out, nil
}

func remote(id int, attrs map[string]any) crm.Remote {
	r := crm.Remote{Found: true, CRMID: strconv.Itoa(id), Fields: map[string]any{}}
	for _, f := range schema.Fields {
		v, ok := attrs[f]
		if !ok || v == nil {
			continue
		}
		if list, isList := v.([]any); isList {
			if len(list) == 0 {
				continue
			}
			v = list[0]
		}
		r.Fields[f] = v
	}
	return r
}

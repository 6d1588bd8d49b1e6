// Command client is an example System A: it drives record-sync's HTTP edge
// through a client generated from the edge's OpenAPI description
// (client.gen.go, by oapi-codegen; go generate rewrites it): one event, a
// batch answered 207, the status right after the 202, a retry, the stats,
// the rule set replaced with its revision, and a preview.
//
//	RECORDSYNC_URL=http://127.0.0.1:8080 RECORDSYNC_API_KEY=... RECORDSYNC_ADMIN_KEY=... go run .
package main

//go:generate go run github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen@v2.8.2 -generate types,client -package main -o client.gen.go ../../tools/openapi/openapi-3.0.json

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, os.Getenv("RECORDSYNC_URL"), os.Getenv("RECORDSYNC_API_KEY"), os.Getenv("RECORDSYNC_ADMIN_KEY"), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(1)
	}
}

// key sets the X-API-Key header.
func key(k string) RequestEditorFn {
	return func(_ context.Context, req *http.Request) error {
		req.Header.Set("X-API-Key", k)
		return nil
	}
}

// run goes through the scenario against the edge at base, printing what
// each step answered, and fails on the first answer it did not expect.
func run(ctx context.Context, base, syncKey, adminKey string, out io.Writer) error {
	if base == "" || syncKey == "" || adminKey == "" {
		return errors.New("set RECORDSYNC_URL, RECORDSYNC_API_KEY and RECORDSYNC_ADMIN_KEY")
	}
	c, err := NewClientWithResponses(base, WithRequestEditorFn(key(syncKey)))
	if err != nil {
		return err
	}
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	data := map[string]any{"email": "ada-" + suffix + "@example.com", "first_name": "Ada"}
	hubspot := []string{"hubspot"}

	// One event: 202, and its status reads accepted (or later) at once.
	one, err := c.SyncEventWithResponse(ctx, nil, Event{RecordId: "ex-" + suffix, Operation: Create, Data: &data, Targets: &hubspot})
	if err != nil {
		return err
	}
	if one.JSON202 == nil {
		return fmt.Errorf("submit: %d %s", one.StatusCode(), one.Body)
	}
	fmt.Fprintf(out, "submit: 202 %s, event %s\n", one.JSON202.RecordId, one.JSON202.EventId)
	u, err := url.Parse(one.JSON202.StatusUrl)
	if err != nil {
		return err
	}
	receipt := u.Query().Get("accepted")
	st, err := c.GetStatusWithResponse(ctx, one.JSON202.RecordId, &GetStatusParams{Accepted: &receipt})
	if err != nil {
		return err
	}
	if st.JSON200 == nil {
		return fmt.Errorf("status right after the 202: %d %s", st.StatusCode(), st.Body)
	}
	fmt.Fprintf(out, "status: %s is %s\n", one.JSON202.RecordId, st.JSON200.Targets["hubspot"].State)

	// A batch with one bad event: 207, a result per event.
	bad := "has space"
	batch, err := c.SyncBatchWithResponse(ctx, BatchBody{Events: &[]Event{
		{RecordId: "exb-" + suffix, Operation: Delete, Targets: &hubspot},
		{RecordId: bad, Operation: Delete},
	}})
	if err != nil {
		return err
	}
	if batch.JSON207 == nil || batch.JSON207.Results == nil || len(*batch.JSON207.Results) != 2 {
		return fmt.Errorf("batch: %d %s", batch.StatusCode(), batch.Body)
	}
	for _, r := range *batch.JSON207.Results {
		detail := ""
		if r.Error != nil && r.Error.Errors != nil && len(*r.Error.Errors) > 0 {
			detail = " at " + *(*r.Error.Errors)[0].Location
		}
		fmt.Fprintf(out, "batch: event %d %s%s\n", r.Index, r.Status, detail)
	}

	// A retry of a record that has not failed: a 409 problem (404 while
	// its status is not yet recorded).
	retry, err := c.RetryRecordWithResponse(ctx, one.JSON202.RecordId, nil)
	if err != nil {
		return err
	}
	if retry.ApplicationproblemJSON409 == nil && retry.ApplicationproblemJSON404 == nil {
		return fmt.Errorf("retry: %d %s", retry.StatusCode(), retry.Body)
	}
	fmt.Fprintf(out, "retry: %d (nothing failed)\n", retry.StatusCode())

	stats, err := c.StatsWithResponse(ctx)
	if err != nil {
		return err
	}
	if stats.JSON200 == nil {
		return fmt.Errorf("stats: %d %s", stats.StatusCode(), stats.Body)
	}
	fmt.Fprintf(out, "stats: hubspot accepted %d\n", stats.JSON200.Targets["hubspot"].Accepted)

	// The rule set, replaced with the revision it replaces; without it, 428.
	admin, err := NewClientWithResponses(base, WithRequestEditorFn(key(adminKey)))
	if err != nil {
		return err
	}
	rules, err := admin.GetRulesWithResponse(ctx)
	if err != nil {
		return err
	}
	if rules.JSON200 == nil {
		return fmt.Errorf("rules: %d %s", rules.StatusCode(), rules.Body)
	}
	none, err := admin.PutRulesWithResponse(ctx, nil, PutRulesInputBody{Rules: rules.JSON200.Rules})
	if err != nil {
		return err
	}
	if none.ApplicationproblemJSON428 == nil {
		return fmt.Errorf("rules without a revision: %d %s", none.StatusCode(), none.Body)
	}
	rev := rules.JSON200.Revision
	put, err := admin.PutRulesWithResponse(ctx, nil, PutRulesInputBody{Revision: &rev, Rules: rules.JSON200.Rules})
	if err != nil {
		return err
	}
	if put.JSON200 == nil {
		return fmt.Errorf("rules with revision %d: %d %s", rev, put.StatusCode(), put.Body)
	}
	fmt.Fprintf(out, "rules: 428 without a revision; revision %d replaced by %d\n", rev, put.JSON200.Revision)

	pre, err := c.PreviewWithResponse(ctx, nil, Event{RecordId: "exp-" + suffix, Operation: Create, Data: &data, Targets: &hubspot})
	if err != nil {
		return err
	}
	if pre.JSON200 == nil {
		return fmt.Errorf("preview: %d %s", pre.StatusCode(), pre.Body)
	}
	fmt.Fprintf(out, "preview: hubspot %s\n", pre.JSON200.Targets["hubspot"].Decision.Action)
	return nil
}

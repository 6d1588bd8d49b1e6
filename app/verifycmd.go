package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/recordsync/record-sync/services/ingest"
)

// RunVerify is `recordsync verify --target T [--since 24h] [--sample N]
// [--repair]`: it asks the HTTP edge's admin endpoint POST /v1/sync/verify
// to read the target's synced records back from the CRM, draws its
// progress on stderr, prints each drifted record and the summary on
// stdout. It fails when the edge cannot be asked, or some records could
// not be read.
func RunVerify(ctx context.Context, env Env, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("target", "", "target (required)")
	since := fs.Duration("since", 0, "only records whose status changed within this duration (24h); all when 0")
	sample := fs.Int("sample", 0, "check a random sample of this many records (0: all)")
	repair := fs.Bool("repair", false, "re-enqueue each drifted record's last pushed event")
	url := fs.String("url", "http://"+env.HTTPAddr, "the HTTP edge (RECORDSYNC_HTTP_ADDR)")
	key := fs.String("key", "", "an admin key (default: the first of RECORDSYNC_ADMIN_KEYS)")
	asJSON := fs.Bool("json", false, "print the edge's lines as they come (application/x-ndjson)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *target == "" || fs.NArg() > 0 {
		return errors.New("usage: recordsync verify --target T [--since 24h] [--sample N] [--repair] [--url http://host:port] [--key K] [--json]")
	}
	if *key == "" && len(env.AdminKeys) > 0 {
		*key = env.AdminKeys[0]
	}
	if *key == "" {
		return errors.New("verify needs an admin key: --key or RECORDSYNC_ADMIN_KEYS")
	}
	body := ingest.VerifyRequest{Target: *target, Sample: *sample, Repair: *repair}
	if *since > 0 {
		body.Since = since.String()
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(*url, "/")+"/v1/sync/verify", bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", *key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer func() { _ = res.Body.Close() }()
	if res.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		return fmt.Errorf("verify: %s: %s", res.Status, bytes.TrimSpace(msg))
	}
	var summary *ingest.VerifyCounts
	bar := false
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	for sc.Scan() {
		if *asJSON {
			_, _ = fmt.Fprintln(stdout, sc.Text())
		}
		var l ingest.VerifyLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("verify: a line of the answer does not decode: %w", err)
		}
		switch l.Type {
		case "progress":
			verifyBar(stderr, l.Counts)
			bar = true
		case "drift":
			if !*asJSON {
				if bar {
					fmt.Fprintln(stderr)
					bar = false
				}
				printDrift(stdout, l)
			}
		case "error":
			if bar {
				fmt.Fprintln(stderr)
				bar = false
			}
			fmt.Fprintf(stderr, "error: %s %s\n", l.RecordID, l.Error)
		case "summary":
			summary = l.Counts
		}
	}
	if bar {
		fmt.Fprintln(stderr)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("verify: the answer ended: %w", err)
	}
	if summary == nil {
		return errors.New("verify: the answer ended before its summary")
	}
	if !*asJSON {
		s := summary
		fmt.Fprintf(stdout, "%s: checked %d of %d walked in %s: %d in sync, %d differ, %d missing, %d present after delete; %d unverifiable, %d not synced yet, %d read failures; %d repaired\n",
			s.Target, s.Checked, s.Walked, (time.Duration(s.TookMS) * time.Millisecond).Round(time.Millisecond), s.InSync, s.Differs, s.Missing, s.Present,
			s.Unverifiable, s.NotSynced, s.Failed, s.Repaired)
	}
	if summary.Failed > 0 {
		return fmt.Errorf("verify: %d records could not be read", summary.Failed)
	}
	return nil
}

// verifyBar draws checked/total on one line of w, as dlq replay does.
func verifyBar(w io.Writer, c *ingest.VerifyCounts) {
	if c == nil || c.Total == 0 {
		return
	}
	const width = 30
	filled := c.Checked * width / c.Total
	fmt.Fprintf(w, "\r[%s%s] %d/%d checked, %d drifted", strings.Repeat("#", filled), strings.Repeat(".", width-filled), c.Checked, c.Total,
		c.Differs+c.Missing+c.Present)
}

// printDrift prints one drifted record: its id, what drifted, the fields.
func printDrift(w io.Writer, l ingest.VerifyLine) {
	repaired := ""
	if l.Repaired {
		repaired = "  (re-enqueued)"
	}
	fmt.Fprintf(w, "%-24s %-21s crm_id=%s%s\n", l.RecordID, l.Drift, l.CRMID, repaired)
	for _, d := range l.Fields {
		fmt.Fprintf(w, "    %s: pushed %v, CRM holds %v\n", d.Field, jsonText(d.Pushed), jsonText(d.Remote))
	}
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

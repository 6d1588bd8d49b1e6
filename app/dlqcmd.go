package app

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/shared/dlq"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/natsrv"
	"github.com/recordsync/record-sync/shared/status"
)

// RunDLQ is `recordsync dlq list|replay`: it reads and replays dead
// letters straight from NATS, as the operator of data/nats.env (or
// RECORDSYNC_NATS_URL with RECORDSYNC_NATS_USER and _PASSWORD).
func RunDLQ(ctx context.Context, env Env, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help" || args[0] == "help") {
		DLQUsage(stdout)
		return flag.ErrHelp
	}
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
		DLQUsage(stderr)
		return errors.New("dlq: name a verb: list or replay")
	}
	verb := args[0]
	fs, a := dlqFlags(verb)
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			DLQUsage(stdout)
		}
		return err
	}
	target, code, since, until, dryRun, asJSON := a.target, a.code, a.since, a.until, a.dryRun, a.asJSON
	if *target == "" {
		return errors.New("--target is required")
	}
	f := dlq.Filter{Target: *target, Code: *code}
	var err error
	if f.Since, err = when(*since); err != nil {
		return fmt.Errorf("--since: %w", err)
	}
	if f.Until, err = when(*until); err != nil {
		return fmt.Errorf("--until: %w", err)
	}
	js, kv, closeNC, err := operatorJS(ctx, env)
	if err != nil {
		return err
	}
	defer closeNC()
	if verb == "list" {
		n := 0
		err := dlq.List(ctx, js, f, func(l dlq.Letter) error {
			n++
			if *asJSON {
				return json.NewEncoder(stdout).Encode(l)
			}
			_, err := fmt.Fprintf(stdout, "%s  %-24s %-28s %-12s %s\n", l.At.UTC().Format(time.RFC3339), l.RecordID, l.EventID, l.Code, l.Reason)
			return err
		})
		fmt.Fprintf(stderr, "%d dead letters\n", n)
		return err
	}
	res, err := dlq.Replay(ctx, js, status.NewReader(kv), f, *dryRun, "ingest", progressBar(stderr))
	fmt.Fprintln(stderr)
	verbWord := "replayed"
	if *dryRun {
		fmt.Fprintf(stdout, "%d dead letters match; dry run, nothing re-enqueued\n", res.Matched)
		return err
	}
	fmt.Fprintf(stdout, "matched %d, %s %d, skipped %d (synced or superseded since)\n", res.Matched, verbWord, res.Requeued, res.Skipped)
	return err
}

type dlqArgs struct {
	target, code, since, until *string
	dryRun, asJSON             *bool
}

// dlqFlags is the flag set of `dlq list` or `dlq replay`: only the flags
// the verb uses.
func dlqFlags(verb string) (*flag.FlagSet, dlqArgs) {
	fs := flag.NewFlagSet("dlq "+verb, flag.ContinueOnError)
	a := dlqArgs{
		target: fs.String("target", "", "target: salesforce, hubspot or outreach (required)"),
		code:   fs.String("code", "", "only dead letters with this CRM error code"),
		since:  fs.String("since", "", "only dead letters since: a duration back from now (24h) or an RFC 3339 time"),
		until:  fs.String("until", "", "only dead letters before: a duration back from now or an RFC 3339 time"),
	}
	f := false
	a.dryRun, a.asJSON = &f, &f
	if verb == "replay" {
		a.dryRun = fs.Bool("dry-run", false, "count what would be replayed, re-enqueue nothing")
	} else {
		a.asJSON = fs.Bool("json", false, "one JSON object per line")
	}
	return fs, a
}

// DLQUsage writes the help of `recordsync dlq`: both verbs and their flags.
func DLQUsage(w io.Writer) {
	fmt.Fprint(w, `recordsync dlq: list or replay dead letters, straight from NATS, as the operator

usage:
  recordsync dlq list   --target T [--code C] [--since 24h|RFC3339] [--until ...] [--json]
  recordsync dlq replay --target T [--code C] [--since ...] [--until ...] [--dry-run]

list prints one dead letter a line (time, record, event, code, reason); replay
re-enqueues each matching one whose record has not been synced or superseded
since, and reports matched, replayed and skipped.
`)
	for _, verb := range []string{"list", "replay"} {
		fs, _ := dlqFlags(verb)
		fmt.Fprintf(w, "\nflags of dlq %s:\n", verb)
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
	fmt.Fprint(w, `
NATS: RECORDSYNC_NATS_URL with RECORDSYNC_NATS_USER and RECORDSYNC_NATS_PASSWORD
(an operator user); when unset, NATS_URL, NATS_USER and NATS_PASSWORD; when unset,
<RECORDSYNC_DATA_DIR>/nats.env (default ./data/nats.env) of a running dev.
`)
}

// when parses a duration back from now or an RFC 3339 time; "" is zero.
func when(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	return time.Parse(time.RFC3339, s)
}

// progressBar draws matched/done on one line of w.
func progressBar(w io.Writer) func(dlq.Result) {
	return func(r dlq.Result) {
		done := r.Requeued + r.Skipped
		if r.Matched == 0 {
			return
		}
		const width = 30
		filled := done * width / r.Matched
		fmt.Fprintf(w, "\r[%s%s] %d/%d", strings.Repeat("#", filled), strings.Repeat(".", width-filled), done, r.Matched)
	}
}

// operatorJS connects as an operator: RECORDSYNC_NATS_URL with its user,
// or NATS_URL, NATS_USER and NATS_PASSWORD (data/nats.env), or the
// nats.env file of the data dir.
func operatorJS(ctx context.Context, env Env) (jetstream.JetStream, jetstream.KeyValue, func(), error) {
	nc, err := operatorConn(env, "dlq")
	if err != nil {
		return nil, nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, nil, err
	}
	kv, err := js.KeyValue(ctx, mesh.BucketStatus)
	if err != nil {
		nc.Close()
		return nil, nil, nil, fmt.Errorf("open %s: %w", mesh.BucketStatus, err)
	}
	return js, kv, nc.Close, nil
}

// operatorConn connects as operatorJS says, naming the connection name.
func operatorConn(env Env, name string) (*nats.Conn, error) {
	url, user, pass := env.NATSURL, env.NATSUser, env.NATSPassword
	if url == "" {
		vars := map[string]string{"NATS_URL": os.Getenv("NATS_URL"), "NATS_USER": os.Getenv("NATS_USER"), "NATS_PASSWORD": os.Getenv("NATS_PASSWORD")}
		if vars["NATS_URL"] == "" {
			b, err := os.ReadFile(env.DataDir + "/nats.env")
			if err != nil {
				return nil, errors.New("no NATS to talk to: set RECORDSYNC_NATS_URL, or NATS_URL (data/nats.env), or run from the directory of a running dev")
			}
			for _, line := range strings.Split(string(b), "\n") {
				if k, v, ok := strings.Cut(line, "="); ok {
					vars[k] = v
				}
			}
		}
		url, user, pass = vars["NATS_URL"], vars["NATS_USER"], vars["NATS_PASSWORD"]
	}
	return natsrv.Dial(url, name, user, pass)
}

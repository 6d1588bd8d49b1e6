// Package dlq reads the dead letters of SYNC_DLQ and re-enqueues them:
// one record at a time (manual retry) or in bulk by target, error code and
// time range (replay). A dead letter is re-enqueued only while the record's
// status still shows that failure, so a record that has since synced, or
// moved on to a newer event, is left alone.
package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/status"
)

// Letter is the latest dead letter of one record for one target.
type Letter struct {
	Target   string    `json:"target"`
	RecordID string    `json:"record_id"`
	EventID  string    `json:"event_id"`
	Class    string    `json:"class"`
	Code     string    `json:"code"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
	Attempts int       `json:"attempts"`
	item     mesh.Item
}

// Filter chooses dead letters. Zero fields match everything; an empty
// Target, every target.
type Filter struct {
	Target string
	Code   string
	Since  time.Time
	Until  time.Time
}

func (f Filter) match(l Letter) bool {
	return (f.Code == "" || strings.EqualFold(f.Code, l.Code)) &&
		(f.Since.IsZero() || !l.At.Before(f.Since)) && (f.Until.IsZero() || l.At.Before(f.Until))
}

// ErrNone is returned when a record has no dead letter for a target.
var ErrNone = errors.New("no dead letter")

func letter(target string, data []byte, h map[string][]string, at time.Time) (Letter, error) {
	var it mesh.Item
	if err := json.Unmarshal(data, &it); err != nil {
		return Letter{}, fmt.Errorf("undecodable dead letter: %w", err)
	}
	get := func(k string) string {
		if v := h[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	return Letter{Target: target, RecordID: it.RecordID, EventID: it.EventID, Class: get(mesh.HeaderClass), Code: get(mesh.HeaderCode),
		Reason: get(mesh.HeaderReason), At: at, Attempts: it.Attempt, item: it}, nil
}

// Latest returns the latest dead letter of recordID for target.
func Latest(ctx context.Context, js jetstream.JetStream, target, recordID string) (Letter, error) {
	stream, err := js.Stream(ctx, mesh.StreamDLQ)
	if err != nil {
		return Letter{}, err
	}
	m, err := stream.GetLastMsgForSubject(ctx, mesh.SubjectDLQ(target, status.Key(recordID)))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Letter{}, ErrNone
	}
	if err != nil {
		return Letter{}, err
	}
	return letter(target, m.Data, m.Header, m.Time)
}

// ParseTime reads a time bound of a filter: a duration back from now
// ("24h", "90m") or an RFC 3339 time; "" is the zero time.
func ParseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, errors.New("a duration back from now must not be negative")
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, errors.New("must be a duration back from now (24h) or an RFC 3339 time")
	}
	return t, nil
}

// StillFailed reports whether rec, a record's status, still shows the
// failure l dead-lettered: the same event, failed and dead-lettered.
func StillFailed(rec status.Record, l Letter) bool {
	t, ok := rec.Targets[l.Target]
	return ok && t.State == status.StateFailed && t.LastError != nil && t.LastError.DeadLettered && t.EventID == l.EventID
}

// ListFailed is List of the letters whose record still shows their
// failure (StillFailed): a record retried or replayed, and synced or moved
// on to a newer event since, is not listed.
func ListFailed(ctx context.Context, js jetstream.JetStream, st *status.Reader, f Filter, fn func(Letter) error) error {
	return List(ctx, js, f, func(l Letter) error {
		failed, err := stillFailed(ctx, st, l)
		if err != nil || !failed {
			return err
		}
		return fn(l)
	})
}

func stillFailed(ctx context.Context, st *status.Reader, l Letter) (bool, error) {
	rec, err := st.Get(ctx, l.RecordID)
	if errors.Is(err, status.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return StillFailed(rec, l), nil
}

// List hands fn the latest dead letter of every record of f.Target (every
// target when empty) that f matches, oldest first, until fn returns an
// error.
func List(ctx context.Context, js jetstream.JetStream, f Filter, fn func(Letter) error) error {
	stream, err := js.Stream(ctx, mesh.StreamDLQ)
	if err != nil {
		return err
	}
	target := f.Target
	if target == "" {
		target = "*"
	}
	subject := mesh.SubjectDLQ(target, ">")
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return err
	}
	if len(info.State.Subjects) == 0 {
		return nil
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy,
	})
	if err != nil {
		return err
	}
	for left := len(info.State.Subjects); left > 0; left-- {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			if errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, nats.ErrTimeout) {
				return nil
			}
			return err
		}
		meta, err := m.Metadata()
		if err != nil {
			return err
		}
		l, err := letter(targetOf(m.Subject()), m.Data(), m.Headers(), meta.Timestamp)
		if err != nil {
			return err
		}
		if f.match(l) {
			if err := fn(l); err != nil {
				return err
			}
		}
		if meta.NumPending == 0 {
			return nil
		}
	}
	return nil
}

// targetOf is the target of a dead letter's subject, sync.dlq.<target>.<key>.
func targetOf(subject string) string {
	rest := strings.TrimPrefix(subject, "sync.dlq.")
	target, _, _ := strings.Cut(rest, ".")
	return target
}

// ErrNotFailed is returned by Requeue for a record whose status no longer
// shows the dead letter's failure.
var ErrNotFailed = errors.New("the record's status no longer shows this failure")

// Requeue re-enqueues l with its attempts reset, as a new generation of
// its event, if the record's status still shows l's failure, and records
// it as queued. It returns ErrNotFailed otherwise.
func Requeue(ctx context.Context, js jetstream.JetStream, st *status.Reader, l Letter, source string) error {
	rec, err := st.Get(ctx, l.RecordID)
	if err != nil {
		return err
	}
	if !StillFailed(rec, l) {
		return ErrNotFailed
	}
	t := rec.Targets[l.Target]
	it := l.item
	it.Attempt = 0
	it.Generation = t.Generation + 1
	id := fmt.Sprintf("requeue:%s:%s:%d", l.Target, it.EventID, it.Generation)
	// The partition count is the one the target's consumers were made for.
	n, err := mesh.LookupPushPartitions(ctx, js, l.Target, mesh.DefaultPushPartitions)
	if err != nil {
		return err
	}
	f, err := mesh.PublishWorkAsync(js, l.Target, mesh.Partition(it.RecordID, n), id, &mesh.Work{Items: []mesh.Item{it}}, nil)
	if err != nil {
		return err
	}
	fs := []jetstream.PubAckFuture{f}
	c := status.Change{RecordID: it.RecordID, Target: l.Target, EventID: it.EventID, Operation: string(it.Operation),
		OccurredAt: it.OccurredAt, Generation: it.Generation, State: status.StateQueued, At: time.Now().UTC()}
	sf, err := mesh.PublishStatusAsync(js, source, id, []status.Change{c})
	if err != nil {
		return err
	}
	return mesh.WaitAcks(ctx, append(fs, sf...))
}

// Result counts what Replay did.
type Result struct {
	Matched, Requeued, Skipped int
}

// Replay re-enqueues every dead letter f matches whose record still shows
// its failure, and counts the others as skipped; a dry run checks each the
// same way and re-enqueues nothing, so that it counts what the replay would
// skip. It calls progress after each letter.
func Replay(ctx context.Context, js jetstream.JetStream, st *status.Reader, f Filter, dryRun bool, source string, progress func(Result)) (Result, error) {
	var res Result
	var letters []Letter
	if err := List(ctx, js, f, func(l Letter) error { letters = append(letters, l); return nil }); err != nil {
		return res, err
	}
	res.Matched = len(letters)
	for _, l := range letters {
		if dryRun {
			failed, err := stillFailed(ctx, st, l)
			if err != nil {
				return res, err
			}
			if !failed {
				res.Skipped++
			}
			if progress != nil {
				progress(res)
			}
			continue
		}
		err := Requeue(ctx, js, st, l, source)
		switch {
		case errors.Is(err, ErrNotFailed), errors.Is(err, status.ErrNotFound):
			res.Skipped++
		case err != nil:
			return res, err
		default:
			res.Requeued++
		}
		if progress != nil {
			progress(res)
		}
	}
	return res, nil
}

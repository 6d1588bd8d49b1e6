package mesh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/shared/status"
)

// PublishCounts adds d to the counters on SYNC_STATS, one message per
// counter that moved, and waits until JetStream has stored them. msgID
// (may be empty) makes a redelivered publish count once.
func PublishCounts(ctx context.Context, js jetstream.JetStream, d status.Delta, msgID string) error {
	var fs []jetstream.PubAckFuture
	for c, n := range d {
		if n == 0 {
			continue
		}
		m := nats.NewMsg(SubjectStats(c.Target, c.Count))
		m.Header.Set(HeaderIncr, strconv.FormatInt(n, 10))
		if msgID != "" {
			m.Header.Set(HeaderMsgID, msgID+":"+c.Target+":"+c.Count)
		}
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			return fmt.Errorf("publish counter: %w", err)
		}
		fs = append(fs, f)
	}
	return WaitAcks(ctx, fs)
}

// ReadCounts returns the counters of target: accepted, superseded and one
// per state (0 for those never incremented).
func ReadCounts(ctx context.Context, js jetstream.JetStream, target string) (map[string]int64, error) {
	stream, err := js.Stream(ctx, StreamStats)
	if err != nil {
		return nil, err
	}
	names := []string{status.CountAccepted, status.CountSuperseded, string(status.StateQueued), string(status.StateSkippedByRule),
		string(status.StateRetrying), string(status.StateSynced), string(status.StateFailed)}
	out := make(map[string]int64, len(names))
	for _, n := range names {
		m, err := stream.GetLastMsgForSubject(ctx, SubjectStats(target, n))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			out[n] = 0
			continue
		}
		if err != nil {
			return nil, err
		}
		var v struct {
			Val string `json:"val"`
		}
		if err := json.Unmarshal(m.Data, &v); err != nil {
			return nil, fmt.Errorf("counter %s: %w", n, err)
		}
		if out[n], err = strconv.ParseInt(v.Val, 10, 64); err != nil {
			return nil, fmt.Errorf("counter %s: %w", n, err)
		}
	}
	return out, nil
}

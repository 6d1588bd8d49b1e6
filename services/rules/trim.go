package rules

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/shared/mesh"
)

// trimInterval is how often the rules service trims SYNC_GATHER.
const trimInterval = 10 * time.Second

// trimLoop trims SYNC_GATHER every trimInterval until ctx ends.
func (s *Service) trimLoop(ctx context.Context, cons jetstream.Consumer) {
	t := time.NewTicker(trimInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.trim(ctx, cons); err != nil && ctx.Err() == nil {
			s.log.Warn("gather_trim_failed", "error", err.Error())
		}
	}
}

// trim removes from SYNC_GATHER the messages that are both routed (below
// the consumer's ack floor) and older than the stream's duplicate window.
// SYNC_GATHER is not a work queue because the edge dedupes single events
// against the ids its messages hold (services/ingest/gather.go): a message
// routed is kept until its window has passed. Every rules process trims;
// trimming twice removes nothing more.
func (s *Service) trim(ctx context.Context, cons jetstream.Consumer) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := s.js.Stream(ctx, mesh.StreamGather)
	if err != nil {
		return err
	}
	info := st.CachedInfo()
	window := info.Config.Duplicates
	if window <= 0 {
		window = mesh.DefaultDuplicateWindow
	}
	// A margin for this host's clock running ahead of the server's, whose
	// timestamps the edges' windows follow.
	cutoff := s.now().Add(-window - trimInterval)
	if info.State.Msgs == 0 || !info.State.FirstTime.Before(cutoff) {
		return nil // the oldest message is inside the window
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return err
	}
	floor := ci.AckFloor.Stream + 1 // every message before is routed
	if seq, ok, err := mesh.FirstSince(ctx, s.js, mesh.StreamGather, cutoff); err != nil {
		return err
	} else if ok && seq < floor {
		floor = seq
	}
	if floor <= info.State.FirstSeq {
		return nil
	}
	return st.Purge(ctx, jetstream.WithPurgeSequence(floor))
}

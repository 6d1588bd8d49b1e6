package ingest

import (
	"context"
	"fmt"
	"time"

	"github.com/recordsync/record-sync/shared/mesh"
)

// writtenStreams are the streams the edge writes to: events (batches and
// direct publishes, gathered single events), the status
// of each accepted event, and the work of a manual retry.
var writtenStreams = []string{mesh.StreamIn, mesh.StreamGather, mesh.StreamStatus, mesh.StreamPush}

// unled returns why each stream the edge writes to cannot take a write
// now: it does not answer, or (on a cluster) it has no leader, as between
// the loss of its leader's server and the election of another.
func (s *Service) unled(ctx context.Context) []string {
	var why []string
	for _, name := range writtenStreams {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := s.deps.JS.Stream(sctx, name)
		cancel()
		switch {
		case err != nil:
			why = append(why, fmt.Sprintf("stream %s is not answering: %v", name, err))
		case st.CachedInfo().Cluster != nil && st.CachedInfo().Cluster.Leader == "":
			why = append(why, fmt.Sprintf("stream %s has no leader", name))
		}
	}
	return why
}

// waitNotes describes the consumers of this process that wait for
// JetStream.
func (s *Service) waitNotes() []string {
	var notes []string
	for _, w := range s.deps.Waits.Current() {
		notes = append(notes, fmt.Sprintf("consumer %s waits for JetStream since %s: %s", w.Consumer, w.Since.UTC().Format(time.RFC3339), w.Reason))
	}
	return notes
}

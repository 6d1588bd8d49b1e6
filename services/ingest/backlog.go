package ingest

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/shared/mesh"
)

// backlog keeps, per target, the number of work messages not yet settled by
// its pusher, plus the inbound messages the rules service has not routed
// yet. It is refreshed from the consumers' info once per interval, so a
// request never waits on it.
type backlog struct {
	js      jetstream.JetStream
	targets []string
	log     *slog.Logger

	mu      sync.RWMutex
	pending map[string]uint64
	inbound uint64
}

func newBacklog(js jetstream.JetStream, targets []string, log *slog.Logger) *backlog {
	return &backlog{js: js, targets: targets, log: log, pending: map[string]uint64{}}
}

// run refreshes the counts every interval until ctx ends.
func (b *backlog) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		b.refresh(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (b *backlog) refresh(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var in uint64
	for _, stream := range []string{mesh.StreamIn, mesh.StreamGather} {
		n, err := b.count(ctx, stream, mesh.ConsumerRules, ">")
		if err != nil {
			b.log.Warn("backlog_refresh_failed", "stream", stream, "error", err.Error())
			return
		}
		in += n
	}
	pending := make(map[string]uint64, len(b.targets))
	for _, t := range b.targets {
		n, err := mesh.PushBacklog(ctx, b.js, t)
		if err != nil {
			b.log.Warn("backlog_refresh_failed", "target", t, "error", err.Error())
			return
		}
		pending[t] = n
	}
	b.mu.Lock()
	b.pending, b.inbound = pending, in
	b.mu.Unlock()
}

// count returns the messages a consumer has not settled; before the
// consumer exists, the messages stored on subject.
func (b *backlog) count(ctx context.Context, stream, consumer, subject string) (uint64, error) {
	c, err := b.js.Consumer(ctx, stream, consumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		s, err := b.js.Stream(ctx, stream)
		if err != nil {
			return 0, err
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
		if err != nil {
			return 0, err
		}
		var n uint64
		for _, c := range info.State.Subjects {
			n += c
		}
		return n, nil
	}
	if err != nil {
		return 0, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}

// of returns the backlog of target, inbound messages included.
func (b *backlog) of(target string) uint64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.pending[target] + b.inbound
}

package ratelimit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/natstest"
)

func TestSlot(t *testing.T) {
	tests := []struct {
		perMinute int
		slot      time.Duration
		per       int64
	}{
		{1080, 55555555 * time.Nanosecond, 1},
		{60, time.Second, 1},
		{6000, 10 * time.Millisecond, 1},
		{12000, 10 * time.Millisecond, 2},
		{10000, 12 * time.Millisecond, 2},
		{1, time.Minute, 1},
	}
	for _, tt := range tests {
		s, n := slot(tt.perMinute)
		if s != tt.slot || n != tt.per {
			t.Errorf("slot(%d) = %v, %d; want %v, %d", tt.perMinute, s, n, tt.slot, tt.per)
		}
	}
}

// TestSharedLimitBatches takes permits from two limiters (two pusher
// processes) with eight callers each, taking four at a time from the
// counter: no slot may give out more than its share, and the permits taken
// in batches must still be handed out.
func TestSharedLimitBatches(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv, "pusher")
	_, op := natstest.Connect(t, srv, "operator") // the pusher user may create no stream
	if err := mesh.Ensure(ctx, op, mesh.Options{}); err != nil {
		t.Fatal(err)
	}
	const perMinute = 30_000 // 10 ms slots of 5 permits
	_, perSlot := slot(perMinute)
	var mu sync.Mutex
	given := map[int64]int64{}
	var g errgroup.Group
	for _, l := range []*Shared{NewShared(js, "hubspot", nil), NewShared(js, "hubspot", nil)} {
		for range 8 {
			g.Go(func() error {
				for range 20 {
					idx, err := l.permit(ctx, perMinute, 4)
					if err != nil {
						return err
					}
					mu.Lock()
					given[idx]++
					mu.Unlock()
				}
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	for idx, n := range given {
		if n > perSlot {
			t.Errorf("slot %d gave out %d permits, its share is %d", idx, n, perSlot)
		}
		total += n
	}
	if total != 2*8*20 {
		t.Fatalf("%d permits given, want %d", total, 2*8*20)
	}
}

// TestPermitOutlivesItsStream deletes SYNC_RATELIMIT (as a server restart
// did to the memory stream it was): the next permit creates it anew
// instead of failing; with no server at all, a permit waits until its
// context ends and says it got none.
func TestPermitOutlivesItsStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := natstest.RunServer(t)
	_, op := natstest.Connect(t, srv, "operator")
	if err := mesh.Ensure(ctx, op, mesh.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := op.DeleteStream(ctx, mesh.StreamRate); err != nil {
		t.Fatal(err)
	}
	_, js := natstest.Connect(t, srv, "pusher")
	l := NewShared(js, "hubspot", nil)
	if _, err := l.permit(ctx, 600, 1); err != nil {
		t.Fatalf("permit after the stream was deleted: %v", err)
	}
	if st, err := op.Stream(ctx, mesh.StreamRate); err != nil || st.CachedInfo().Config.Storage != jetstream.FileStorage {
		t.Fatalf("SYNC_RATELIMIT not created anew on file storage: %v", err)
	}

	srv.Shutdown()
	srv.WaitForShutdown()
	wctx, wcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer wcancel()
	_, err := l.permit(wctx, 600, 1)
	if !errors.Is(err, ErrNoPermit) || wctx.Err() == nil {
		t.Fatalf("permit without a server: %v; want ErrNoPermit once its context ended", err)
	}
}

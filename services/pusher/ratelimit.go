package pusher

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/shared/mesh"
)

// sharedLimit hands out permits for a target's CRM requests from a
// JetStream counter per time slot, so that all pusher processes of the
// target together keep to its rate_limit_per_minute. A permit is one
// increment; the counter's new value says whether it is within the slot's
// share; past it, the pusher waits for the next slot. When a slot holds
// several permits, a pusher takes up to as many as it has requests in
// flight with one increment and hands them out itself while the slot
// lasts: at high limits most requests then need no round trip to the
// server, and the counter still counts every permit taken.
type sharedLimit struct {
	js     jetstream.JetStream
	target string

	mu   sync.Mutex
	slot int64 // the slot of the permits in hand
	left int64 // permits in hand, for that slot only
}

// minSlot is the shortest time slot permits are counted in.
const minSlot = 10 * time.Millisecond

// slot returns the time slot permits are counted in and how many one slot
// holds: slots are as short as one request's share of the minute (at least
// minSlot), so that requests spread evenly over the minute and any window
// of the CRM's holds at most its share plus one slot's worth, whatever its
// alignment.
func slot(perMinute int) (time.Duration, int64) {
	if perMinute < 1 {
		perMinute = 1
	}
	k := int64(1)
	for time.Duration(int64(time.Minute)*k/int64(perMinute)) < minSlot {
		k++
	}
	return time.Duration(int64(time.Minute) * k / int64(perMinute)), k
}

// wait takes a permit, waiting for a later slot when this one is used up.
// batch is how many permits to take from the counter at once (the
// requests in flight), at most a slot's worth.
func (l *sharedLimit) wait(ctx context.Context, perMinute, batch int) error {
	_, err := l.permit(ctx, perMinute, batch)
	return err
}

// permit is wait, returning the slot the permit belongs to.
func (l *sharedLimit) permit(ctx context.Context, perMinute, batch int) (int64, error) {
	w, perWindow := slot(perMinute)
	take := min(int64(max(batch, 1)), perWindow)
	for {
		idx := time.Now().UnixNano() / int64(w)
		if l.inHand(idx) {
			return idx, nil
		}
		m := nats.NewMsg(mesh.SubjectRate(l.target, idx))
		m.Header.Set(mesh.HeaderIncr, strconv.FormatInt(take, 10))
		ack, err := l.js.PublishMsg(ctx, m)
		if err != nil {
			return 0, fmt.Errorf("rate limit permit: %w", err)
		}
		n, err := strconv.ParseInt(ack.Value, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("rate limit permit: counter value %q: %w", ack.Value, err)
		}
		// Of the permits this increment took, those within the share.
		if granted := min(take, perWindow-(n-take)); granted > 0 {
			l.keep(idx, granted-1)
			return idx, nil
		}
		next := time.Unix(0, (idx+1)*int64(w))
		mesh.Sleep(ctx, time.Until(next))
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
	}
}

// inHand takes a permit of slot idx from those in hand, if there is one.
func (l *sharedLimit) inHand(idx int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.slot != idx || l.left == 0 {
		return false
	}
	l.left--
	return true
}

// keep adds n permits of slot idx to those in hand; those of an earlier
// slot are void.
func (l *sharedLimit) keep(idx, n int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case idx < l.slot:
		return // a slot that has passed
	case idx > l.slot:
		l.slot, l.left = idx, 0
	}
	l.left += n
}

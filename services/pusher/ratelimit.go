package pusher

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/shared/mesh"
)

// sharedLimit hands out permits for a target's CRM requests from a
// JetStream counter per time slot, so that all pusher processes of the
// target together keep to its rate_limit_per_minute. A permit is one
// increment; the counter's new value says whether it is within the slot's
// share; past it, the pusher waits for the next slot.
type sharedLimit struct {
	js     jetstream.JetStream
	target string
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
func (l *sharedLimit) wait(ctx context.Context, perMinute int) error {
	w, perWindow := slot(perMinute)
	for {
		now := time.Now()
		idx := now.UnixNano() / int64(w)
		m := nats.NewMsg(mesh.SubjectRate(l.target, idx))
		m.Header.Set(mesh.HeaderIncr, "1")
		ack, err := l.js.PublishMsg(ctx, m)
		if err != nil {
			return fmt.Errorf("rate limit permit: %w", err)
		}
		n, err := strconv.ParseInt(ack.Value, 10, 64)
		if err != nil {
			return fmt.Errorf("rate limit permit: counter value %q: %w", ack.Value, err)
		}
		if n <= perWindow {
			return nil
		}
		next := time.Unix(0, (idx+1)*int64(w))
		mesh.Sleep(ctx, time.Until(next))
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// Package ratelimit is the rate limit a target's CRM requests share across
// processes: permits counted per time slot in a JetStream counter, so that
// every pusher of a target, and anything else that calls its CRM (reads
// for drift checks), keep to its rate_limit_per_minute together.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/recordsync/record-sync/shared/mesh"
)

// Shared hands out permits for a target's CRM requests from a
// JetStream counter per time slot, so that all pusher processes of the
// target together keep to its rate_limit_per_minute. A permit is one
// increment; the counter's new value says whether it is within the slot's
// share; past it, the pusher waits for the next slot. When a slot holds
// several permits, a pusher takes up to as many as it has requests in
// flight with one increment and hands them out itself while the slot
// lasts: at high limits most requests then need no round trip to the
// server, and the counter still counts every permit taken.
//
// When JetStream cannot give a permit (a server restarting, the counter's
// stream without a leader, or gone), the request waits and asks again; a
// stream that is gone is created anew. Only the end of the caller's
// context ends the wait, with an error wrapping ErrNoPermit: the request
// was not sent, which is no failure of the CRM.
type Shared struct {
	js     jetstream.JetStream
	target string
	log    *slog.Logger // nil: nothing logged

	mu   sync.Mutex
	slot int64 // the slot of the permits in hand
	left int64 // permits in hand, for that slot only

	outage     sync.Mutex // held by whoever re-creates the stream
	down       bool       // JetStream gave no permit last time (under outage)
	downSince  time.Time
	lastCreate time.Time
}

// ErrNoPermit marks a CRM request that was not sent because no permit
// could be had before its context ended.
var ErrNoPermit = errors.New("no rate limit permit")

// permitTimeout bounds one ask for permits.
const permitTimeout = 2 * time.Second

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

// NewShared returns the shared limit of target's CRM requests, counted in
// js; log (nil: nothing) hears of JetStream outages.
func NewShared(js jetstream.JetStream, target string, log *slog.Logger) *Shared {
	return &Shared{js: js, target: target, log: log}
}

// Wait takes a permit, waiting for a later slot when this one is used up.
// batch is how many permits to take from the counter at once (the
// requests in flight), at most a slot's worth.
func (l *Shared) Wait(ctx context.Context, perMinute, batch int) error {
	_, err := l.permit(ctx, perMinute, batch)
	return err
}

// permit is wait, returning the slot the permit belongs to.
func (l *Shared) permit(ctx context.Context, perMinute, batch int) (int64, error) {
	w, perWindow := slot(perMinute)
	take := min(int64(max(batch, 1)), perWindow)
	backoff := 50 * time.Millisecond
	for {
		idx := time.Now().UnixNano() / int64(w)
		if l.inHand(idx) {
			return idx, nil
		}
		m := nats.NewMsg(mesh.SubjectRate(l.target, idx))
		m.Header.Set(mesh.HeaderIncr, strconv.FormatInt(take, 10))
		// Each ask under its own deadline: an ask lost with a server would
		// otherwise wait for the caller's whole deadline.
		actx, cancel := context.WithTimeout(ctx, permitTimeout)
		ack, err := l.js.PublishMsg(actx, m)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return 0, fmt.Errorf("%w: %w", ErrNoPermit, ctx.Err())
			}
			if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionDraining) {
				// This process is stopping: no permit will ever come.
				return 0, fmt.Errorf("%w: %w", ErrNoPermit, err)
			}
			l.unavailable(ctx, err, &backoff)
			if ctx.Err() != nil {
				return 0, fmt.Errorf("%w: %w", ErrNoPermit, ctx.Err())
			}
			continue
		}
		l.available()
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
			return 0, fmt.Errorf("%w: %w", ErrNoPermit, ctx.Err())
		}
	}
}

// inHand takes a permit of slot idx from those in hand, if there is one.
func (l *Shared) inHand(idx int64) bool {
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
func (l *Shared) keep(idx, n int64) {
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

// unavailable handles a permit JetStream did not give: it notes the
// outage, creates the counter's stream anew when it is gone (at most once
// a second, with the replicas of SYNC_PUSH), and waits a growing backoff.
func (l *Shared) unavailable(ctx context.Context, err error, backoff *time.Duration) {
	l.outage.Lock()
	if !l.down {
		l.down, l.downSince = true, time.Now()
		if l.log != nil {
			l.log.Warn("rate_limit_waiting", "error", err.Error(), "detail", "no CRM request is sent until JetStream gives permits again")
		}
	}
	gone := errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrStreamNotFound)
	if gone && time.Since(l.lastCreate) > time.Second {
		l.lastCreate = time.Now()
		l.recreate(ctx)
	}
	l.outage.Unlock()
	mesh.Sleep(ctx, *backoff)
	*backoff = min(2**backoff, 2*time.Second)
}

// recreate creates SYNC_RATELIMIT when it is gone, with as many replicas
// as SYNC_PUSH has.
func (l *Shared) recreate(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := l.js.Stream(ctx, mesh.StreamRate); err == nil || !errors.Is(err, jetstream.ErrStreamNotFound) {
		return // there, or JetStream does not answer at all: nothing to create
	}
	o := mesh.Options{Log: l.log}
	if st, err := l.js.Stream(ctx, mesh.StreamPush); err == nil {
		o.Replicas = st.CachedInfo().Config.Replicas
	}
	if err := mesh.CreateStream(ctx, l.js, o, mesh.StreamRate); err != nil {
		if l.log != nil {
			l.log.Error("rate_limit_stream_not_created", "error", err.Error(), "detail", "run `recordsync setup` to create the streams")
		}
		return
	}
	if l.log != nil {
		l.log.Warn("rate_limit_stream_created", "stream", mesh.StreamRate)
	}
}

// available notes that JetStream gives permits again.
func (l *Shared) available() {
	l.outage.Lock()
	defer l.outage.Unlock()
	if l.down {
		l.down = false
		if l.log != nil {
			l.log.Info("rate_limit_resumed", "waited_ms", time.Since(l.downSince).Milliseconds())
		}
	}
}

// Permits is one permit per request at a rate per minute: this process's
// requests spread evenly (a token bucket), and all processes' together
// within the rate (the shared counter). It is what a crm.Endpoint's
// Permits takes. Safe for concurrent use.
type Permits struct {
	local     *rate.Limiter
	shared    *Shared
	perMinute int
}

// Permits returns permits of l at perMinute.
func (l *Shared) Permits(perMinute int) *Permits {
	perMinute = max(perMinute, 1)
	return &Permits{local: rate.NewLimiter(rate.Limit(float64(perMinute)/60), 1), shared: l, perMinute: perMinute}
}

// Wait takes one permit.
func (p *Permits) Wait(ctx context.Context) error {
	if err := p.local.Wait(ctx); err != nil {
		return fmt.Errorf("rate limit: %w", err)
	}
	return p.shared.Wait(ctx, p.perMinute, 1)
}

package mesh

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Waits is what the consumers of a process are waiting for: a consumer
// whose stream lost its leader, whose server went away, or that missed
// its heartbeats waits (it never gives up) and is listed here until it
// takes messages again. /readyz and the metrics report it. Safe for
// concurrent use; a nil *Waits records nothing.
type Waits struct {
	mu      sync.Mutex
	waiting map[string]Wait
	total   map[string]int64
}

// Wait is one consumer waiting.
type Wait struct {
	Consumer string
	Since    time.Time
	Reason   string
}

// NewWaits returns an empty Waits.
func NewWaits() *Waits {
	return &Waits{waiting: map[string]Wait{}, total: map[string]int64{}}
}

// Begin notes that consumer waits for JetStream (reason says why), unless
// it already does. A consumer loop that is no Follower calls it itself.
func (w *Waits) Begin(consumer, reason string, log *slog.Logger) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.waiting[consumer]; ok {
		return
	}
	w.waiting[consumer] = Wait{Consumer: consumer, Since: time.Now(), Reason: reason}
	w.total[consumer]++
	log.Warn("consumer_waiting", "consumer", consumer, "reason", reason)
}

// End notes that consumer takes messages again.
func (w *Waits) End(consumer string, log *slog.Logger) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if wt, ok := w.waiting[consumer]; ok {
		delete(w.waiting, consumer)
		log.Info("consumer_resumed", "consumer", consumer, "waited_ms", time.Since(wt.Since).Milliseconds())
	}
}

// waitingNow reports whether consumer is waiting.
func (w *Waits) waitingNow(consumer string) bool {
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.waiting[consumer]
	return ok
}

// Current returns the consumers waiting now, by name.
func (w *Waits) Current() []Wait {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	out := slices.Collect(maps.Values(w.waiting))
	slices.SortFunc(out, func(a, b Wait) int { return cmp.Compare(a.Consumer, b.Consumer) })
	return out
}

// Totals returns how many waits each consumer has had.
func (w *Waits) Totals() map[string]int64 {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.total)
}

// PullExpiry is how long a consumer's pull request lives: its heartbeats
// come at half of it, and two missed ones make a wait (see Follower), so a
// lost server or leader shows within about this long.
const PullExpiry = 5 * time.Second

// Follower keeps a consumer's message iterator going through faults of
// JetStream: a missed heartbeat is a wait until the consumer answers again;
// an iterator that fails is stopped and opened anew, with backoff, until
// it works. It never gives up before ctx ends.
type Follower struct {
	// Name names the consumer in Waits and the logs.
	Name string
	// Open returns the consumer (nil: the one given to Follow); it is
	// called again after a failure, so it may create the consumer anew.
	Open func(ctx context.Context) (jetstream.Consumer, error)
	// Buffer is how many messages the client pulls ahead.
	Buffer int
	// MaxBytes, when set, also bounds what the client pulls ahead, in
	// bytes: a thousand messages of a megabyte each are more than the
	// server lets a client fall behind by (max_pending).
	MaxBytes int
	Waits    *Waits
	Log      *slog.Logger

	cons  jetstream.Consumer
	probe sync.Mutex // held while a probe runs
}

// Start opens the iterator of cons.
func (f *Follower) Start(cons jetstream.Consumer) (jetstream.MessagesContext, error) {
	f.cons = cons
	return f.messages()
}

func (f *Follower) messages() (jetstream.MessagesContext, error) {
	limit := jetstream.PullMessagesOpt(jetstream.PullMaxMessages(max(f.Buffer, 1)))
	if f.MaxBytes > 0 {
		limit = jetstream.PullMaxMessagesWithBytesLimit(max(f.Buffer, 1), f.MaxBytes)
	}
	return f.cons.Messages(limit, jetstream.PullExpiry(PullExpiry),
		jetstream.WithMessagesErrOnMissingHeartbeat(true))
}

// Resumed notes that messages arrive again.
func (f *Follower) Resumed() {
	if f.Waits.waitingNow(f.Name) {
		f.Waits.End(f.Name, f.Log)
	}
}

// Failed handles err from it.Next and returns the iterator to go on with
// (it, or a new one), or nil once ctx has ended.
func (f *Follower) Failed(ctx context.Context, it jetstream.MessagesContext, err error) jetstream.MessagesContext {
	f.Waits.Begin(f.Name, err.Error(), f.Log)
	if errors.Is(err, jetstream.ErrNoHeartbeat) {
		// The iterator asks again by itself; the wait ends with the next
		// message, or when the consumer answers while idle.
		go f.probeUntilAnswered(ctx, f.cons)
		return it
	}
	it.Stop()
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 2*time.Second) {
		Sleep(ctx, backoff)
		if ctx.Err() != nil {
			return nil
		}
		if f.Open != nil {
			cons, err := f.Open(ctx)
			if err != nil {
				f.Log.Warn("consumer_open_failed", "consumer", f.Name, "error", err.Error())
				continue
			}
			f.cons = cons
		}
		ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := f.cons.Info(ictx)
		cancel()
		if err != nil {
			continue
		}
		next, err := f.messages()
		if err != nil {
			continue
		}
		f.Resumed()
		return next
	}
}

// probeUntilAnswered asks the consumer for its info until it answers, then
// ends the wait: an idle consumer gets no message to end it.
func (f *Follower) probeUntilAnswered(ctx context.Context, cons jetstream.Consumer) {
	if !f.probe.TryLock() {
		return
	}
	defer f.probe.Unlock()
	for ctx.Err() == nil && f.Waits.waitingNow(f.Name) {
		ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := cons.Info(ictx)
		cancel()
		if err == nil {
			f.Resumed()
			return
		}
		Sleep(ctx, 500*time.Millisecond)
	}
}

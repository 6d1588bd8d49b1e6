package mesh

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BatchHandler handles messages fetched together and returns one error per
// message: nil acks it, an error naks it for redelivery after a delay, an
// error wrapping ErrTerminal terminates it (it will never succeed).
//
// The context it gets is not cancelled when the consumer stops, only
// bounded in time, so that a batch in hand is settled during shutdown.
type BatchHandler func(ctx context.Context, msgs []jetstream.Msg) []error

// ErrTerminal marks a handler error after which a message is not
// redelivered.
var ErrTerminal = errors.New("terminal")

// ErrSettled tells Settle that the handler has settled the message itself
// (for example with a NakWithDelay until it is due).
var ErrSettled = errors.New("settled by the handler")

// ConsumeOptions tunes Consume.
type ConsumeOptions struct {
	// Batch is the most a batch holds: messages, or what Size counts.
	Batch int
	// Size counts what a message adds to a batch (nil: 1 each).
	Size func(jetstream.Msg) int
	// Wait is how long a fetch waits for a full batch.
	Wait time.Duration
	// Buffer is how many messages the client pulls ahead (default 2 x Batch).
	Buffer int
	// NakDelay is the redelivery delay after a handler error.
	NakDelay time.Duration
	// HandleTimeout bounds one call of the handler.
	HandleTimeout time.Duration
	// Name names the consumer in Waits and the logs.
	Name string
	// Waits receives the consumer's waits for JetStream (none when nil).
	Waits *Waits
	// Open returns the consumer anew after its iterator failed (nil: the
	// one given to Consume is used again).
	Open func(ctx context.Context) (jetstream.Consumer, error)
}

// Consume hands batches of messages from cons to h until ctx ends; then it
// finishes the batch in hand and returns. A batch is what arrived within
// o.Wait of its first message, up to o.Batch, so a lone message waits at
// most o.Wait and a backlog is taken in full batches. A fault of JetStream
// (a lost server, a leader election, missed heartbeats) never ends it: it
// waits, noted in o.Waits, and resumes (see Follower).
func Consume(ctx context.Context, cons jetstream.Consumer, o ConsumeOptions, log *slog.Logger, h BatchHandler) error {
	if o.NakDelay == 0 {
		o.NakDelay = time.Second
	}
	if o.HandleTimeout == 0 {
		o.HandleTimeout = time.Minute
	}
	if o.Buffer == 0 {
		o.Buffer = 2 * o.Batch
	}
	f := &Follower{Name: o.Name, Open: o.Open, Buffer: o.Buffer, Waits: o.Waits, Log: log}
	it, err := f.Start(cons)
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		msgs, err := Collect(ctx, it, o.Batch, o.Wait, o.Size)
		if len(msgs) > 0 {
			f.Resumed()
			settle(ctx, msgs, h, o, log)
		}
		if err != nil && ctx.Err() == nil {
			if it = f.Failed(ctx, it, err); it == nil {
				return nil
			}
		}
	}
	// Stop pulling, and settle what the client already holds, so that
	// nothing waits for AckWait to be redelivered after a clean stop.
	it.Drain()
	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		msgs, err := Collect(dctx, it, o.Batch, o.Wait, o.Size)
		if len(msgs) > 0 {
			settle(ctx, msgs, h, o, log)
		}
		if err != nil || len(msgs) == 0 {
			return nil
		}
	}
}

// Collect waits until ctx ends for a first message from it, then takes
// more until they add up to limit or linger has passed since the first.
// size counts what a message adds up to (nil: 1 each). It returns the
// messages collected and, when the iterator failed, why.
func Collect(ctx context.Context, it jetstream.MessagesContext, limit int, linger time.Duration, size func(jetstream.Msg) int) ([]jetstream.Msg, error) {
	if size == nil {
		size = func(jetstream.Msg) int { return 1 }
	}
	m, err := it.Next(jetstream.NextContext(ctx))
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil
		}
		return nil, err
	}
	msgs := []jetstream.Msg{m}
	n := size(m)
	lctx, cancel := context.WithTimeout(ctx, linger)
	defer cancel()
	for n < limit {
		m, err := it.Next(jetstream.NextContext(lctx))
		if err != nil {
			break // linger over, or ctx ended: hand over what is here
		}
		msgs = append(msgs, m)
		n += size(m)
	}
	return msgs, nil
}

func settle(ctx context.Context, msgs []jetstream.Msg, h BatchHandler, o ConsumeOptions, log *slog.Logger) {
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.HandleTimeout)
	defer cancel()
	Settle(msgs, h(hctx, msgs), o.NakDelay, log)
}

// Settle acks each message whose error is nil, terminates those whose
// error wraps ErrTerminal and naks the others with nakDelay (0: due again
// at once).
func Settle(msgs []jetstream.Msg, errs []error, nakDelay time.Duration, log *slog.Logger) {
	for i, m := range msgs {
		var err error
		if i < len(errs) {
			err = errs[i]
		}
		var ackErr error
		switch {
		case errors.Is(err, ErrSettled):
			continue
		case err == nil:
			ackErr = m.Ack()
		case errors.Is(err, ErrTerminal):
			log.Error("message_terminated", "subject", m.Subject(), "error", err.Error())
			ackErr = m.TermWithReason(err.Error())
		default:
			log.Warn("message_redelivered", "subject", m.Subject(), "error", err.Error())
			if nakDelay > 0 {
				ackErr = m.NakWithDelay(nakDelay)
			} else {
				ackErr = m.Nak()
			}
		}
		if ackErr != nil {
			// The server redelivers after AckWait; handlers are idempotent.
			log.Warn("settle_failed", "subject", m.Subject(), "error", ackErr.Error())
		}
	}
}

// Sleep waits for d or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Every calls f every d in a goroutine of its own until the returned stop
// is called; stop returns once f is no longer running.
func Every(d time.Duration, f func()) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				f()
			}
		}
	}()
	return func() { close(done); <-finished }
}

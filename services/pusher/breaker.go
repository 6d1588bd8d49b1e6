package pusher

import (
	"context"
	"errors"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/recordsync/record-sync/services/pusher/crm"
	"github.com/recordsync/record-sync/shared/config"
)

// Circuit breaker settings.
const (
	// DefaultOpenFor is how long a target's circuit stays open before a
	// probe request.
	DefaultOpenFor = 30 * time.Second
	// tripAfter consecutive failed CRM requests open the circuit.
	tripAfter = 5
	// codeCircuitOpen is the result of records not sent because the
	// circuit is open; it costs no attempt.
	codeCircuitOpen = "CIRCUIT_OPEN"
)

var errUnreachable = errors.New("the CRM did not answer or failed the whole request")

// breaker is the circuit breaker of one target. A CRM request that failed
// as a whole with a transient error (no answer, 5xx) is a failure; rate
// limits are not (the rate limiter handles them). After tripAfter
// consecutive failures the worker stops taking work for openFor, then
// takes one message as a probe, and resumes when it succeeds.
type breaker struct {
	cb       *gobreaker.CircuitBreaker[[]crm.Result]
	reported gobreaker.State
	since    time.Time
}

func newBreaker(target string, openFor time.Duration) *breaker {
	if openFor <= 0 {
		openFor = DefaultOpenFor
	}
	return &breaker{cb: gobreaker.NewCircuitBreaker[[]crm.Result](gobreaker.Settings{
		Name:        target,
		MaxRequests: 1,
		Timeout:     openFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= tripAfter },
	}), reported: gobreaker.StateClosed}
}

// push runs push through the breaker. When the circuit does not let the
// request through, every record gets a CIRCUIT_OPEN result.
func (b *breaker) push(n int, push func() []crm.Result) []crm.Result {
	results, err := b.cb.Execute(func() ([]crm.Result, error) {
		r := push()
		if wholeTransient(r) {
			return r, errUnreachable
		}
		return r, nil
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return crm.All(n, crm.Result{Class: crm.Transient, Code: codeCircuitOpen, Message: "the circuit of this target is open: the CRM failed repeatedly"})
	}
	return results
}

func wholeTransient(rs []crm.Result) bool {
	for _, r := range rs {
		if !r.Whole || r.Class != crm.Transient {
			return false
		}
	}
	return len(rs) > 0
}

// state returns the circuit state, and reports a change to every process
// through KV sync_config.
func (b *breaker) state(ctx context.Context, configs *config.Store, target string) gobreaker.State {
	s := b.cb.State()
	if s != b.reported {
		b.reported, b.since = s, time.Now().UTC()
		_ = configs.ReportCircuit(ctx, config.Circuit{Target: target, State: s.String(), Since: b.since})
	}
	return s
}

package pusher

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/recordsync/record-sync/crm"
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
	codeCircuitOpen = crm.CodeCircuitOpen
	// codeNoPermit is the result of records not sent because JetStream
	// gave no rate limit permit before the push's deadline (see
	// ratelimit.Shared); it costs no attempt and is no failure of the CRM.
	codeNoPermit = crm.CodeNoPermit
)

var errUnreachable = errors.New("the CRM did not answer or failed the whole request")

// breaker is the circuit breaker of one target. A CRM request that failed
// as a whole with a transient error (no answer, 5xx) is a failure; rate
// limits are not (the rate limiter handles them). After tripAfter
// consecutive failures the worker stops taking work for openFor, then
// takes one message as a probe, and resumes when it succeeds.
type breaker struct {
	cb       *gobreaker.CircuitBreaker[[]crm.Result]
	mu       sync.Mutex // the partitions of a worker ask concurrently
	reported gobreaker.State
	since    time.Time
}

// newBreaker returns the breaker of target; each change of state is
// logged (circuit_changed) on log.
func newBreaker(target string, openFor time.Duration, log *slog.Logger) *breaker {
	if openFor <= 0 {
		openFor = DefaultOpenFor
	}
	return &breaker{cb: gobreaker.NewCircuitBreaker[[]crm.Result](gobreaker.Settings{
		Name:        target,
		MaxRequests: 1,
		Timeout:     openFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= tripAfter },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			level := slog.LevelInfo
			if to == gobreaker.StateOpen {
				level = slog.LevelWarn
			}
			log.Log(context.Background(), level, "circuit_changed", "from", from.String(), "to", to.String(), "open_for", openFor.String())
		},
	}), reported: unreported}
}

// unreported is the reported state of a new breaker: its first state()
// writes the state to KV, so that what a pusher that stopped left there
// (an open circuit, say) is replaced.
const unreported = gobreaker.State(-1)

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
		if !r.Whole || r.Class != crm.Transient || r.Code == codeNoPermit {
			return false
		}
	}
	return len(rs) > 0
}

// notSent marks the whole-request failures of rs as codeNoPermit when the
// request failed for want of a permit (notSent is set), and reports
// whether it did: the CRM never saw the request.
func notSent(rs []crm.Result, noPermit bool) []crm.Result {
	if !noPermit {
		return rs
	}
	for i := range rs {
		if rs[i].Whole && rs[i].Class == crm.Transient {
			rs[i].Code, rs[i].Message = codeNoPermit, "not sent: JetStream gave no rate limit permit in time; "+rs[i].Message
		}
	}
	return rs
}

// notACRMFailure reports whether a result is one the CRM is not to blame
// for and that costs the record no attempt.
func notACRMFailure(r crm.Result) bool { return r.Code == codeCircuitOpen || r.Code == codeNoPermit }

// state returns the circuit state, and reports a change to every process
// through KV sync_config.
func (b *breaker) state(ctx context.Context, configs *config.Store, target string) gobreaker.State {
	s := b.cb.State()
	b.mu.Lock()
	changed := s != b.reported
	b.mu.Unlock()
	if changed {
		since := time.Now().UTC()
		if err := configs.ReportCircuit(ctx, config.Circuit{Target: target, State: s.String(), Since: since}); err == nil {
			b.mu.Lock()
			b.reported, b.since = s, since // else reported again next round
			b.mu.Unlock()
		}
	}
	return s
}

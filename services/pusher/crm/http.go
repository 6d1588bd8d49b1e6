package crm

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/recordsync/record-sync/shared/config"
	"github.com/recordsync/record-sync/shared/telemetry"
)

// FromStatus classifies a whole-request HTTP failure: 429 is RateLimited
// (with Retry-After, seconds or an HTTP date), 408, 5xx and 401 (a token
// that expired under us) are Transient, other 4xx are Permanent.
func FromStatus(status int, h http.Header, code, msg string) Result {
	r := Result{Code: code, Message: msg, Whole: true}
	switch {
	case status == http.StatusTooManyRequests:
		r.Class = RateLimited
		r.RetryAfter = RetryAfter(h, time.Now())
	case status == http.StatusRequestTimeout, status == http.StatusUnauthorized, status >= 500:
		r.Class = Transient
	default:
		r.Class = Permanent
	}
	if r.Code == "" {
		r.Code = "HTTP_" + strconv.Itoa(status)
	}
	return r
}

// FromError classifies a request that got no answer: the CRM may or may
// not have applied it, so it is Transient (pushes are idempotent upserts).
func FromError(err error) Result {
	code := "NETWORK"
	if errors.Is(err, context.DeadlineExceeded) {
		code = "TIMEOUT"
	}
	return Result{Class: Transient, Code: code, Message: err.Error(), Whole: true}
}

// RetryAfter parses a Retry-After header; 0 when absent or unparsable.
func RetryAfter(h http.Header, now time.Time) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// Conn is what a plugin that talks HTTP keeps: its client and the quota
// the CRM last reported. Embed it to get Close and Quota.
type Conn struct {
	HTTP *http.Client

	mu    sync.Mutex
	quota Quota
}

// Do sends one API request of the CRM: it first takes a permit (see
// WithPermits), so that the rate limit counts requests, not pushes, and
// it carries the trace context of the request's context.
func (c *Conn) Do(req *http.Request) (*http.Response, error) {
	if err := Permit(req.Context()); err != nil {
		return nil, err
	}
	telemetry.Propagator.Inject(req.Context(), propagation.HeaderCarrier(req.Header))
	return c.HTTP.Do(req)
}

type permitsKey struct{}

// WithPermits returns a context under which every API request a plugin
// sends through Conn.Do first calls wait: the pusher's rate limit. A push
// that takes two requests (Outreach's lookup and write, HubSpot's read
// before an archive) takes two permits.
func WithPermits(ctx context.Context, wait func(context.Context) error) context.Context {
	return context.WithValue(ctx, permitsKey{}, wait)
}

// Permit takes a permit for one API request under ctx; without WithPermits
// there is nothing to wait for.
func Permit(ctx context.Context) error {
	if wait, ok := ctx.Value(permitsKey{}).(func(context.Context) error); ok {
		return wait(ctx)
	}
	return nil
}

// NewConn returns a Conn whose requests time out after timeout. It keeps
// idle connections for as many requests as a pusher has in flight: with
// http.DefaultTransport's two per host, every request past the second
// would dial (and, against a real CRM, handshake TLS) anew.
func NewConn(timeout time.Duration) *Conn {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// The most concurrent pushes, and a token request.
	t.MaxIdleConnsPerHost = config.MaxConcurrency + 1
	// A batch of 200 records is about 100 KB each way: 4 KB buffers (the
	// default) cost a system call per 4 KB.
	t.WriteBufferSize, t.ReadBufferSize = 64<<10, 64<<10
	return &Conn{HTTP: &http.Client{Timeout: timeout, Transport: t}}
}

// Close releases idle connections.
func (c *Conn) Close() error {
	c.HTTP.CloseIdleConnections()
	return nil
}

// Quota returns what the last response said of the CRM's limit.
func (c *Conn) Quota() Quota {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.quota
}

// SetQuota records what a response said of the CRM's limit.
func (c *Conn) SetQuota(q Quota) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.quota = q
}

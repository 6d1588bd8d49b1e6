package crm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/recordsync/record-sync/shared/config"
	"github.com/recordsync/record-sync/shared/fastjson"
	"github.com/recordsync/record-sync/shared/httpbody"
	"github.com/recordsync/record-sync/shared/telemetry"
)

// MaxBody is the longest CRM answer a plugin reads: a batch of 200 records
// answers in well under a megabyte.
const MaxBody = 32 << 20

// ErrTooLarge is a CRM answer longer than MaxBody.
var ErrTooLarge = errors.New("the CRM's answer is longer than the limit")

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

// Limiter paces a target's API requests: the pusher's rate limit, shared
// by every pusher process of the target.
type Limiter interface {
	// Wait returns once one more request may be sent, or with ctx's
	// error when ctx ends first. Safe for concurrent use.
	Wait(ctx context.Context) error
}

// LimiterFunc is a function that is a Limiter.
type LimiterFunc func(ctx context.Context) error

// Wait implements Limiter.
func (f LimiterFunc) Wait(ctx context.Context) error { return f(ctx) }

// Endpoint is where a Push sends its requests and what paces them. The
// pusher gives it to every Push: a plugin's requests go through Conn.Call,
// which takes a permit of Permits before each one, so that the rate limit
// counts requests, not pushes (Outreach's lookup and write, HubSpot's read
// before an archive are two).
type Endpoint struct {
	// Host is the CRM's API base URL: the target's api_host.
	Host string
	// Permits is waited on before every API request (nil: nothing to wait
	// for, as in the contract suite).
	Permits Limiter
}

// URL returns path under the endpoint's host.
func (e Endpoint) URL(path string) string { return strings.TrimRight(e.Host, "/") + path }

// Session is what one API request is sent with: the base URL of the API
// (a path is appended to it) and the bearer token.
type Session struct {
	Base  string
	Token string
}

// Answer is a CRM's answer to one request, read whole (at most MaxBody).
type Answer struct {
	Status int
	Header http.Header
	Body   []byte
}

// API is what the call path (Conn.Call) needs to know of a CRM's HTTP API;
// everything else (permits, encoding, the body limit, the token's one
// renewal, decoding, classifying) is the same for every plugin.
type API struct {
	// Name is the CRM's name in messages ("HubSpot").
	Name string
	// MediaType is the type of request and answer bodies
	// (application/json when empty).
	MediaType string
	// Session returns the base URL and token of a request to ep. refused,
	// when not nil, is the session the CRM just refused: renew its token.
	// It is called from concurrent pushes.
	Session func(ctx context.Context, ep Endpoint, refused *Session) (Session, error)
	// Refused reports whether an answer refuses the session's token, so
	// that the call renews it and tries once more (nil: never, for a token
	// that cannot be renewed).
	Refused func(a Answer) bool
	// Failure classifies an answer that is not a 2xx, reading the CRM's
	// code and message from its body (nil: FromStatus with no code of the
	// CRM's). Call adds the excerpt and marks it Whole.
	Failure func(a Answer) Result
	// Quota reads what an answer's headers say of the CRM's limit (nil:
	// they say nothing).
	Quota func(h http.Header) (Quota, bool)
}

// Conn is the HTTP call path every plugin shares: its client, its API and
// the quota the CRM last reported. Embed it to get Close and Quota. Safe
// for concurrent use.
type Conn struct {
	api  API
	http *http.Client

	mu    sync.Mutex
	quota Quota
}

// NewConn returns a Conn for api whose requests time out after timeout. It
// keeps idle connections for as many requests as a pusher has in flight:
// with http.DefaultTransport's two per host, every request past the second
// would dial (and, against a real CRM, handshake TLS) anew.
func NewConn(api API, timeout time.Duration) *Conn {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// The most concurrent pushes, and a token request.
	t.MaxIdleConnsPerHost = config.MaxConcurrency + 1
	// A batch of 200 records is about 100 KB each way: 4 KB buffers (the
	// default) cost a system call per 4 KB.
	t.WriteBufferSize, t.ReadBufferSize = 64<<10, 64<<10
	if api.MediaType == "" {
		api.MediaType = "application/json"
	}
	return &Conn{api: api, http: &http.Client{Timeout: timeout, Transport: t}}
}

// Call sends one API request to ep and reads its answer. body, when not
// nil, is sent as JSON; the request first takes a permit of ep.Permits and
// carries the trace context of ctx. An answer the API's Refused says
// refuses the token gets a renewed session and one more try. A 2xx answer
// is decoded into out (when out is not nil) and ok is true. Otherwise res
// is the failure, marked Whole, for every record the request carried: no
// answer (a cancelled ctx, a timeout, the network, a body past MaxBody),
// no token, an answer that does not decode, or the CRM's refusal as
// API.Failure classifies it. The answer comes back in every case it was
// read, for a plugin to whom a status is an outcome (Outreach's 404).
func (c *Conn) Call(ctx context.Context, ep Endpoint, method, path string, body, out any) (a Answer, res Result, ok bool) {
	var b []byte
	if body != nil {
		var err error
		if b, err = fastjson.Marshal(body); err != nil {
			return a, Result{Class: Permanent, Code: CodeEncode, Message: err.Error(), Whole: true}, false
		}
	}
	var refused *Session
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return a, FromError(err), false
		}
		s, err := c.api.Session(ctx, ep, refused)
		if err != nil {
			if ctx.Err() != nil {
				return a, FromError(ctx.Err()), false
			}
			return a, Result{Class: Transient, Code: CodeAuth, Message: err.Error(), Whole: true}, false
		}
		var rd io.Reader
		if b != nil {
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequestWithContext(ctx, method, s.Base+path, rd)
		if err != nil {
			return a, Result{Class: Permanent, Code: CodeRequest, Message: err.Error(), Whole: true}, false
		}
		req.Header.Set("Authorization", "Bearer "+s.Token)
		req.Header.Set("Accept", c.api.MediaType)
		if b != nil {
			req.Header.Set("Content-Type", c.api.MediaType)
		}
		if a, err = c.do(ep, req); err != nil {
			return a, FromError(err), false
		}
		if c.api.Quota != nil {
			if q, known := c.api.Quota(a.Header); known {
				c.SetQuota(q)
			}
		}
		if attempt == 0 && c.api.Refused != nil && c.api.Refused(a) {
			refused = &s
			continue
		}
		if a.Status/100 == 2 {
			if out != nil && len(a.Body) > 0 {
				if err := fastjson.Unmarshal(a.Body, out); err != nil {
					return a, c.Undecodable(a, err.Error()), false
				}
			}
			return a, Result{}, true
		}
		if c.api.Failure != nil {
			res = c.api.Failure(a)
		} else {
			res = FromStatus(a.Status, a.Header, "", "")
		}
		res.Excerpt, res.Whole = Excerpt(a.Body), true
		return a, res, false
	}
}

// Undecodable is the failure of a 2xx answer that is not what the API
// answers (a body that does not decode, or with fewer results than
// records): Transient, as a proxy's page or a truncated body may be.
func (c *Conn) Undecodable(a Answer, why string) Result {
	return Result{Class: Transient, Code: CodeDecode, Message: "unexpected " + c.api.Name + " answer: " + why, Excerpt: Excerpt(a.Body), Whole: true}
}

// Fail sets res, marked Whole, as the result of every record recs[i] of a
// request that failed as a whole.
func Fail(results []Result, idx []int, res Result) {
	res.Whole = true
	for _, i := range idx {
		results[i] = res
	}
}

// do takes a permit, then sends req.
func (c *Conn) do(ep Endpoint, req *http.Request) (Answer, error) {
	if ep.Permits != nil {
		if err := ep.Permits.Wait(req.Context()); err != nil {
			return Answer{}, fmt.Errorf("rate limit: %w", err)
		}
	}
	telemetry.Propagator.Inject(req.Context(), propagation.HeaderCarrier(req.Header))
	return c.send(req)
}

// Authenticate sends a request of the CRM's token endpoint and reads its
// answer. It takes no permit: a token is asked for once in its life, not
// per push, and the CRMs' limits count their data APIs.
func (c *Conn) Authenticate(req *http.Request) (Answer, error) { return c.send(req) }

// send sends req and reads the answer whole, at most MaxBody.
func (c *Conn) send(req *http.Request) (Answer, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return Answer{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := httpbody.Read(io.LimitReader(resp.Body, MaxBody+1), resp.ContentLength)
	if err != nil {
		return Answer{}, fmt.Errorf("read %s answer: %w", req.URL.Path, err)
	}
	if len(raw) > MaxBody {
		return Answer{}, fmt.Errorf("%s answer: %w (%d bytes)", req.URL.Path, ErrTooLarge, MaxBody)
	}
	return Answer{Status: resp.StatusCode, Header: resp.Header, Body: raw}, nil
}

// Close releases idle connections. A Call in flight is not interrupted: it
// ends with its ctx or the request timeout, as it would have.
func (c *Conn) Close() error {
	c.http.CloseIdleConnections()
	return nil
}

// Quota returns what the last answer said of the CRM's limit.
func (c *Conn) Quota() Quota {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.quota
}

// SetQuota records what an answer said of the CRM's limit.
func (c *Conn) SetQuota(q Quota) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.quota = q
}

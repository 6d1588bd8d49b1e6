package crm_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recordsync/record-sync/crm"
)

// counter is a Limiter that counts its permits and, once closed, refuses.
type counter struct {
	n      atomic.Int64
	refuse error
}

func (c *counter) Wait(context.Context) error {
	if c.refuse != nil {
		return c.refuse
	}
	c.n.Add(1)
	return nil
}

// TestCall: the one call path every plugin shares takes a permit per
// request (a renewed token's retry too), renews a refused token once,
// marks every failure Whole and classifies it.
func TestCall(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		switch {
		case r.Header.Get("Authorization") == "Bearer old":
			w.WriteHeader(http.StatusUnauthorized)
		case r.URL.Path == "/ok":
			_, _ = w.Write([]byte(`{"id":"7"}`))
		case r.URL.Path == "/garbled":
			_, _ = w.Write([]byte(`<html>`))
		case r.URL.Path == "/busy":
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(http.StatusTooManyRequests)
		default:
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"code":"BAD"}`))
		}
	}))
	t.Cleanup(srv.Close)
	tests := []struct {
		name           string
		path           string
		token          string
		refuse         error
		ctx            func() context.Context
		ok             bool
		class          crm.Class
		code           string
		permits, sends int64
	}{
		{name: "success", path: "/ok", ok: true, permits: 1, sends: 1},
		{name: "a refused token is renewed once", path: "/ok", token: "old", ok: true, permits: 2, sends: 2},
		{name: "an undecodable success", path: "/garbled", class: crm.Transient, code: crm.CodeDecode, permits: 1, sends: 1},
		{name: "429", path: "/busy", class: crm.RateLimited, code: "HTTP_429", permits: 1, sends: 1},
		{name: "the CRM's refusal, its code", path: "/bad", class: crm.Permanent, code: "BAD", permits: 1, sends: 1},
		{name: "no permit, no request", path: "/ok", refuse: errors.New("limit closed"), class: crm.Transient, code: crm.CodeNetwork},
		{name: "a cancelled ctx sends nothing", path: "/ok", class: crm.Transient, code: crm.CodeCanceled, ctx: func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			served.Store(0)
			renewed := false
			conn := crm.NewConn(crm.API{Name: "Test",
				Session: func(_ context.Context, ep crm.Endpoint, refused *crm.Session) (crm.Session, error) {
					if refused != nil {
						renewed = true
					}
					if tt.token != "" && !renewed {
						return crm.Session{Base: ep.URL(""), Token: tt.token}, nil
					}
					return crm.Session{Base: ep.URL(""), Token: "good"}, nil
				},
				Refused: func(a crm.Answer) bool { return a.Status == http.StatusUnauthorized },
				Failure: func(a crm.Answer) crm.Result {
					code := ""
					if strings.Contains(string(a.Body), "BAD") {
						code = "BAD"
					}
					return crm.FromStatus(a.Status, a.Header, code, "")
				}}, time.Second)
			t.Cleanup(func() { _ = conn.Close() })
			permits := &counter{refuse: tt.refuse}
			ctx := context.Background()
			if tt.ctx != nil {
				ctx = tt.ctx()
			}
			var out struct {
				ID string `json:"id"`
			}
			_, res, ok := conn.Call(ctx, crm.Endpoint{Host: srv.URL + "/", Permits: permits}, http.MethodPost, tt.path, map[string]any{"a": 1}, &out)
			if ok != tt.ok {
				t.Fatalf("ok %v, want %v: %+v", ok, tt.ok, res)
			}
			if ok && out.ID != "7" {
				t.Fatalf("decoded %+v", out)
			}
			if !ok && (res.Class != tt.class || res.Code != tt.code || !res.Whole) {
				t.Fatalf("result %+v, want class %v code %s, whole", res, tt.class, tt.code)
			}
			if permits.n.Load() != tt.permits || served.Load() != tt.sends {
				t.Fatalf("%d permits and %d requests, want %d and %d", permits.n.Load(), served.Load(), tt.permits, tt.sends)
			}
		})
	}
}

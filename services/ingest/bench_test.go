package ingest_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	recordsync "github.com/recordsync/record-sync"

	"github.com/recordsync/record-sync/crm"
	"github.com/recordsync/record-sync/crm/hubspot"
	"github.com/recordsync/record-sync/services/ingest"
	"github.com/recordsync/record-sync/shared/config"
	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/mapping"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/natsrv"
	"github.com/recordsync/record-sync/shared/natstest"
	"github.com/recordsync/record-sync/shared/openapitest"
	"github.com/recordsync/record-sync/shared/rules"
	"github.com/recordsync/record-sync/shared/status"
)

const benchKey = "bench-key"

// edge runs the HTTP edge alone against an embedded NATS server of the
// given profile; nothing consumes what it publishes.
func edge(b testing.TB, profile string, opts ...func(*ingest.Config)) (string, *natsrv.Server) {
	b.Helper()
	e := edgeWith(b, profile, func(c *ingest.Config) {
		for _, o := range opts {
			o(c)
		}
	})
	if _, bench := b.(*testing.B); bench {
		ts := httptest.NewServer(e.svc.Handler())
		b.Cleanup(ts.Close)
		return ts.URL, e.srv
	}
	return e.server(b).URL, e.srv
}

// server serves the edge on a free port until the test ends, checking
// every answer against the edge's OpenAPI description.
func (e testEdge) server(t testing.TB) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(e.checked(t, e.svc))
	t.Cleanup(ts.Close)
	return ts
}

// checked is svc's handler, checking every answer against its OpenAPI
// description.
func (e testEdge) checked(t testing.TB, svc *ingest.Service) http.Handler {
	t.Helper()
	return checker(t, svc).Handler(t, svc.Handler())
}

// checker checks answers against svc's OpenAPI description.
func checker(t testing.TB, svc *ingest.Service) *openapitest.Checker {
	t.Helper()
	doc, err := svc.API().OpenAPI().Downgrade()
	if err != nil {
		t.Fatal(err)
	}
	c, err := openapitest.New(doc)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testEdge is an HTTP edge and what it runs against.
type testEdge struct {
	svc *ingest.Service
	srv *natsrv.Server
	nc  *nats.Conn
	// js is the operator's, which may read every stream.
	js   jetstream.JetStream
	cfg  ingest.Config
	deps ingest.Deps
}

// replica is another ingest process on the same NATS, configured alike.
func (e testEdge) replica(t testing.TB) *ingest.Service {
	t.Helper()
	svc, err := ingest.New(e.cfg, e.deps, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	return svc
}

// edgeWith builds the HTTP edge with its configuration changed by
// configure (when not nil), against an embedded NATS server.
func edgeWith(b testing.TB, profile string, configure func(*ingest.Config)) testEdge {
	b.Helper()
	srv := natstest.RunServerWith(b, natsrv.Config{Profile: profile})
	nc, js := natstest.Connect(b, srv, "ingest")
	ctx := context.Background()
	_, op := natstest.Connect(b, srv, "operator") // the ingest user may create no stream
	if err := mesh.Ensure(ctx, op, mesh.Options{}); err != nil {
		b.Fatal(err)
	}
	reg, _, err := crm.Build([]crm.Factory{hubspot.Factory()}, nil, crm.Options{}, false)
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	defaults, err := config.LoadDefaults("127.0.0.1:1", reg.Defaults(), reg.MaxBatch)
	if err != nil {
		b.Fatal(err)
	}
	cfgKV, _ := js.KeyValue(ctx, mesh.BucketConfig)
	rulesKV, _ := js.KeyValue(ctx, mesh.BucketRules)
	statusKV, _ := js.KeyValue(ctx, mesh.BucketStatus)
	seed, err := rules.Parse(recordsync.RulesJSON, reg.Names())
	if err != nil {
		b.Fatal(err)
	}
	mappings, err := mapping.NewStore(rulesKV, reg.Schemas(), log)
	if err != nil {
		b.Fatal(err)
	}
	cfg := ingest.Config{APIKeys: []string{benchKey}, Limits: event.DefaultLimits(reg.Names())}
	if configure != nil {
		configure(&cfg)
	}
	deps := ingest.Deps{NC: nc, JS: js, Configs: config.NewStore(cfgKV, defaults, log), Rules: rules.NewStore(rulesKV, seed, reg.Names(), log),
		Mappings: mappings, Status: status.NewReader(statusKV), Registry: reg}
	svc, err := ingest.New(cfg, deps, log)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(svc.Close)
	_, opJS := natstest.Connect(b, srv, "operator")
	return testEdge{svc: svc, srv: srv, nc: nc, js: opJS, cfg: cfg, deps: deps}
}

var seq atomic.Int64

func eventJSON() string {
	n := seq.Add(1)
	return fmt.Sprintf(`{"event_id":"e-%d","record_id":"c-%d","operation":"update","data":{"email":"p%d@example.com","first_name":"Ada","last_name":"Lovelace","phone":"+44 20 7946 0000","do_not_sync":false}}`, n, n, n)
}

func post(b *testing.B, client *http.Client, url string, body []byte) {
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", benchKey)
	resp, err := client.Do(req)
	if err != nil {
		b.Error(err)
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		b.Errorf("status %d", resp.StatusCode)
	}
}

// BenchmarkIngest measures records per second through the HTTP edge:
// decode, validate, publish, wait for JetStream's ack, answer 202. Clients
// run in parallel (GOMAXPROCS x 8 of them), as System A would. Single
// events are gathered into shared messages (gather.go), or not
// (gather=off).
func BenchmarkIngest(b *testing.B) {
	for _, profile := range []string{natsrv.ProfileFast, natsrv.ProfileDurable} {
		for _, size := range []int{0, 1, 100} {
			name := fmt.Sprintf("profile=%s/batch=%d", profile, size)
			if size == 0 {
				// Single events, each its own message (RECORDSYNC_INGEST_GATHER=off).
				name = fmt.Sprintf("profile=%s/batch=1/gather=off", profile)
			}
			b.Run(name, func(b *testing.B) {
				base, _ := edge(b, profile, func(c *ingest.Config) { c.GatherOff = size == 0 })
				size := max(size, 1)
				url := base + "/v1/sync/"
				if size > 1 {
					url = base + "/v1/sync/batch"
				}
				client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
				b.SetParallelism(8)
				b.ResetTimer()
				start := time.Now()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						var body []byte
						if size == 1 {
							body = []byte(eventJSON())
						} else {
							var buf bytes.Buffer
							buf.WriteString(`{"events":[`)
							for i := range size {
								if i > 0 {
									buf.WriteByte(',')
								}
								buf.WriteString(eventJSON())
							}
							buf.WriteString(`]}`)
							body = buf.Bytes()
						}
						post(b, client, url, body)
					}
				})
				b.ReportMetric(float64(b.N*size)/time.Since(start).Seconds(), "records/s")
			})
		}
	}
}

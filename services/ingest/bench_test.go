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

	recordsync "github.com/recordsync/record-sync"
	"github.com/recordsync/record-sync/services/ingest"
	"github.com/recordsync/record-sync/services/pusher/crm"
	"github.com/recordsync/record-sync/services/pusher/crm/hubspot"
	"github.com/recordsync/record-sync/shared/config"
	"github.com/recordsync/record-sync/shared/event"
	"github.com/recordsync/record-sync/shared/mapping"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/natsrv"
	"github.com/recordsync/record-sync/shared/natstest"
	"github.com/recordsync/record-sync/shared/rules"
	"github.com/recordsync/record-sync/shared/status"
)

const benchKey = "bench-key"

// edge runs the HTTP edge alone against an embedded NATS server of the
// given profile; nothing consumes what it publishes.
func edge(b testing.TB, profile string) (string, *natsrv.Server) {
	b.Helper()
	srv := natstest.RunServerWith(b, natsrv.Config{Profile: profile})
	nc, js := natstest.Connect(b, srv, "ingest")
	ctx := context.Background()
	if err := mesh.Ensure(ctx, js, mesh.Options{}); err != nil {
		b.Fatal(err)
	}
	reg := crm.NewRegistry()
	if err := reg.Register(hubspot.New("unused", time.Second)); err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	defaults, err := config.LoadDefaults("127.0.0.1:1")
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
	svc, err := ingest.New(ingest.Config{APIKeys: []string{benchKey}, Limits: event.DefaultLimits(reg.Names())},
		ingest.Deps{NC: nc, JS: js, Configs: config.NewStore(cfgKV, defaults, log), Rules: rules.NewStore(rulesKV, seed, reg.Names(), log),
			Mappings: mappings, Status: status.NewReader(statusKV), Registry: reg}, log)
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(svc.Handler())
	b.Cleanup(ts.Close)
	return ts.URL, srv
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
// run in parallel (GOMAXPROCS x 8 of them), as System A would.
func BenchmarkIngest(b *testing.B) {
	for _, profile := range []string{natsrv.ProfileFast, natsrv.ProfileDurable} {
		for _, size := range []int{1, 100} {
			b.Run(fmt.Sprintf("profile=%s/batch=%d", profile, size), func(b *testing.B) {
				base, _ := edge(b, profile)
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

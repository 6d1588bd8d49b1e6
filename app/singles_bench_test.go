package app_test

import (
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recordsync/record-sync/app"
)

// BenchmarkSingles sends RECORDSYNC_BENCH_RECORDS records (default 50,000)
// to HubSpot through dev as single-event requests (POST /v1/sync/, one
// record each, with its event id), from 64 clients at once, the way most
// systems emit their CRUD events, in both durability profiles, with the
// edge gathering concurrent events into shared messages (gather=on, the
// default) and without (gather=off: each request its own message). It
// reports records/s from the first 202 to the last synced, the edge's rate
// alone (first 202 to last 202), the CPU time per record of the process
// (services, NATS and the clients) and, apart, of the emulator, which runs
// as a process of its own, and the events per stored message. RECORDSYNC_BENCH_GATHER_WAIT sets the gather wait
// (default 0s, as RECORDSYNC_INGEST_GATHER_WAIT). Run it with make
// bench-singles.
func BenchmarkSingles(b *testing.B) {
	app.TuneGC()
	n := envInt("RECORDSYNC_BENCH_RECORDS", 50_000)
	for _, profile := range []string{"fast", "durable"} {
		for _, gather := range []string{"on", "off"} {
			b.Run(fmt.Sprintf("profile=%s/gather=%s", profile, gather), func(b *testing.B) { benchSingles(b, profile, gather == "off", n) })
		}
	}
}

func benchSingles(b *testing.B, profile string, gatherOff bool, n int) {
	var wait time.Duration // the default of RECORDSYNC_INGEST_GATHER_WAIT
	if v, err := time.ParseDuration(os.Getenv("RECORDSYNC_BENCH_GATHER_WAIT")); err == nil {
		wait = v
	}
	data := b.TempDir()
	sim := startEmulator(b, data)
	s := startDev(b, sim.inDev(data), func(e *app.Env) { e.Profile, e.GatherOff, e.GatherWait = profile, gatherOff, wait })
	targets := []string{"hubspot"}
	raiseLimits(b, s, targets)
	b.ResetTimer()
	stopProfile := cpuProfile(b)
	cpu0, _ := usage()
	simCPU0 := sim.cpu()
	const clients = 64
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = clients
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	var first time.Time
	var once sync.Once
	var next atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				body := fmt.Appendf(nil, `{"record_id":"s-%d","event_id":"s-%d-1","operation":"create","targets":["hubspot"],"data":{"email":"s%d@example.com","first_name":"F","last_name":"L%d","company":"C"}}`, i, i, i, i)
				if code, err := postSync(client, s.info.HTTPURL+"/v1/sync/", body); err != nil || code != http.StatusAccepted {
					b.Errorf("single: %d %v", code, err)
					return
				}
				once.Do(func() { first = time.Now() })
			}
		})
	}
	wg.Wait()
	accepted := time.Since(first)
	stored := waitSynced(b, s, targets, map[string]int{"hubspot": n}, first)
	total := time.Since(first)
	heapProfile(b, "synced")
	cpu, _ := usage()
	cpu -= cpu0
	simCPU := sim.cpu() - simCPU0
	stopProfile()
	b.StopTimer()
	metrics := string(call(b, "GET", s.info.HTTPURL+"/metrics", "", nil).Raw)
	b.ReportMetric(float64(n)/total.Seconds(), "records/s")
	b.ReportMetric(float64(n)/accepted.Seconds(), "accepted/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/record")
	b.ReportMetric(float64(simCPU.Microseconds())/float64(n), "crmsim-cpu-µs/record")
	if msgs := metricValue(metrics, "recordsync_ingest_gathered_events_count"); msgs > 0 {
		b.ReportMetric(metricValue(metrics, "recordsync_ingest_gathered_events_sum")/msgs, "events/message")
	}
	b.ReportMetric(peakRSSMB(), "peak-MB")
	b.Logf("%s gather off=%v: %d records accepted in %v, stored by HubSpot after %v, all synced after %v", profile, gatherOff, n,
		accepted.Round(time.Millisecond), stored["hubspot"], total.Round(time.Millisecond))
}

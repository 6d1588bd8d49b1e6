package app_test

import (
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/recordsync/record-sync/app"
)

// BenchmarkBacklog queues RECORDSYNC_BENCH_BACKLOG records (default
// 1,000,000) for HubSpot through dev while HubSpot is down (the emulator's
// down fault: every request answers 503), in batches of 500 from 8
// clients, waits until every record reads queued or retrying, then brings HubSpot back
// and waits until every record reads synced. The backlog lives in
// JetStream: the process's memory should not grow with it. It reports the
// peak resident memory while queueing and in all, the rates of both
// phases with the CPU per record, and checks that no record was lost or
// written twice. The emulator runs as a process of its own; its peak
// memory is reported apart. Run it with make bench-backlog (fast profile).
func BenchmarkBacklog(b *testing.B) {
	app.TuneGC()
	n := envInt("RECORDSYNC_BENCH_BACKLOG", 1_000_000)
	data := b.TempDir()
	sim := startEmulator(b, data)
	s := startDev(b, sim.inDev(data), func(e *app.Env) { e.Profile = "fast" })
	raiseLimits(b, s, []string{"hubspot"})
	faults := func(down bool) {
		if r := call(b, "PUT", s.info.CRMSimURL+"/_sim/hubspot/faults", "", map[string]any{"down": down, "rate_limit": 1_000_000, "rate_window_ms": 1000}); r.Status != http.StatusOK {
			b.Fatalf("faults: %d %s", r.Status, r.Raw)
		}
	}
	faults(true)
	b.ResetTimer()
	stopProfile := cpuProfile(b)
	stopLive := livePeak(b)
	cpu0, _ := usage()
	start := time.Now()
	postBurst(b, s.info.HTTPURL, meshLoad{n: n, batch: 500, clients: 8, prefix: "q"})
	accepted := time.Since(start)
	waitStates(b, s, "hubspot", n, "queued", "retrying")
	queued := time.Since(start)
	cpu1, _ := usage()
	queuedPeak := peakRSSMB()
	heapProfile(b, "queued")
	faults(false)
	up := time.Now()
	stored := waitSynced(b, s, []string{"hubspot"}, map[string]int{"hubspot": n}, up)
	drained := time.Since(up)
	cpu2, _ := usage()
	stopProfile()
	b.StopTimer()
	held := call(b, "GET", s.info.CRMSimURL+"/_sim/hubspot/stats", "", nil)
	if held.Body["records_stored"] != float64(n) || held.Body["duplicates_created"] != 0.0 {
		b.Fatalf("HubSpot holds %s, want %d records and no duplicate", held.Raw, n)
	}
	b.ReportMetric(float64(n)/queued.Seconds(), "queued/s")
	b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(n), "queue-cpu-µs/record")
	b.ReportMetric(float64(n)/drained.Seconds(), "drained/s")
	b.ReportMetric(float64((cpu2-cpu1).Microseconds())/float64(n), "drain-cpu-µs/record")
	b.ReportMetric(queuedPeak, "queued-peak-MB")
	b.ReportMetric(peakRSSMB(), "peak-MB")
	b.ReportMetric(stopLive(), "peak-live-MB")
	b.ReportMetric(procMB(sim.pid, "VmHWM"), "crmsim-peak-MB")
	b.Logf("%d records: accepted in %v, all queued after %v; HubSpot back: stored after %v, all synced after %v", n,
		accepted.Round(time.Millisecond), queued.Round(time.Millisecond), stored["hubspot"], drained.Round(time.Millisecond))
}

// waitStates waits until n records of target read one of states, by the
// stats.
func waitStates(b *testing.B, s *devStack, target string, n int, states ...string) {
	for i := 0; ; i++ {
		st := call(b, "GET", s.info.HTTPURL+"/v1/sync/stats", syncKey, nil)
		have := 0.0
		for _, state := range states {
			have += st.Body["targets"].(map[string]any)[target].(map[string]any)["states"].(map[string]any)[state].(float64)
		}
		if have == float64(n) {
			return
		}
		if i%50 == 49 {
			fmt.Fprintf(os.Stderr, "waiting for %d %v: %s\n", n, states, st.Raw)
		}
		<-time.After(200 * time.Millisecond)
	}
}

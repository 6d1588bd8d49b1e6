package app_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/natstest"
)

// BenchmarkPushers measures the throughput of one latency-bound target
// (the emulated HubSpot answering each request after 200 ms) with 1, 2 and
// 3 `recordsync pusher` processes: records are posted in batches of 500
// as fast as the HTTP edge takes them, and the clock runs until the CRM
// holds every record (after a warm-up that spreads the partitions over
// the processes). It reports records/s and the pushers' CPU time per
// record. Each pusher process sends at most `concurrency` requests at
// once (2 here, so that one process is bound by the CRM's latency and not
// by this machine's CPU): the throughput grows with the processes as long
// as the partitions spread over them. RECORDSYNC_BENCH_RECORDS sets the
// backlog (default 6000).
func BenchmarkPushers(b *testing.B) {
	records := envInt("RECORDSYNC_BENCH_RECORDS", 6000)
	bin, data, sim := binaryAndEmulator(b)
	dev := startProcess(b, bin, data, sim.Addr, "RECORDSYNC_DEV_PUSHERS=0")
	if r := dev.call("POST", "/v1/sync/config-override", adminKey, map[string]any{"target": "hubspot", "rate_limit_per_minute": 1_000_000, "concurrency": 2}); r.Status != 200 {
		b.Fatalf("override: %d %s", r.Status, r.Raw)
	}
	for _, n := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("pushers=%d", n), func(b *testing.B) {
			// The previous run's pushers are gone: free their partitions
			// now rather than after the PinnedTTL.
			if st, err := dev.js.Stream(context.Background(), mesh.StreamPush); err == nil {
				for p := range mesh.DefaultPushPartitions {
					_ = st.UnpinConsumer(context.Background(), mesh.ConsumerPusher("hubspot", p), mesh.PushGroup)
				}
			}
			dev.sim("POST", "/reset", nil)
			dev.sim("PUT", "/faults", map[string]any{"latency_ms": 200})
			var ps []*pusherProcess
			for range n {
				ps = append(ps, startPusher(b, bin, data, sim.Addr))
			}
			// Warm up until the pushers share the partitions: JetStream
			// pins a partition when it has work, and an owner with more
			// than its share releases partitions between rounds.
			batch := func(prefix string, from, to int) {
				var evs []map[string]any
				for r := from; r < to; r++ {
					id := fmt.Sprintf("%s%d-%d", prefix, n, r)
					evs = append(evs, map[string]any{"record_id": id, "operation": "create", "data": map[string]any{"email": id + "@example.com", "first_name": "B"}})
				}
				for chunk := range slices.Chunk(evs, 500) {
					if r := dev.call("POST", "/v1/sync/batch", syncKey, map[string]any{"events": chunk}); r.Status != 202 {
						b.Fatalf("batch: %d %s", r.Status, r.Raw)
					}
				}
			}
			fair := (mesh.DefaultPushPartitions + n - 1) / n
			warm := 0
			natstest.Eventually(b, 60*time.Second, "the partitions shared", func() bool {
				batch("warm", warm, warm+200)
				warm += 200
				total := 0
				for _, p := range ps {
					if len(p.partitions()) > fair {
						return false
					}
					total += len(p.partitions())
				}
				return total == mesh.DefaultPushPartitions
			})
			natstest.Eventually(b, 5*time.Minute, "the warm-up in the CRM", func() bool {
				return dev.sim("GET", "/stats", nil).Body["records_stored"] == float64(warm)
			})
			dev.sim("POST", "/reset", nil)
			dev.sim("PUT", "/faults", map[string]any{"latency_ms": 200})
			var cpu0 time.Duration
			for _, p := range ps {
				cpu0 += procCPU(strconv.Itoa(p.cmd.Process.Pid))
			}
			b.ResetTimer()
			start := time.Now()
			batch("bp", 0, records)
			natstest.Eventually(b, 10*time.Minute, "every record in the CRM", func() bool {
				return dev.sim("GET", "/stats", nil).Body["records_stored"] == float64(records)
			})
			took := time.Since(start)
			cpu := -cpu0
			for _, p := range ps {
				cpu += procCPU(strconv.Itoa(p.cmd.Process.Pid))
				p.kill()
			}
			b.ReportMetric(float64(records)/took.Seconds(), "records/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(records), "cpu-µs/record")
			b.Logf("%d pushers: %d records in %s (%.0f records/s, from the first POST), pusher CPU %s (%.0f µs/record)",
				n, records, took.Round(10*time.Millisecond), float64(records)/took.Seconds(), cpu.Round(time.Millisecond), float64(cpu.Microseconds())/float64(records))
		})
	}
}

package app_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/recordsync/record-sync/app"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/natstest"
	"github.com/recordsync/record-sync/shared/status"
)

// BenchmarkMesh pushes RECORDSYNC_BENCH_RECORDS records (default 100,000)
// through the whole of dev, every one to HubSpot and Salesforce and one in
// RECORDSYNC_BENCH_OUTREACH_EVERY (default 20; 1 for all) to Outreach too,
// with no faults and the emulators' limits raised, in both durability
// profiles. Outreach has no batch write: each record is a lookup and a
// write, and the real API allows 10,000 requests an hour, so sending it
// every record would measure HTTP round trips, not record-sync. It reports
// records/s from the first 202 to the last synced, CRM requests per record
// and target, the share of full batches, p50/p99 from 202 to synced over a
// sample, KV status writes per record, the CPU time, heap allocations and
// page faults per record of the process (the services, NATS and the
// clients) and its peak memory, and apart from them the CPU time per
// record and the peak memory of the CRM emulator, which runs as a process
// of its own (recordsync crmsim). Run it with make bench-mesh.
//
// Each profile takes two bursts, each on a dev of its own: the process's
// first burst also pays for growing it to its working size (the kernel
// maps about 1.4 GB, page by page), which a running service has done once;
// the second is what a service that has run a while does with a burst.
// The garbage collector runs at app.GCPercent, as in the binary.
func BenchmarkMesh(b *testing.B) {
	app.TuneGC() // as the recordsync binary runs
	n := envInt("RECORDSYNC_BENCH_RECORDS", 100_000)
	every := envInt("RECORDSYNC_BENCH_OUTREACH_EVERY", 20)
	// RECORDSYNC_BENCH_SERVERS=1,3 also runs the mesh at R3 on dev's
	// embedded 3-node cluster (default: one server only).
	for _, servers := range strings.Split(cmp.Or(os.Getenv("RECORDSYNC_BENCH_SERVERS"), "1"), ",") {
		cluster, err := strconv.Atoi(strings.TrimSpace(servers))
		if err != nil || (cluster != 1 && cluster != 3) {
			b.Fatalf("RECORDSYNC_BENCH_SERVERS=%q: want 1, 3 or 1,3", os.Getenv("RECORDSYNC_BENCH_SERVERS"))
		}
		for _, profile := range []string{"fast", "durable"} {
			b.Run(fmt.Sprintf("servers=%d/profile=%s", cluster, profile), func(b *testing.B) {
				for _, burst := range []string{"first", "second"} {
					b.Run("burst="+burst, func(b *testing.B) {
						benchMesh(b, meshLoad{profile: profile, n: n, every: every, cluster: cluster, batch: 500, clients: 8})
					})
				}
			})
		}
	}
}

// BenchmarkPipeline is the side-by-side case: 50,000 contacts
// (RECORDSYNC_BENCH_RECORDS) to HubSpot alone, in batches of 100 from 16
// clients, fast profile, two bursts as BenchmarkMesh takes them, with the
// same figures. Run it with make bench-pipeline.
func BenchmarkPipeline(b *testing.B) {
	app.TuneGC()
	n := envInt("RECORDSYNC_BENCH_RECORDS", 50_000)
	for _, burst := range []string{"first", "second"} {
		b.Run("burst="+burst, func(b *testing.B) {
			benchMesh(b, meshLoad{profile: "fast", n: n, cluster: 1, batch: 100, clients: 16})
		})
	}
}

// meshLoad is what benchMesh sends.
type meshLoad struct {
	profile    string
	n, cluster int
	// every: one record in every goes to Outreach too, and each to
	// HubSpot and Salesforce; 0: every record to HubSpot alone.
	every          int
	batch, clients int
	// prefix starts every record id and email ("m" when empty).
	prefix string
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func benchMesh(b *testing.B, l meshLoad) {
	profile, n, every := l.profile, l.n, l.every
	data := b.TempDir()
	sim := startEmulator(b, data)
	s := startDev(b, sim.inDev(data), func(e *app.Env) { e.Profile, e.DevCluster = profile, l.cluster })
	targets := []string{"hubspot", "salesforce", "outreach"}
	want := map[string]int{"hubspot": n, "salesforce": n, "outreach": (n + every - 1) / max(every, 1)}
	if every == 0 {
		targets, want = targets[:1], map[string]int{"hubspot": n}
	}
	raiseLimits(b, s, targets)
	if os.Getenv("RECORDSYNC_BENCH_TRACE") != "" {
		stop := traceBacklogs(b, s, targets)
		defer stop()
	}
	b.ResetTimer()
	stopProfile := cpuProfile(b)
	cpu0, faults0 := usage()
	simCPU0 := sim.cpu()
	alloc0 := allocated()
	stopLive := livePeak(b)
	first := postBurst(b, s.info.HTTPURL, l)
	accepted := time.Since(first)
	heapProfile(b, "accepted")
	stored := waitSynced(b, s, targets, want, first)
	total := time.Since(first)
	heapProfile(b, "synced")
	cpu, faults := usage()
	cpu, faults, alloc := cpu-cpu0, faults-faults0, allocated()-alloc0
	simCPU := sim.cpu() - simCPU0
	live := stopLive()
	stopProfile()
	b.StopTimer()

	requests := map[string]float64{}
	recordTargets := 0
	for _, tg := range targets {
		st := call(b, "GET", s.info.CRMSimURL+"/_sim/"+tg+"/stats", "", nil)
		for _, c := range st.Body["requests_by_status"].(map[string]any) {
			requests[tg] += c.(float64)
		}
		recordTargets += want[tg]
	}
	metrics := string(call(b, "GET", s.info.HTTPURL+"/metrics", "", nil).Raw)
	full := map[string]float64{}
	for tg, max := range map[string]string{"hubspot": "99", "salesforce": "199"} {
		count := metricValue(metrics, `recordsync_push_batch_size_count{target="`+tg+`"}`)
		below := metricValue(metrics, `recordsync_push_batch_size_bucket{target="`+tg+`",le="`+max+`"}`)
		if count > 0 {
			full[tg] = (count - below) / count
		}
	}
	var lat []time.Duration
	for i := 0; i < n; i += max(1, n/1000) {
		rec := call(b, "GET", s.info.HTTPURL+"/v1/sync/status/m-"+strconv.Itoa(i), syncKey, nil)
		var r status.Record
		_ = json.Unmarshal(rec.Raw, &r)
		for _, tg := range r.Targets {
			if h := tg.History; len(h) > 0 {
				lat = append(lat, h[len(h)-1].At.Sub(tg.OccurredAt))
			}
		}
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(float64(len(lat))*p))] }
	b.ReportMetric(float64(n)/total.Seconds(), "records/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/record")
	b.ReportMetric(float64(simCPU.Microseconds())/float64(n), "crmsim-cpu-µs/record")
	b.ReportMetric(float64(alloc)/1024/float64(n), "alloc-KB/record")
	b.ReportMetric(float64(faults)/float64(n), "faults/record")
	for _, tg := range targets {
		b.ReportMetric(requests[tg]/float64(want[tg]), "req/rec-"+tg)
	}
	b.ReportMetric(full["hubspot"]*100, "%full-hubspot")
	b.ReportMetric(full["salesforce"]*100, "%full-salesforce")
	b.ReportMetric(float64(pct(0.5).Milliseconds()), "p50-ms")
	b.ReportMetric(float64(pct(0.99).Milliseconds()), "p99-ms")
	b.ReportMetric(peakRSSMB(), "peak-MB")
	b.ReportMetric(live, "peak-live-MB")
	b.ReportMetric(procMB(sim.pid, "VmHWM"), "crmsim-peak-MB")
	b.ReportMetric(metricValue(metrics, `recordsync_status_writes_total{result="ok"}`)/float64(n), "status-writes/record")
	for _, tg := range targets {
		sel := `{target="` + tg + `"}`
		count := metricValue(metrics, "recordsync_push_duration_seconds_count"+sel)
		b.Logf("%s: %d records, %.0f CRM requests, %.1f ms each on average, %.1f ms waiting for the rate limit", tg, want[tg], requests[tg],
			1000*metricValue(metrics, "recordsync_push_duration_seconds_sum"+sel)/count,
			1000*metricValue(metrics, "recordsync_rate_limit_wait_seconds_sum"+sel)/metricValue(metrics, "recordsync_rate_limit_wait_seconds_count"+sel))
	}
	b.Logf("%s: %d records (%d record-targets): accepted in %v, stored by the CRMs after %v, all synced after %v", profile, n, recordTargets,
		accepted.Round(time.Millisecond), stored, total.Round(time.Millisecond))
}

// postBurst posts l's records to the edge at url, l.batch to a request
// from l.clients clients (each keeping its connection, as System A does),
// and returns when the first was accepted. A batch refused with 503 (the
// backlog bound) is sent again a second later, as its Retry-After says.
func postBurst(b *testing.B, url string, l meshLoad) (first time.Time) {
	n, every, batch, clients, prefix := l.n, l.every, l.batch, l.clients, cmp.Or(l.prefix, "m")
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = clients // System A keeps its connections
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	var once sync.Once
	work := make(chan int)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for start := range work {
				var buf bytes.Buffer
				buf.WriteString(`{"events":[`)
				for i := start; i < min(start+batch, n); i++ {
					if i > start {
						buf.WriteByte(',')
					}
					to := `"hubspot"`
					if every > 0 {
						to += `,"salesforce"`
					}
					if every > 0 && i%every == 0 {
						to += `,"outreach"`
					}
					fmt.Fprintf(&buf, `{"record_id":"%s-%d","operation":"create","targets":[%s],"data":{"email":"%s%d@example.com","first_name":"F","last_name":"L%d","company":"C"}}`, prefix, i, to, prefix, i, i)
				}
				buf.WriteString(`]}`)
				for {
					code, err := postSync(client, url+"/v1/sync/batch", buf.Bytes())
					if err != nil {
						b.Errorf("batch: %v", err)
						return
					}
					if code == http.StatusAccepted {
						break
					}
					if code != http.StatusServiceUnavailable {
						b.Errorf("batch: %d", code)
						return
					}
					<-time.After(time.Second)
				}
				once.Do(func() { first = time.Now() })
			}
		})
	}
	for start := 0; start < n; start += batch {
		work <- start
	}
	close(work)
	wg.Wait()
	return first
}

// raiseLimits lifts the rate limits of targets, in record-sync and in the
// emulator, so that a benchmark measures record-sync, not a quota.
func raiseLimits(b *testing.B, s *devStack, targets []string) {
	for _, tg := range targets {
		override := map[string]any{"target": tg, "rate_limit_per_minute": 1_000_000}
		if tg == "outreach" {
			// Its default concurrency (4) fits the real API's 10,000
			// requests an hour; with the limit raised, a record's two
			// round trips would leave Outreach draining alone at the end.
			override["concurrency"] = 25
		}
		if r := call(b, "POST", s.info.HTTPURL+"/v1/sync/config-override", adminKey, override); r.Status != http.StatusOK {
			b.Fatalf("config-override %s: %d %s", tg, r.Status, r.Raw)
		}
		if r := call(b, "PUT", s.info.CRMSimURL+"/_sim/"+tg+"/faults", "", map[string]any{"rate_limit": 1_000_000, "rate_window_ms": 1000}); r.Status != http.StatusOK {
			b.Fatalf("emulator limits %s: %d %s", tg, r.Status, r.Raw)
		}
	}
}

// waitSynced waits until every record is synced for every target of want,
// and returns when, after first, each CRM held all of its records: the
// rest is the status service's lag.
func waitSynced(b *testing.B, s *devStack, targets []string, want map[string]int, first time.Time) map[string]time.Duration {
	stored := map[string]time.Duration{}
	for i := 1; ; i++ {
		st := call(b, "GET", s.info.HTTPURL+"/v1/sync/stats", syncKey, nil)
		done := true
		for _, tg := range targets {
			if st.Body["targets"].(map[string]any)[tg].(map[string]any)["states"].(map[string]any)["synced"] != float64(want[tg]) {
				done = false
			}
			if _, ok := stored[tg]; !ok {
				sim := call(b, "GET", s.info.CRMSimURL+"/_sim/"+tg+"/stats", "", nil)
				if sim.Body["records_stored"] == float64(want[tg]) {
					stored[tg] = time.Since(first).Round(time.Millisecond)
				}
			}
		}
		if done {
			break
		}
		if i%200 == 0 && os.Getenv("RECORDSYNC_BENCH_TRACE") != "" {
			fmt.Fprintf(os.Stderr, "waiting for synced: %s\n", st.Raw)
		}
		<-time.After(50 * time.Millisecond)
	}
	return stored
}

// postSync posts body as JSON with the sync key and returns the status,
// having read the answer to its end, so that the client uses the
// connection again (closed unread, it dials a new one per request).
func postSync(client *http.Client, url string, body []byte) (int, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-API-Key", syncKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func metricValue(text, series string) float64 {
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, series+" ") {
			v, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(l, series)), 64)
			return v
		}
	}
	return 0
}

// usage returns the CPU time the process has used, user and system (per
// record, it is steadier than the rate on a shared machine), and its page
// faults so far.
func usage() (cpu time.Duration, faults int64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Minflt + ru.Majflt
}

// cpuProfile writes a CPU profile of the measured part of a burst to
// $RECORDSYNC_BENCH_CPUPROFILE-<benchmark>.prof when that is set (pprof
// over the whole run mixes in start-up and the cold burst).
func cpuProfile(b *testing.B) (stop func()) {
	prefix := os.Getenv("RECORDSYNC_BENCH_CPUPROFILE")
	if prefix == "" {
		return func() {}
	}
	f, err := os.Create(prefix + "-" + benchFile(b) + ".prof")
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}
}

// heapProfile writes a profile of the live heap to
// $RECORDSYNC_BENCH_MEMPROFILE-<benchmark>-<when>.prof when that is set.
func heapProfile(b *testing.B, when string) {
	prefix := os.Getenv("RECORDSYNC_BENCH_MEMPROFILE")
	if prefix == "" {
		return
	}
	runtime.GC()
	writeHeapProfile(b, prefix+"-"+benchFile(b)+"-"+when+".prof")
}

// livePeak follows the live heap (as of each garbage collection) while a
// benchmark runs: stop returns its highest value in MB, and, with
// RECORDSYNC_BENCH_MEMPROFILE set, a heap profile of that moment is in
// $RECORDSYNC_BENCH_MEMPROFILE-<benchmark>-peak.prof. Peak RSS says how
// much memory the process took; this says how much of it was held.
func livePeak(b *testing.B) (stop func() float64) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var peak, profiled uint64
	stopSampling := mesh.Every(100*time.Millisecond, func() {
		metrics.Read(sample)
		live := sample[0].Value.Uint64()
		peak = max(peak, live)
		if prefix := os.Getenv("RECORDSYNC_BENCH_MEMPROFILE"); prefix != "" && live > profiled+profiled/20 {
			profiled = live
			writeHeapProfile(b, prefix+"-"+benchFile(b)+"-peak.prof")
		}
	})
	return func() float64 {
		stopSampling()
		return float64(peak) / 1e6
	}
}

// benchFile is the benchmark's name as part of a file name.
func benchFile(b *testing.B) string {
	return strings.NewReplacer("/", "-", "=", "-").Replace(b.Name())
}

// writeHeapProfile writes a profile of the heap as of the last garbage
// collection to path.
func writeHeapProfile(b *testing.B, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Error(err)
		return
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		b.Error(err)
	}
}

// allocated is how many bytes the process has allocated on the heap.
func allocated() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

// peakRSSMB is the process's peak resident memory (VmHWM), in MB.
func peakRSSMB() float64 { return procMB("self", "VmHWM") }

// procMB is field (VmRSS, VmHWM) of process pid ("self": this one), in
// MB.
func procMB(pid, field string) float64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

// traceBacklogs logs, every 200 ms, what each consumer of the mesh has
// pending and in hand, to see which stage holds a run up.
func traceBacklogs(b *testing.B, s *devStack, targets []string) (stop func()) {
	js := s.js
	type cons struct{ stream, name string }
	all := []cons{{mesh.StreamIn, mesh.ConsumerRules}, {mesh.StreamStatus, mesh.ConsumerStatus}}
	for _, tg := range targets {
		for p := range mesh.DefaultPushPartitions {
			all = append(all, cons{mesh.StreamPush, mesh.ConsumerPusher(tg, p)})
		}
	}
	start := time.Now()
	return mesh.Every(200*time.Millisecond, func() {
		line := fmt.Sprintf("%5.1fs", time.Since(start).Seconds())
		for _, c := range all {
			info, err := js.Consumer(context.Background(), c.stream, c.name)
			if err != nil {
				continue
			}
			i := info.CachedInfo()
			if fresh, err := info.Info(context.Background()); err == nil {
				i = fresh
			}
			line += fmt.Sprintf("  %s %d+%d", c.name, i.NumPending, i.NumAckPending)
		}
		b.Log(line)
	})
}

// emulator is the CRM emulator as a process of its own (recordsync
// crmsim), so that a benchmark reports its CPU and memory apart from
// record-sync's: the targets are for record-sync's own processes.
type emulator struct {
	addr string
	pid  string
}

// startEmulator runs recordsync crmsim with its records and credentials
// under data (where dev then finds the credentials), until the benchmark
// ends.
func startEmulator(b *testing.B, data string) *emulator {
	b.Helper()
	bin := binary(b)
	addr := natstest.FreeAddr(b)
	cmd := exec.Command(bin, "crmsim")
	cmd.Env = append(os.Environ(), "RECORDSYNC_DATA_DIR="+data, "RECORDSYNC_CRMSIM_ADDR="+addr, "RECORDSYNC_LOG_LEVEL=warn")
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	})
	natstest.Eventually(b, 30*time.Second, "the emulator answering", func() bool {
		res, err := http.Get("http://" + addr + "/_sim/hubspot/stats")
		if err != nil {
			return false
		}
		_ = res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	return &emulator{addr: addr, pid: strconv.Itoa(cmd.Process.Pid)}
}

// inDev makes dev use the emulator instead of one of its own.
func (e *emulator) inDev(data string) func(*app.Env) {
	return func(env *app.Env) {
		env.CRMSim, env.CRMSimAddr, env.DataDir = false, e.addr, data
		env.CRMCredentials = filepath.Join(data, "crmsim", "credentials.json")
	}
}

// cpu is the CPU time the emulator has used so far (user and system).
func (e *emulator) cpu() time.Duration { return procCPU(e.pid) }

// procCPU is the CPU time process pid has used so far (user and system).
func procCPU(pid string) time.Duration {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command (which may hold spaces) in parentheses:
	// utime and stime are the 12th and 13th, in clock ticks (100 a second
	// on Linux).
	_, rest, _ := bytes.Cut(b, []byte(") "))
	f := strings.Fields(string(rest))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

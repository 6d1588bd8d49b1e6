package app_test

import (
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recordsync/record-sync/app"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/natsrv"
	"github.com/recordsync/record-sync/shared/natstest"
)

// BenchmarkServices runs record-sync as it is deployed: the NATS server
// (fast profile), the CRM emulator and each of the four services (ingest,
// rules, pusher, status) a process of its own, each service as its own
// NATS user, and posts one burst as BenchmarkMesh does
// (RECORDSYNC_BENCH_RECORDS, default 100,000, in batches of 500 from 8
// clients, to HubSpot and Salesforce, one in RECORDSYNC_BENCH_OUTREACH_EVERY
// to Outreach too) until every status reads synced. It reports each
// process's peak resident memory and CPU time per record: what the
// container of each needs, and record-sync's own CPU apart from the NATS
// server's and the clients'. The processes are fresh: their peak includes
// growing to their working size. Run it with make bench-services.
func BenchmarkServices(b *testing.B) {
	n := envInt("RECORDSYNC_BENCH_RECORDS", 100_000)
	every := envInt("RECORDSYNC_BENCH_OUTREACH_EVERY", 20)
	bin := binary(b)
	data := b.TempDir()
	sim := startEmulator(b, data)
	srv := natstest.StartProcess(b, natsrv.ProfileFast)
	procs := startServiceProcesses(b, bin, srv.URL(), srv.Passwords, sim.addr, filepath.Join(data, "crmsim", "credentials.json"))
	s := &devStack{t: b, info: app.DevInfo{HTTPURL: procs["ingest"].metrics, CRMSimURL: "http://" + sim.addr}}
	targets := []string{"hubspot", "salesforce", "outreach"}
	want := map[string]int{"hubspot": n, "salesforce": n, "outreach": (n + every - 1) / every}
	raiseLimits(b, s, targets)
	pids := map[string]string{"nats": srv.Pid(), "crmsim": sim.pid}
	for name, p := range procs {
		pids[name] = strconv.Itoa(p.cmd.Process.Pid)
	}
	cpu0 := map[string]time.Duration{}
	for name, pid := range pids {
		cpu0[name] = procCPU(pid)
	}
	b.ResetTimer()
	stopProfiles := heapProfilesAtPeak(b, procs)
	cpuProfiles := cpuProfilesOf(b, procs, 10*time.Second)
	first := postBurst(b, s.info.HTTPURL, meshLoad{n: n, every: every, batch: 500, clients: 8})
	stored := waitSynced(b, s, targets, want, first)
	total := time.Since(first)
	goals := stopProfiles()
	cpuProfiles()
	b.StopTimer()
	b.ReportMetric(float64(n)/total.Seconds(), "records/s")
	var own time.Duration
	for _, name := range slices.Sorted(maps.Keys(pids)) {
		cpu := procCPU(pids[name]) - cpu0[name]
		b.ReportMetric(float64(cpu.Microseconds())/float64(n), name+"-cpu-µs/record")
		b.ReportMetric(procMB(pids[name], "VmHWM"), name+"-peak-MB")
		if procs[name] != nil {
			own += cpu
		}
		if v, ok := goals[name]; ok {
			b.ReportMetric(v, name+"-peak-heap-goal-MB")
		}
	}
	b.ReportMetric(float64(own.Microseconds())/float64(n), "cpu-µs/record")
	metrics := string(call(b, "GET", procs["status"].metrics+"/metrics", "", nil).Raw)
	b.ReportMetric(metricValue(metrics, `recordsync_status_writes_total{result="ok"}`)/float64(n), "status-writes/record")
	b.Logf("%d records: stored by the CRMs after %v, all synced after %v", n, stored, total.Round(time.Millisecond))
}

// heapProfilesAtPeak, with RECORDSYNC_BENCH_MEMPROFILE set, reads the
// heap goal of each service every 200 ms until stop is called, and writes
// the heap profile at its highest to
// $RECORDSYNC_BENCH_MEMPROFILE-services-<name>.prof; stop returns those
// highs in MB, by service.
func heapProfilesAtPeak(b *testing.B, procs map[string]*serviceProcess) (stop func() map[string]float64) {
	prefix := os.Getenv("RECORDSYNC_BENCH_MEMPROFILE")
	if prefix == "" {
		return func() map[string]float64 { return nil }
	}
	peak := map[string]float64{}
	read := func(url string) []byte {
		res, err := http.Get(url)
		if err != nil {
			return nil
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err != nil || res.StatusCode != http.StatusOK {
			return nil
		}
		return body
	}
	stopSampling := mesh.Every(200*time.Millisecond, func() {
		for name, p := range procs {
			// The text profile ends with the runtime's MemStats, NextGC
			// among them: the heap the collector lets grow before its next
			// cycle, from what was live at its last (times 3 at GOGC=200).
			text := string(read(p.pprof + "/debug/pprof/heap?debug=1"))
			_, after, ok := strings.Cut(text, "# NextGC = ")
			goal, err := strconv.ParseFloat(strings.Fields(after + " ")[0], 64)
			if !ok || err != nil || goal/1e6 <= peak[name] {
				continue
			}
			if prof := read(p.pprof + "/debug/pprof/heap"); prof != nil {
				peak[name] = goal / 1e6
				if err := os.WriteFile(prefix+"-services-"+name+".prof", prof, 0o600); err != nil {
					b.Error(err)
				}
			}
		}
	})
	return func() map[string]float64 {
		stopSampling()
		return peak
	}
}

// cpuProfilesOf, with RECORDSYNC_BENCH_CPUPROFILE set, profiles each
// service's CPU for d from now, into
// $RECORDSYNC_BENCH_CPUPROFILE-services-<name>.prof; wait waits for them.
func cpuProfilesOf(b *testing.B, procs map[string]*serviceProcess, d time.Duration) (wait func()) {
	prefix := os.Getenv("RECORDSYNC_BENCH_CPUPROFILE")
	if prefix == "" {
		return func() {}
	}
	var wg sync.WaitGroup
	for name, p := range procs {
		wg.Go(func() {
			res, err := http.Get(p.pprof + "/debug/pprof/profile?seconds=" + strconv.Itoa(int(d.Seconds())))
			if err != nil {
				b.Error(err)
				return
			}
			defer res.Body.Close()
			prof, err := io.ReadAll(res.Body)
			if err == nil {
				err = os.WriteFile(prefix+"-services-"+name+".prof", prof, 0o600)
			}
			if err != nil {
				b.Error(err)
			}
		})
	}
	return wg.Wait
}

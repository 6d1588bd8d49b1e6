package app_test

import (
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/recordsync/record-sync/app"
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
	first := postBurst(b, s.info.HTTPURL, meshLoad{n: n, every: every, batch: 500, clients: 8})
	stored := waitSynced(b, s, targets, want, first)
	total := time.Since(first)
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
	}
	b.ReportMetric(float64(own.Microseconds())/float64(n), "cpu-µs/record")
	b.Logf("%d records: stored by the CRMs after %v, all synced after %v", n, stored, total.Round(time.Millisecond))
}

package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recordsync/record-sync/app"
	"github.com/recordsync/record-sync/shared/status"
)

// BenchmarkSoak sends RECORDSYNC_BENCH_SOAK_RATE records a second (default
// 3,000, in a batch every 100 ms) to HubSpot and Salesforce through dev for
// RECORDSYNC_BENCH_SOAK (default 10m), each record new, with the emulator
// as a process of its own. Every 5 s it samples the resident memory of the
// process (the services and NATS) and of the emulator (with and without
// the pages of its files, which the kernel may take back); ten records a second
// are followed until they read synced, to measure how long after the CRM's
// confirmation (the status's last_pushed.at) synced is visible. It reports
// the memory after the first minute and its growth from there to the
// largest sample after it (the issue asks for at most 10%), the p50/p99
// of that visibility, the CPU per record of both processes, and checks at
// the end that every record was synced once. Run it with make bench-soak;
// RECORDSYNC_BENCH_MEMPROFILE writes a heap profile when the sending ends.
func BenchmarkSoak(b *testing.B) {
	app.TuneGC()
	rate := envInt("RECORDSYNC_BENCH_SOAK_RATE", 3000)
	length, err := time.ParseDuration(os.Getenv("RECORDSYNC_BENCH_SOAK"))
	if err != nil {
		length = 10 * time.Minute
	}
	data := b.TempDir()
	sim := startEmulator(b, data)
	s := startDev(b, sim.inDev(data), func(e *app.Env) { e.Profile = "fast" })
	targets := []string{"hubspot", "salesforce"}
	raiseLimits(b, s, targets)
	b.ResetTimer()
	cpu0, _ := usage()
	simCPU0 := sim.cpu()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()

	start := time.Now()
	var (
		mu      sync.Mutex
		rss     []float64 // the process, a sample every 5 s
		simRSS  []float64
		simAnon []float64       // the emulator's heap and stacks: its resident memory without the pages of its files
		visible []time.Duration // synced visible after the CRM confirmed
	)
	follow := make(chan string, 64)
	var followers sync.WaitGroup
	for range 4 {
		followers.Go(func() {
			for id := range follow {
				if d, ok := syncedAfter(client, s, id, len(targets)); ok && time.Since(start) > time.Minute {
					mu.Lock()
					visible = append(visible, d)
					mu.Unlock()
				}
			}
		})
	}
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
				mu.Lock()
				rss, simRSS = append(rss, procMB("self", "VmRSS")), append(simRSS, procMB(sim.pid, "VmRSS"))
				simAnon = append(simAnon, procMB(sim.pid, "RssAnon"))
				mu.Unlock()
			}
		}
	}()

	per := max(1, rate/10)
	sent := 0
	tick := time.NewTicker(100 * time.Millisecond)
	for time.Since(start) < length {
		<-tick.C
		var buf bytes.Buffer
		buf.WriteString(`{"events":[`)
		for i := sent; i < sent+per; i++ {
			if i > sent {
				buf.WriteByte(',')
			}
			fmt.Fprintf(&buf, `{"record_id":"s-%d","operation":"create","targets":["hubspot","salesforce"],"data":{"email":"s%d@example.com","first_name":"F","last_name":"L%d","company":"C"}}`, i, i, i)
		}
		buf.WriteString(`]}`)
		if code, err := postSync(client, s.info.HTTPURL+"/v1/sync/batch", buf.Bytes()); err != nil || code != http.StatusAccepted {
			b.Fatalf("batch at %v: %d %v", time.Since(start).Round(time.Second), code, err)
		}
		select {
		case follow <- "s-" + strconv.Itoa(sent):
		default: // the followers are busy: follow the next one
		}
		sent += per
	}
	tick.Stop()
	sending := time.Since(start)
	heapProfile(b, "sent")
	close(follow)
	want := map[string]int{"hubspot": sent, "salesforce": sent}
	waitSynced(b, s, targets, want, start)
	total := time.Since(start)
	followers.Wait()
	close(stopSampling)
	<-sampled
	cpu, _ := usage()
	simCPU := sim.cpu() - simCPU0
	b.StopTimer()
	for _, tg := range targets {
		st := call(b, "GET", s.info.CRMSimURL+"/_sim/"+tg+"/stats", "", nil)
		if st.Body["records_stored"] != float64(sent) || st.Body["duplicates_created"] != 0.0 {
			b.Fatalf("%s holds %s; want %d records and no duplicate", tg, st.Raw, sent)
		}
	}

	first := min(len(rss)-1, int(time.Minute/(5*time.Second))) // the sample at one minute
	if first < 0 {
		b.Fatal("no memory sample: run it for longer than 5 s")
	}
	growth := func(samples []float64) (at, most float64) {
		at = samples[first]
		return at, slices.Max(samples[first:])
	}
	at, most := growth(rss)
	simAt, simMost := growth(simRSS)
	anonAt, anonMost := growth(simAnon)
	slices.Sort(visible)
	pct := func(p float64) float64 {
		if len(visible) == 0 {
			return 0
		}
		return float64(visible[min(len(visible)-1, int(float64(len(visible))*p))].Milliseconds())
	}
	b.ReportMetric(float64(sent)/sending.Seconds(), "sent/s")
	b.ReportMetric(float64((cpu-cpu0).Microseconds())/float64(sent), "cpu-µs/record")
	b.ReportMetric(float64(simCPU.Microseconds())/float64(sent), "crmsim-cpu-µs/record")
	b.ReportMetric(at, "rss-1min-MB")
	b.ReportMetric(100*(most-at)/at, "rss-growth-%")
	b.ReportMetric(peakRSSMB(), "peak-MB")
	b.ReportMetric(simAt, "crmsim-rss-1min-MB")
	b.ReportMetric(100*(simMost-simAt)/simAt, "crmsim-rss-growth-%")
	b.ReportMetric(anonAt, "crmsim-anon-1min-MB")
	b.ReportMetric(100*(anonMost-anonAt)/anonAt, "crmsim-anon-growth-%")
	b.ReportMetric(pct(0.5), "visible-p50-ms")
	b.ReportMetric(pct(0.99), "visible-p99-ms")
	b.Logf("%d records in %v, all synced after %v; %d followed; memory every 5 s (MB): %s; emulator: %s; the emulator without its files' pages: %s", sent,
		sending.Round(time.Second), total.Round(time.Second), len(visible), joinMB(rss), joinMB(simRSS), joinMB(simAnon))
}

// syncedAfter polls record id's status every 20 ms until it reads synced
// for n targets, and returns how long after the latest CRM confirmation
// it was seen so (within the 20 ms of the polling).
func syncedAfter(client *http.Client, s *devStack, id string, n int) (time.Duration, bool) {
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		var rec status.Record
		ok := getJSON(client, s.info.HTTPURL+"/v1/sync/status/"+id, &rec)
		seen := time.Now()
		if ok && len(rec.Targets) == n {
			var confirmed time.Time
			done := true
			for _, t := range rec.Targets {
				if t.State != status.StateSynced || t.LastPushed == nil {
					done = false
					break
				}
				if t.LastPushed.At.After(confirmed) {
					confirmed = t.LastPushed.At
				}
			}
			if done {
				return seen.Sub(confirmed), true
			}
		}
		<-time.After(20 * time.Millisecond)
	}
	return 0, false
}

// getJSON GETs url with the sync key and decodes a 200 answer into v.
func getJSON(client *http.Client, url string, v any) bool {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	req.Header.Set("X-API-Key", syncKey)
	res, err := client.Do(req)
	if err != nil {
		return false
	}
	defer res.Body.Close()
	return res.StatusCode == http.StatusOK && json.NewDecoder(res.Body).Decode(v) == nil
}

func joinMB(samples []float64) string {
	out := make([]string, len(samples))
	for i, v := range samples {
		out[i] = strconv.Itoa(int(v))
	}
	return strings.Join(out, " ")
}

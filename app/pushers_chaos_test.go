package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/natstest"
	"github.com/recordsync/record-sync/shared/status"
)

// pusherProcess is a `recordsync pusher` child process whose log the test
// reads: which partitions it owns, and since when.
type pusherProcess struct {
	t   testing.TB
	cmd *exec.Cmd

	mu    sync.Mutex
	owned map[int]time.Time // partition -> when this process took it
}

// startPusher starts `recordsync pusher` against dev's NATS server.
func startPusher(t testing.TB, bin, data, simAddr string, extraEnv ...string) *pusherProcess {
	t.Helper()
	env := map[string]string{}
	b, err := os.ReadFile(filepath.Join(data, "nats.env"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			env[k] = strings.Trim(v, `"'`)
		}
	}
	cmd := exec.Command(bin, "pusher")
	cmd.Env = append(os.Environ(),
		"RECORDSYNC_NATS_URL="+env["NATS_URL"], "RECORDSYNC_NATS_USER="+env["NATS_USER"], "RECORDSYNC_NATS_PASSWORD="+env["NATS_PASSWORD"],
		"RECORDSYNC_DATA_DIR="+data, "RECORDSYNC_CRMSIM_ADDR="+simAddr, "RECORDSYNC_LOG_LEVEL=info")
	cmd.Env = append(cmd.Env, extraEnv...)
	logs, err := cmd.StdoutPipe() // the JSON log
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	p := &pusherProcess{t: t, cmd: cmd, owned: map[int]time.Time{}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	go func() {
		sc := bufio.NewScanner(logs)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var l struct {
				Time      time.Time `json:"time"`
				Msg       string    `json:"msg"`
				Target    string    `json:"target"`
				Partition int       `json:"partition"`
			}
			if dump := os.Getenv("RECORDSYNC_TEST_LOG"); dump != "" && !strings.Contains(sc.Text(), "crm_push") {
				t.Log(sc.Text())
			}
			if json.Unmarshal(sc.Bytes(), &l) != nil || l.Target != "hubspot" {
				continue
			}
			p.mu.Lock()
			switch l.Msg {
			case "partition_owned":
				p.owned[l.Partition] = l.Time
			case "partition_lost", "partition_released":
				delete(p.owned, l.Partition)
			}
			p.mu.Unlock()
		}
	}()
	return p
}

// partitions returns the partitions the process owns, and since when.
func (p *pusherProcess) partitions() map[int]time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[int]time.Time, len(p.owned))
	for k, v := range p.owned {
		out[k] = v
	}
	return out
}

// kill sends SIGKILL: nothing is drained, acked or flushed.
func (p *pusherProcess) kill() {
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		p.t.Fatal(err)
	}
	_ = p.cmd.Wait()
}

// chaosSize is the load of the pusher chaos test: short by default,
// RECORDSYNC_CHAOS=long (make test-chaos) for the long variant.
func chaosSize() (records, versions int, long bool) {
	if chaosLong() {
		return 1000, 30, true
	}
	return 100, 16, false
}

// TestPusherKilledUnderLoad (chaos test 4): three `recordsync pusher`
// processes of one target, each record updated many times in quick
// succession, the pusher owning the most partitions killed with SIGKILL
// meanwhile. Every record ends synced with its last event, exactly once in
// the CRM (no duplicate created), nothing is dead-lettered, and every
// record's write history in the CRM is in occurred_at order with its final
// state the last event's. It logs the failover time: from the SIGKILL
// until every partition of the killed process is owned again.
func TestPusherKilledUnderLoad(t *testing.T) {
	skipChaos(t)
	bin, data, sim := binaryAndEmulator(t)
	dev := startProcess(t, bin, data, sim.Addr, "RECORDSYNC_DEV_PUSHERS=0")
	// Past the emulator's own quota it answers 429, and partial batch
	// errors are injected: enough attempts that only the kill is tested.
	if r := dev.call("POST", "/v1/sync/config-override", adminKey, map[string]any{"target": "hubspot", "rate_limit_per_minute": 1_000_000, "max_attempts": 20}); r.Status != 200 {
		t.Fatalf("override: %d %s", r.Status, r.Raw)
	}
	dev.sim("PUT", "/faults", map[string]any{"partial_batch_error": 0.05, "latency_ms": 20})
	pushers := []*pusherProcess{startPusher(t, bin, data, sim.Addr), startPusher(t, bin, data, sim.Addr), startPusher(t, bin, data, sim.Addr)}

	records, versions, long := chaosSize()
	base := time.Now().UTC().Add(-time.Hour)
	email := func(r int) string { return fmt.Sprintf("chaos-%d@example.com", r) }
	// The load: a version of every record each half second, from a
	// goroutine, while the pushers share the partitions and one is killed:
	// at least versions of them, and on until four have followed the kill
	// (an even count in all, so that the last one sets last_name), so that
	// there is work for the partitions while they are shared out and taken
	// over however long that takes.
	var accepted, sent int // read once loadDone has said
	loadDone := make(chan error, 1)
	killed, stop := make(chan struct{}), make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		sinceKill := -1
		for v := 0; v < versions || sinceKill < 4 || v%2 == 1; v++ {
			select {
			case <-stop:
				loadDone <- errors.New("the test ended first")
				return
			case <-killed:
				if sinceKill < 0 {
					sinceKill = 0
				}
			default:
			}
			if sinceKill >= 0 {
				sinceKill++
			}
			var evs []map[string]any
			for r := range records {
				field := "first_name"
				if v%2 == 1 {
					field = "last_name"
				}
				evs = append(evs, map[string]any{"record_id": fmt.Sprintf("chaos-%d", r), "event_id": fmt.Sprintf("chaos-%d-v%03d", r, v),
					"operation": "update", "occurred_at": base.Add(time.Duration(v) * time.Second).Format(time.RFC3339Nano),
					"data": map[string]any{"email": email(r), field: fmt.Sprintf("v%03d", v)}})
			}
			for chunk := range slices.Chunk(evs, 500) {
				r := call(t, "POST", dev.info.HTTPURL+"/v1/sync/batch", syncKey, map[string]any{"events": chunk})
				if r.Status != 202 {
					loadDone <- fmt.Errorf("batch: %d %s", r.Status, r.Raw)
					return
				}
				accepted += len(chunk)
			}
			sent = v + 1
			<-tick.C
		}
		loadDone <- nil
	}()
	// The pushers share the partitions (each at most its fair share),
	// then the busiest is killed.
	fair := (mesh.DefaultPushPartitions + len(pushers) - 1) / len(pushers)
	natstest.Eventually(t, 30*time.Second, "partitions owned, evenly", func() bool {
		n := 0
		for _, p := range pushers {
			if len(p.partitions()) > fair {
				return false
			}
			n += len(p.partitions())
		}
		return n == mesh.DefaultPushPartitions
	})
	victim := pushers[0]
	for _, p := range pushers {
		if len(p.partitions()) > len(victim.partitions()) {
			victim = p
		}
	}
	victimParts := victim.partitions()
	t.Logf("partitions owned per pusher at the kill: %d %d %d", len(pushers[0].partitions()), len(pushers[1].partitions()), len(pushers[2].partitions()))
	killedAt := time.Now()
	victim.kill()
	close(killed)
	if err := <-loadDone; err != nil {
		t.Fatal(err)
	}
	// Failover: every partition of the killed pusher owned by another.
	var failover time.Duration
	natstest.Eventually(t, 60*time.Second, "the killed pusher's partitions taken over", func() bool {
		failover = 0
		for part := range victimParts {
			took := time.Time{}
			for _, p := range pushers {
				if p == victim {
					continue
				}
				if at, ok := p.partitions()[part]; ok && at.After(killedAt) {
					took = at
				}
			}
			if took.IsZero() {
				return false
			}
			failover = max(failover, took.Sub(killedAt))
		}
		return true
	})
	t.Logf("SIGKILL of a pusher owning %d of %d partitions: all of them pushed again by the others after %s (long=%v)",
		len(victimParts), mesh.DefaultPushPartitions, failover.Round(10*time.Millisecond), long)

	// Every record synced with its last event.
	last := fmt.Sprintf("v%03d", sent-1)
	pending := 0
	var example string
	synced := func() bool {
		pending, example = 0, ""
		for r := range records {
			e, err := dev.kv.Get(context.Background(), status.Key(fmt.Sprintf("chaos-%d", r)))
			var rec status.Record
			if err == nil {
				err = json.Unmarshal(e.Value(), &rec)
			}
			if st := rec.Targets["hubspot"]; err != nil || st == nil || st.State != status.StateSynced || st.EventID != fmt.Sprintf("chaos-%d-%s", r, last) {
				pending++
				if example == "" {
					example = fmt.Sprintf("chaos-%d: %+v %v", r, st, err)
				}
			}
		}
		return pending == 0
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for deadline := time.Now().Add(5 * time.Minute); !synced(); <-tick.C {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d records not synced with their last event after 5m; one: %s", pending, records, example)
		}
	}
	stats := dev.sim("GET", "/stats", nil)
	if stats.Body["records_stored"] != float64(records) || stats.Body["duplicates_created"] != 0.0 {
		t.Errorf("emulator: %s; want %d records, no duplicate", stats.Raw, records)
	}
	if n := dev.lastSeq(mesh.StreamDLQ); n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}
	wantFirst, wantLast := fmt.Sprintf("v%03d", sent-2), last
	for r := range records {
		h := dev.sim("GET", "/history?identity="+url.QueryEscape(email(r)), nil)
		var body struct {
			Writes []struct {
				Values map[string]any `json:"values"`
			} `json:"writes"`
		}
		if err := json.Unmarshal(h.Raw, &body); err != nil {
			t.Fatal(err)
		}
		state := map[string]any{}
		var vs []string
		for _, w := range body.Writes {
			v := ""
			for _, k := range []string{"firstname", "lastname"} {
				if s, _ := w.Values[k].(string); s > v {
					v = s
				}
				if x, ok := w.Values[k]; ok {
					state[k] = x
				}
			}
			vs = append(vs, v)
		}
		if !slices.IsSorted(vs) || state["firstname"] != wantFirst || state["lastname"] != wantLast {
			t.Errorf("record chaos-%d: writes %s, final %v; want in order, ending %s %s", r, strings.Join(vs, " "), state, wantFirst, wantLast)
		}
	}
	t.Logf("%d events accepted (202) for %d records, all synced with their last event; emulator: %s", accepted, records, stats.Raw)
}

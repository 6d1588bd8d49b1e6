package app_test

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/recordsync/record-sync/app"
	"github.com/recordsync/record-sync/shared/natstest"
	"github.com/recordsync/record-sync/shared/status"
)

// TestCrashAfterAcceptLosesNothing kills `recordsync dev` with SIGKILL (no
// drain, no flush) after a record was accepted and before it was pushed,
// starts it again on the same data dir, and checks that the record is
// synced exactly once.
func TestCrashAfterAcceptLosesNothing(t *testing.T) {
	bin, data, sim := binaryAndEmulator(t)

	// HubSpot disabled, so that the record waits in its stream. The pusher
	// reads its config at start, so a restart makes the setting certain.
	setup := startProcess(t, bin, data, sim.Addr)
	if r := setup.call("POST", "/v1/sync/config-override", adminKey, map[string]any{"target": "hubspot", "enabled": false}); r.Status != 200 {
		t.Fatalf("disable hubspot: %d %s", r.Status, r.Raw)
	}
	setup.stop()

	first := startProcess(t, bin, data, sim.Addr)
	if r := first.call("POST", "/v1/sync/", syncKey, contact("crash-1", "crash@example.com", map[string]any{"first_name": "Kim"})); r.Status != 202 {
		t.Fatalf("POST: %d %s", r.Status, r.Raw)
	}
	first.waitState("crash-1", "hubspot", status.StateQueued)
	first.kill()

	second := startProcess(t, bin, data, sim.Addr)
	if r := second.call("POST", "/v1/sync/config-override", adminKey, map[string]any{"target": "hubspot", "enabled": true}); r.Status != 200 {
		t.Fatalf("enable hubspot: %d %s", r.Status, r.Raw)
	}
	st := second.waitState("crash-1", "hubspot", status.StateSynced)
	if st.Attempts != 1 {
		t.Fatalf("attempts %d, want 1", st.Attempts)
	}
	stats := second.sim("GET", "/stats", nil)
	if stats.Body["records_stored"] != 1.0 || stats.Body["duplicates_created"] != 0.0 || stats.Body["requests_by_status"].(map[string]any)["200"] != 1.0 {
		t.Fatalf("emulator: %s; want the record stored once by one request", stats.Raw)
	}
	second.stop()
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds the recordsync binary once for the tests of this package.
func binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "recordsync-test-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "recordsync")
		build := exec.Command("go", "build", "-o", binPath, "./cmd/recordsync")
		build.Dir = ".."
		if out, err := build.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// binaryAndEmulator returns the built binary, a data dir, and a CRM
// emulator that lives in the test, so that it outlives the processes.
func binaryAndEmulator(t testing.TB) (string, string, *app.CRMSim) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := binary(t)
	data := t.TempDir()
	sim, err := app.StartCRMSim("127.0.0.1:0", data, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Stop() })
	return bin, data, sim
}

// TestRetryAfterRestart dead-letters a record, restarts recordsync, and
// retries it: the dead letter and the status survive the restart.
func TestRetryAfterRestart(t *testing.T) {
	bin, data, sim := binaryAndEmulator(t)

	first := startProcess(t, bin, data, sim.Addr)
	if r := first.call("POST", "/v1/sync/config-override", adminKey, map[string]any{"target": "hubspot", "max_attempts": 1}); r.Status != 200 {
		t.Fatalf("override: %d %s", r.Status, r.Raw)
	}
	first.sim("PUT", "/faults", map[string]any{"down": true})
	first.call("POST", "/v1/sync/", syncKey, contact("rr-1", "rr1@example.com", nil))
	first.waitFor("rr-1", "hubspot", "dead-lettered", func(t *status.Target) bool {
		return t.State == status.StateFailed && t.LastError != nil && t.LastError.DeadLettered
	})
	first.stop()

	first.sim("PUT", "/faults", map[string]any{})
	second := startProcess(t, bin, data, sim.Addr)
	if r := second.call("POST", "/v1/sync/retry/rr-1", syncKey, nil); r.Status != 202 {
		t.Fatalf("retry after restart: %d %s", r.Status, r.Raw)
	}
	second.waitState("rr-1", "hubspot", status.StateSynced)
	second.stop()
}

// process is a recordsync dev running as a child process.
type process struct {
	*devStack
	cmd *exec.Cmd
}

func startProcess(t testing.TB, bin, data, simAddr string, extraEnv ...string) *process {
	t.Helper()
	addr := natstest.FreeAddr(t)
	cmd := exec.Command(bin, "dev")
	cmd.Env = append(os.Environ(),
		"RECORDSYNC_DATA_DIR="+data, "RECORDSYNC_HTTP_ADDR="+addr, "RECORDSYNC_NATS_LISTEN=127.0.0.1:-1",
		"RECORDSYNC_CRMSIM=off", "RECORDSYNC_CRMSIM_ADDR="+simAddr,
		"RECORDSYNC_API_KEYS="+syncKey, "RECORDSYNC_ADMIN_KEYS="+adminKey, "RECORDSYNC_LOG_LEVEL=warn",
		// Work a killed pusher held comes back after this.
		"RECORDSYNC_PUSH_ACK_WAIT=3s")
	cmd.Env = append(cmd.Env, extraEnv...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	// The banner on stderr says it is ready, and where everything is.
	info := app.DevInfo{HTTPURL: "http://" + addr, NATSEnv: filepath.Join(data, "nats.env"),
		CRMSimURL: "http://" + simAddr, Credentials: filepath.Join(data, "crmsim", "credentials.json")}
	if err := natstest.AwaitLine(stderr, "record-sync dev is running", 60*time.Second); err != nil {
		t.Fatalf("recordsync dev: %v", err)
	}
	p.devStack = attach(t, info)
	return p
}

// kill stops the process with SIGKILL: nothing is drained or flushed.
func (p *process) kill() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		p.t.Fatal(err)
	}
	_ = p.cmd.Wait()
}

// stop stops the process with SIGINT, as Ctrl-C does, and expects exit 0.
func (p *process) stop() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		p.t.Fatal(err)
	}
	if err := p.cmd.Wait(); err != nil {
		p.t.Fatalf("after Ctrl-C: %v, want exit 0", err)
	}
}

// TestMain removes the binary the tests built.
func TestMain(m *testing.M) {
	natstest.ServeIfChild() // a NATS server the chaos tests run as a process of its own
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

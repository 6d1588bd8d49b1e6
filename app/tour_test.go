package app_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/recordsync/record-sync/shared/natstest"
)

// TestTour runs examples/tour.sh, which pastes every command of the front
// page's five-minute tour into a shell and checks what the tour says
// happened, against the recordsync binary's dev on free ports, with the
// keys dev generates, as a reader of README.md would.
func TestTour(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	for _, tool := range []string{"bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the tour needs %s: %v", tool, err)
		}
	}
	bin := binary(t)
	data := t.TempDir()
	httpAddr, simAddr := natstest.FreeAddr(t), natstest.FreeAddr(t)

	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RECORDSYNC_") {
			env = append(env, kv)
		}
	}
	env = append(env, "RECORDSYNC_DATA_DIR="+data, "RECORDSYNC_HTTP_ADDR="+httpAddr,
		"RECORDSYNC_NATS_LISTEN=127.0.0.1:-1", "RECORDSYNC_CRMSIM_ADDR="+simAddr, "RECORDSYNC_LOG_LEVEL=warn")

	dev := exec.Command(bin, "dev")
	dev.Env = env
	stderr, err := dev.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if dev.ProcessState == nil {
			_ = dev.Process.Kill()
			_ = dev.Wait()
		}
	})
	if err := natstest.AwaitLine(stderr, "record-sync dev is running", 60*time.Second); err != nil {
		t.Fatalf("recordsync dev: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tour := exec.CommandContext(ctx, "bash", filepath.Join("examples", "tour.sh"))
	tour.Dir = ".."
	tour.Env = append(env, "RECORDSYNC_BIN="+bin)
	out, err := tour.CombinedOutput()
	if err != nil {
		t.Fatalf("examples/tour.sh: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "every outcome checked") {
		t.Fatalf("examples/tour.sh ended without its checks:\n%s", out)
	}

	if err := dev.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := dev.Wait(); err != nil {
		t.Errorf("recordsync dev after Ctrl-C: %v (the front page says it exits 0)", err)
	}
}

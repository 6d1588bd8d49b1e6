package app_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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
	httpAddr, simAddr := freeTCPAddr(t), freeTCPAddr(t)

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
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		said := false
		for sc.Scan() {
			if !said && strings.Contains(sc.Text(), "record-sync dev is running") {
				said = true
				ready <- true
			}
		}
		if !said {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("recordsync dev exited before it was ready")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("recordsync dev not ready after 60s")
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

package app_test

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/recordsync/record-sync/shared/natstest"
)

// TestPprofServesProfiles: a recordsync process with RECORDSYNC_PPROF_ADDR
// (the emulator here: it needs no NATS) serves Go's runtime profiles there,
// the heap profile among them, which `go tool pprof` reads.
func TestPprofServesProfiles(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := binary(t)
	pprofAddr := natstest.FreeAddr(t)
	cmd := exec.Command(bin, "crmsim")
	cmd.Env = append(os.Environ(), "RECORDSYNC_DATA_DIR="+t.TempDir(), "RECORDSYNC_CRMSIM_ADDR="+natstest.FreeAddr(t),
		"RECORDSYNC_PPROF_ADDR="+pprofAddr, "RECORDSYNC_LOG_LEVEL=warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	})
	get := func(path string) (int, string) {
		res, err := http.Get("http://" + pprofAddr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	natstest.Eventually(t, 30*time.Second, "the profiles served", func() bool { code, _ := get("/debug/pprof/"); return code == http.StatusOK })
	if code, body := get("/debug/pprof/heap?debug=1"); code != http.StatusOK || !strings.Contains(body, "heap profile:") {
		t.Errorf("heap profile: %d %.200s", code, body)
	}
	if code, body := get("/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(body, "goroutine profile:") {
		t.Errorf("goroutine profile: %d %.200s", code, body)
	}
}

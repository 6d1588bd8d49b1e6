package app_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/recordsync/record-sync/app"
)

// clientDir holds real CRM client libraries (Node packages from the npm
// registry, pinned in package-lock.json) and a script per library that
// runs it unchanged against the CRM emulator.
const clientDir = "../crmsim/clienttest"

// clientScripts are the scripts of clientDir, one per client library.
var clientScripts = []string{"salesforce.js", "hubspot.js"}

// TestRealClients runs jsforce and @hubspot/api-client against a fresh
// emulator: login, create, read by id and by external id or email, update,
// upsert, batches, query or search, delete, and errors. It runs npm ci
// first when node_modules is missing.
func TestRealClients(t *testing.T) {
	if testing.Short() {
		t.Skip("real clients: skipped in -short")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("real clients: node is not installed (CI has node 20; install node and npm to run jsforce and @hubspot/api-client)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if _, err := os.Stat(filepath.Join(clientDir, "node_modules")); errors.Is(err, os.ErrNotExist) {
		npm, err := exec.LookPath("npm")
		if err != nil {
			t.Fatalf("node_modules is missing and npm is not installed: %v", err)
		}
		cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
		cmd.Dir = clientDir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("npm ci: %v\n%s", err, out)
		}
	}
	sim, err := app.StartCRMSim("127.0.0.1:0", t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sim.Stop(); err != nil {
			t.Error(err)
		}
	})
	for _, script := range clientScripts {
		t.Run(script, func(t *testing.T) {
			cmd := exec.CommandContext(ctx, node, script)
			cmd.Dir = clientDir
			cmd.Env = append(os.Environ(), "CRMSIM_URL=http://"+sim.Addr, "CRMSIM_CREDENTIALS="+sim.Credentials)
			out, err := cmd.CombinedOutput()
			t.Logf("%s:\n%s", script, out)
			if err != nil {
				t.Fatalf("node %s: %v", script, err)
			}
		})
	}
}

package main

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recordsync/record-sync/app"
)

// TestAgainstDev runs the example against `recordsync dev`, in process,
// on free ports: every step must get the answer it expects.
func TestAgainstDev(t *testing.T) {
	env := app.Env{
		HTTPAddr: "127.0.0.1:0", NATSListen: "127.0.0.1:-1", CRMSimAddr: "127.0.0.1:0",
		DataDir: t.TempDir(), APIKeys: []string{"example-sync-key"}, AdminKeys: []string{"example-admin-key"},
		CRMSim: true, Profile: "fast", LogLevel: "warn", DevPushers: 1,
	}
	env.CRMCredentials = filepath.Join(env.DataDir, "crmsim", "credentials.json")
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan app.DevInfo, 1)
	done := make(chan error, 1)
	go func() {
		done <- app.RunDev(ctx, env, slog.New(slog.DiscardHandler), func(i app.DevInfo) { ready <- i })
	}()
	var info app.DevInfo
	select {
	case info = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("dev stopped: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("dev not ready after 60s")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dev: %v", err)
		}
	})
	var out bytes.Buffer
	rctx, rcancel := context.WithTimeout(context.Background(), time.Minute)
	defer rcancel()
	if err := run(rctx, info.HTTPURL, "example-sync-key", "example-admin-key", &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"submit: 202", "status: ex-", "batch: event 0 accepted", "batch: event 1 error at body.events[1].record_id", "retry: 40", "stats: hubspot accepted", "rules: 428 without a revision", "preview: hubspot pass"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the example did not print %q:\n%s", want, out.String())
		}
	}
}

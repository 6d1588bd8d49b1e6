package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
)

func runCLI(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	getenv := func(k string) string { return env[k] }
	err = run(context.Background(), args[0], args[1:], getenv, &out, &errOut)
	return out.String(), errOut.String(), err
}

// TestHelp: help and --help answer on stdout, with no log line before,
// each command with its own flags and variables only.
func TestHelp(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    []string
		notWant []string
	}{
		{name: "help", args: []string{"help"}, want: []string{"dev ", "ingest ", "pusher ", "dlq ", "version ", "help "}},
		{name: "--help", args: []string{"--help"}, want: []string{"usage: recordsync <command>"}},
		{name: "help pusher", args: []string{"help", "pusher"},
			want:    []string{"recordsync pusher:", "-nats-url", "-crmsim-addr", "RECORDSYNC_CRM_CREDENTIALS", "RECORDSYNC_PUSH_ACK_WAIT", "30s", "RECORDSYNC_NATS_PASSWORD"},
			notWant: []string{"-http-addr", "-profile", "RECORDSYNC_API_KEYS", "RECORDSYNC_DEV_PUSHERS"}},
		{name: "ingest --help", args: []string{"ingest", "--help"},
			want:    []string{"recordsync ingest:", "-nats-url", "-http-addr", "RECORDSYNC_HTTP_ADDR", "127.0.0.1:8080", "RECORDSYNC_API_KEYS"},
			notWant: []string{"-crmsim-addr", "RECORDSYNC_CRM_CREDENTIALS", "RECORDSYNC_PROFILE"}},
		{name: "dev -h", args: []string{"dev", "-h"},
			want: []string{"recordsync dev:", "-profile", "RECORDSYNC_NATS_LISTEN", "127.0.0.1:4222", "RECORDSYNC_DEV_PUSHERS"}, notWant: []string{"-nats-url"}},
		{name: "crmsim --help", args: []string{"crmsim", "--help"}, want: []string{"RECORDSYNC_CRMSIM_ADDR", "127.0.0.1:8090"}, notWant: []string{"RECORDSYNC_NATS_URL"}},
		{name: "dlq --help", args: []string{"dlq", "--help"}, want: []string{"dlq list", "dlq replay", "flags of dlq list", "-json", "flags of dlq replay", "-dry-run", "-target"}},
		{name: "dlq list --help", args: []string{"dlq", "list", "--help"}, want: []string{"dlq list", "dlq replay"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A bad setting does not stand in the way of help.
			out, errOut, err := runCLI(t, map[string]string{"RECORDSYNC_PUSH_ACK_WAIT": "30"}, tt.args...)
			if err != nil && !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("error %v; stderr %s", err, errOut)
			}
			if strings.Contains(out, `{"time"`) || strings.Contains(errOut, `{"time"`) {
				t.Errorf("a log line in the help:\n%s%s", out, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("help does not show %q:\n%s", w, out)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(out, w) {
					t.Errorf("help shows %q, which this command does not use:\n%s", w, out)
				}
			}
		})
	}
}

func TestVersion(t *testing.T) {
	for _, arg := range []string{"version", "--version"} {
		out, _, err := runCLI(t, nil, arg)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range []string{"recordsync ", "commit", "go1.", "nats-server  v2.", "nats.go      v1."} {
			if !strings.Contains(out, w) {
				t.Errorf("%s does not show %q:\n%s", arg, w, out)
			}
		}
	}
}

// TestSettingsAllReported: every bad value is named in one error, before
// anything starts; variables the command does not read are not checked.
func TestSettingsAllReported(t *testing.T) {
	env := map[string]string{
		"RECORDSYNC_PUSH_ACK_WAIT":    "30",
		"RECORDSYNC_CIRCUIT_OPEN_FOR": "soon",
		"RECORDSYNC_NATS_URL":         "localhost",
		"RECORDSYNC_LOG_LEVEL":        "loud",
		"RECORDSYNC_HTTP_ADDR":        "8080",
		"RECORDSYNC_PROFILE":          "safe",
		"RECORDSYNC_MEMORY_LIMIT":     "lots",
	}
	out, _, err := runCLI(t, env, "pusher")
	if err == nil {
		t.Fatal("pusher started with bad settings")
	}
	for _, w := range []string{`RECORDSYNC_PUSH_ACK_WAIT="30"`, "30s", `RECORDSYNC_CIRCUIT_OPEN_FOR="soon"`, "RECORDSYNC_NATS_URL", `RECORDSYNC_LOG_LEVEL="loud"`, `RECORDSYNC_MEMORY_LIMIT="lots"`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not name %s:\n%v", w, err)
		}
	}
	for _, w := range []string{"RECORDSYNC_HTTP_ADDR", "RECORDSYNC_PROFILE"} {
		if strings.Contains(err.Error(), w) {
			t.Errorf("the pusher does not read %s, yet it is reported:\n%v", w, err)
		}
	}
	if out != "" {
		t.Errorf("output before the settings were checked: %s", out)
	}

	_, _, err = runCLI(t, map[string]string{}, "ingest")
	if err == nil || !strings.Contains(err.Error(), "RECORDSYNC_NATS_URL") || !strings.Contains(err.Error(), "RECORDSYNC_API_KEYS") {
		t.Errorf("ingest without a URL and keys: %v", err)
	}
}

func TestUnknown(t *testing.T) {
	for _, args := range [][]string{{"serve"}, {"pusher", "--http-addr", ":1"}, {"status", "extra"}, {"help", "serve"}} {
		_, _, err := runCLI(t, nil, args...)
		var u usageError
		if !errors.As(err, &u) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}

// TestStatusBoundsSettings: the status service's memory bounds are
// settings of their own, checked before anything starts.
func TestStatusBoundsSettings(t *testing.T) {
	_, _, err := runCLI(t, map[string]string{"RECORDSYNC_NATS_URL": "nats://127.0.0.1:1", "RECORDSYNC_STATUS_MAX_HELD": "0", "RECORDSYNC_STATUS_CACHE": "100KiB"}, "status")
	if err == nil {
		t.Fatal("status started with bad bounds")
	}
	for _, w := range []string{`RECORDSYNC_STATUS_MAX_HELD="0"`, "from 1 to 10000000", `RECORDSYNC_STATUS_CACHE="100KiB"`, "from 1MiB to 16GiB"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not name %s:\n%v", w, err)
		}
	}
}

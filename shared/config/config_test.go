package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/recordsync/record-sync/shared/config"
)

func TestDefaults(t *testing.T) {
	d, err := config.LoadDefaults("127.0.0.1:8090")
	if err != nil {
		t.Fatal(err)
	}
	hs, ok := d.Targets["hubspot"]
	if !ok || hs.Target != "hubspot" || hs.APIHost != "http://127.0.0.1:8090/hubspot" {
		t.Fatalf("hubspot defaults: %+v", hs)
	}
	if errs := hs.Validate("config", 100); len(errs) > 0 {
		t.Fatalf("defaults do not validate: %v", errs)
	}
}

func TestValidate(t *testing.T) {
	base := config.Target{Target: "hubspot", BatchSize: 100, FlushInterval: config.Duration(time.Second), RateLimitPerMinute: 600, Concurrency: 4,
		APIHost: "https://api.hubapi.com", Enabled: true, MaxAttempts: 3, Backoff: []config.Duration{config.Duration(time.Second)}, MaxBacklog: 10}
	tests := []struct {
		name   string
		mutate func(*config.Target)
		want   string
	}{
		{"valid", func(*config.Target) {}, ""},
		{"batch over the CRM's maximum", func(t *config.Target) { t.BatchSize = 101 }, "body.batch_size"},
		{"zero batch", func(t *config.Target) { t.BatchSize = 0 }, "body.batch_size"},
		{"flush too long", func(t *config.Target) { t.FlushInterval = config.Duration(time.Hour) }, "body.flush_interval"},
		{"no rate", func(t *config.Target) { t.RateLimitPerMinute = 0 }, "body.rate_limit_per_minute"},
		{"no concurrency", func(t *config.Target) { t.Concurrency = 0 }, "body.concurrency"},
		{"more concurrency than Salesforce allows", func(t *config.Target) { t.Concurrency = 26 }, "body.concurrency"},
		{"relative host", func(t *config.Target) { t.APIHost = "/hubspot" }, "body.api_host"},
		{"no attempts", func(t *config.Target) { t.MaxAttempts = 0 }, "body.max_attempts"},
		{"no backoff", func(t *config.Target) { t.Backoff = nil }, "body.backoff"},
		{"negative backoff", func(t *config.Target) { t.Backoff = []config.Duration{-1} }, "body.backoff[0]"},
		{"no backlog", func(t *config.Target) { t.MaxBacklog = 0 }, "body.max_backlog"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			tt.mutate(&c)
			var got []string
			for _, e := range c.Validate("body", 100) {
				got = append(got, e.Location)
			}
			if strings.Join(got, ",") != tt.want {
				t.Fatalf("errors at %v, want %q", got, tt.want)
			}
		})
	}
}

func TestOverrideAndBackoff(t *testing.T) {
	size, off := 10, false
	base := config.Target{BatchSize: 100, Enabled: true, Backoff: []config.Duration{config.Duration(time.Second), config.Duration(5 * time.Second)}}
	got := config.Override{BatchSize: &size, Enabled: &off}.Apply(base)
	if got.BatchSize != 10 || got.Enabled || len(got.Backoff) != 2 {
		t.Fatalf("override: %+v", got)
	}
	for attempt, want := range map[int]time.Duration{1: time.Second, 2: 5 * time.Second, 9: 5 * time.Second} {
		if d := base.BackoffFor(attempt); d != want {
			t.Errorf("BackoffFor(%d) = %v, want %v", attempt, d, want)
		}
	}
}

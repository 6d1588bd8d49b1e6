package config_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/recordsync/record-sync/shared/config"
	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/natstest"
)

// TestDefaults: a target starts from defaults.json's settings with its
// CRM's own on top; defaults that do not validate, or a default target no
// CRM provides, are a precise error.
func TestDefaults(t *testing.T) {
	maxBatch := func(string) int { return 100 }
	own := map[string]config.Override{"hubspot": {BatchSize: new(100), RateLimitPerMinute: new(1080), Concurrency: new(8)}}
	d, err := config.LoadDefaults("127.0.0.1:8090", own, maxBatch)
	if err != nil {
		t.Fatal(err)
	}
	hs, ok := d.Targets["hubspot"]
	if !ok || hs.Target != "hubspot" || hs.APIHost != "http://127.0.0.1:8090/hubspot" || hs.BatchSize != 100 || hs.MaxAttempts != 3 {
		t.Fatalf("hubspot defaults: %+v", hs)
	}
	if errs := hs.Validate("config", 100); len(errs) > 0 {
		t.Fatalf("defaults do not validate: %v", errs)
	}
	tests := []struct {
		name    string
		targets map[string]config.Override
		want    string
	}{
		{"a CRM without its own batch size", map[string]config.Override{"hubspot": {RateLimitPerMinute: new(10), Concurrency: new(1)}}, "defaults.hubspot.batch_size"},
		{"the default target is no CRM's", map[string]config.Override{"other": own["hubspot"]}, "default_targets[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := config.LoadDefaults("127.0.0.1:8090", tt.targets, maxBatch); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one at %s", err, tt.want)
			}
		})
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

// TestAPIHostIsThePushers: an edge whose own emulator address differs
// reports, once the pushers announced theirs, the api_host the pushers
// call, in GET and after an override of another field; an api_host
// override still wins.
func TestAPIHostIsThePushers(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv, "operator")
	ctx := context.Background()
	if err := mesh.Ensure(ctx, js, mesh.Options{}); err != nil {
		t.Fatal(err)
	}
	open := func(user, crmsimAddr string) *config.Store {
		t.Helper()
		_, js := natstest.Connect(t, srv, user)
		kv, err := js.KeyValue(ctx, mesh.BucketConfig)
		if err != nil {
			t.Fatal(err)
		}
		own := map[string]config.Override{
			"hubspot":    {BatchSize: new(100), RateLimitPerMinute: new(1080), Concurrency: new(8)},
			"salesforce": {BatchSize: new(100), RateLimitPerMinute: new(900), Concurrency: new(8)},
		}
		d, err := config.LoadDefaults(crmsimAddr, own, func(string) int { return 100 })
		if err != nil {
			t.Fatal(err)
		}
		return config.NewStore(kv, d, slog.New(slog.DiscardHandler))
	}
	maxBatch := func(string) int { return 100 }
	pusher := open("pusher", "crmsim.internal:8090")
	if err := pusher.AnnounceAPIHost(ctx, "hubspot"); err != nil {
		t.Fatalf("the pusher may announce its api_host: %v", err)
	}
	edge := open("admin", "127.0.0.1:8090") // the edge writes config as the admin user
	if err := edge.Load(ctx, maxBatch); err != nil {
		t.Fatal(err)
	}
	const want = "http://crmsim.internal:8090/hubspot"
	if got, _ := edge.Get("hubspot"); got.APIHost != want {
		t.Errorf("edge reports api_host %s, the pushers call %s", got.APIHost, want)
	}
	n := 50
	got, err := edge.Set(ctx, "hubspot", config.Override{BatchSize: &n}, 100)
	if err != nil || got.APIHost != want || got.BatchSize != 50 {
		t.Errorf("override answers %+v, %v; want api_host %s and batch_size 50", got, err, want)
	}
	if got, _ := edge.Get("salesforce"); got.APIHost != "http://127.0.0.1:8090/salesforce" {
		t.Errorf("a target no pusher announced keeps the default: %s", got.APIHost)
	}
	host := "https://api.hubapi.com"
	if got, err := edge.Set(ctx, "hubspot", config.Override{APIHost: &host}, 100); err != nil || got.APIHost != host {
		t.Errorf("an api_host override: %+v, %v", got, err)
	}
}

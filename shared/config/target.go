// Package config holds record-sync's per-target configuration: the
// settings every target starts from (defaults.json), each CRM plugin's own
// defaults on top (its crm.Factory), and the overrides made at runtime in
// KV sync_config.
package config

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/recordsync/record-sync/shared/mesh"
	"github.com/recordsync/record-sync/shared/valid"
)

//go:embed defaults.json
var defaultsJSON []byte

// Duration is a time.Duration written in JSON as Go writes durations ("1s").
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"1s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Schema documents a Duration as a string in the OpenAPI description.
func (Duration) Schema(huma.Registry) *huma.Schema {
	return &huma.Schema{Type: huma.TypeString, Description: "Go duration", Examples: []any{"1s"}}
}

// Target is the effective configuration of one target CRM.
type Target struct {
	Target             string     `json:"target"`
	BatchSize          int        `json:"batch_size" doc:"Records per CRM request, at most the CRM's maximum"`
	FlushInterval      Duration   `json:"flush_interval" doc:"Longest wait before a partial batch is pushed"`
	RateLimitPerMinute int        `json:"rate_limit_per_minute" doc:"CRM requests per minute, across all pusher processes"`
	Concurrency        int        `json:"concurrency" doc:"CRM requests in flight at once, per pusher process"`
	APIHost            string     `json:"api_host" doc:"Base URL of the CRM API"`
	Enabled            bool       `json:"enabled" doc:"When false, work for this target waits in its stream"`
	MaxAttempts        int        `json:"max_attempts" doc:"Pushes tried before an event is dead-lettered"`
	Backoff            []Duration `json:"backoff" doc:"Delay before each retry; the last repeats"`
	MaxBacklog         int        `json:"max_backlog" doc:"Pending records past which ingest answers 503"`
}

// MaxConcurrency bounds a target's concurrency: Salesforce, for one, allows
// 25 long-running requests at once per org.
const MaxConcurrency = 25

// Override is a partial Target: the fields set replace the effective ones.
type Override struct {
	BatchSize          *int       `json:"batch_size,omitempty"`
	FlushInterval      *Duration  `json:"flush_interval,omitempty"`
	RateLimitPerMinute *int       `json:"rate_limit_per_minute,omitempty"`
	Concurrency        *int       `json:"concurrency,omitempty"`
	APIHost            *string    `json:"api_host,omitempty"`
	Enabled            *bool      `json:"enabled,omitempty"`
	MaxAttempts        *int       `json:"max_attempts,omitempty"`
	Backoff            []Duration `json:"backoff,omitempty"`
	MaxBacklog         *int       `json:"max_backlog,omitempty"`
}

// Apply returns t with o's fields set.
func (o Override) Apply(t Target) Target {
	set := func(dst *int, src *int) {
		if src != nil {
			*dst = *src
		}
	}
	set(&t.BatchSize, o.BatchSize)
	set(&t.RateLimitPerMinute, o.RateLimitPerMinute)
	set(&t.Concurrency, o.Concurrency)
	set(&t.MaxAttempts, o.MaxAttempts)
	set(&t.MaxBacklog, o.MaxBacklog)
	if o.FlushInterval != nil {
		t.FlushInterval = *o.FlushInterval
	}
	if o.APIHost != nil {
		t.APIHost = *o.APIHost
	}
	if o.Enabled != nil {
		t.Enabled = *o.Enabled
	}
	if o.Backoff != nil {
		t.Backoff = slices.Clone(o.Backoff)
	}
	return t
}

// Validate checks t, given the largest batch its CRM accepts, and names each
// bad field under prefix.
func (t Target) Validate(prefix string, maxBatch int) valid.Errors {
	var errs valid.Errors
	if t.BatchSize < 1 || t.BatchSize > maxBatch {
		errs.Add(prefix+".batch_size", fmt.Sprintf("must be 1 to %d, the most %s accepts in one request", maxBatch, t.Target), t.BatchSize)
	}
	if fi := time.Duration(t.FlushInterval); fi < time.Millisecond || fi > time.Minute {
		errs.Add(prefix+".flush_interval", "must be 1ms to 1m", fi.String())
	}
	if t.RateLimitPerMinute < 1 || t.RateLimitPerMinute > 1_000_000 {
		errs.Add(prefix+".rate_limit_per_minute", "must be 1 to 1000000", t.RateLimitPerMinute)
	}
	if t.Concurrency < 1 || t.Concurrency > MaxConcurrency {
		errs.Add(prefix+".concurrency", fmt.Sprintf("must be 1 to %d", MaxConcurrency), t.Concurrency)
	}
	if u, err := url.Parse(t.APIHost); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs.Add(prefix+".api_host", "must be an absolute http or https URL", t.APIHost)
	}
	if t.MaxAttempts < 1 || t.MaxAttempts > 100 {
		errs.Add(prefix+".max_attempts", "must be 1 to 100", t.MaxAttempts)
	}
	if len(t.Backoff) == 0 || len(t.Backoff) > 20 {
		errs.Add(prefix+".backoff", "must list 1 to 20 delays", nil)
	}
	for i, d := range t.Backoff {
		if time.Duration(d) < 0 || time.Duration(d) > 24*time.Hour {
			errs.Add(fmt.Sprintf("%s.backoff[%d]", prefix, i), "must be 0 to 24h", time.Duration(d).String())
		}
	}
	if t.MaxBacklog < 1 {
		errs.Add(prefix+".max_backlog", "must be at least 1", t.MaxBacklog)
	}
	return errs
}

// BackoffFor returns the delay before retry number attempt (1 for the first
// retry); the last delay repeats.
func (t Target) BackoffFor(attempt int) time.Duration {
	if len(t.Backoff) == 0 {
		return time.Second
	}
	i := min(max(attempt-1, 0), len(t.Backoff)-1)
	return time.Duration(t.Backoff[i])
}

// Defaults is the starting configuration: which targets an event without
// targets goes to, and each target's settings.
type Defaults struct {
	DefaultTargets []string          `json:"default_targets"`
	Targets        map[string]Target `json:"targets"`
}

// defaultsFile is defaults.json: the default targets, and the settings
// every target starts from before its CRM plugin's own (its batch size,
// rate limit and concurrency).
type defaultsFile struct {
	DefaultTargets []string `json:"default_targets"`
	Target         Target   `json:"target"`
}

// LoadDefaults returns the starting configuration of targets: each is
// defaults.json's "target" with the CRM plugin's own defaults on top
// (targets, by name). A target with an empty api_host talks to the CRM
// emulator at crmsimAddr, under its prefix. Each must validate against its
// CRM's largest batch (maxBatch), and each default target must be one of
// targets.
func LoadDefaults(crmsimAddr string, targets map[string]Override, maxBatch func(string) int) (Defaults, error) {
	var f defaultsFile
	if err := mesh.DecodeStrict(defaultsJSON, &f); err != nil {
		return Defaults{}, fmt.Errorf("config defaults: %w", err)
	}
	d := Defaults{DefaultTargets: f.DefaultTargets, Targets: make(map[string]Target, len(targets))}
	var errs valid.Errors
	for _, name := range slices.Sorted(maps.Keys(targets)) {
		t := targets[name].Apply(f.Target)
		t.Target = name
		t.Backoff = slices.Clone(t.Backoff)
		if t.APIHost == "" {
			t.APIHost = "http://" + crmsimAddr + "/" + name
		}
		errs = append(errs, t.Validate("defaults."+name, maxBatch(name))...)
		d.Targets[name] = t
	}
	for i, name := range d.DefaultTargets {
		if _, ok := d.Targets[name]; !ok {
			errs.Add(fmt.Sprintf("default_targets[%d]", i), "is no registered CRM's name", name)
		}
	}
	if len(errs) > 0 {
		return Defaults{}, fmt.Errorf("config defaults: %w", errs)
	}
	return d, nil
}

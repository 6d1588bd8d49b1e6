package config

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/shared/mesh"
)

// ErrUnknownTarget is returned for a target that has no configuration.
var ErrUnknownTarget = errors.New("unknown target")

// Store is the effective per-target configuration: the defaults with the
// overrides from KV sync_config on top. Watch keeps it current; Get is
// cheap and safe for concurrent use.
type Store struct {
	kv       jetstream.KeyValue
	writer   jetstream.KeyValue // Set writes through it (kv when nil)
	defaults Defaults
	log      *slog.Logger

	mu        sync.RWMutex
	overrides map[string]Override
	bad       map[string]string  // target -> why its KV value is not applied
	circuits  map[string]Circuit // target -> its pushers' circuit breaker
	hosts     map[string]string  // target -> the api_host its pushers announced
}

// APIHostPrefix starts the key of the api_host a target's pushers use when
// no override sets one: api_host.<target>. The pushers announce it
// (AnnounceAPIHost), so that every process, an edge answering GET
// /v1/sync/config among them, reports the host the pushers really call
// rather than one derived from its own RECORDSYNC_CRMSIM_ADDR.
const APIHostPrefix = "api_host."

// CircuitPrefix starts the key of a target's circuit state in
// sync_config: circuit.<target>.
const CircuitPrefix = "circuit."

// Circuit is the state of a target's circuit breaker, as its pushers
// report it.
type Circuit struct {
	Target string    `json:"target"`
	State  string    `json:"state" enum:"closed,half-open,open"`
	Since  time.Time `json:"since"`
	Reason string    `json:"reason,omitempty"`
}

// NewStore returns a Store over the bucket kv.
func NewStore(kv jetstream.KeyValue, d Defaults, log *slog.Logger) *Store {
	return &Store{kv: kv, defaults: d, log: log, overrides: map[string]Override{}, bad: map[string]string{}, circuits: map[string]Circuit{}, hosts: map[string]string{}}
}

// UseWriter makes the writes of the store (and the reads they start with)
// go through kv, a handle on the same bucket from a connection whose user
// may write it (the admin user): the services' own users may not. Call it
// before the store is used.
func (s *Store) UseWriter(kv jetstream.KeyValue) { s.writer = kv }

// Targets returns the configured target names, sorted.
func (s *Store) Targets() []string {
	names := make([]string, 0, len(s.defaults.Targets))
	for n := range s.defaults.Targets {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// DefaultTargets returns the targets of an event that names none.
func (s *Store) DefaultTargets() []string { return s.defaults.DefaultTargets }

// Get returns the effective configuration of target.
func (s *Store) Get(target string) (Target, bool) {
	t, ok := s.base(target)
	if !ok {
		return Target{}, false
	}
	s.mu.RLock()
	o, has := s.overrides[target]
	s.mu.RUnlock()
	if has {
		t = o.Apply(t)
	}
	return t, true
}

// base is target's configuration before its override: the defaults, with
// the api_host its pushers announced.
func (s *Store) base(target string) (Target, bool) {
	t, ok := s.defaults.Targets[target]
	if !ok {
		return Target{}, false
	}
	s.mu.RLock()
	if host := s.hosts[target]; host != "" {
		t.APIHost = host
	}
	s.mu.RUnlock()
	return t, true
}

// AnnounceAPIHost stores, for every process to use, the api_host this
// process's defaults give target (the pushers call it: theirs is the host
// that is called).
func (s *Store) AnnounceAPIHost(ctx context.Context, target string) error {
	t, ok := s.defaults.Targets[target]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownTarget, target)
	}
	if _, err := s.kv.Put(ctx, APIHostPrefix+target, []byte(t.APIHost)); err != nil {
		return fmt.Errorf("announce api_host of %s: %w", target, err)
	}
	s.setHost(target, t.APIHost)
	return nil
}

func (s *Store) setHost(target, host string) {
	if _, ok := s.defaults.Targets[target]; !ok {
		return
	}
	if mine := s.defaults.Targets[target].APIHost; host != "" && host != mine {
		s.log.Warn("api_host_from_pushers", "target", target, "api_host", host, "own_default", mine,
			"detail", "the pushers announced another api_host than this process's RECORDSYNC_CRMSIM_ADDR gives; theirs is used")
	}
	s.mu.Lock()
	s.hosts[target] = host
	s.mu.Unlock()
}

// Problems returns, per target, why a value written to KV is not applied.
func (s *Store) Problems() map[string]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return maps.Clone(s.bad)
}

// Load reads the current overrides once. Watch does the same and then
// follows changes.
func (s *Store) Load(ctx context.Context, maxBatch func(string) int) error {
	for _, name := range s.Targets() {
		switch e, err := s.kv.Get(ctx, APIHostPrefix+name); {
		case err == nil:
			s.setHost(name, string(e.Value()))
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return fmt.Errorf("load api_host of %s: %w", name, err)
		}
		e, err := s.kv.Get(ctx, name)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("load config %s: %w", name, err)
		}
		s.apply(name, e.Value(), maxBatch)
	}
	return nil
}

// Watch follows KV sync_config until ctx ends. A value that does not parse
// or validate is not applied: the last good one stays, and the problem is
// logged and reported by Problems.
func (s *Store) Watch(ctx context.Context, maxBatch func(string) int) error {
	w, err := s.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch config: %w", err)
	}
	mesh.Follow(ctx, w, nil, func(e jetstream.KeyValueEntry) {
		if strings.HasPrefix(e.Key(), CircuitPrefix) {
			s.followCircuit(e)
			return
		}
		if target, ok := strings.CutPrefix(e.Key(), APIHostPrefix); ok {
			host := ""
			if e.Operation() == jetstream.KeyValuePut {
				host = string(e.Value())
			}
			s.setHost(target, host)
			return
		}
		if _, ok := s.defaults.Targets[e.Key()]; !ok {
			return // not a target's configuration
		}
		if e.Operation() == jetstream.KeyValuePut {
			s.apply(e.Key(), e.Value(), maxBatch)
			return
		}
		s.mu.Lock()
		delete(s.overrides, e.Key())
		delete(s.bad, e.Key())
		s.mu.Unlock()
	})
	return nil
}

func (s *Store) apply(target string, raw []byte, maxBatch func(string) int) {
	o, t, err := s.parse(target, raw, maxBatch)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.bad[target] = err.Error()
		s.log.Error("config_not_applied", "target", target, "error", err.Error())
		return
	}
	delete(s.bad, target)
	s.overrides[target] = o
	s.log.Info("config_applied", "target", target, "batch_size", t.BatchSize, "enabled", t.Enabled,
		"rate_limit_per_minute", t.RateLimitPerMinute)
}

func (s *Store) parse(target string, raw []byte, maxBatch func(string) int) (Override, Target, error) {
	base, ok := s.base(target)
	if !ok {
		return Override{}, Target{}, fmt.Errorf("%w %q", ErrUnknownTarget, target)
	}
	var o Override
	if err := mesh.DecodeStrict(raw, &o); err != nil {
		return o, base, err
	}
	t := o.Apply(base)
	if errs := t.Validate("config", maxBatch(target)); len(errs) > 0 {
		return o, t, errs
	}
	return o, t, nil
}

// Set merges o into the stored override of target after validating the
// result, using the KV revision so that concurrent writers do not lose each
// other's changes. It returns the new effective configuration; a
// valid.Errors error names each bad field.
func (s *Store) Set(ctx context.Context, target string, o Override, maxBatch int) (Target, error) {
	base, ok := s.base(target)
	if !ok {
		return Target{}, fmt.Errorf("%w %q", ErrUnknownTarget, target)
	}
	kv := s.kv
	if s.writer != nil {
		kv = s.writer
	}
	for {
		var cur Override
		var rev uint64
		e, err := kv.Get(ctx, target)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return Target{}, fmt.Errorf("read config %s: %w", target, err)
		default:
			rev = e.Revision()
			if err := mesh.DecodeStrict(e.Value(), &cur); err != nil {
				cur = Override{} // a bad stored value is replaced, not merged
			}
		}
		merged, err := mergeOverride(cur, o)
		if err != nil {
			return Target{}, fmt.Errorf("merge config: %w", err)
		}
		t := merged.Apply(base)
		if errs := t.Validate("body", maxBatch); len(errs) > 0 {
			return t, errs
		}
		raw, err := json.Marshal(merged)
		if err != nil {
			return t, fmt.Errorf("encode config: %w", err)
		}
		_, err = mesh.PutRevision(ctx, kv, target, raw, rev)
		if errors.Is(err, mesh.ErrStaleRevision) {
			continue
		}
		if err != nil {
			return t, err
		}
		s.mu.Lock()
		s.overrides[target] = merged
		delete(s.bad, target)
		s.mu.Unlock()
		return t, nil
	}
}

// mergeOverride returns cur with the fields set in o replaced: o's JSON
// holds exactly its set fields, and decoding it onto cur leaves the others.
func mergeOverride(cur, o Override) (Override, error) {
	raw, err := json.Marshal(o)
	if err == nil {
		err = json.Unmarshal(raw, &cur)
	}
	return cur, err
}

func (s *Store) followCircuit(e jetstream.KeyValueEntry) {
	target := strings.TrimPrefix(e.Key(), CircuitPrefix)
	var c Circuit
	if e.Operation() != jetstream.KeyValuePut || json.Unmarshal(e.Value(), &c) != nil {
		s.mu.Lock()
		delete(s.circuits, target)
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	s.circuits[target] = c
	s.mu.Unlock()
}

// Circuits returns the circuit states the pushers reported, by target.
func (s *Store) Circuits() map[string]Circuit {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return maps.Clone(s.circuits)
}

// ReportCircuit stores the circuit state of a target for every process to
// see.
func (s *Store) ReportCircuit(ctx context.Context, c Circuit) error {
	raw, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if _, err := s.kv.Put(ctx, CircuitPrefix+c.Target, raw); err != nil {
		return fmt.Errorf("report circuit: %w", err)
	}
	return nil
}

package rules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/shared/mesh"
)

// Key is the key of the rule set in KV sync_rules.
const Key = "rules"

// Store keeps the current compiled rule set from KV sync_rules. Watch keeps
// it current; a value that does not compile is not applied, the last good
// set stays and Problem says why.
type Store struct {
	kv      jetstream.KeyValue
	writer  jetstream.KeyValue // Replace writes through it (kv when nil)
	targets []string
	log     *slog.Logger

	mu       sync.RWMutex
	current  *Compiled
	revision uint64
	problem  string
}

// NewStore returns a Store over kv, starting from the seed set.
func NewStore(kv jetstream.KeyValue, seed *Compiled, targets []string, log *slog.Logger) *Store {
	return &Store{kv: kv, targets: targets, log: log, current: seed}
}

// UseWriter makes the writes of the store (and the reads they start with)
// go through kv, a handle on the same bucket from a connection whose user
// may write it (the admin user): the services' own users may not. Call it
// before the store is used.
func (s *Store) UseWriter(kv jetstream.KeyValue) { s.writer = kv }

// Current returns the rule set in force and its KV revision.
func (s *Store) Current() (*Compiled, uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.current, s.revision
}

// Problem returns why the newest KV value is not applied, or "".
func (s *Store) Problem() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.problem
}

// Seed stores seed in KV when the bucket holds no rule set yet.
func Seed(ctx context.Context, kv jetstream.KeyValue, seed []byte) error {
	_, err := kv.Create(ctx, Key, seed)
	if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("seed rules: %w", err)
	}
	return nil
}

// Read returns the stored rule set and its revision, straight from KV.
func (s *Store) Read(ctx context.Context) (Set, uint64, error) {
	e, err := s.kv.Get(ctx, Key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Set{Rules: []Rule{}}, 0, nil
	}
	if err != nil {
		return Set{}, 0, fmt.Errorf("read rules: %w", err)
	}
	var set Set
	if err := json.Unmarshal(e.Value(), &set); err != nil {
		return Set{}, e.Revision(), fmt.Errorf("stored rules: %w", err)
	}
	return set, e.Revision(), nil
}

// Replace validates set and stores it in place of revision. It returns the
// new revision; a valid.Errors error names each bad rule, mesh.ErrStaleRevision
// means another writer replaced revision first.
func (s *Store) Replace(ctx context.Context, set Set, revision uint64) (uint64, error) {
	c, errs := Compile(set, s.targets)
	if len(errs) > 0 {
		return 0, errs
	}
	raw, err := json.Marshal(set)
	if err != nil {
		return 0, fmt.Errorf("encode rules: %w", err)
	}
	kv := s.kv
	if s.writer != nil {
		kv = s.writer
	}
	rev, err := mesh.PutRevision(ctx, kv, Key, raw, revision)
	if err != nil {
		return 0, err
	}
	s.install(c, rev, "")
	return rev, nil
}

func (s *Store) install(c *Compiled, rev uint64, problem string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rev < s.revision {
		return
	}
	if c != nil {
		s.current = c
	}
	s.revision = rev
	s.problem = problem
}

// Watch follows KV sync_rules until ctx ends. ready is closed once the
// stored set (if any) has been read.
func (s *Store) Watch(ctx context.Context, ready chan<- struct{}) error {
	w, err := s.kv.Watch(ctx, Key)
	if err != nil {
		return fmt.Errorf("watch rules: %w", err)
	}
	mesh.Follow(ctx, w, ready, func(e jetstream.KeyValueEntry) {
		if e.Operation() != jetstream.KeyValuePut {
			s.log.Warn("rules_deleted_keeping_last_good", "revision", e.Revision())
			return
		}
		c, err := Parse(e.Value(), s.targets)
		if err != nil {
			s.log.Error("rules_not_applied", "revision", e.Revision(), "error", err.Error())
			s.install(nil, e.Revision(), fmt.Sprintf("rule set revision %d not applied: %v", e.Revision(), err))
			return
		}
		s.install(c, e.Revision(), "")
		s.log.Info("rules_applied", "revision", e.Revision(), "rules", len(c.rules))
	})
	return nil
}

package mapping

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recordsync/record-sync/shared/mesh"
)

// KeyPrefix starts the KV key of every stored mapping, in bucket
// sync_rules: mappings.<target>.<object_type>.
const KeyPrefix = "mappings."

// Key returns the KV key of the mapping of target and objectType.
func Key(target, objectType string) string { return KeyPrefix + target + "." + objectType }

// ErrUnknown is returned for a target and object type no plugin has a
// schema for.
var ErrUnknown = errors.New("no schema for this target and object type")

// Schemas gives the schema of each target and object type.
type Schemas map[string]map[string]Schema

// Store keeps the effective mapping of every target and object type: the
// one stored in KV, or the plugin's default. Watch keeps it current; a
// stored value that does not validate is not applied (the last good one
// stays) and Problems says why.
type Store struct {
	kv      jetstream.KeyValue
	writer  jetstream.KeyValue // Replace writes through it (kv when nil)
	schemas Schemas
	log     *slog.Logger

	mu       sync.RWMutex
	current  map[string]*Compiled // by key
	defaults map[string]*Compiled
	problems map[string]string
}

// NewStore returns a Store over kv; every default mapping must compile.
func NewStore(kv jetstream.KeyValue, schemas Schemas, log *slog.Logger) (*Store, error) {
	s := &Store{kv: kv, schemas: schemas, log: log, current: map[string]*Compiled{}, defaults: map[string]*Compiled{}, problems: map[string]string{}}
	for target, byType := range schemas {
		for objectType, schema := range byType {
			c, errs := Compile(Mapping{Base: BaseNone, Fields: schema.Default.Fields}, schema, "default")
			if len(errs) > 0 {
				return nil, fmt.Errorf("default mapping of %s %s: %w", target, objectType, errs)
			}
			s.defaults[Key(target, objectType)] = c
		}
	}
	return s, nil
}

// UseWriter makes the writes of the store (and the reads they start with)
// go through kv, a handle on the same bucket from a connection whose user
// may write it (the admin user): the services' own users may not. Call it
// before the store is used.
func (s *Store) UseWriter(kv jetstream.KeyValue) { s.writer = kv }

// Get returns the mapping in force for target and objectType, or nil when
// no plugin knows them.
func (s *Store) Get(target, objectType string) *Compiled {
	key := Key(target, objectType)
	s.mu.RLock()
	c, ok := s.current[key]
	s.mu.RUnlock()
	if ok {
		return c
	}
	return s.defaults[key]
}

// Problems returns, per key, why a stored mapping is not applied.
func (s *Store) Problems() map[string]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return maps.Clone(s.problems)
}

func (s *Store) schema(target, objectType string) (Schema, error) {
	sc, ok := s.schemas[target][objectType]
	if !ok {
		return Schema{}, fmt.Errorf("%w: %s %s", ErrUnknown, target, objectType)
	}
	return sc, nil
}

// Read returns the mapping stored for target and objectType and its
// revision (0 and the plugin's default when none is stored).
func (s *Store) Read(ctx context.Context, target, objectType string) (Mapping, uint64, error) {
	sc, err := s.schema(target, objectType)
	if err != nil {
		return Mapping{}, 0, err
	}
	e, err := s.kv.Get(ctx, Key(target, objectType))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Mapping{Base: BaseNone, Fields: sc.Default.Fields}, 0, nil
	}
	if err != nil {
		return Mapping{}, 0, fmt.Errorf("read mapping: %w", err)
	}
	var m Mapping
	if err := json.Unmarshal(e.Value(), &m); err != nil {
		return Mapping{}, e.Revision(), fmt.Errorf("stored mapping: %w", err)
	}
	return m, e.Revision(), nil
}

// Replace validates m and stores it in place of revision (0: none stored
// yet). A valid.Errors error names each bad field; mesh.ErrStaleRevision
// means another writer replaced it first.
func (s *Store) Replace(ctx context.Context, target, objectType string, m Mapping, revision uint64) (uint64, *Compiled, error) {
	sc, err := s.schema(target, objectType)
	if err != nil {
		return 0, nil, err
	}
	c, errs := Compile(m, sc, "body")
	if len(errs) > 0 {
		return 0, nil, errs
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return 0, nil, fmt.Errorf("encode mapping: %w", err)
	}
	kv := s.kv
	if s.writer != nil {
		kv = s.writer
	}
	rev, err := mesh.PutRevision(ctx, kv, Key(target, objectType), raw, revision)
	if err != nil {
		return 0, nil, err
	}
	s.install(Key(target, objectType), c, "")
	return rev, c, nil
}

func (s *Store) install(key string, c *Compiled, problem string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if problem != "" {
		s.problems[key] = problem
		return
	}
	delete(s.problems, key)
	if c == nil {
		delete(s.current, key)
		return
	}
	s.current[key] = c
}

// Watch follows the stored mappings until ctx ends.
func (s *Store) Watch(ctx context.Context) error {
	w, err := s.kv.Watch(ctx, KeyPrefix+">")
	if err != nil {
		return fmt.Errorf("watch mappings: %w", err)
	}
	mesh.Follow(ctx, w, nil, func(e jetstream.KeyValueEntry) {
		key := e.Key()
		if e.Operation() != jetstream.KeyValuePut {
			s.install(key, nil, "") // deleted: back to the default
			s.log.Info("mapping_reset_to_default", "key", key)
			return
		}
		c, err := s.parse(key, e.Value())
		if err != nil {
			s.log.Error("mapping_not_applied", "key", key, "revision", e.Revision(), "error", err.Error())
			s.install(key, nil, fmt.Sprintf("mapping %s revision %d not applied: %v", key, e.Revision(), err))
			return
		}
		s.install(key, c, "")
		s.log.Info("mapping_applied", "key", key, "revision", e.Revision())
	})
	return nil
}

func (s *Store) parse(key string, raw []byte) (*Compiled, error) {
	target, objectType, ok := strings.Cut(strings.TrimPrefix(key, KeyPrefix), ".")
	if !ok {
		return nil, fmt.Errorf("key %s is not mappings.<target>.<object_type>", key)
	}
	sc, err := s.schema(target, objectType)
	if err != nil {
		return nil, err
	}
	var m Mapping
	if err := mesh.DecodeStrict(raw, &m); err != nil {
		return nil, fmt.Errorf("mapping: %w", err)
	}
	c, errs := Compile(m, sc, "mapping")
	if len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

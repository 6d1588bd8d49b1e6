package crmsim

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"slices"
	"strings"

	"github.com/recordsync/record-sync/shared/fastjson"
)

// Store keeps one emulated CRM's records by id, and an index of them by
// the keys its keys function gives each record (HubSpot's emails,
// Salesforce's external ids). Records and index are in a bbolt file (a
// temporary one without a path), so the process holds neither: an
// emulator left up for a week does not grow with what it holds. The index
// is kept with each Put and Delete, in the same transaction as the record.
//
// Changes are readable at once and written out by Commit, one
// transaction per CRM request. Get decodes a record each time: what it
// returns is the caller's own copy, which changes nothing until Put.
//
// A Store is not safe for concurrent use: the CRM calls it under its own
// lock.
type Store[T any] struct {
	f    *boltFile
	keys func(*T) []string
	n    int   // records held
	err  error // the first change that could not be encoded or read
}

// The buckets of a store's file: the records by id, the index keys of each
// record that has any, and the index, whose keys are an index key (with
// its length in front) followed by a record id, and hold nothing.
const (
	recordsBucket = "records"
	keysBucket    = "keys"
	indexBucket   = "index"
)

// OpenStore opens (or creates) the store at path ("": a temporary file),
// with the records it holds, indexed by keys (nil: no index). A records
// file of the format before bbolt (JSON lines, at path with .jsonl for
// .db) is read in and removed.
func OpenStore[T any](path string, keys func(*T) []string) (*Store[T], error) {
	f, err := openBolt(path, recordsBucket, keysBucket, indexBucket)
	if err != nil {
		return nil, fmt.Errorf("crmsim store: %w", err)
	}
	s := &Store[T]{f: f, keys: keys, n: f.bucket(recordsBucket).Stats().KeyN}
	if path != "" {
		if err := s.importLines(strings.TrimSuffix(path, ".db") + ".jsonl"); err != nil {
			return nil, errors.Join(fmt.Errorf("crmsim store: %w", err), f.close())
		}
	}
	return s, nil
}

// OpenRecords opens the store of a CRM whose records are at path ("": a
// temporary file), indexed by keys, and, with a path, moves sim's history
// of writes to the file beside it (HistoryPath).
func OpenRecords[T any](sim *Sim, path string, keys func(*T) []string) (*Store[T], error) {
	s, err := OpenStore[T](path, keys)
	if err != nil || path == "" {
		return s, err
	}
	if err := sim.KeepHistoryIn(HistoryPath(path)); err != nil {
		return nil, errors.Join(err, s.Close())
	}
	return s, nil
}

// Len is the number of records held.
func (s *Store[T]) Len() int { return s.n }

// Has reports whether id is held, without reading it.
func (s *Store[T]) Has(id string) bool {
	return s.f.bucket(recordsBucket).Get([]byte(id)) != nil
}

// Get returns id's record. A record that cannot be read is reported by
// the next Commit, and reads as missing.
func (s *Store[T]) Get(id string) (T, bool) {
	b := s.f.bucket(recordsBucket).Get([]byte(id))
	if b == nil {
		return *new(T), false
	}
	var v T
	if err := fastjson.Unmarshal(b, &v); err != nil {
		s.err = errors.Join(s.err, fmt.Errorf("crmsim store: record %s: %w", id, err))
		return *new(T), false
	}
	return v, true
}

// Put makes v id's record, and indexes it under its keys instead of the
// ones it had; Commit writes it out.
func (s *Store[T]) Put(id string, v T) {
	b, err := fastjson.Marshal(&v)
	if err == nil {
		err = s.put(id, b, &v)
	}
	if err != nil {
		s.err = errors.Join(s.err, fmt.Errorf("crmsim store: record %s: %w", id, err))
	}
}

func (s *Store[T]) put(id string, b []byte, v *T) error {
	records, key := s.f.bucket(recordsBucket), []byte(id)
	if records.Get(key) == nil {
		s.n++
	}
	s.f.changed()
	var keys []string
	if s.keys != nil {
		keys = s.keys(v)
	}
	if err := s.reindex(key, keys); err != nil {
		return err
	}
	return records.Put(key, b)
}

// Delete removes id's record and its index keys; Commit writes it out.
func (s *Store[T]) Delete(id string) {
	records, key := s.f.bucket(recordsBucket), []byte(id)
	if records.Get(key) == nil {
		return
	}
	s.f.changed()
	s.n--
	if err := errors.Join(s.reindex(key, nil), records.Delete(key)); err != nil {
		s.err = errors.Join(s.err, fmt.Errorf("crmsim store: delete %s: %w", id, err))
	}
}

// reindex moves the record id in the index from the keys it had to keys.
func (s *Store[T]) reindex(id []byte, keys []string) error {
	kb, index := s.f.bucket(keysBucket), s.f.bucket(indexBucket)
	var old []string
	if b := kb.Get(id); b != nil {
		old = strings.Split(string(b), "\x00")
	}
	var errs []error
	for _, k := range old {
		if !slices.Contains(keys, k) {
			errs = append(errs, index.Delete(indexKey(k, id)))
		}
	}
	for _, k := range keys {
		if !slices.Contains(old, k) {
			errs = append(errs, index.Put(indexKey(k, id), nil))
		}
	}
	switch {
	case len(keys) > 0:
		errs = append(errs, kb.Put(id, []byte(strings.Join(keys, "\x00"))))
	case old != nil:
		errs = append(errs, kb.Delete(id))
	}
	return errors.Join(errs...)
}

func indexKey(key string, id []byte) []byte { return append(withLength(key, len(id)), id...) }

// Find yields the ids of the records indexed under key, in id order.
func (s *Store[T]) Find(key string) iter.Seq[string] {
	return func(yield func(string) bool) {
		prefix := withLength(key, 0)
		c := s.f.bucket(indexBucket).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if !yield(string(k[len(prefix):])) {
				return
			}
		}
	}
}

// First returns the first id Find yields for key.
func (s *Store[T]) First(key string) (string, bool) {
	for id := range s.Find(key) {
		return id, true
	}
	return "", false
}

// All yields every record, in the order of their ids as bytes. The store
// must not change while All runs.
func (s *Store[T]) All() iter.Seq2[string, T] {
	return func(yield func(string, T) bool) {
		c := s.f.bucket(recordsBucket).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if v, ok := s.Get(string(k)); ok && !yield(string(k), v) {
				return
			}
		}
	}
}

// Commit writes out the changes since the last Commit, or reports why a
// change or a read since then failed.
func (s *Store[T]) Commit() error {
	if err := errors.Join(s.err, s.f.commit()); err != nil {
		s.err = nil
		return fmt.Errorf("crmsim store: %w", err)
	}
	return nil
}

// Reset drops every record, from the file too.
func (s *Store[T]) Reset() error {
	s.n, s.err = 0, nil
	if err := s.f.empty(recordsBucket, keysBucket, indexBucket); err != nil {
		return fmt.Errorf("crmsim store reset: %w", err)
	}
	return nil
}

// Close writes out what is pending and closes the file.
func (s *Store[T]) Close() error {
	if err := s.f.close(); err != nil {
		return fmt.Errorf("crmsim store: %w", err)
	}
	return nil
}

// storeLine is one line of a records file of the format before bbolt.
type storeLine[T any] struct {
	ID      string `json:"id"`
	Value   *T     `json:"v,omitempty"`
	Deleted bool   `json:"del,omitempty"`
}

// importLines reads the records file of the format before bbolt at path,
// if there is one, into the store (each line a record's state, or its
// removal; a last line cut short by a crash is dropped), commits them 10,000
// lines at a time, and removes the file and the history beside it.
func (s *Store[T]) importLines(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			break // what is left, if anything, is a write cut short
		}
		if err != nil {
			return err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var l storeLine[T]
		if err := fastjson.Unmarshal(line, &l); err != nil {
			return fmt.Errorf("%s: line %d does not decode: %w", path, n, err)
		}
		if l.ID == "" {
			return fmt.Errorf("%s: line %d has no id", path, n)
		}
		if l.Deleted || l.Value == nil {
			s.Delete(l.ID)
		} else {
			s.Put(l.ID, *l.Value)
		}
		if n%10_000 == 0 {
			if err := s.Commit(); err != nil {
				return err
			}
		}
	}
	if err := s.Commit(); err != nil {
		return err
	}
	return errors.Join(os.Remove(path), removeIfThere(strings.TrimSuffix(path, ".jsonl")+".history.jsonl"))
}

func removeIfThere(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

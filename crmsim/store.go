package crmsim

import (
	"errors"
	"fmt"
	"iter"

	"github.com/recordsync/record-sync/shared/fastjson"
)

// Store keeps one emulated CRM's records by id. With a path they live in
// that file, and the process holds only where each one is (about 60 bytes
// a record plus its id), so an emulator left up for a week does not grow
// with what it holds; without a path the same lines are kept in memory.
//
// Each change appends a line (the record as it now is, or its removal),
// so the file survives a restart; once it holds more than twice as many
// lines as there are records (plus compactSlack), Commit rewrites it with
// one line per record, so the file stays bounded by the records it holds.
// Get reads and decodes a record's line each time: what it returns is the
// caller's own copy, which changes nothing until Put.
//
// A Store is not safe for concurrent use: the CRM calls it under its own
// lock.
type Store[T any] struct {
	log *lineLog
	at  map[string]span
	err error // the first change that could not be encoded or read
}

// compactSlack is how many lines past twice the live records a store may
// hold before Commit compacts it.
const compactSlack = 1024

// storeLine is one line of a store's file.
type storeLine[T any] struct {
	ID      string `json:"id"`
	Value   *T     `json:"v,omitempty"`
	Deleted bool   `json:"del,omitempty"`
}

// OpenStore opens (or creates) the store at path ("": in memory only) with
// the records it holds. A last line cut short by a crash is dropped; any
// other line that does not decode is an error.
func OpenStore[T any](path string) (*Store[T], error) {
	s := &Store[T]{at: map[string]span{}}
	log, err := openLog(path, func(line []byte, at span) error {
		var l storeLine[T]
		if err := fastjson.Unmarshal(line, &l); err != nil {
			return err
		}
		switch {
		case l.ID == "":
			return errors.New("no id")
		case l.Deleted || l.Value == nil:
			delete(s.at, l.ID)
		default:
			s.at[l.ID] = at
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("crmsim store: %w", err)
	}
	s.log = log
	return s, nil
}

// OpenRecords opens the store of a CRM whose records are at path ("": in
// memory only) and, with a path, moves sim's history of writes to the file
// beside it (HistoryPath).
func OpenRecords[T any](sim *Sim, path string) (*Store[T], error) {
	s, err := OpenStore[T](path)
	if err != nil || path == "" {
		return s, err
	}
	if err := sim.KeepHistoryIn(HistoryPath(path)); err != nil {
		return nil, errors.Join(err, s.Close())
	}
	return s, nil
}

// Len is the number of records held.
func (s *Store[T]) Len() int { return len(s.at) }

// Has reports whether id is held, without reading it.
func (s *Store[T]) Has(id string) bool {
	_, ok := s.at[id]
	return ok
}

// Get returns id's record. A record that cannot be read is reported by
// the next Commit, and reads as missing.
func (s *Store[T]) Get(id string) (T, bool) {
	var l storeLine[T]
	at, ok := s.at[id]
	if !ok {
		return *new(T), false
	}
	line, err := s.log.read(at)
	if err == nil {
		err = fastjson.Unmarshal(line, &l)
	}
	if err != nil || l.Value == nil {
		s.err = errors.Join(s.err, fmt.Errorf("crmsim store: record %s: %w", id, errors.Join(err, errors.New("unreadable"))))
		return *new(T), false
	}
	return *l.Value, true
}

// Put makes v id's record; Commit writes it out.
func (s *Store[T]) Put(id string, v T) {
	b, err := fastjson.Marshal(storeLine[T]{ID: id, Value: &v})
	if err != nil {
		s.err = errors.Join(s.err, fmt.Errorf("crmsim store: record %s: %w", id, err))
		return
	}
	s.at[id] = s.log.append(b)
}

// Delete removes id's record; Commit writes it out.
func (s *Store[T]) Delete(id string) {
	if _, ok := s.at[id]; !ok {
		return
	}
	b, _ := fastjson.Marshal(storeLine[T]{ID: id, Deleted: true}) // an id and a bool always encode
	s.log.append(b)
	delete(s.at, id)
}

// All yields every record, in no particular order. The store must not
// change while All runs.
func (s *Store[T]) All() iter.Seq2[string, T] {
	return func(yield func(string, T) bool) {
		for id := range s.at {
			if v, ok := s.Get(id); ok && !yield(id, v) {
				return
			}
		}
	}
}

// Commit writes out the changes since the last Commit, or reports why a
// change or a read since then failed, and compacts the file when it holds
// more than twice as many lines as records.
func (s *Store[T]) Commit() error {
	if err := errors.Join(s.err, s.log.flush()); err != nil {
		s.err = nil
		return fmt.Errorf("crmsim store: %w", err)
	}
	if s.log.lines <= 2*len(s.at)+compactSlack {
		return nil
	}
	next := make(map[string]span, len(s.at))
	err := s.log.compact(func(move func(span) span) {
		for id, at := range s.at {
			next[id] = move(at)
		}
	})
	if err != nil {
		return fmt.Errorf("crmsim store compact: %w", err)
	}
	s.at = next
	return nil
}

// Reset drops every record, from the file too.
func (s *Store[T]) Reset() error {
	s.at, s.err = map[string]span{}, nil
	if err := s.log.reset(); err != nil {
		return fmt.Errorf("crmsim store reset: %w", err)
	}
	return nil
}

// Close writes out what is buffered and closes the file.
func (s *Store[T]) Close() error {
	if err := s.log.close(); err != nil {
		return fmt.Errorf("crmsim store: %w", err)
	}
	return nil
}

package crmsim

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"

	"github.com/recordsync/record-sync/shared/fastjson"
)

// Journal keeps one emulated CRM's records in a file, so that they survive
// a restart of the emulator: each change appends a line (the record as it
// now is, or its removal), and once the file holds more than twice as many
// lines as there are records (plus compactSlack), Commit rewrites it with
// one line per record, so the file stays bounded by the records it holds.
//
// A nil *Journal keeps nothing (an emulator in memory only). A Journal is
// not safe for concurrent use: the CRM calls it under its own lock.
type Journal[T any] struct {
	path  string
	f     *os.File
	w     *bufio.Writer
	lines int
	err   error // the first record that could not be encoded
}

// compactSlack is how many lines past twice the live records a journal
// may hold before Commit compacts it.
const compactSlack = 1024

// journalLine is one line of a journal file.
type journalLine[T any] struct {
	ID      string `json:"id"`
	Value   *T     `json:"v,omitempty"`
	Deleted bool   `json:"del,omitempty"`
}

// OpenJournal opens (or creates) the journal at path and returns the
// records it holds, by id. A last line cut short by a crash is dropped; any
// other line that does not decode is an error.
func OpenJournal[T any](path string) (*Journal[T], map[string]T, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, fmt.Errorf("crmsim journal: %w", err)
	}
	records := map[string]T{}
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("crmsim journal: %w", err)
	}
	lines, good := 0, 0
	for rest := b; len(rest) > 0; {
		line, tail, complete := bytes.Cut(rest, []byte{'\n'})
		rest = tail
		if len(bytes.TrimSpace(line)) == 0 {
			good += len(line) + 1
			continue
		}
		var l journalLine[T]
		if err := fastjson.Unmarshal(line, &l); err != nil || l.ID == "" {
			if !complete { // a write cut short: drop it
				break
			}
			if err == nil {
				err = errors.New("no id")
			}
			return nil, nil, fmt.Errorf("crmsim journal %s: line %d does not decode: %w", path, lines+1, err)
		}
		if !complete {
			break
		}
		good += len(line) + 1
		lines++
		if l.Deleted || l.Value == nil {
			delete(records, l.ID)
		} else {
			records[l.ID] = *l.Value
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("crmsim journal: %w", err)
	}
	if err := f.Truncate(int64(good)); err != nil {
		_ = f.Close()
		return nil, nil, fmt.Errorf("crmsim journal: %w", err)
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		_ = f.Close()
		return nil, nil, fmt.Errorf("crmsim journal: %w", err)
	}
	return &Journal[T]{path: path, f: f, w: bufio.NewWriterSize(f, 64<<10), lines: lines}, records, nil
}

// Put records that id now holds v; Commit writes it out.
func (j *Journal[T]) Put(id string, v T) {
	if j == nil {
		return
	}
	j.append(journalLine[T]{ID: id, Value: &v})
}

// Delete records that id is gone; Commit writes it out.
func (j *Journal[T]) Delete(id string) {
	if j == nil {
		return
	}
	j.append(journalLine[T]{ID: id, Deleted: true})
}

func (j *Journal[T]) append(l journalLine[T]) {
	b, err := fastjson.Marshal(l)
	if err != nil {
		j.err = errors.Join(j.err, fmt.Errorf("crmsim journal: record %s: %w", l.ID, err))
		return
	}
	_, _ = j.w.Write(b) // a write error stays in the writer; Commit reports it
	_ = j.w.WriteByte('\n')
	j.lines++
}

// Commit writes out the changes since the last Commit and, when the file
// holds more than twice as many lines as the live records, rewrites it
// from all, which yields every live record.
func (j *Journal[T]) Commit(live int, all iter.Seq2[string, T]) error {
	if j == nil {
		return nil
	}
	if err := errors.Join(j.err, j.w.Flush()); err != nil {
		j.err = nil
		return fmt.Errorf("crmsim journal: %w", err)
	}
	if j.lines <= 2*live+compactSlack {
		return nil
	}
	return j.compact(all)
}

// compact rewrites the journal with one line per record of all, through a
// temporary file renamed over the old one.
func (j *Journal[T]) compact(all iter.Seq2[string, T]) error {
	tmp := j.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("crmsim journal compact: %w", err)
	}
	old := j.f
	j.f, j.w, j.lines = f, bufio.NewWriterSize(f, 64<<10), 0
	for id, v := range all {
		j.Put(id, v)
	}
	err = j.w.Flush()
	if err == nil {
		err = os.Rename(tmp, j.path)
	}
	_ = old.Close()
	if err != nil {
		return fmt.Errorf("crmsim journal compact: %w", err)
	}
	return nil
}

// Reset drops every record from the file.
func (j *Journal[T]) Reset() error {
	if j == nil {
		return nil
	}
	j.w.Reset(j.f)
	j.lines = 0
	if err := j.f.Truncate(0); err != nil {
		return fmt.Errorf("crmsim journal reset: %w", err)
	}
	if _, err := j.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("crmsim journal reset: %w", err)
	}
	return nil
}

// Close writes out what is buffered and closes the file.
func (j *Journal[T]) Close() error {
	if j == nil {
		return nil
	}
	return errors.Join(j.w.Flush(), j.f.Close())
}

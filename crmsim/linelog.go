package crmsim

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// lineLog is an append-only file of lines, read back by where each line
// is (its span), so that only spans need to stay in memory. Appends are
// buffered until flush. With no path the same lines are kept in memory
// (an emulator without a data dir).
//
// A lineLog is not safe for concurrent use.
type lineLog struct {
	path  string
	f     *os.File // nil: in memory, in mem
	mem   []byte
	size  int64  // bytes written out: in f, or in mem
	buf   []byte // lines appended since the last flush, from offset size
	lines int    // lines in the log, flushed or not
}

// span is where a line is in a lineLog, without its newline.
type span struct {
	off int64
	n   int32
}

// openLog opens (or creates) the log at path ("": in memory, empty) and
// calls each for every line it holds. A last line cut short by a crash
// (no newline) is dropped from the file; a line each refuses is an error
// naming its line number.
func openLog(path string, each func(line []byte, at span) error) (*lineLog, error) {
	if path == "" {
		return &lineLog{}, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	l := &lineLog{path: path, f: f}
	if err := l.scan(each); err != nil {
		_ = f.Close()
		return nil, err
	}
	return l, nil
}

// scan reads the file line by line (never all of it at once), calls each
// for every complete line that is not blank, and cuts off a last line
// without its newline.
func (l *lineLog) scan(each func(line []byte, at span) error) error {
	r := bufio.NewReaderSize(l.f, 1<<20)
	var good int64
	for {
		line, err := r.ReadBytes('\n')
		if err != nil { // io.EOF: what is left, if anything, is a write cut short
			if !errors.Is(err, io.EOF) {
				return err
			}
			break
		}
		text := line[:len(line)-1]
		if len(bytes.TrimSpace(text)) > 0 {
			if err := each(text, span{off: good, n: int32(len(text))}); err != nil {
				return fmt.Errorf("%s: line %d does not decode: %w", l.path, l.lines+1, err)
			}
			l.lines++
		}
		good += int64(len(line))
	}
	if err := l.f.Truncate(good); err != nil {
		return err
	}
	l.size = good
	return nil
}

// append adds line (which holds no newline) and returns its span.
func (l *lineLog) append(line []byte) span {
	at := span{off: l.size + int64(len(l.buf)), n: int32(len(line))}
	l.buf = append(append(l.buf, line...), '\n')
	l.lines++
	return at
}

// read returns a copy of the line at span.
func (l *lineLog) read(at span) ([]byte, error) {
	out := make([]byte, at.n)
	if at.off >= l.size { // still in the buffer
		copy(out, l.buf[at.off-l.size:])
		return out, nil
	}
	if l.f == nil {
		copy(out, l.mem[at.off:])
		return out, nil
	}
	if _, err := l.f.ReadAt(out, at.off); err != nil {
		return nil, err
	}
	return out, nil
}

// flush writes out the buffered lines. A failed write is retried whole by
// the next flush.
func (l *lineLog) flush() error {
	if len(l.buf) == 0 {
		return nil
	}
	if l.f == nil {
		l.mem = append(l.mem, l.buf...)
	} else if _, err := l.f.WriteAt(l.buf, l.size); err != nil {
		return err
	}
	l.size += int64(len(l.buf))
	l.buf = l.buf[:0]
	return nil
}

// compact rewrites the log with only the lines keep moves: keep calls move
// for every span to keep, in the order they are to be written, and gets
// each one's new span, which it may use only if compact returns nil (on
// an error the old log stays as it was). The new file replaces the old
// one by a rename.
func (l *lineLog) compact(keep func(move func(span) span)) error {
	if err := l.flush(); err != nil {
		return err
	}
	next := &lineLog{path: l.path}
	if l.path != "" {
		f, err := os.OpenFile(l.path+".tmp", os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		next.f = f
	}
	var err error
	keep(func(at span) span {
		line, rerr := l.read(at)
		if rerr != nil {
			err = errors.Join(err, rerr)
			return at
		}
		moved := next.append(line)
		if len(next.buf) >= 1<<20 {
			err = errors.Join(err, next.flush())
		}
		return moved
	})
	if err == nil {
		err = next.flush()
	}
	if err == nil && next.f != nil {
		err = os.Rename(next.f.Name(), l.path)
	}
	if err != nil {
		if next.f != nil {
			_ = next.f.Close()
		}
		return err
	}
	if l.f != nil {
		_ = l.f.Close()
	}
	*l = *next
	return nil
}

// reset empties the log.
func (l *lineLog) reset() error {
	l.buf, l.mem, l.size, l.lines = l.buf[:0], nil, 0, 0
	if l.f == nil {
		return nil
	}
	return l.f.Truncate(0)
}

// close writes out what is buffered and closes the file.
func (l *lineLog) close() error {
	err := l.flush()
	if l.f != nil {
		err = errors.Join(err, l.f.Close())
	}
	return err
}

package crmsim

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"strings"

	"github.com/recordsync/record-sync/shared/fastjson"
)

// history is the writes a CRM applied, by record identity, each
// identity's latest MaxHistoryPerIdentity: in a bbolt file next to the
// records (a temporary one without), so that the process holds none of
// them. It starts empty with each emulator, as the records do not: it
// tells what this run of the emulator did.
type history struct {
	f          *boltFile
	identities int // identities with writes kept
	pending    int // writes added since the last commit
}

// The buckets of a history's file: the writes, by identity (its length in
// front) and sequence number, and the count of each identity's writes.
const (
	writesBucket = "writes"
	countsBucket = "counts"
)

// errNoHistory is what a history that is closed, or could not be opened,
// answers.
var errNoHistory = errors.New("no history file: closed, or it could not be opened")

// historyCommitEvery bounds the writes a history holds uncommitted, and
// so the pages its transaction keeps in memory.
const historyCommitEvery = 512

// HistoryPath is where a CRM whose records are in recordsPath keeps its
// history ("": a temporary file).
func HistoryPath(recordsPath string) string {
	if recordsPath == "" {
		return ""
	}
	return strings.TrimSuffix(recordsPath, ".db") + ".history.db"
}

// openHistory starts an empty history at path ("": a temporary file),
// dropping what an earlier run left there.
func openHistory(path string) (*history, error) {
	if path != "" {
		if err := removeIfThere(path); err != nil {
			return nil, err
		}
	}
	f, err := openBolt(path, writesBucket, countsBucket)
	if err != nil {
		return nil, err
	}
	return &history{f: f}, nil
}

// add appends w to identity's writes, dropping its oldest past
// MaxHistoryPerIdentity; it reports false when the history already holds
// MaxHistoryIdentities other identities.
func (h *history) add(identity string, w Write) (bool, error) {
	if h == nil {
		return false, errNoHistory
	}
	counts, writes := h.f.bucket(countsBucket), h.f.bucket(writesBucket)
	prefix := withLength(identity, 0)
	var n uint32
	if b := counts.Get(prefix); b != nil {
		n = binary.BigEndian.Uint32(b)
	} else if h.identities >= MaxHistoryIdentities {
		return false, nil
	} else {
		h.identities++
	}
	b, err := fastjson.Marshal(w)
	if err != nil {
		return false, err
	}
	h.f.changed()
	var errs []error
	if n >= MaxHistoryPerIdentity {
		c := writes.Cursor()
		if k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) {
			errs = append(errs, c.Delete())
		}
	} else {
		n++
	}
	errs = append(errs, writes.Put(binary.BigEndian.AppendUint64(slices.Clip(prefix), uint64(w.Seq)), b),
		counts.Put(prefix, binary.BigEndian.AppendUint32(nil, n)))
	if h.pending++; h.pending >= historyCommitEvery {
		h.pending = 0
		errs = append(errs, h.f.commit())
	}
	return true, errors.Join(errs...)
}

// get returns identity's writes, oldest first.
func (h *history) get(identity string) ([]Write, error) {
	if h == nil {
		return nil, errNoHistory
	}
	prefix := withLength(identity, 0)
	var out []Write
	c := h.f.bucket(writesBucket).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var w Write
		if err := fastjson.Unmarshal(v, &w); err != nil {
			return out, err
		}
		out = append(out, w)
	}
	return out, nil
}

// reset forgets every write.
func (h *history) reset() error {
	if h == nil {
		return errNoHistory
	}
	h.identities, h.pending = 0, 0
	return h.f.empty(writesBucket, countsBucket)
}

// close writes out what is pending and closes the file.
func (h *history) close() error { return h.f.close() }

package crmsim

import (
	"errors"
	"os"
	"strings"

	"github.com/recordsync/record-sync/shared/fastjson"
)

// history is the writes a CRM applied, by record identity: the writes are
// lines of a lineLog (a file next to the records, or memory), and the
// process keeps only where each identity's latest MaxHistoryPerIdentity
// are (12 bytes a write). It starts empty with each emulator, as the
// records do not: it tells what this run of the emulator did.
type history struct {
	log  *lineLog
	at   map[string][]span
	kept int // spans in at
}

// HistoryPath is where a CRM whose records are in recordsPath keeps its
// history ("": in memory).
func HistoryPath(recordsPath string) string {
	if recordsPath == "" {
		return ""
	}
	return strings.TrimSuffix(recordsPath, ".jsonl") + ".history.jsonl"
}

// openHistory starts an empty history at path ("": in memory), dropping
// what an earlier run left there.
func openHistory(path string) (*history, error) {
	if path != "" {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	log, err := openLog(path, func([]byte, span) error { return nil })
	if err != nil {
		return nil, err
	}
	return &history{log: log, at: map[string][]span{}}, nil
}

// add appends w to identity's writes; it reports false when the history
// already holds MaxHistoryIdentities other identities.
func (h *history) add(identity string, w Write) (bool, error) {
	spans, ok := h.at[identity]
	if !ok && len(h.at) >= MaxHistoryIdentities {
		return false, nil
	}
	b, err := fastjson.Marshal(w)
	if err != nil {
		return false, err
	}
	spans = append(spans, h.log.append(b))
	h.kept++
	if len(spans) > MaxHistoryPerIdentity {
		h.kept -= len(spans) - MaxHistoryPerIdentity
		spans = append(spans[:0:0], spans[len(spans)-MaxHistoryPerIdentity:]...)
	}
	h.at[identity] = spans
	if h.log.lines > 2*h.kept+compactSlack {
		return true, h.compact()
	}
	if len(h.log.buf) >= 64<<10 {
		return true, h.log.flush()
	}
	return true, nil
}

// get returns identity's writes, oldest first.
func (h *history) get(identity string) ([]Write, error) {
	spans := h.at[identity]
	out := make([]Write, 0, len(spans))
	for _, at := range spans {
		line, err := h.log.read(at)
		if err != nil {
			return out, err
		}
		var w Write
		if err := fastjson.Unmarshal(line, &w); err != nil {
			return out, err
		}
		out = append(out, w)
	}
	return out, nil
}

// compact rewrites the file with the writes kept.
func (h *history) compact() error {
	next := make(map[string][]span, len(h.at))
	err := h.log.compact(func(move func(span) span) {
		for identity, spans := range h.at {
			moved := make([]span, len(spans))
			for i, at := range spans {
				moved[i] = move(at)
			}
			next[identity] = moved
		}
	})
	if err == nil {
		h.at = next
	}
	return err
}

// reset forgets every write.
func (h *history) reset() error {
	h.at, h.kept = map[string][]span{}, 0
	return h.log.reset()
}

package crmsim

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type rec struct {
	Name string `json:"name"`
	N    int    `json:"n"`
}

func seq(m map[string]rec) func(func(string, rec) bool) { return maps.All(m) }

func TestJournalReopens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crm.jsonl")
	j, got, err := OpenJournal[rec](path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("a new journal holds %v", got)
	}
	want := map[string]rec{}
	for i := range 10 {
		id := strconv.Itoa(i)
		want[id] = rec{Name: "r" + id, N: i}
		j.Put(id, want[id])
	}
	j.Delete("3")
	delete(want, "3")
	want["4"] = rec{Name: "changed", N: 40}
	j.Put("4", want["4"])
	if err := j.Commit(len(want), seq(want)); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j, got, err = OpenJournal[rec](path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("reopened journal (-want +got):\n%s", d)
	}
}

func TestJournalDropsACutLastLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crm.jsonl")
	j, _, err := OpenJournal[rec](path)
	if err != nil {
		t.Fatal(err)
	}
	j.Put("a", rec{Name: "a"})
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"id":"b","v":{"na`); err != nil { // a crash in the middle of a write
		t.Fatal(err)
	}
	_ = f.Close()
	j, got, err := OpenJournal[rec](path)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]rec{"a": {Name: "a"}}, got); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
	j.Put("c", rec{Name: "c"}) // appended after the cut line is gone, not glued to it
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	_, got, err = OpenJournal[rec](path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["c"].Name != "c" {
		t.Fatalf("after a cut line and a new write the journal holds %v", got)
	}
}

func TestJournalRefusesADamagedLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crm.jsonl")
	if err := os.WriteFile(path, []byte("{\"id\":\"a\",\"v\":{}}\nnot json\n{\"id\":\"b\",\"v\":{}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := OpenJournal[rec](path); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("a damaged line in the middle: err = %v, want one naming line 2", err)
	}
}

func TestJournalStaysBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crm.jsonl")
	j, _, err := OpenJournal[rec](path)
	if err != nil {
		t.Fatal(err)
	}
	live := map[string]rec{"x": {}, "y": {}}
	for i := range 5000 {
		live["x"] = rec{N: i}
		j.Put("x", live["x"])
		if err := j.Commit(len(live), seq(live)); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(b, []byte{'\n'}); n > 2*len(live)+compactSlack+1 {
		t.Fatalf("after 5000 writes to one record the journal has %d lines; want at most %d", n, 2*len(live)+compactSlack+1)
	}
	_, got, err := OpenJournal[rec](path)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(live, got); d != "" {
		t.Fatalf("after compactions (-want +got):\n%s", d)
	}
}

func TestJournalReset(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crm.jsonl")
	j, _, err := OpenJournal[rec](path)
	if err != nil {
		t.Fatal(err)
	}
	j.Put("a", rec{Name: "a"})
	if err := j.Commit(1, seq(map[string]rec{"a": {Name: "a"}})); err != nil {
		t.Fatal(err)
	}
	if err := j.Reset(); err != nil {
		t.Fatal(err)
	}
	j.Put("b", rec{Name: "b"})
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	_, got, err := OpenJournal[rec](path)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]rec{"b": {Name: "b"}}, got); d != "" {
		t.Fatalf("after a reset (-want +got):\n%s", d)
	}
}

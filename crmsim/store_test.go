package crmsim

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type rec struct {
	Name string `json:"name"`
	N    int    `json:"n"`
	Tags map[string]string
}

func openStore(t *testing.T, path string) *Store[rec] {
	t.Helper()
	s, err := OpenStore[rec](path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func contents(s *Store[rec]) map[string]rec { return maps.Collect(s.All()) }

func commit(t *testing.T, s *Store[rec]) {
	t.Helper()
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
}

// Both kinds of store (a file, memory) answer the same.
func TestStoreReadsWhatItKeeps(t *testing.T) {
	for name, path := range map[string]string{"file": filepath.Join(t.TempDir(), "crm.jsonl"), "memory": ""} {
		t.Run(name, func(t *testing.T) {
			s := openStore(t, path)
			defer s.Close()
			s.Put("a", rec{Name: "a", Tags: map[string]string{"k": "v"}})
			got, ok := s.Get("a") // before any Commit: still in the buffer
			if !ok || got.Name != "a" {
				t.Fatalf("Get before Commit = %v, %v", got, ok)
			}
			got.Tags["k"] = "changed" // the caller's own copy
			commit(t, s)
			if again, _ := s.Get("a"); again.Tags["k"] != "v" {
				t.Fatalf("a change to a copy reached the store: %v", again)
			}
			s.Put("a", got)
			s.Delete("b") // not there: nothing happens
			s.Put("b", rec{Name: "b"})
			s.Delete("b")
			commit(t, s)
			if d := cmp.Diff(map[string]rec{"a": got}, contents(s)); d != "" {
				t.Fatalf("(-want +got):\n%s", d)
			}
			if s.Len() != 1 || !s.Has("a") || s.Has("b") {
				t.Fatalf("Len %d, Has(a) %v, Has(b) %v", s.Len(), s.Has("a"), s.Has("b"))
			}
		})
	}
}

func TestStoreReopens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crm.jsonl")
	s := openStore(t, path)
	if s.Len() != 0 {
		t.Fatalf("a new store holds %v", contents(s))
	}
	want := map[string]rec{}
	for i := range 10 {
		id := strconv.Itoa(i)
		want[id] = rec{Name: "r" + id, N: i}
		s.Put(id, want[id])
	}
	s.Delete("3")
	delete(want, "3")
	want["4"] = rec{Name: "changed", N: 40}
	s.Put("4", want["4"])
	commit(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, path)
	defer s.Close()
	if d := cmp.Diff(want, contents(s)); d != "" {
		t.Fatalf("reopened store (-want +got):\n%s", d)
	}
}

func TestStoreDropsACutLastLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crm.jsonl")
	s := openStore(t, path)
	s.Put("a", rec{Name: "a"})
	if err := s.Close(); err != nil {
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
	s = openStore(t, path)
	if d := cmp.Diff(map[string]rec{"a": {Name: "a"}}, contents(s)); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
	s.Put("c", rec{Name: "c"}) // appended after the cut line is gone, not glued to it
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, path)
	defer s.Close()
	if got := contents(s); len(got) != 2 || got["c"].Name != "c" {
		t.Fatalf("after a cut line and a new write the store holds %v", got)
	}
}

func TestStoreRefusesADamagedLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crm.jsonl")
	if err := os.WriteFile(path, []byte("{\"id\":\"a\",\"v\":{}}\nnot json\n{\"id\":\"b\",\"v\":{}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStore[rec](path); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("a damaged line in the middle: err = %v, want one naming line 2", err)
	}
}

func TestStoreStaysBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crm.jsonl")
	s := openStore(t, path)
	s.Put("y", rec{Name: "y"})
	for i := range 5000 {
		s.Put("x", rec{N: i})
		commit(t, s)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(b, []byte{'\n'}); n > 2*2+compactSlack+1 {
		t.Fatalf("after 5000 writes to one record the file has %d lines; want at most %d", n, 2*2+compactSlack+1)
	}
	s = openStore(t, path)
	defer s.Close()
	if d := cmp.Diff(map[string]rec{"x": {N: 4999}, "y": {Name: "y"}}, contents(s)); d != "" {
		t.Fatalf("after compactions (-want +got):\n%s", d)
	}
}

func TestStoreReset(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crm.jsonl")
	s := openStore(t, path)
	s.Put("a", rec{Name: "a"})
	commit(t, s)
	if err := s.Reset(); err != nil {
		t.Fatal(err)
	}
	s.Put("b", rec{Name: "b"})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, path)
	defer s.Close()
	if d := cmp.Diff(map[string]rec{"b": {Name: "b"}}, contents(s)); d != "" {
		t.Fatalf("after a reset (-want +got):\n%s", d)
	}
}

// A store with a file holds where its records are, not the records: 20,000
// records of 2 KB (40 MB) leave the heap about 2 MB larger.
func TestStoreKeepsRecordsOnDisk(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "crm.jsonl"))
	defer s.Close()
	filler := strings.Repeat("x", 2048)
	before := liveHeap()
	for i := range 20_000 {
		s.Put(strconv.Itoa(i), rec{Name: filler, N: i})
		if i%100 == 99 {
			commit(t, s)
		}
	}
	commit(t, s)
	grown := int64(liveHeap()) - int64(before)
	if grown > 8<<20 {
		t.Fatalf("holding 40 MB of records grew the heap by %d MB; want under 8", grown>>20)
	}
	if got, ok := s.Get("19999"); !ok || got.N != 19999 || len(got.Name) != 2048 {
		t.Fatalf("the last record reads back as %d %d", got.N, len(got.Name))
	}
	runtime.KeepAlive(s)
}

func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// Blank lines are skipped, and trailing white space without its newline is
// cut off like any cut write, not padded.
func TestStoreSkipsBlankLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crm.jsonl")
	first := "{\"id\":\"a\",\"v\":{\"name\":\"a\"}}\n"
	if err := os.WriteFile(path, []byte(first+"\n  \n"+first+"   "), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, path)
	if d := cmp.Diff(map[string]rec{"a": {Name: "a"}}, contents(s)); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != first+"\n  \n"+first {
		t.Fatalf("file after opening: %q %v", b, err)
	}
}

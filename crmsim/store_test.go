package crmsim

import (
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
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
	s, err := OpenStore(path, tagKeys)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tagKeys indexes a rec by each of its tags' values.
func tagKeys(r *rec) []string { return slices.Sorted(maps.Values(r.Tags)) }

func contents(s *Store[rec]) map[string]rec { return maps.Collect(s.All()) }

func commit(t *testing.T, s *Store[rec]) {
	t.Helper()
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
}

// Both kinds of store (a file, memory) answer the same.
func TestStoreReadsWhatItKeeps(t *testing.T) {
	for name, path := range map[string]string{"file": filepath.Join(t.TempDir(), "crm.db"), "memory": ""} {
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
	path := filepath.Join(t.TempDir(), "crm.db")
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

func TestStoreReset(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crm.db")
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

// A store holds neither its records nor their index in the heap, with a
// path or without: 20,000 records of 2 KB (40 MB), each indexed by an
// email, leave it less than 1 MB larger (before bbolt the store kept about
// 150 bytes a record, 3 MB here).
func TestStoreKeepsRecordsOnDisk(t *testing.T) {
	for name, path := range map[string]string{"file": filepath.Join(t.TempDir(), "crm.db"), "temporary": ""} {
		t.Run(name, func(t *testing.T) {
			s := openStore(t, path)
			defer s.Close()
			filler := strings.Repeat("x", 2048)
			before := liveHeap()
			for i := range 20_000 {
				id := strconv.Itoa(i)
				s.Put(id, rec{Name: filler, N: i, Tags: map[string]string{"email": "r" + id + "@example.com"}})
				if i%100 == 99 {
					commit(t, s)
				}
			}
			commit(t, s)
			grown := int64(liveHeap()) - int64(before)
			t.Logf("the heap grew by %d KB", grown>>10)
			if grown > 1<<20 {
				t.Fatalf("holding 40 MB of records grew the heap by %d KB; want under 1 MB", grown>>10)
			}
			if got, ok := s.Get("19999"); !ok || got.N != 19999 || len(got.Name) != 2048 {
				t.Fatalf("the last record reads back as %d %d", got.N, len(got.Name))
			}
			if id, ok := s.First("r12345@example.com"); !ok || id != "12345" {
				t.Fatalf("First(r12345@example.com) = %q, %v", id, ok)
			}
			runtime.KeepAlive(s)
		})
	}
}

func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// found lists what Find yields for key.
func found(s *Store[rec], key string) []string { return slices.Collect(s.Find(key)) }

// The index follows every Put and Delete, before Commit and after a
// reopen, and a key held by several records finds each.
func TestStoreIndexFollowsChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crm.db")
	s := openStore(t, path)
	s.Put("a", rec{Tags: map[string]string{"e": "x@example.com"}})
	s.Put("b", rec{Tags: map[string]string{"e": "x@example.com", "f": "y"}})
	if d := cmp.Diff([]string{"a", "b"}, found(s, "x@example.com")); d != "" {
		t.Fatalf("before Commit (-want +got):\n%s", d)
	}
	commit(t, s)
	s.Put("a", rec{Tags: map[string]string{"e": "z@example.com"}}) // moves a
	s.Delete("b")
	if got := found(s, "x@example.com"); len(got) != 0 {
		t.Fatalf("x@example.com after a moved and b deleted: %v", got)
	}
	if got := found(s, "y"); len(got) != 0 {
		t.Fatalf("y after b deleted: %v", got)
	}
	commit(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, path)
	defer s.Close()
	if id, ok := s.First("z@example.com"); !ok || id != "a" {
		t.Fatalf("after a reopen First(z@example.com) = %q, %v", id, ok)
	}
	// A key that is a prefix of another finds only its own records.
	s.Put("c", rec{Tags: map[string]string{"e": "z@example.co"}})
	if d := cmp.Diff([]string{"c"}, found(s, "z@example.co")); d != "" {
		t.Fatalf("a key that is another's prefix (-want +got):\n%s", d)
	}
	s.Put("a", rec{}) // no keys: out of the index
	if _, ok := s.First("z@example.com"); ok {
		t.Fatal("a record put without keys is still found by its old one")
	}
}

// Records written before the format changed (JSON lines beside the
// database) are read in once, the last line cut by a crash dropped, and
// the old files removed.
func TestStoreImportsLines(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "crm.jsonl")
	lines := `{"id":"a","v":{"name":"a","n":1,"Tags":{"e":"a@x.io"}}}` + "\n\n" +
		`{"id":"b","v":{"name":"b"}}` + "\n" +
		`{"id":"b","del":true}` + "\n" +
		`{"id":"c","v":{"name":"c"}}` + "\n" +
		`{"id":"d","v":{"na` // a crash in the middle of a write
	if err := os.WriteFile(old, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "crm.history.jsonl"), []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, filepath.Join(dir, "crm.db"))
	want := map[string]rec{"a": {Name: "a", N: 1, Tags: map[string]string{"e": "a@x.io"}}, "c": {Name: "c"}}
	if d := cmp.Diff(want, contents(s)); d != "" {
		t.Fatalf("imported (-want +got):\n%s", d)
	}
	if id, _ := s.First("a@x.io"); id != "a" || s.Len() != 2 {
		t.Fatalf("imported records indexed: First = %q, Len %d", id, s.Len())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"crm.jsonl", "crm.history.jsonl"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Fatalf("%s after the import: %v", name, err)
		}
	}
	s = openStore(t, filepath.Join(dir, "crm.db"))
	defer s.Close()
	if d := cmp.Diff(want, contents(s)); d != "" {
		t.Fatalf("reopened after the import (-want +got):\n%s", d)
	}
}

func TestStoreRefusesADamagedLine(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "crm.jsonl"), []byte("{\"id\":\"a\",\"v\":{}}\nnot json\n{\"id\":\"b\",\"v\":{}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStore[rec](filepath.Join(dir, "crm.db"), nil); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("a damaged line in the middle: err = %v, want one naming line 2", err)
	}
}

// Two processes cannot hold one store: the second is told so, at once.
func TestStoreRefusesASecondOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crm.db")
	s := openStore(t, path)
	defer s.Close()
	if _, err := OpenStore[rec](path, nil); err == nil || !strings.Contains(err.Error(), "open in another process") {
		t.Fatalf("a second open: err = %v", err)
	}
}

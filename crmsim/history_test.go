package crmsim

import (
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// The history keeps each identity's latest MaxHistoryPerIdentity writes,
// in order, in its file, and a new run starts it empty.
func TestHistoryKeepsTheLatestWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crm.history.db")
	earlier := NewSim(100, time.Minute) // an earlier run's history, dropped
	if err := earlier.KeepHistoryIn(path); err != nil {
		t.Fatal(err)
	}
	earlier.Wrote("hot", "create", "1", nil)
	if err := earlier.Close(); err != nil {
		t.Fatal(err)
	}
	s := NewSim(100, time.Minute)
	if err := s.KeepHistoryIn(path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n := MaxHistoryPerIdentity*3 + 7
	for i := range n {
		s.Wrote("hot", "update", "1", map[string]any{"n": strconv.Itoa(i)})
	}
	s.Wrote("cold", "create", "2", nil)
	got := s.History("hot")
	if len(got) != MaxHistoryPerIdentity {
		t.Fatalf("kept %d writes of hot; want %d", len(got), MaxHistoryPerIdentity)
	}
	for i, w := range got {
		if want := strconv.Itoa(n - MaxHistoryPerIdentity + i); w.Values["n"] != want || w.Seq != int64(n-MaxHistoryPerIdentity+i+1) {
			t.Fatalf("write %d is n=%v seq %d; want n=%s seq %d", i, w.Values["n"], w.Seq, want, n-MaxHistoryPerIdentity+i+1)
		}
	}
	if c := s.History("cold"); len(c) != 1 || c[0].Op != "create" || c[0].Seq != int64(n+1) {
		t.Fatalf("cold: %+v", c)
	}
	if err := s.HistoryErr(); err != nil {
		t.Fatal(err)
	}
	s.Reset()
	if h := s.History("hot"); len(h) != 0 {
		t.Fatalf("after a reset hot has %d writes", len(h))
	}
}

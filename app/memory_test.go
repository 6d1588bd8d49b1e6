package app

import (
	"strconv"
	"testing"

	statussvc "github.com/recordsync/record-sync/services/status"
)

func TestParseMemoryLimit(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{"", MemoryLimitAuto, false},
		{"auto", MemoryLimitAuto, false},
		{"off", MemoryLimitOff, false},
		{"400MiB", 400 << 20, false},
		{"2GiB", 2 << 30, false},
		{"1073741824B", 1 << 30, false},
		{"10MiB", 0, true}, // too small to run in
		{"400MB", 0, true}, // GOMEMLIMIT's units only
		{"-1GiB", 0, true},
		{"lots", 0, true},
	} {
		got, err := parseMemoryLimit(tt.in)
		if (err != nil) != tt.bad || (!tt.bad && got != tt.want) {
			t.Errorf("parseMemoryLimit(%q) = %d, %v", tt.in, got, err)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
	}{{"32MiB", 32 << 20}, {"1GiB", 1 << 30}, {"1536KiB", 1536 << 10}, {"100B", 100}, {"32MB", 0}, {"0MiB", 0}, {"", 0}, {"MiB", 0}} {
		got, err := parseSize(tt.in)
		if (err != nil) != (tt.want == 0) || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for n, want := range map[int64]string{1 << 20: "1MiB", 16 << 30: "16GiB", 1536 << 10: "1536KiB", 100: "100B"} {
		if got := formatSize(n); got != want {
			t.Errorf("formatSize(%d) = %s, want %s", n, got, want)
		}
	}
}

// TestStatusBoundsDefaults: the settings' defaults are the status
// service's own, so that a process started without them runs as the
// documented defaults say.
func TestStatusBoundsDefaults(t *testing.T) {
	want := map[string]string{
		"RECORDSYNC_STATUS_MAX_HELD": strconv.Itoa(statussvc.DefaultMaxHeld),
		"RECORDSYNC_STATUS_CACHE":    formatSize(statussvc.DefaultCacheBytes),
	}
	for _, s := range Settings {
		if w, ok := want[s.Name]; ok {
			if s.Default != w {
				t.Errorf("%s defaults to %q, the status service to %q", s.Name, s.Default, w)
			}
			delete(want, s.Name)
		}
	}
	if len(want) > 0 {
		t.Errorf("no setting for %v", want)
	}
}

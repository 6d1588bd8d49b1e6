package app

import "testing"

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

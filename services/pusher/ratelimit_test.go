package pusher

import (
	"testing"
	"time"
)

func TestSlot(t *testing.T) {
	tests := []struct {
		perMinute int
		slot      time.Duration
		per       int64
	}{
		{1080, 55555555 * time.Nanosecond, 1},
		{60, time.Second, 1},
		{6000, 10 * time.Millisecond, 1},
		{12000, 10 * time.Millisecond, 2},
		{10000, 12 * time.Millisecond, 2},
		{1, time.Minute, 1},
	}
	for _, tt := range tests {
		s, n := slot(tt.perMinute)
		if s != tt.slot || n != tt.per {
			t.Errorf("slot(%d) = %v, %d; want %v, %d", tt.perMinute, s, n, tt.slot, tt.per)
		}
	}
}

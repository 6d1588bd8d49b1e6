package status

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestConfigValidate: zero fields take their defaults; negative ones are
// each named, all at once; a negative AckDelay (no delay) is valid.
func TestConfigValidate(t *testing.T) {
	if err := (Config{AckDelay: -1}).withDefaults().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	err := (Config{CacheBytes: -1, Hold: -time.Second}).withDefaults().Validate()
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "CacheBytes") || !strings.Contains(err.Error(), "Hold") {
		t.Fatalf("got %v, want both fields named", err)
	}
}

package natstest

import (
	"testing"
	"time"
)

// Eventually polls cond until it holds (every 10 ms at first, backing off
// to every 100 ms, so that a costly cond does not load a busy machine), and fails
// the test naming what when it does not within timeout. It returns how long
// cond took to hold: tests that measure a pause or a failover report it.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for wait := 10 * time.Millisecond; !cond(); wait = min(2*wait, 100*time.Millisecond) {
		select {
		case <-time.After(wait):
		case <-deadline.C:
			t.Fatalf("%s: not within %s", what, timeout)
		}
	}
	return time.Since(start)
}

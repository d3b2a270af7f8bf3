package testutil

import (
	"fmt"
	"testing"
	"time"
)

// PollInterval is how often Eventually and EventuallyValue re-check their condition.
// It paces the checks only: the condition decides when the wait ends.
const PollInterval = 10 * time.Millisecond

// Eventually checks cond at once and then every PollInterval until it returns true. If
// timeout passes first it fails the test (t.Fatalf) with "timed out after <timeout>
// waiting for <what>". It must be called from the test's goroutine; cond may itself
// fail the test.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	EventuallyValue(t, timeout, what, func() (struct{}, bool) { return struct{}{}, cond() })
}

// EventuallyValue is Eventually for a condition that also produces a value: it returns
// the value of the first call of get that reported ok. On timeout the failure message
// also shows the last value get returned (%+v), e.g. the catalog that never matched.
func EventuallyValue[V any](t testing.TB, timeout time.Duration, what string, get func() (V, bool)) V {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(PollInterval)
	defer tick.Stop()
	for {
		v, ok := get()
		if ok {
			return v
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			// One last look: under load the timer and the condition may race.
			if v, ok = get(); ok {
				return v
			}
			t.Fatalf("timed out after %v waiting for %s%s", timeout, what, lastValue(v))
			return v
		}
	}
}

// lastValue formats the last value of a failed wait, or nothing for Eventually's.
func lastValue(v any) string {
	if _, ok := v.(struct{}); ok {
		return ""
	}
	return fmt.Sprintf("; last seen: %+v", v)
}

// EventuallyNil is Eventually for a condition that explains itself: it waits until cond
// returns nil, and on timeout the failure message gives cond's last error.
func EventuallyNil(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	EventuallyValue(t, timeout, what, func() (error, bool) { err := cond(); return err, err == nil })
}

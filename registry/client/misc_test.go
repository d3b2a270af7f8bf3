package client_test

import (
	"context"
	"testing"
	"time"
)

// contextWithTimeout returns a context that ends after ms milliseconds.
func contextWithTimeout(t *testing.T, ms int) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(ms)*time.Millisecond)
	t.Cleanup(cancel)
	return ctx, cancel
}

// timer returns a channel that fires after d; stopped when the test ends.
func timer(t *testing.T, d time.Duration) <-chan time.Time {
	tm := time.NewTimer(d)
	t.Cleanup(func() { tm.Stop() })
	return tm.C
}

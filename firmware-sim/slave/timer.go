package slave

import (
	"runtime"
	"time"
)

// wakeTimer wakes the RTU server's reply writer at the instants of the line model. Go's
// runtime timers are not precise enough for it: on Linux they sleep in epoll_wait with
// millisecond resolution (runtime/netpoll_epoll.go) and fire up to about 1 ms late.
//
// set and wait are called by the one goroutine that waits; wake may be called by any
// goroutine, but never concurrently with set (the RTU server serialises them with a
// mutex), so that a wake is never lost: it either ends the current wait or the next.
type wakeTimer interface {
	// set makes the next wait return at at (at once when at has passed); the zero time
	// makes it wait for a wake. It cancels an earlier set and any wake not yet waited
	// for: the caller has already seen the state that the wake announced.
	set(at time.Time) error
	// wake makes the current wait, or else the next one, return now.
	wake() error
	// wait blocks until the instant of the last set has passed or wake is called. It
	// may return early (spuriously); callers re-check their state.
	wait() error
	// close releases the timer; no method may be called after it.
	close() error
}

// spinWindow is how long before its instant a spinTimer stops sleeping in a runtime
// timer and spins: more than a runtime timer's lateness (up to about 1 ms).
const spinWindow = 2 * time.Millisecond

// spinTimer is the portable wakeTimer: a runtime timer that wakes spinWindow early,
// then a spin that yields the processor (runtime.Gosched) until the instant. It costs up
// to spinWindow of CPU per wake-up.
type spinTimer struct {
	at   time.Time     // instant of the next wake-up; zero: none. Only the waiter uses it.
	kick chan struct{} // wake → wait; capacity 1
}

func newSpinTimer() *spinTimer { return &spinTimer{kick: make(chan struct{}, 1)} }

func (t *spinTimer) set(at time.Time) error {
	t.at = at
	select { // forget a wake nobody waited for (see wakeTimer.set)
	case <-t.kick:
	default:
	}
	return nil
}

func (t *spinTimer) wake() error {
	select {
	case t.kick <- struct{}{}:
	default:
	}
	return nil
}

func (t *spinTimer) wait() error {
	if t.at.IsZero() {
		<-t.kick
		return nil
	}
	if d := time.Until(t.at) - spinWindow; d > 0 {
		tm := time.NewTimer(d)
		select {
		case <-t.kick:
			tm.Stop()
			return nil
		case <-tm.C:
		}
	}
	for time.Now().Before(t.at) {
		select {
		case <-t.kick:
			return nil
		default:
		}
		runtime.Gosched()
	}
	return nil
}

func (t *spinTimer) close() error { return nil }

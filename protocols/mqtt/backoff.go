package mqtt

import (
	"math/rand/v2"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// DefaultMinReconnectInterval is the default of Timing.MinReconnectInterval (100 ms):
// the first step of the reconnection back-off.
const DefaultMinReconnectInterval = 100 * time.Millisecond

// flapWindow: a connection that ends within this time of the attempt that opened it
// counts as a failed attempt, so that a broker that accepts and at once drops a client
// (a session takeover fight between two clients of the same id, say) meets a growing
// back-off rather than a reconnection loop.
const flapWindow = time.Second

// reconnectDelay is the wait before a connection attempt, given the attempts that
// failed in a row before it (fails) and a uniform random number u in [0, 1):
//
//   - fails = 0, the first attempt after a connection was lost: u × lo/2, i.e. at once
//     up to lo/2 later;
//   - fails ≥ 1: d = lo × 2^(fails−1), at most hi, and the wait is d/2 + u × d/2,
//     a random point of [d/2, d).
//
// lo and hi are Timing.MinReconnectInterval and MaxReconnectInterval (lo
// is taken as at most hi).
func reconnectDelay(lo, hi time.Duration, fails int, u float64) time.Duration {
	lo = min(lo, hi)
	if fails <= 0 {
		return time.Duration(u * float64(lo/2))
	}
	d := hi
	if shift := fails - 1; shift < 63 && lo <= hi>>shift { // lo << shift ≤ hi, no overflow
		d = lo << shift
	}
	return d/2 + time.Duration(u*float64(d/2))
}

// backoff is the reconnection back-off of one paho client (Session.Reconnect). paho
// v1.5.1's own waits 1 s before its second attempt and then doubles, with no jitter and
// no way to set the first step; Session.Options turns it off (zero waits) and installs
// notify as the connection notification handler instead. paho calls that handler with
// ConnectionNotificationConnecting synchronously, in its connecting goroutine, before
// every round of attempts (one attempt per broker, in order), and with
// ConnectionNotificationFailed after a round in which every broker failed: waiting in
// the handler delays the round.
type backoff struct {
	min, max time.Duration
	stop     <-chan struct{}                                // Session.Stop
	next     func(paho.Client, paho.ConnectionNotification) // Session.OnNotification, or nil

	mu      sync.Mutex
	fails   int       // failed rounds (and dropped fresh connections) in a row
	roundAt time.Time // when the latest round started dialling
}

// notify is the connection notification handler of a client with reconnection.
func (b *backoff) notify(c paho.Client, n paho.ConnectionNotification) {
	switch n := n.(type) {
	case paho.ConnectionNotificationConnecting:
		b.wait(b.delay(n.IsReconnect, n.Attempt, time.Now(), rand.Float64()))
		b.mu.Lock()
		b.roundAt = time.Now()
		b.mu.Unlock()
	case paho.ConnectionNotificationFailed:
		b.mu.Lock()
		b.fails++
		b.mu.Unlock()
	}
	if b.next != nil {
		b.next(c, n)
	}
}

// delay is the wait before the round of attempt number attempt (paho counts from 0 in
// every Connect call and every reconnection) at now.
func (b *backoff) delay(reconnect bool, attempt int, now time.Time, u float64) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if attempt == 0 {
		if !reconnect {
			b.fails = 0
			return 0 // the first connection: at once
		}
		// A reconnection: the previous round had connected.
		if now.Sub(b.roundAt) < flapWindow {
			b.fails++
		} else {
			b.fails = 0
		}
	}
	return reconnectDelay(b.min, b.max, b.fails, u)
}

// wait sleeps for d, or until stop is closed.
func (b *backoff) wait(d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-b.stop:
	}
}

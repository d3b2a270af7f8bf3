//go:build linux

package slave

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// timerfdTimer is a wakeTimer on a Linux timerfd (timerfd_create(2), CLOCK_MONOTONIC,
// non-blocking) read through the Go runtime's poller: the kernel's hrtimer makes the
// descriptor readable on time and epoll reports it at once, where runtime timers
// (time.Timer, deadlines) sleep in epoll_wait with millisecond resolution and fire up
// to about 1 ms late. (A blocking read(2) wakes as precisely, but the goroutine keeps
// its P while blocked until the runtime's sysmon hands it off, which can take
// milliseconds: with a few buses and a small GOMAXPROCS the readers then starve —
// measured: requests read up to 4 ms late.)
type timerfdTimer struct {
	f   *os.File
	buf [8]byte // expiration count read from the timerfd
}

// newWakeTimer returns the precise wake-up timer of this platform: a timerfd.
func newWakeTimer() (wakeTimer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("timerfd_create: %w", err)
	}
	// A non-blocking descriptor: os.NewFile registers it with the runtime poller.
	return &timerfdTimer{f: os.NewFile(uintptr(fd), "timerfd")}, nil
}

// settime arms the timer to expire after d (relative; d > 0), or disarms it (d = 0).
// Arming resets the expiration count, so an earlier expiry nobody read is forgotten.
func (t *timerfdTimer) settime(d time.Duration) error {
	sc, err := t.f.SyscallConn()
	if err != nil {
		return fmt.Errorf("timerfd: %w", err)
	}
	its := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	var serr error
	if err := sc.Control(func(fd uintptr) { serr = unix.TimerfdSettime(int(fd), 0, &its, nil) }); err != nil {
		return fmt.Errorf("timerfd: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("timerfd_settime: %w", serr)
	}
	return nil
}

func (t *timerfdTimer) set(at time.Time) error {
	if at.IsZero() {
		return t.settime(0)
	}
	// time.Until uses the monotonic clock reading of at, the clock of the timerfd.
	return t.settime(max(time.Until(at), time.Nanosecond))
}

func (t *timerfdTimer) wake() error { return t.settime(time.Nanosecond) }

func (t *timerfdTimer) wait() error {
	if _, err := t.f.Read(t.buf[:]); err != nil {
		return fmt.Errorf("timerfd: read: %w", err)
	}
	return nil
}

func (t *timerfdTimer) close() error { return t.f.Close() }

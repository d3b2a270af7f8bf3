package slave

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// chunkPeriod is the shortest interval between two chunks of a streamed reply: short
// enough that the gaps a master sees stay below t1.5 (750 µs above 19200 baud; Modbus
// over Serial Line V1.02 §2.5.1.1), long enough to write several characters per wake-up
// at high baud rates.
const chunkPeriod = 500 * time.Microsecond

// maxNoiseLateness is how late a FaultNoisy burst may still be written: a burst due
// at most t1.5 + 4 characters (1.13 ms above 19200 baud) after the reply's last byte
// and written within 250 µs of that precedes any request of a master that keeps the
// t3.5 gap (1.75 ms) after the reply.
const maxNoiseLateness = 250 * time.Microsecond

// spinLead is how early the reply writer wakes for the first and the last byte of a
// reply, to spin until the instant: a woken thread runs some 20–250 µs after its timer
// expired (an idle CPU, a virtual machine's vCPU), which the spin hides, at a cost of
// up to 2 × spinLead of CPU per reply. Chunks in between are written when the timer
// wakes the writer.
const spinLead = 200 * time.Microsecond

// replyWriter is the RTU server's writer of one Serve call: it streams each reply onto
// the port on the line model's schedule (see FirstByteDelay), woken by a precise
// wakeTimer. Serve's reader hands it replies (submit) and withdraws them when the
// master sends again (cancel); run is its goroutine.
type replyWriter struct {
	s      *RTUServer
	port   Port
	timer  wakeTimer
	period time.Duration // between chunks: max(1 character, chunkPeriod)
	t15    time.Duration // t1.5: the silence before a FaultNoisy burst

	mu     sync.Mutex    // guards cur, closed and the streaming state of cur; serialises timer.set/wake
	cur    *pendingReply // the reply (or its noise burst) being streamed; nil when idle
	closed bool          // run has returned: the timer is closed
}

// chunk is what one write puts on the line.
type chunk struct {
	p     *pendingReply
	data  []byte
	final bool // holds the reply's last byte
	noise bool // a FaultNoisy burst
}

// submit makes p the reply to stream, replacing any other.
func (w *replyWriter) submit(p *pendingReply) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	p.sent, p.next = 0, p.byteDue(0)
	w.cur = p
	if w.closed {
		return nil
	}
	return w.timer.wake()
}

// cancel withdraws the reply being streamed, with its noise burst: the master sent
// something. It returns the reply when bytes of it were still unwritten, else nil.
func (w *replyWriter) cancel() *pendingReply {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.cur
	w.cur = nil
	if p != nil && p.sent < len(p.adu) {
		return p
	}
	return nil
}

// run streams the submitted replies until ctx ends (nil) or the port or the timer
// fails (the error, wrapped, naming the bus). It closes the timer.
func (w *replyWriter) run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if !w.closed {
			_ = w.timer.wake()
		}
	})
	defer stop()
	defer func() {
		w.mu.Lock()
		w.closed = true
		_ = w.timer.close()
		w.mu.Unlock()
	}()
	for {
		w.mu.Lock()
		if ctx.Err() != nil {
			w.mu.Unlock()
			return nil
		}
		c, at, precise := w.next(time.Now())
		if c.data == nil {
			wakeAt := at
			if precise {
				wakeAt = at.Add(-spinLead)
			}
			err := w.timer.set(wakeAt)
			w.mu.Unlock()
			if err == nil {
				err = w.timer.wait()
			}
			if err != nil {
				return fmt.Errorf("slave: bus %s: reply timer: %w", w.s.cfg.Bus, err)
			}
			if d := time.Until(at); precise && d > 0 && d <= spinLead {
				for time.Now().Before(at) { // the last few µs: spin (see spinLead)
				}
			}
			continue
		}
		w.mu.Unlock()
		if err := w.write(ctx, c); err != nil {
			return err
		}
	}
}

// next returns the chunk to write at now, or (no data) the instant to wait for — zero
// when there is nothing to send — and whether that instant is one a master times (the
// first or the last byte of a reply), worth a spin to meet it. It commits the chunk:
// the bytes count as sent. Called with mu held.
func (w *replyWriter) next(now time.Time) (c chunk, at time.Time, precise bool) {
	p := w.cur
	if p == nil {
		return chunk{}, time.Time{}, false
	}
	if n := len(p.adu); p.sent < n {
		if now.Before(p.next) {
			return chunk{}, p.next, p.sent == 0 || !p.next.Before(p.byteDue(n-1))
		}
		k := p.sent
		for k < n && !p.byteDue(k).After(now) {
			k++
		}
		if k == p.sent { // not due yet (a timer that woke early)
			p.next = p.byteDue(k)
			return chunk{}, p.next, k == 0 || k == n-1
		}
		c = chunk{p: p, data: p.adu[p.sent:k], final: k == n}
		p.sent = k
		switch {
		case k < n:
			// Every period, with at least the next byte due, and the last chunk exactly
			// when the last byte is.
			p.next = p.next.Add(w.period)
			if due := p.byteDue(k); p.next.Before(due) {
				p.next = due
			}
			if last := p.byteDue(n - 1); p.next.After(last) {
				p.next = last
			}
		case len(p.noise) > 0:
			// The burst's characters follow a silence of t1.5 after the reply's last
			// byte; it is written when its last character is complete.
			p.next = p.byteDue(n - 1).Add(w.t15 + WireTime(len(p.noise), p.baud))
		default:
			w.cur = nil
		}
		if c.final {
			// Counted before the write returns, so that a master holding the whole
			// reply sees it counted.
			p.u.replies.Add(1)
		}
		return c, time.Time{}, false
	}
	if now.Before(p.next) {
		return chunk{}, p.next, false
	}
	w.cur = nil
	if now.Sub(p.next) > maxNoiseLateness {
		// A stalled writer: by now the master may have sent its next request, which the
		// reader has not seen yet; a burst written now could land in the next
		// transaction instead of between the two.
		w.s.log.Debug("noise burst dropped: due long ago", "unit", p.u.id, "late", now.Sub(p.next))
		return chunk{}, time.Time{}, false
	}
	return chunk{p: p, data: p.noise, noise: true}, time.Time{}, false
}

// write writes one chunk, bounded by WriteTimeout. A timeout is logged (the peer is not
// reading), abandons the reply and is not fatal.
func (w *replyWriter) write(ctx context.Context, c chunk) error {
	s := w.s
	if err := w.port.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout)); err != nil {
		return fmt.Errorf("slave: bus %s: set write deadline: %w", s.cfg.Bus, err)
	}
	if ctx.Err() != nil {
		return nil
	}
	_, err := w.port.Write(c.data)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		w.mu.Lock()
		if w.cur == c.p {
			w.cur = nil
		}
		w.mu.Unlock()
		if c.final {
			c.p.u.replies.Add(^uint64(0)) // not written after all
		}
		s.log.Warn("reply write timed out: nobody reads the bus", "unit", c.p.u.id, "err", err)
		if s.cfg.OnWriteTimeout != nil {
			if ferr := s.cfg.OnWriteTimeout(); ferr != nil {
				s.log.Warn("flushing stale input failed", "err", ferr)
			}
		}
		return nil
	}
	what := "reply"
	if c.noise {
		what = "noise burst"
	}
	return fmt.Errorf("slave: bus %s: unit %d: write %s: %w", s.cfg.Bus, c.p.u.id, what, err)
}

package gateway

import (
	"container/heap"
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rollcall-edge/rollcall/protocols/modbus"
)

// Timing and sizing of the shared poller.
const (
	// maxPollSlack caps how late the shared poller lets a master's step start (its
	// slack: a sixteenth of its poll interval, at most this), so that one wake-up
	// starts every step due by then: at 1000 endpoints polled at 1 Hz, about 20. Their
	// requests go out together and their replies are read after one wait, instead of
	// one wait (a sleep and a wake-up of the process) each. A sixteenth of the interval
	// leaves the polling rate and the detect budget (which allows a whole timeout of
	// waiting) all but untouched.
	maxPollSlack = 20 * time.Millisecond
	// maxPollSteps bounds the steps running at once: up to this many endpoints can be
	// inside a timeout (a dead or hung endpoint: 500 ms by default) at once before the
	// steps of the others wait for them.
	maxPollSteps = 256
)

// sharedPoller runs the Modbus TCP masters of a gateway without a goroutine each. The
// masters wait in a heap by the time their next step must start: when it is due
// (master.step) plus the master's slack (maxPollSlack). One goroutine (run) sleeps until
// the earliest of those times, then starts every step that is due, each in a goroutine
// of its own that runs the master until nothing more is due for it, puts it back in the
// heap and ends. So a healthy plant has one goroutine plus those of the steps in
// progress (a round trip each), one timer, and one wake-up per batch of steps, whose
// requests are all sent before their replies are waited for (a goroutine per step,
// not a pool of workers: a pool kept the stacks of a burst, such as the registrations
// at start, for its idle time, for about 1 µs less per poll). A master is never stepped
// twice at once, and a step stuck in an endpoint's timeout holds up nothing but its
// endpoint (up to maxPollSteps steps at once). Every goroutine of the poller ends with
// the ctx given to run, which also closes every master (its client and metrics).
type sharedPoller struct {
	kick chan struct{} // 1-buffered: run should look at the heap again

	mu       sync.Mutex
	queue    pollQueue // masters waiting for their next step
	running  int       // steps in progress
	asleep   bool      // run sleeps until sleepEnd (or a kick)
	sleepEnd time.Time
	closed   bool           // run's ctx ended: masters added now are closed at once
	wg       sync.WaitGroup // steps in progress
}

// polledMaster is one master scheduled by a sharedPoller.
type polledMaster struct {
	m      *master
	client modbus.Client // nil until opened by the first step
	slack  time.Duration // how late its steps may start (maxPollSlack)
	wake   time.Time     // when its next step is due; valid while queued
	start  time.Time     // wake + slack: when it must start, its place in the heap
	index  int           // position in the heap; -1 when not queued
	stop   atomic.Bool   // removed: close it after its step in progress, if any
	done   chan struct{} // closed once it is closed
}

func newSharedPoller() *sharedPoller {
	return &sharedPoller{kick: make(chan struct{}, 1)}
}

// add schedules m, due at once; the returned func stops it (waiting for its step in
// progress, if any, to end) and closes it, then closes done. It may be called before
// run; after run's ctx ended, m is closed at once.
func (p *sharedPoller) add(m *master, done chan struct{}) (stop func()) {
	e := &polledMaster{m: m, index: -1, done: done, slack: min(m.cfg.PollInterval/16, maxPollSlack)}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.finish(e)
		return func() {}
	}
	p.pushLocked(e, time.Now())
	p.mu.Unlock()
	return func() { p.remove(e) }
}

// remove stops e: at once when it is queued, else its step closes it when it ends.
func (p *sharedPoller) remove(e *polledMaster) {
	p.mu.Lock()
	if e.stop.Swap(true) {
		p.mu.Unlock()
		<-e.done
		return
	}
	queued := e.index >= 0
	if queued {
		heap.Remove(&p.queue, e.index)
	}
	p.mu.Unlock()
	if queued {
		p.finish(e)
	}
	<-e.done
}

// finish closes e's master if it was opened, and signals done.
func (p *sharedPoller) finish(e *polledMaster) {
	if e.client != nil {
		e.m.end(e.client)
	}
	close(e.done)
}

// pushLocked queues e for its next step at wake, waking run if it sleeps past the
// step's start. p.mu held.
func (p *sharedPoller) pushLocked(e *polledMaster, wake time.Time) {
	e.wake, e.start = wake, wake.Add(e.slack)
	heap.Push(&p.queue, e)
	if e.index == 0 && (!p.asleep || e.start.Before(p.sleepEnd)) {
		p.poke()
	}
}

// poke wakes run without blocking.
func (p *sharedPoller) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// run starts the due steps until ctx ends, then waits for the steps in progress and
// closes every master.
func (p *sharedPoller) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		p.mu.Lock()
		now := time.Now()
		for len(p.queue) > 0 && !p.queue[0].wake.After(now) && p.running < maxPollSteps {
			e := heap.Pop(&p.queue).(*polledMaster)
			p.running++
			p.wg.Add(1)
			go p.step(ctx, e)
		}
		// Sleep until the earliest start; with maxPollSteps running, until a step ends
		// (it kicks). The heap is ordered by start, so a master due now whose start is
		// later than the top's may wait for it: still in time.
		p.asleep, p.sleepEnd = true, now.Add(time.Hour)
		if len(p.queue) > 0 && p.running < maxPollSteps {
			p.sleepEnd = p.queue[0].start
		}
		p.mu.Unlock()
		timer.Reset(p.sleepEnd.Sub(now))
		select {
		case <-ctx.Done():
			p.shutdown()
			return
		case <-timer.C:
		case <-p.kick:
		}
		p.mu.Lock()
		p.asleep = false
		p.mu.Unlock()
	}
}

// step runs e's master until its next step is in the future (opening it first), then
// queues it again, or closes it when it was removed or ctx ended.
func (p *sharedPoller) step(ctx context.Context, e *polledMaster) {
	defer p.wg.Done()
	var wake time.Time
	if e.client == nil && !e.stop.Load() {
		// TCP masters open without I/O (modbus.NewTCP dials at the first request).
		if c, err := e.m.begin(ctx); err == nil {
			e.client = c
		}
	}
	if e.client != nil {
		for ctx.Err() == nil && !e.stop.Load() {
			if wake = e.m.step(ctx, e.client); wake.After(time.Now()) {
				break
			}
		}
	}
	p.mu.Lock()
	full := p.running == maxPollSteps
	p.running--
	if e.client == nil || e.stop.Load() || p.closed || ctx.Err() != nil {
		p.mu.Unlock()
		p.finish(e)
		return
	}
	p.pushLocked(e, wake)
	if full {
		p.poke() // due masters may have waited for a free step
	}
	p.mu.Unlock()
}

// shutdown waits for the steps in progress (they end with ctx) and closes the masters
// left in the heap.
func (p *sharedPoller) shutdown() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.wg.Wait()
	p.mu.Lock()
	left := p.queue
	p.queue = nil
	for _, e := range left {
		e.index = -1
		e.stop.Store(true)
	}
	p.mu.Unlock()
	for _, e := range left {
		p.finish(e)
	}
}

// pollQueue is a min-heap of masters by start time (container/heap).
type pollQueue []*polledMaster

func (q pollQueue) Len() int           { return len(q) }
func (q pollQueue) Less(i, j int) bool { return q[i].start.Before(q[j].start) }
func (q pollQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}

// Push implements heap.Interface.
func (q *pollQueue) Push(x any) {
	e := x.(*polledMaster)
	e.index = len(*q)
	*q = append(*q, e)
}

// Pop implements heap.Interface.
func (q *pollQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*q = old[:len(old)-1]
	return e
}

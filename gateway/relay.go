package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rollcall-edge/rollcall/gateway/router"
	"github.com/rollcall-edge/rollcall/protocols/modbus"
)

// relayBurst is how far routed requests may run ahead of their share of bus time
// (masterConfig.RelayShare) before it holds them back: back to back, they get the bus
// for relayBurst / (1 − share) (200 ms at share 0.5). A client that reads now and then
// gets the bus at once, one that reads without pause gets RelayShare of it.
const relayBurst = 100 * time.Millisecond

// maxRelayQueue bounds the routed requests waiting for one RTU master: beyond it a
// client gets exception 0x06 (router.ErrBusy) at once. At 115200 baud a queue this long
// is about 100 ms of bus time.
const maxRelayQueue = 16

// errSuspect fails a routed request at once, unsent: its device missed its last poll, or
// its last routed request, and has not answered since. The router retries a read on
// another instance without waiting out a timeout of its own.
var errSuspect = errors.New("the device missed its last poll and has not answered since: not sent")

// relayReq is a routed request waiting for an RTU master.
type relayReq struct {
	ctx     context.Context // the client's request: past its end, it is not started
	unit    byte
	pdu     []byte
	reply   []byte
	err     error
	started atomic.Bool   // the master began it: it reached the bus
	done    chan struct{} // closed once reply and err are set
}

// forward runs a routed request on the master: on RTU through its queue, served by its
// own goroutine between heartbeat polls (step); on TCP on its connection, one routed
// request at a time. Errors: router.ErrBusy (wrapped) when the queue is full or the
// request could not start before ctx ended; ErrClosed when the master is closed; else
// those of modbus.Client.Transact.
func (m *master) forward(ctx context.Context, unit byte, pdu []byte) ([]byte, error) {
	if m.cfg.Baud == 0 {
		select {
		case m.relaySem <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: %w (%w)", m.cfg.Name, router.ErrBusy, ctx.Err())
		}
		defer func() { <-m.relaySem }()
		c := m.client.Load()
		if c == nil {
			return nil, fmt.Errorf("%s: %w", m.cfg.Name, modbus.ErrClosed)
		}
		start := time.Now()
		reply, err := (*c).Transact(ctx, unit, pdu)
		m.stats.Relayed(time.Since(start))
		return reply, err
	}
	r := &relayReq{ctx: ctx, unit: unit, pdu: pdu, done: make(chan struct{})}
	select {
	case m.relayQ <- r:
	default:
		return nil, fmt.Errorf("%s: %w (%d queued)", m.cfg.Name, router.ErrBusy, maxRelayQueue)
	}
	select {
	case m.relayKick <- struct{}{}:
	default:
	}
	select {
	case <-r.done:
		return r.reply, r.err
	case <-ctx.Done():
		if !r.started.Load() {
			// It never reached the bus: busy, not a failure of the device (0x06).
			return nil, fmt.Errorf("%s: %w (waited for the bus: %w)", m.cfg.Name, router.ErrBusy, context.Cause(ctx))
		}
		return nil, fmt.Errorf("%s: %w", m.cfg.Name, context.Cause(ctx))
	}
}

// takeRelays moves the routed requests queued since the last step into m.relays (the
// master's goroutine), at most maxRelayQueue in all: the rest stay in relayQ, which
// then fills, and new requests get ErrBusy at once.
func (m *master) takeRelays() { m.drainRelays(maxRelayQueue) }

// drainRelays moves queued routed requests into m.relays until it holds max.
func (m *master) drainRelays(max int) {
	for len(m.relays) < max {
		select {
		case r := <-m.relayQ:
			m.relays = append(m.relays, r)
		default:
			return
		}
	}
}

// relay runs the oldest routed request (the master's goroutine, RTU) with the bus's
// timeout and the shortest resync; not at all, and failed at once (errSuspect), when its device is
// suspect: it missed its last poll or routed request. Routed requests draw on a budget of bus time that refills at
// RelayShare of the time passing, up to relayBurst (a token bucket, busBudget): once it
// is spent, the next one waits until it is positive again, so that over time they take
// at most RelayShare of the bus. A request whose client gave up is dropped unsent. A request
// that got no valid reply (a timeout, a garbled reply) makes its device suspect, if it
// is one of the master's: its heartbeat poll is retried at once.
func (m *master) relay(c modbus.Client) {
	r := m.relays[0]
	m.relays[0] = nil
	m.relays = m.relays[1:]
	if err := r.ctx.Err(); err != nil {
		r.err = fmt.Errorf("%s: %w (waited for the bus: %w)", m.cfg.Name, router.ErrBusy, err)
		close(r.done)
		return
	}
	if d := m.known[int(r.unit)]; d != nil && (d.failures > 0 || d.retry) {
		r.err = fmt.Errorf("%s unit %d: %w", m.cfg.Name, r.unit, errSuspect)
		close(r.done)
		return
	}
	r.started.Store(true)
	start := time.Now()
	// The bus's timeout covers the slowest device: after it, only the resync the spec
	// needs (modbus.WithResync), as for sweep probes.
	r.reply, r.err = c.Transact(r.ctx, r.unit, r.pdu, modbus.WithResync(time.Nanosecond))
	close(r.done)
	now := time.Now()
	m.stats.Relayed(now.Sub(start))
	// A late reply (or the rest of one) may run into the next poll: not line noise.
	m.failedTx = r.err != nil && !modbus.IsAnswer(r.err)
	if r.err != nil && !modbus.IsAnswer(r.err) && r.ctx.Err() == nil && !errors.Is(r.err, modbus.ErrInvalidRequest) {
		if d := m.known[int(r.unit)]; d != nil {
			d.retry = true
		}
	}
	m.relayBudget.spend(start, now, m.cfg.RelayShare)
	m.nextRelay = m.relayBudget.positiveAt(now, m.cfg.RelayShare)
}

// busBudget is a token bucket of bus time: it refills at a share of the time passing,
// up to relayBurst, and is spent by the bus time requests take. Its zero value is full.
type busBudget struct {
	owed time.Duration // relayBurst minus the budget left (0: full)
	at   time.Time     // when owed was last brought up to date
}

// spend brings the budget up to date at start (it refills while no request runs, up to
// full) and takes a request that ran from start to end: the bus time it took, less
// what refilled meanwhile.
func (b *busBudget) spend(start, end time.Time, share float64) {
	if !b.at.IsZero() {
		b.owed = max(0, b.owed-time.Duration(float64(start.Sub(b.at))*share))
	}
	d := end.Sub(start)
	b.owed += d - time.Duration(float64(d)*share)
	b.at = end
}

// positiveAt is when the budget is above zero again: now, if it is.
func (b *busBudget) positiveAt(now time.Time, share float64) time.Time {
	over := b.owed - relayBurst
	if over < 0 {
		return now
	}
	return later(now, b.at.Add(time.Duration(float64(over)/share)+time.Nanosecond))
}

// failRelays ends every routed request queued for the master with err (it closed).
func (m *master) failRelays(err error) {
	m.drainRelays(maxRelayQueue + cap(m.relayQ)) // every one queued
	for _, r := range m.relays {
		r.err = fmt.Errorf("%s: %w", m.cfg.Name, err)
		close(r.done)
	}
	m.relays = nil
}

// masterDir finds the open master of a registry owner ("rtu:<bus>", "tcp:<host:port>")
// for routed requests. Masters add themselves when they open and remove themselves
// when they close. Safe for concurrent use.
type masterDir struct {
	mu sync.RWMutex
	m  map[string]*master
}

func newMasterDir() *masterDir { return &masterDir{m: map[string]*master{}} }

func (d *masterDir) add(owner string, m *master) {
	d.mu.Lock()
	d.m[owner] = m
	d.mu.Unlock()
}

// remove forgets owner's master if it is still m (a new master of the same owner may
// have opened meanwhile).
func (d *masterDir) remove(owner string, m *master) {
	d.mu.Lock()
	if d.m[owner] == m {
		delete(d.m, owner)
	}
	d.mu.Unlock()
}

// get returns owner's open master, or nil (also on a nil directory: routing is off).
func (d *masterDir) get(owner string) *master {
	if d == nil {
		return nil
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.m[owner]
}

package gateway

import (
	"container/heap"
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/gateway/metrics"
	"github.com/rollcall-edge/rollcall/protocols/modbus"
	"github.com/rollcall-edge/rollcall/registry"
)

// stubClient is an endpoint where nobody answers: every request fails with
// modbus.ErrTimeout, at once or after hang (until its ctx ends or Close).
type stubClient struct {
	hang     time.Duration
	requests atomic.Int64
	closed   chan struct{}
	once     sync.Once
}

func newStubClient(hang time.Duration) *stubClient {
	return &stubClient{hang: hang, closed: make(chan struct{})}
}

func (c *stubClient) request(ctx context.Context) error {
	c.requests.Add(1)
	if c.hang > 0 {
		select {
		case <-time.After(c.hang):
		case <-ctx.Done():
			return ctx.Err()
		case <-c.closed:
			return modbus.ErrClosed
		}
	}
	return fmt.Errorf("stub: %w", modbus.ErrTimeout)
}

func (c *stubClient) ReadRegisters(ctx context.Context, _ byte, _ byte, _, _ uint16, _ ...modbus.RequestOption) ([]uint16, error) {
	return nil, c.request(ctx)
}
func (c *stubClient) WriteRegister(ctx context.Context, _ byte, _, _ uint16, _ ...modbus.RequestOption) error {
	return c.request(ctx)
}
func (c *stubClient) WriteRegisters(ctx context.Context, _ byte, _ uint16, _ []uint16, _ ...modbus.RequestOption) error {
	return c.request(ctx)
}
func (c *stubClient) ReadDeviceIdentification(ctx context.Context, _ byte, _ byte, _ ...modbus.RequestOption) (*modbus.DeviceIdentification, error) {
	return nil, c.request(ctx)
}
func (c *stubClient) Transact(ctx context.Context, _ byte, _ []byte, _ ...modbus.RequestOption) ([]byte, error) {
	return nil, c.request(ctx)
}
func (c *stubClient) Timeout() time.Duration { return 500 * time.Millisecond }
func (c *stubClient) Resync() time.Duration  { return 0 }
func (c *stubClient) Counters() modbus.Counters {
	return modbus.Counters{Requests: uint64(c.requests.Load())}
}
func (c *stubClient) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *stubClient) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// stubMaster is a Modbus TCP master whose one unit is probed every 20 ms on c.
func stubMaster(t *testing.T, name string, c *stubClient, reg *registry.Registry, mx *metrics.Metrics) *master {
	t.Helper()
	mc := masterConfig{
		Name: name, Owner: "tcp:" + name, IDScope: name, Units: []int{1},
		PollInterval: 100 * time.Millisecond, Timeout: 500 * time.Millisecond, ProbeShare: 0.2, CyclePause: 20 * time.Millisecond,
		Endpoint: func(unit int) contract.Endpoint {
			return contract.Endpoint{Transport: "modbus-tcp", Host: name, Unit: unit}
		},
		Open: func() (modbus.Client, error) { return c, nil },
	}
	return newMaster(mc, hints{}, "gw", nil, reg, mx, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// TestSharedPoller: a hung endpoint (each request blocks 300 ms) delays only itself;
// goroutines come and go with the steps in progress, none is kept per endpoint; a removed
// endpoint is closed and stops; the end of ctx closes every endpoint and leaves no
// goroutine behind (TestMain's goleak).
func TestSharedPoller(t *testing.T) {
	reg := registry.New(registry.Options{Gateway: "gw", Epoch: 1, Policy: registry.DefaultPolicy()})
	mx := metrics.New(metrics.Options{})
	p := newSharedPoller()
	const n = 200
	clients := make([]*stubClient, n)
	stops := make([]func(), n)
	dones := make([]chan struct{}, n)
	for i := range n {
		hang := time.Duration(0)
		if i < 3 {
			hang = 300 * time.Millisecond // hung endpoints
		}
		clients[i] = newStubClient(hang)
		dones[i] = make(chan struct{})
		stops[i] = p.add(stubMaster(t, fmt.Sprintf("10.0.%d.%d:502", i/250, i%250), clients[i], reg, mx), dones[i])
	}
	ctx, cancel := context.WithCancel(context.Background())
	before := runtime.NumGoroutine()
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		p.run(ctx)
	}()

	// Healthy endpoints are probed every 20 ms: about 25 times in 500 ms, while three
	// are stuck in 300 ms requests.
	time.Sleep(500 * time.Millisecond)
	for i := 3; i < n; i++ {
		if r := clients[i].requests.Load(); r < 10 {
			t.Errorf("endpoint %d: %d requests in 500 ms, want about 25 (every 20 ms)", i, r)
		}
	}
	for i := range 3 {
		if r := clients[i].requests.Load(); r < 1 || r > 3 {
			t.Errorf("hung endpoint %d: %d requests in 500 ms, want 1 or 2", i, r)
		}
	}
	// Stop all but 20 endpoints (the 3 hung ones included): then at most the
	// scheduler and a goroutine per step of a batch of at most 20 are left, at any time.
	for i := 20; i < n; i++ {
		stops[i]()
	}
	most := 0
	for range 100 {
		most = max(most, runtime.NumGoroutine()-before)
		time.Sleep(time.Millisecond)
	}
	if most > 21 {
		t.Errorf("%d goroutines at some time over 100 ms for 20 endpoints left of %d, want at most 21", most, n)
	}

	// Removing a hung endpoint (waits for its step to end) and a healthy one.
	for _, i := range []int{0, 10} {
		start := time.Now()
		stops[i]()
		if !clients[i].isClosed() {
			t.Errorf("endpoint %d not closed after stop", i)
		}
		if el := time.Since(start); el > time.Second {
			t.Errorf("stopping endpoint %d took %v", i, el)
		}
		r := clients[i].requests.Load()
		time.Sleep(60 * time.Millisecond)
		if r2 := clients[i].requests.Load(); r2 != r {
			t.Errorf("endpoint %d: %d requests after stop", i, r2-r)
		}
	}
	stops[0]() // twice: no effect

	cancel()
	<-ran
	for i, d := range dones {
		select {
		case <-d:
		default:
			t.Fatalf("endpoint %d not done after the end of ctx", i)
		}
		if !clients[i].isClosed() {
			t.Errorf("endpoint %d not closed after the end of ctx", i)
		}
	}
	// Added after the end: closed at once.
	late := make(chan struct{})
	p.add(stubMaster(t, "10.9.9.9:502", newStubClient(0), reg, mx), late)
	<-late
}

// TestPollSlack: a step may start up to its master's slack late (a sixteenth of its
// poll interval, at most maxPollSlack), and the heap orders masters by that latest
// start, so a master with a short interval is not held up by one with a long slack due
// just before it.
func TestPollSlack(t *testing.T) {
	reg := registry.New(registry.Options{Gateway: "gw", Epoch: 1, Policy: registry.DefaultPolicy()})
	mx := metrics.New(metrics.Options{})
	p := newSharedPoller()
	slow := stubMaster(t, "10.0.0.1:502", newStubClient(0), reg, mx)
	slow.cfg.PollInterval = time.Second
	fast := stubMaster(t, "10.0.0.2:502", newStubClient(0), reg, mx)
	fast.cfg.PollInterval = 16 * time.Millisecond
	ds, df := make(chan struct{}), make(chan struct{})
	stopSlow, stopFast := p.add(slow, ds), p.add(fast, df)
	defer stopSlow()
	defer stopFast()
	es, ef := p.queue[0], p.queue[1]
	if es.m != slow {
		es, ef = ef, es
	}
	if es.slack != maxPollSlack || ef.slack != time.Millisecond {
		t.Fatalf("slack %v and %v, want %v (1 s / 16, capped) and 1ms (16 ms / 16)", es.slack, ef.slack, maxPollSlack)
	}
	t0 := time.Now()
	p.mu.Lock()
	heap.Remove(&p.queue, es.index)
	heap.Remove(&p.queue, ef.index)
	p.pushLocked(es, t0)
	p.pushLocked(ef, t0.Add(time.Millisecond))
	top := p.queue[0]
	p.mu.Unlock()
	if top != ef || !ef.start.Equal(t0.Add(2*time.Millisecond)) || !es.start.Equal(t0.Add(maxPollSlack)) {
		t.Errorf("top of the heap is %s (start %v after t0), want the fast master (start 2ms after t0; the slow one's %v)",
			top.m.cfg.Name, top.start.Sub(t0), es.start.Sub(t0))
	}
}

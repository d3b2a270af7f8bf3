package router

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rollcall-edge/rollcall/protocols/modbus"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeCatalog is a catalog of instances whose Forward answers as told.
type fakeCatalog struct {
	mu      sync.Mutex
	targets []Target
	answer  map[string]func(ctx context.Context, pdu []byte) ([]byte, error)
	calls   []string // instance ids forwarded to, in order
}

func (c *fakeCatalog) Live(string, map[string]string) []Target {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Target(nil), c.targets...)
}

func (c *fakeCatalog) Forward(ctx context.Context, id string, pdu []byte) ([]byte, error) {
	c.mu.Lock()
	c.calls = append(c.calls, id)
	f := c.answer[id]
	c.mu.Unlock()
	if f == nil {
		return nil, fmt.Errorf("instance %s: %w", id, modbus.ErrTimeout)
	}
	return f(ctx, pdu)
}

func (c *fakeCatalog) forwarded() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.calls...)
}

// echo answers a read with a fixed reply naming the instance.
func echo(id string) func(context.Context, []byte) ([]byte, error) {
	return func(_ context.Context, pdu []byte) ([]byte, error) {
		return append([]byte{pdu[0], byte(len(id))}, id...), nil
	}
}

func failing(context.Context, []byte) ([]byte, error) { return nil, modbus.ErrTimeout }

// observed records what the router reports.
type observed struct {
	mu        sync.Mutex
	outcomes  []Outcome
	failovers int
}

func (o *observed) Routed(_ byte, out Outcome, _ byte, _ time.Duration) {
	o.mu.Lock()
	o.outcomes = append(o.outcomes, out)
	o.mu.Unlock()
}

func (o *observed) Failover(byte) {
	o.mu.Lock()
	o.failovers++
	o.mu.Unlock()
}

func newRouter(t *testing.T, cat Catalog, obs Observer, routes ...Route) *Router {
	t.Helper()
	rt, err := New(Options{Routes: routes, Catalog: cat, Observer: obs, RequestTimeout: 5 * time.Second,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

var readHolding = []byte{0x03, 0x00, 0x00, 0x00, 0x02}

// TestHandle covers the router's own answers and the relaying of the device's.
func TestHandle(t *testing.T) {
	cat := &fakeCatalog{
		targets: []Target{{ID: "b", Passing: true}, {ID: "a", Passing: true}, {ID: "c", Passing: false}},
		answer: map[string]func(context.Context, []byte) ([]byte, error){
			"a": echo("a"), "b": echo("b"), "c": echo("c"),
		},
	}
	obs := &observed{}
	rt := newRouter(t, cat, obs,
		Route{Unit: 1, Service: "servo-drive"},
		Route{Unit: 2, Service: "servo-drive", Writes: true})
	ctx := context.Background()
	tests := []struct {
		name string
		unit byte
		pdu  []byte
		want []byte
	}{
		{"read, sticky: first passing by id", 1, readHolding, []byte{0x03, 1, 'a'}},
		{"no route", 9, readHolding, []byte{0x83, ExPathUnavailable}},
		{"function not relayable", 1, []byte{0x08, 0, 0, 0, 0}, []byte{0x88, ExIllegalFunction}},
		{"exception bit set", 1, []byte{0x83, 0, 0, 0, 0}, []byte{0x83, ExIllegalFunction}},
		{"write refused", 1, []byte{0x06, 0, 1, 0, 3}, []byte{0x86, ExIllegalFunction}},
		{"FC23 is a write", 1, []byte{0x17, 0, 3, 0, 1, 0, 14, 0, 1, 2, 0, 0xFF}, []byte{0x97, ExIllegalFunction}},
		{"write allowed", 2, []byte{0x06, 0, 1, 0, 3}, []byte{0x06, 1, 'a'}},
		{"short request", 1, []byte{0x03, 0, 0, 0}, []byte{0x83, ExIllegalDataValue}},
		{"long request", 1, []byte{0x03, 0, 0, 0, 1, 0}, []byte{0x83, ExIllegalDataValue}},
	}
	for _, tt := range tests {
		if got := rt.Handle(ctx, tt.unit, tt.pdu); !bytes.Equal(got, tt.want) {
			t.Errorf("%s: % X, want % X", tt.name, got, tt.want)
		}
	}
	// The device's exception is relayed as it came.
	cat.answer["a"] = func(context.Context, []byte) ([]byte, error) {
		return nil, &modbus.ExceptionError{Function: 3, Code: 2}
	}
	if got := rt.Handle(ctx, 1, readHolding); !bytes.Equal(got, []byte{0x83, 0x02}) {
		t.Errorf("device exception: % X, want 83 02", got)
	}
	// A busy master: 0x06, not retried elsewhere.
	n := len(cat.forwarded())
	cat.answer["a"] = func(context.Context, []byte) ([]byte, error) { return nil, fmt.Errorf("bus1: %w", ErrBusy) }
	if got := rt.Handle(ctx, 1, readHolding); !bytes.Equal(got, []byte{0x83, ExServerBusy}) {
		t.Errorf("busy: % X, want 83 06", got)
	}
	if calls := cat.forwarded()[n:]; len(calls) != 1 {
		t.Errorf("busy: forwarded to %v, want once", calls)
	}
	// Nothing live: 0x0A.
	cat.mu.Lock()
	cat.targets = nil
	cat.mu.Unlock()
	if got := rt.Handle(ctx, 1, readHolding); !bytes.Equal(got, []byte{0x83, ExPathUnavailable}) {
		t.Errorf("none live: % X, want 83 0A", got)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.outcomes) != len(tests)+3 || obs.outcomes[0] != OutcomeOK || obs.outcomes[1] != OutcomeUnavailable ||
		obs.outcomes[2] != OutcomeRefused || obs.outcomes[len(obs.outcomes)-2] != OutcomeBusy {
		t.Errorf("outcomes observed: %v", obs.outcomes)
	}
}

// TestFailover: a read whose instance fails is retried once on another live one (and a
// sticky route stays with that one); a write is never retried; with no other live
// instance, or both failing, the client gets 0x0B.
func TestFailover(t *testing.T) {
	cat := &fakeCatalog{
		targets: []Target{{ID: "a", Passing: true}, {ID: "b", Passing: true}, {ID: "c", Passing: true}},
		answer: map[string]func(context.Context, []byte) ([]byte, error){
			"a": failing, "b": echo("b"), "c": failing,
		},
	}
	obs := &observed{}
	rt := newRouter(t, cat, obs, Route{Unit: 1, Service: "s", Writes: true})
	ctx := context.Background()
	if got := rt.Handle(ctx, 1, readHolding); !bytes.Equal(got, []byte{0x03, 1, 'b'}) {
		t.Errorf("failover read: % X, want 03 01 'b'", got)
	}
	if got := cat.forwarded(); fmt.Sprint(got) != "[a b]" {
		t.Errorf("forwarded to %v, want [a b]", got)
	}
	if got := rt.Handle(ctx, 1, readHolding); !bytes.Equal(got, []byte{0x03, 1, 'b'}) {
		t.Errorf("sticky after failover: % X", got)
	}
	// A write to a failing instance: 0x0B, once.
	cat.answer["b"] = failing
	before := len(cat.forwarded())
	if got := rt.Handle(ctx, 1, []byte{0x06, 0, 1, 0, 3}); !bytes.Equal(got, []byte{0x86, ExTargetFailed}) {
		t.Errorf("failed write: % X, want 86 0B", got)
	}
	if calls := cat.forwarded()[before:]; len(calls) != 1 {
		t.Errorf("write forwarded to %v, want one instance", calls)
	}
	// Both tried fail: 0x0B after exactly two.
	before = len(cat.forwarded())
	if got := rt.Handle(ctx, 1, readHolding); !bytes.Equal(got, []byte{0x83, ExTargetFailed}) {
		t.Errorf("both failing: % X, want 83 0B", got)
	}
	if calls := cat.forwarded()[before:]; len(calls) != 2 || calls[0] == calls[1] {
		t.Errorf("read forwarded to %v, want two different instances", calls)
	}
	// Only one live and it fails: 0x0B.
	cat.mu.Lock()
	cat.targets = cat.targets[:1]
	cat.mu.Unlock()
	if got := rt.Handle(ctx, 1, readHolding); !bytes.Equal(got, []byte{0x83, ExTargetFailed}) {
		t.Errorf("single failing: % X, want 83 0B", got)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.failovers != 2 {
		t.Errorf("failovers observed: %d, want 2", obs.failovers)
	}
}

// TestStrategies: passing instances before warning ones; round-robin cycles by id;
// lowest-rtt takes the fastest known.
func TestStrategies(t *testing.T) {
	targets := []Target{
		{ID: "c", Passing: true, RTT: 3 * time.Millisecond},
		{ID: "a", Passing: true},
		{ID: "b", Passing: true, RTT: 2 * time.Millisecond},
		{ID: "w", Passing: false, RTT: time.Millisecond},
	}
	pickN := func(s Strategy, n int, ts []Target) string {
		r := &routeState{Route: Route{Strategy: s}}
		var out []byte
		for range n {
			tg, ok := r.pick(ts, "")
			if !ok {
				return "none"
			}
			out = append(out, tg.ID...)
		}
		return string(out)
	}
	for _, tt := range []struct {
		s    Strategy
		ts   []Target
		want string
	}{
		{Sticky, targets, "aaaa"},
		{RoundRobin, targets, "abcab"},
		{LowestRTT, targets, "bb"},
		{LowestRTT, targets[3:], "w"}, // only a warning one: picked
		{Sticky, nil, "none"},
	} {
		if got := pickN(tt.s, len(tt.want), tt.ts); got != tt.want && !(tt.want == "none" && got == "none") {
			t.Errorf("%v: %s, want %s", tt.s, got, tt.want)
		}
	}
	for _, s := range []string{"", "sticky", "round-robin", "lowest-rtt", "random"} {
		if st, err := ParseStrategy(s); err != nil || (s != "" && st.String() != s) {
			t.Errorf("ParseStrategy(%q) = %v, %v", s, st, err)
		}
	}
	if _, err := ParseStrategy("fastest"); err == nil {
		t.Error("ParseStrategy(fastest): no error")
	}
}

// TestNewErrors: options that cannot work are refused.
func TestNewErrors(t *testing.T) {
	cat := &fakeCatalog{}
	for _, o := range []Options{
		{Routes: []Route{{Unit: 1, Service: "s"}}},
		{Catalog: cat},
		{Catalog: cat, Routes: []Route{{Unit: 0, Service: "s"}}},
		{Catalog: cat, Routes: []Route{{Unit: 1}}},
		{Catalog: cat, Routes: []Route{{Unit: 1, Service: "s"}, {Unit: 1, Service: "t"}}},
		{Catalog: cat, Routes: []Route{{Unit: 1, Service: "s"}}, MaxInFlight: -1},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v): no error", o)
		}
	}
}

// serve runs rt on a loopback listener until the test ends.
func serve(t *testing.T, rt *Router) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func adu(tid uint16, unit byte, pdu []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, tid)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(1+len(pdu)))
	return append(append(b, unit), pdu...)
}

func readADU(t *testing.T, c net.Conn) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	hdr := make([]byte, 7)
	if _, err := io.ReadFull(c, hdr); err != nil {
		t.Fatalf("read reply: %v", err)
	}
	rest := make([]byte, int(binary.BigEndian.Uint16(hdr[4:]))-1)
	if _, err := io.ReadFull(c, rest); err != nil {
		t.Fatalf("read reply: %v", err)
	}
	return append(hdr, rest...)
}

// TestServeMBAP: over a real TCP connection, pipelined requests are answered under
// their own transaction identifiers and unit identifier, with the device's reply PDU
// byte for byte; our Modbus TCP client reads through it; a malformed MBAP header closes
// the connection.
func TestServeMBAP(t *testing.T) {
	release := make(chan struct{})
	cat := &fakeCatalog{
		targets: []Target{{ID: "a", Passing: true}},
		answer: map[string]func(context.Context, []byte) ([]byte, error){
			"a": func(ctx context.Context, pdu []byte) ([]byte, error) {
				if pdu[2] == 0x10 { // the slow request
					select {
					case <-release:
					case <-ctx.Done():
						return nil, ctx.Err()
					}
				}
				return []byte{0x03, 0x04, 0x00, pdu[2], 0xBE, 0xEF}, nil
			},
		},
	}
	addr := serve(t, newRouter(t, cat, nil, Route{Unit: 17, Service: "s"}))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Two requests sent back to back; the first is held: the second's reply comes first.
	if _, err := c.Write(append(adu(0x1234, 17, []byte{0x03, 0x00, 0x10, 0x00, 0x02}), adu(0x1235, 17, []byte{0x03, 0x00, 0x20, 0x00, 0x02})...)); err != nil {
		t.Fatal(err)
	}
	if got, want := readADU(t, c), adu(0x1235, 17, []byte{0x03, 0x04, 0x00, 0x20, 0xBE, 0xEF}); !bytes.Equal(got, want) {
		t.Errorf("second reply % X, want % X", got, want)
	}
	close(release)
	if got, want := readADU(t, c), adu(0x1234, 17, []byte{0x03, 0x04, 0x00, 0x10, 0xBE, 0xEF}); !bytes.Equal(got, want) {
		t.Errorf("first reply % X, want % X", got, want)
	}
	// An independent client: rollcall's own Modbus TCP master.
	mc, err := modbus.NewTCP(modbus.TCPConfig{Address: addr, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	regs, err := mc.ReadRegisters(context.Background(), 17, modbus.FuncReadHoldingRegisters, 0x30, 2)
	if err != nil || len(regs) != 2 || regs[0] != 0x0030 || regs[1] != 0xBEEF {
		t.Errorf("ReadRegisters through the router: %04X, %v", regs, err)
	}
	// Protocol identifier 1: the connection is closed.
	bad := adu(1, 17, readHolding)
	bad[3] = 1
	if _, err := c.Write(bad); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 16)); !errors.Is(err, io.EOF) {
		t.Errorf("after a bad MBAP header: read %d bytes, %v; want EOF", n, err)
	}
}

// TestServeLimits: connections beyond max_client_connections are closed at once; a
// connection has at most max_in_flight requests answered at a time, the rest wait.
func TestServeLimits(t *testing.T) {
	var mu sync.Mutex
	inFlight, peak := 0, 0
	release := make(chan struct{})
	entered := make(chan struct{}, 8)
	cat := &fakeCatalog{
		targets: []Target{{ID: "a", Passing: true}},
		answer: map[string]func(context.Context, []byte) ([]byte, error){
			"a": func(ctx context.Context, pdu []byte) ([]byte, error) {
				mu.Lock()
				inFlight++
				peak = max(peak, inFlight)
				mu.Unlock()
				entered <- struct{}{}
				defer func() { mu.Lock(); inFlight--; mu.Unlock() }()
				select {
				case <-release:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				return []byte{0x03, 0x02, 0x00, 0x01}, nil
			},
		},
	}
	rt, err := New(Options{Routes: []Route{{Unit: 1, Service: "s"}}, Catalog: cat, MaxClientConnections: 2,
		MaxInFlight: 3, RequestTimeout: 10 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, rt)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// The third is closed by the server.
	_ = conns[2].SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := conns[2].Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("third connection from one client: %v, want EOF (refused)", err)
	}
	if st := rt.Stats(); st.Refused != 1 {
		t.Errorf("stats %+v, want 1 refused", st)
	}
	// Eight pipelined requests on one connection: three at a time.
	var reqs []byte
	for i := range 8 {
		reqs = append(reqs, adu(uint16(i), 1, readHolding)...)
	}
	if _, err := conns[0].Write(reqs); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d requests in flight, want 3", i)
		}
	}
	close(release)
	seen := map[uint16]bool{}
	for range 8 {
		seen[binary.BigEndian.Uint16(readADU(t, conns[0]))] = true
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 8 || peak != 3 {
		t.Errorf("replies to %d distinct transactions, peak %d in flight; want 8 and 3", len(seen), peak)
	}
}

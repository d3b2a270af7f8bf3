// Package router is rollcall's routing Modbus TCP server: server-side discovery for
// clients that speak Modbus TCP and not rollcall's MQTT contract (PLCs, HMIs, SCADA
// drivers). A client addresses a virtual unit ID; each virtual unit is bound to a
// selector (a service, meta pairs, a strategy); every request goes to a live instance
// picked from the gateway's catalog at that moment, and its reply is relayed byte for
// byte under the client's transaction identifier.
//
// The router does not reach devices itself: a Catalog gives it the live instances and
// forwards a request to one of them (the gateway's masters: an RS-485 bus's single
// master, which interleaves routed requests with its heartbeat polls, or the Modbus TCP
// connection the gateway already holds to the device).
//
// Exceptions the router answers itself (Modbus Application Protocol V1.1b3 §7):
//   - 0x01 illegal function: a function code it cannot relay (modbus.RelayableFunction),
//     or a write to a route that does not allow writes;
//   - 0x03 illegal data value: a request PDU whose length does not match its function
//     code (modbus.RequestPDULength);
//   - 0x06 server device busy: the instance's master has too many routed requests
//     queued, or none could be started within the request timeout;
//   - 0x0A gateway path unavailable: no route for the unit ID, or no live instance;
//   - 0x0B gateway target device failed to respond: the picked instance failed (a
//     timeout, a garbled reply, a lost connection) and, for a read, so did the one it
//     was retried on, or none other was live. A write is never retried.
//
// An exception reply from the device itself is relayed as it came.
package router

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/rollcall-edge/rollcall/protocols/modbus"
)

// Exception codes the router answers (Modbus Application Protocol V1.1b3 §7).
const (
	ExIllegalFunction  byte = 0x01
	ExIllegalDataValue byte = 0x03
	ExServerBusy       byte = 0x06
	ExPathUnavailable  byte = 0x0A
	ExTargetFailed     byte = 0x0B
)

// ErrBusy is returned (wrapped) by Catalog.Forward when the instance's master cannot
// take another routed request now (its queue is full): the client gets exception 0x06
// and may retry; it is not a failure of the instance.
var ErrBusy = errors.New("too many routed requests queued")

// Strategy chooses among the live instances of a route.
type Strategy int

// Strategies. Every strategy prefers passing instances to warning ones: a warning
// instance is picked only when none is passing.
const (
	// Sticky (the default) keeps using the instance it picked last while it is live,
	// and otherwise takes the first by id: a client sees one device until it fails.
	Sticky Strategy = iota
	// RoundRobin cycles through the live instances, ordered by id.
	RoundRobin
	// LowestRTT picks the instance with the lowest round trip of its last poll (0,
	// unknown, comes last); ties go to the first by id.
	LowestRTT
	// Random picks uniformly.
	Random
)

// ParseStrategy parses "sticky", "round-robin", "lowest-rtt" or "random" ("" is
// sticky). The error lists the choices.
func ParseStrategy(s string) (Strategy, error) {
	switch s {
	case "", "sticky":
		return Sticky, nil
	case "round-robin":
		return RoundRobin, nil
	case "lowest-rtt":
		return LowestRTT, nil
	case "random":
		return Random, nil
	}
	return 0, fmt.Errorf("expected sticky, round-robin, lowest-rtt or random, got %q", s)
}

// String returns the strategy's config name.
func (s Strategy) String() string {
	switch s {
	case Sticky:
		return "sticky"
	case RoundRobin:
		return "round-robin"
	case LowestRTT:
		return "lowest-rtt"
	case Random:
		return "random"
	}
	return fmt.Sprintf("Strategy(%d)", int(s))
}

// Route binds a virtual unit ID to a selector.
type Route struct {
	// Unit is the virtual unit ID clients address (MBAP unit identifier, 1–255).
	Unit byte
	// Service is the service of the instances it routes to.
	Service string
	// Meta pairs every instance it routes to must have (key=value, exactly).
	Meta map[string]string
	// Strategy chooses among the live instances.
	Strategy Strategy
	// Writes allows the write function codes (FC 05, 06, 15, 16, 22, 23); without it they
	// get exception 0x01.
	Writes bool
}

// Target is an instance a route may forward to, as Catalog.Live reports it.
type Target struct {
	ID      string
	Passing bool          // status passing; false: warning (a critical one is never a Target)
	RTT     time.Duration // round trip of its last poll; 0 unknown
}

// Catalog is what the router needs from the gateway.
type Catalog interface {
	// Live returns the instances of service that may take traffic now — not critical,
	// lease valid, not in maintenance — whose meta has every pair of meta, in any order.
	Live(service string, meta map[string]string) []Target
	// Forward relays request pdu to instance id and returns its reply PDU, as
	// modbus.Client.Transact does: an exception reply as *modbus.ExceptionError, ErrBusy
	// (wrapped) when its master's queue is full; any other error means the instance did
	// not answer (a timeout, a garbled reply, a lost connection, an instance gone).
	Forward(ctx context.Context, id string, pdu []byte) ([]byte, error)
}

// Outcome classifies a routed request for Observer.
type Outcome string

// Outcomes.
const (
	OutcomeOK          Outcome = "ok"          // a normal reply relayed
	OutcomeException   Outcome = "exception"   // the device's exception relayed
	OutcomeRefused     Outcome = "refused"     // 0x01 or 0x03 from the router
	OutcomeBusy        Outcome = "busy"        // 0x06 from the router
	OutcomeUnavailable Outcome = "unavailable" // 0x0A from the router
	OutcomeFailed      Outcome = "failed"      // 0x0B from the router
)

// Observer receives the router's measurements (gateway/metrics implements it). Its
// methods must be safe for concurrent use and must not block.
type Observer interface {
	// Routed reports one request to virtual unit unit: its outcome, the exception code
	// answered (0 for OutcomeOK) and the time from its arrival to its reply.
	Routed(unit byte, outcome Outcome, exception byte, d time.Duration)
	// Failover reports a read retried on another instance after the first failed.
	Failover(unit byte)
}

// routeState is a route and what its strategy remembers.
type routeState struct {
	Route
	mu   sync.Mutex
	last string // Sticky: the instance picked last
	next uint64 // RoundRobin: the next position
}

// pick chooses among cands (non-empty), excluding the id skip.
func (r *routeState) pick(cands []Target, skip string) (Target, bool) {
	pool := make([]Target, 0, len(cands))
	passing := false
	for _, c := range cands {
		if c.ID != skip {
			pool = append(pool, c)
			passing = passing || c.Passing
		}
	}
	if passing {
		pool = slices.DeleteFunc(pool, func(c Target) bool { return !c.Passing })
	}
	if len(pool) == 0 {
		return Target{}, false
	}
	slices.SortFunc(pool, func(a, b Target) int { return compareStrings(a.ID, b.ID) })
	r.mu.Lock()
	defer r.mu.Unlock()
	switch r.Strategy {
	case RoundRobin:
		t := pool[r.next%uint64(len(pool))]
		r.next++
		return t, true
	case LowestRTT:
		best := 0
		for i, c := range pool {
			if b := pool[best].RTT; c.RTT > 0 && (b <= 0 || c.RTT < b) {
				best = i
			}
		}
		return pool[best], true
	case Random:
		return pool[rand.IntN(len(pool))], true
	}
	for _, c := range pool {
		if c.ID == r.last {
			return c, true
		}
	}
	r.last = pool[0].ID
	return pool[0], true
}

// served tells a Sticky route which instance answered, so it stays with it.
func (r *routeState) served(id string) {
	if r.Strategy == Sticky {
		r.mu.Lock()
		r.last = id
		r.mu.Unlock()
	}
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// IsWrite reports whether function code fc writes (FC 05, 06, 15, 16, 22, 23; Modbus
// Application Protocol V1.1b3 §6): a route refuses it unless Route.Writes, and never
// retries it on another instance.
func IsWrite(fc byte) bool {
	switch fc {
	case modbus.FuncWriteSingleCoil, modbus.FuncWriteSingleRegister, modbus.FuncWriteMultipleCoils,
		modbus.FuncWriteMultipleRegisters, modbus.FuncMaskWriteRegister, modbus.FuncReadWriteMultipleRegs:
		return true
	}
	return false
}

// exception is the PDU of exception code for function fc.
func exception(fc, code byte) []byte { return []byte{fc | 0x80, code} }

// handle answers one request PDU for virtual unit unit and returns the reply PDU,
// the outcome and the exception code (0 for a normal reply).
func (rt *Router) handle(ctx context.Context, unit byte, pdu []byte) ([]byte, Outcome, byte) {
	fc := pdu[0]
	r := rt.routes[unit]
	switch {
	case r == nil:
		return exception(fc, ExPathUnavailable), OutcomeUnavailable, ExPathUnavailable
	case fc&0x80 != 0 || !modbus.RelayableFunction(fc):
		return exception(fc, ExIllegalFunction), OutcomeRefused, ExIllegalFunction
	case IsWrite(fc) && !r.Writes:
		return exception(fc, ExIllegalFunction), OutcomeRefused, ExIllegalFunction
	case modbus.RequestPDULength(pdu) != len(pdu):
		return exception(fc, ExIllegalDataValue), OutcomeRefused, ExIllegalDataValue
	}
	ctx, cancel := context.WithTimeout(ctx, rt.opts.RequestTimeout)
	defer cancel()
	first, ok := r.pick(rt.opts.Catalog.Live(r.Service, r.Meta), "")
	if !ok {
		return exception(fc, ExPathUnavailable), OutcomeUnavailable, ExPathUnavailable
	}
	reply, out, code, retry := rt.forward(ctx, r, first.ID, pdu)
	if !retry || IsWrite(fc) || ctx.Err() != nil {
		return reply, out, code
	}
	second, ok := r.pick(rt.opts.Catalog.Live(r.Service, r.Meta), first.ID)
	if !ok {
		return reply, out, code
	}
	if rt.opts.Observer != nil {
		rt.opts.Observer.Failover(unit)
	}
	reply, out, code, _ = rt.forward(ctx, r, second.ID, pdu)
	return reply, out, code
}

// forward relays pdu to instance id and classifies the result; retry reports a failure
// of the instance that another one might not have.
func (rt *Router) forward(ctx context.Context, r *routeState, id string, pdu []byte) (reply []byte, out Outcome, code byte, retry bool) {
	fc := pdu[0]
	reply, err := rt.opts.Catalog.Forward(ctx, id, pdu)
	var ex *modbus.ExceptionError
	switch {
	case err == nil:
		r.served(id)
		return reply, OutcomeOK, 0, false
	case errors.As(err, &ex):
		r.served(id)
		return exception(fc, ex.Code), OutcomeException, ex.Code, false
	case errors.Is(err, ErrBusy):
		return exception(fc, ExServerBusy), OutcomeBusy, ExServerBusy, false
	}
	rt.log.Debug("routed request failed", "instance", id, "function", fc, "err", err)
	return exception(fc, ExTargetFailed), OutcomeFailed, ExTargetFailed, true
}

package slave

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
)

// unit is one served device and its injected fault and counters.
type unit struct {
	id       byte
	dev      Device
	fault    Fault      // guarded by unitTable.mu
	rng      *rand.Rand // FaultNoisy's draws, seeded by setFault; guarded by unitTable.mu
	requests atomic.Uint64
	replies  atomic.Uint64
}

// unitTable holds the units of one bus or listener and their faults, shared by the RTU
// and TCP servers. kind ("bus" or "listener") and name name it in errors.
type unitTable struct {
	kind, name string
	owner      string // kind + " " + name

	mu    sync.Mutex
	units map[byte]*unit
}

func newUnitTable(kind, name string) unitTable {
	return unitTable{kind: kind, name: name, owner: kind + " " + name, units: make(map[byte]*unit)}
}

// add puts dev at unit ID id (1–247).
func (t *unitTable) add(id byte, dev Device) error {
	if id < 1 || id > 247 {
		return fmt.Errorf("slave: %s: unit %d: unit IDs are 1–247", t.owner, id)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, dup := t.units[id]; dup {
		return fmt.Errorf("slave: %s: unit %d: already on the %s", t.owner, id, t.kind)
	}
	t.units[id] = &unit{id: id, dev: dev}
	return nil
}

func (t *unitTable) setFault(id byte, f Fault) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("slave: %s: unit %d: %w", t.owner, id, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.units[id]
	if u == nil {
		return fmt.Errorf("slave: %s: unit %d: %w", t.owner, id, ErrUnknownUnit)
	}
	u.fault = f.Normalize()
	u.rng = nil
	if u.fault.Mode == FaultNoisy {
		seed := u.fault.Seed
		if seed == 0 {
			seed = rand.Uint64()
		}
		u.rng = rand.New(rand.NewPCG(seed, noisyStream))
	}
	return nil
}

// noisyStream is the PCG stream (increment) of FaultNoisy's generators: any constant.
const noisyStream = 0x9E3779B97F4A7C15

// noisyDraw draws FaultNoisy's outcomes for one reply of u: whether to corrupt it, and
// the garbage burst of 1–4 random bytes to send after it (nil: none), each with
// probability rate. Without a generator (the fault changed meanwhile) nothing happens.
func (t *unitTable) noisyDraw(u *unit, rate float64) (corrupt bool, burst []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if u.rng == nil {
		return false, nil
	}
	corrupt = u.rng.Float64() < rate
	if u.rng.Float64() < rate {
		burst = make([]byte, 1+u.rng.IntN(4))
		for i := range burst {
			burst[i] = byte(u.rng.Uint32())
		}
	}
	return corrupt, burst
}

func (t *unitTable) getFault(id byte) (Fault, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.units[id]
	if u == nil {
		return Fault{}, fmt.Errorf("slave: %s: unit %d: %w", t.owner, id, ErrUnknownUnit)
	}
	return u.fault.Normalize(), nil
}

func (t *unitTable) stats(id byte) (UnitStats, error) {
	t.mu.Lock()
	u := t.units[id]
	t.mu.Unlock()
	if u == nil {
		return UnitStats{}, fmt.Errorf("slave: %s: unit %d: %w", t.owner, id, ErrUnknownUnit)
	}
	return UnitStats{Requests: u.requests.Load(), Replies: u.replies.Load()}, nil
}

// lookup returns unit id and its current fault; u is nil when the unit is absent.
func (t *unitTable) lookup(id byte) (u *unit, f Fault) {
	t.mu.Lock()
	defer t.mu.Unlock()
	u = t.units[id]
	if u != nil {
		f = u.fault
	}
	return u, f
}

// only returns the single unit and its fault when the table holds exactly one unit,
// else nil.
func (t *unitTable) only() (u *unit, f Fault) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.units) != 1 {
		return nil, f
	}
	for _, u = range t.units {
		f = u.fault
	}
	return u, f
}

package registry

import (
	"slices"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
)

// liveOfLocked returns the live entries of owner. r.mu held.
func (r *Registry) liveOfLocked(owner string) []*entry {
	var out []*entry
	for _, e := range r.instances {
		if e.live && e.reg.Owner == owner {
			out = append(out, e)
		}
	}
	return out
}

// DeregisterOwner deregisters at once every live instance of owner (a poller that was
// removed from the configuration: nothing will poll its devices any more), and, when
// mine is not nil, every unclaimed one whose endpoint mine reports as the owner's (one
// released by an earlier Release of owner, or read back at the start by Reconcile, that
// the owner had not found again), and returns how many. Each record is cleared as by
// Deregister. mine is called with the registry's lock held: it must not call the
// Registry.
func (r *Registry) DeregisterOwner(owner string, mine func(contract.Endpoint) bool) int {
	r.mu.Lock()
	var evs []Event
	for _, e := range r.instances {
		if !e.live {
			continue
		}
		unclaimed := e.reg.Owner == "" && !e.adoptedAt.IsZero() // released, or read back
		if e.reg.Owner == owner || unclaimed && mine != nil && mine(e.reg.Endpoint) {
			evs = append(evs, r.dropLocked(e))
		}
	}
	r.unlockSink(evs...)
	return len(evs)
}

// Release hands every live instance of owner back as if it had been read back at a
// start (Reconcile): a poller stopped to be replaced by one configured differently. A
// poller that registers the same id again claims it (its health starts afresh, as
// after a restart of the gateway); one that nobody claims keeps its last status until
// Policy.RestartGrace has passed, is then taken critical by Tick and, after
// DeregisterCriticalAfter, deregistered. Nothing is published. It returns how many
// instances were released.
func (r *Registry) Release(owner string, now time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	todo := r.liveOfLocked(owner)
	for _, e := range todo {
		e.adoptedAt = now
		e.reg.Owner = ""
		r.timed[e] = struct{}{}
	}
	return len(todo)
}

// DropCheck removes the configured check name (ObserveCheck) from every live instance
// of owner: a check removed from the configuration no longer counts in their status
// nor shows in their records. A change is published.
func (r *Registry) DropCheck(owner, name string, now time.Time) {
	r.mu.Lock()
	todo := r.liveOfLocked(owner)
	r.mu.Unlock()
	for _, e := range todo {
		r.mu.Lock()
		i := slices.IndexFunc(e.checks, func(c *checkState) bool { return c.name == name })
		if !e.live || e.reg.Owner != owner || i < 0 {
			r.mu.Unlock()
			continue
		}
		e.checks = slices.Delete(slices.Clone(e.checks), i, i+1)
		r.settleLocked(e, now)
		r.publishLocked(e, now, true)
	}
}

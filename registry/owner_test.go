package registry

import (
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
)

// TestReloadOwnerOperations: DeregisterOwner clears only the owner's instances;
// Release hands them back as adopted (claimed afresh by a new registration, else
// critical after the restart grace and deregistered later); DropCheck removes a
// check from the owner's instances and their status follows.
func TestReloadOwnerOperations(t *testing.T) {
	rec := &recorder{}
	r := newTestRegistry(rec)
	a, b, c := testReg("a"), testReg("b"), testReg("c")
	b.Owner, c.Owner = "p", "q"
	for _, reg := range []Registration{a, b, c} {
		if _, err := r.Register(reg, obs('o', 0)); err != nil {
			t.Fatal(err)
		}
	}

	// DropCheck: a critical check makes "a" critical (its record lists the poll and the
	// check); dropping it makes it passing, with no check list.
	r.ObserveCheck("o", "web", "http", contract.Critical, "down", t0)
	if rec, _ := r.Get("a"); rec.Status != contract.Critical || len(rec.Checks) != 2 {
		t.Fatalf("with a critical check: %+v", rec)
	}
	r.DropCheck("o", "web", t0.Add(time.Millisecond))
	if rec, _ := r.Get("a"); rec.Status != contract.Passing || len(rec.Checks) != 0 {
		t.Fatalf("check dropped: %+v", rec)
	}

	// DeregisterOwner: only p's instance goes, with a Deregister event.
	before := len(rec.events)
	if n := r.DeregisterOwner("p", nil); n != 1 {
		t.Fatalf("DeregisterOwner(p) = %d, want 1", n)
	}
	if ev := rec.events[len(rec.events)-1]; len(rec.events) != before+1 || ev.Kind != Deregister || ev.Record.ID != "b" {
		t.Fatalf("events after DeregisterOwner: %+v", rec.events[before:])
	}
	if _, ok := r.Get("b"); ok {
		t.Fatal("b still live")
	}
	if _, ok := r.Get("a"); !ok {
		t.Fatal("a (another owner) gone")
	}

	// Release: nothing published; a and c released, a claimed by its new poller, c left
	// unclaimed goes critical after the grace, then is deregistered.
	now := t0.Add(time.Second)
	before = len(rec.events)
	if r.Release("o", now) != 1 || r.Release("q", now) != 1 || len(rec.events) != before {
		t.Fatal("Release: wrong count or published something")
	}
	if _, ok := r.Owner("a"); !ok {
		t.Fatal("released instance no longer live")
	}
	if _, err := r.Register(a, Observation{At: now.Add(10 * time.Millisecond), Answered: true, RTT: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if owner, _ := r.Owner("a"); owner != "o" {
		t.Fatalf("a not claimed again: owner %q", owner)
	}
	grace := r.Policy().RestartGrace
	r.Tick(now.Add(grace))
	if rec, _ := r.Get("c"); rec.Status != contract.Critical {
		t.Fatalf("unclaimed c after the grace: %+v", rec)
	}
	if rec, _ := r.Get("a"); rec.Status != contract.Passing {
		t.Fatalf("claimed a after the grace: %+v", rec)
	}
	r.Tick(now.Add(grace + r.Policy().DeregisterCriticalAfter))
	if _, ok := r.Get("c"); ok {
		t.Fatal("unclaimed c not deregistered")
	}
}

// TestDeregisterOwnerUnclaimed: DeregisterOwner with mine also clears the instances the
// owner released (Release) and has not claimed again, and only those whose endpoint
// mine names: one claimed by another owner since, or on another bus, stays.
func TestDeregisterOwnerUnclaimed(t *testing.T) {
	rec := &recorder{}
	r := newTestRegistry(rec)
	a, b, c := testReg("a"), testReg("b"), testReg("c")
	c.Endpoint.Bus, c.Owner = "bus2", "rtu:bus2"
	for _, reg := range []Registration{a, b, c} {
		if _, err := r.Register(reg, obs('o', 0)); err != nil {
			t.Fatal(err)
		}
	}
	now := t0.Add(time.Second)
	r.Release("o", now)
	r.Release("rtu:bus2", now)
	b.Owner = "elsewhere" // b found again by another master
	if _, err := r.Register(b, Observation{At: now, Answered: true, RTT: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	before := len(rec.events)
	onBus1 := func(ep contract.Endpoint) bool { return ep.Bus == "bus1" }
	if n := r.DeregisterOwner("o", onBus1); n != 1 {
		t.Fatalf("DeregisterOwner(o) = %d, want 1 (a, released)", n)
	}
	if ev := rec.events[len(rec.events)-1]; len(rec.events) != before+1 || ev.Kind != Deregister || ev.Record.ID != "a" {
		t.Fatalf("events after DeregisterOwner: %+v", rec.events[before:])
	}
	for id, live := range map[string]bool{"a": false, "b": true, "c": true} {
		if _, ok := r.Get(id); ok != live {
			t.Errorf("%s live %v, want %v", id, ok, live)
		}
	}
}

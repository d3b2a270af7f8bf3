package registry

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
)

func selfReg(id, owner string) Registration {
	return Registration{ID: id, Service: "vision", Profile: "self",
		Endpoint:     contract.Endpoint{Transport: "http", Host: "10.0.0.7", Port: 8080, URL: "http://10.0.0.7:8080/"},
		DiscoveredBy: []string{"self"}, Owner: owner,
		Check: contract.Check{IntervalMS: 1000, DetectBudgetMS: 1000}}
}

func lastEvent(t *testing.T, rec *recorder) Event {
	t.Helper()
	if len(rec.events) == 0 {
		t.Fatal("no event")
	}
	return rec.events[len(rec.events)-1]
}

// TestRegistryTTL: a self-registered instance is critical once its TTL passes without a
// renewal (at the first Tick after it), back with a renewal; warn and fail set the
// status at once with their note; critical past DeregisterCriticalAfter, or an explicit
// deregistration, removes it; another owner can neither renew nor deregister it.
func TestRegistryTTL(t *testing.T) {
	rec := &recorder{}
	r := newTestRegistry(rec)
	ttl := time.Second
	got, err := r.RegisterSelf(selfReg("cam-1", "self:cam"), ttl, "", "started", t0)
	if err != nil || got.Status != contract.Passing || len(got.Checks) != 1 || got.Checks[0].Name != "ttl" || got.Checks[0].Note != "started" {
		t.Fatalf("RegisterSelf: %+v, %v", got, err)
	}
	r.Tick(t0.Add(ttl))
	if rc, _ := r.Get("cam-1"); rc.Status != contract.Passing {
		t.Fatalf("at the TTL: %s, want passing", rc.Status)
	}
	r.Tick(t0.Add(ttl + 100*time.Millisecond))
	rc, _ := r.Get("cam-1")
	if rc.Status != contract.Critical || !strings.Contains(rc.Checks[0].Note, "TTL expired") {
		t.Fatalf("one tick past the TTL: %s %+v, want critical with a note", rc.Status, rc.Checks)
	}
	if ev := lastEvent(t, rec); ev.Kind != Upsert || ev.Record.Status != contract.Critical || !ev.Transition {
		t.Errorf("TTL expiry event %+v", ev)
	}
	at := t0.Add(1500 * time.Millisecond)
	if rc, err := r.Renew("cam-1", "self:cam", 0, contract.TTLWarn, "lens dirty", at); err != nil || rc.Status != contract.Warning || rc.Checks[0].Note != "lens dirty" {
		t.Fatalf("renew warn: %+v, %v", rc, err)
	}
	if rc, err := r.Renew("cam-1", "self:cam", 0, contract.TTLFail, "no frames", at); err != nil || rc.Status != contract.Critical {
		t.Fatalf("renew fail: %+v, %v", rc, err)
	}
	if _, err := r.Renew("cam-1", "self:other", 0, "", "", at); !errors.Is(err, ErrNotOwner) {
		t.Errorf("renew by another owner: %v, want ErrNotOwner", err)
	}
	if err := r.Deregister("cam-1", "self:other"); !errors.Is(err, ErrNotOwner) {
		t.Errorf("deregister by another owner: %v, want ErrNotOwner", err)
	}
	if _, err := r.RegisterSelf(selfReg("cam-1", "self:other"), ttl, "", "", at); !errors.Is(err, ErrNotOwner) {
		t.Errorf("register of a taken id by another owner: %v, want ErrNotOwner", err)
	}
	// Critical (fail) for DeregisterCriticalAfter (1 s here): deregistered at a Tick.
	r.Tick(at.Add(time.Second))
	if _, ok := r.Get("cam-1"); ok {
		t.Fatal("critical past deregister_critical_after, still live")
	}
	if ev := lastEvent(t, rec); ev.Kind != Deregister {
		t.Errorf("last event %v, want Deregister", ev.Kind)
	}
	// Register again, deregister explicitly.
	if _, err := r.RegisterSelf(selfReg("cam-1", "self:cam"), ttl, contract.TTLPass, "", at); err != nil {
		t.Fatal(err)
	}
	if err := r.Deregister("cam-1", "self:cam"); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Get("cam-1"); ok || lastEvent(t, rec).Kind != Deregister {
		t.Error("explicit deregistration: still live, or no Deregister event")
	}
	if _, err := r.Renew("cam-1", "self:cam", 0, "", "", at); !errors.Is(err, ErrUnknownInstance) {
		t.Errorf("renew after deregistration: %v, want ErrUnknownInstance", err)
	}
}

// TestRegistryChecks: an instance's status is the worst of its heartbeat and its
// configured checks, and its record lists them with the failing one's note.
func TestRegistryChecks(t *testing.T) {
	rec := &recorder{}
	r := newTestRegistry(rec)
	r.Register(testReg("d1"), obs('o', 0))
	if rc, _ := r.Get("d1"); rc.Checks != nil {
		t.Errorf("a plain polled instance lists checks: %+v", rc.Checks)
	}
	r.ObserveCheck("o", "web", "http", contract.Critical, "GET /health: 503", t0.Add(time.Second))
	rc, _ := r.Get("d1")
	if rc.Status != contract.Critical || len(rc.Checks) != 2 || rc.Checks[1].Name != "web" || rc.Checks[1].Status != contract.Critical ||
		rc.Checks[1].Note != "GET /health: 503" || rc.Checks[0].Status != contract.Passing {
		t.Fatalf("failing check: %s %+v", rc.Status, rc.Checks)
	}
	r.ObserveCheck("o", "web", "http", contract.Warning, "slow", t0.Add(2*time.Second))
	if rc, _ := r.Get("d1"); rc.Status != contract.Warning {
		t.Errorf("warning check: %s", rc.Status)
	}
	r.ObserveCheck("o", "web", "http", contract.Passing, "", t0.Add(3*time.Second))
	if rc, _ := r.Get("d1"); rc.Status != contract.Passing {
		t.Errorf("passing check: %s", rc.Status)
	}
	r.ObserveCheck("other-owner", "web", "http", contract.Critical, "", t0.Add(4*time.Second))
	if rc, _ := r.Get("d1"); rc.Status != contract.Passing {
		t.Errorf("another owner's check changed the instance: %s", rc.Status)
	}
}

// TestRegistryMaintenance: an instance in maintenance is published as such with its
// reason, stays listed while its polls fail (never deregistered), and when maintenance
// ends its status is its heartbeat's again; maintenance set before registration
// applies at it; one with an until ends at the first Tick after it.
func TestRegistryMaintenance(t *testing.T) {
	rec := &recorder{}
	r := newTestRegistry(rec)
	r.Register(testReg("d1"), obs('o', 0))
	info := &contract.MaintenanceInfo{Reason: "replacing the encoder", Since: contract.Time{Time: t0}}
	if !r.SetMaintenance("d1", info, t0) {
		t.Fatal("SetMaintenance: not live")
	}
	if ev := lastEvent(t, rec); ev.Record.Status != contract.Maintenance || ev.Record.Maintenance == nil ||
		ev.Record.Maintenance.Reason != "replacing the encoder" || !ev.Transition {
		t.Fatalf("maintenance event %+v", ev)
	}
	for i := 1; i <= 40; i++ { // 4 s of failed polls: far past critical and deregister_critical_after
		if !r.Observe("d1", "o", obs('x', i)) {
			t.Fatalf("poll %d: deregistered while in maintenance", i)
		}
	}
	if rc, _ := r.Get("d1"); rc.Status != contract.Maintenance {
		t.Fatalf("in maintenance with failing polls: %s", rc.Status)
	}
	r.SetMaintenance("d1", nil, obs('x', 41).At)
	if rc, _ := r.Get("d1"); rc.Status != contract.Critical || rc.Maintenance != nil {
		t.Fatalf("maintenance ended with the device silent: %s %+v, want critical", rc.Status, rc.Maintenance)
	}
	// Before registration, with an until.
	until := t0.Add(10 * time.Second)
	if r.SetMaintenance("d2", &contract.MaintenanceInfo{Reason: "r", Until: contract.Time{Time: until}}, t0) {
		t.Error("SetMaintenance of an unknown id: live")
	}
	got, _ := r.Register(testReg("d2"), obs('o', 0))
	if got.Status != contract.Maintenance {
		t.Fatalf("registered while in maintenance: %s", got.Status)
	}
	r.Tick(until.Add(-time.Millisecond))
	if rc, _ := r.Get("d2"); rc.Status != contract.Maintenance {
		t.Errorf("before until: %s", rc.Status)
	}
	r.Tick(until)
	if rc, _ := r.Get("d2"); rc.Status != contract.Passing || rc.Maintenance != nil {
		t.Errorf("at until: %s %+v, want passing", rc.Status, rc.Maintenance)
	}
	if m := r.Maintenance(); len(m) != 0 {
		t.Errorf("maintenance left: %v", m)
	}
}

// TestRegistryOwnersDoNotMix: a self-registering client cannot take over a polled
// device's id, nor a poller a self-registered id; pollers still move a device between
// them (another address).
func TestRegistryOwnersDoNotMix(t *testing.T) {
	r := newTestRegistry(&recorder{})
	r.Register(testReg("d1"), obs('o', 0))
	if _, err := r.RegisterSelf(selfReg("d1", SelfOwnerPrefix+"mqtt:cam"), time.Second, "", "", t0); !errors.Is(err, ErrNotOwner) {
		t.Errorf("self-registration of a polled id: %v, want ErrNotOwner", err)
	}
	if _, err := r.RegisterSelf(selfReg("m1", SelfOwnerPrefix+"mqtt:cam"), time.Second, "", "", t0); err != nil {
		t.Fatal(err)
	}
	reg := testReg("m1")
	if _, err := r.Register(reg, obs('o', 1)); !errors.Is(err, ErrNotOwner) {
		t.Errorf("a poller registering a self-registered id: %v, want ErrNotOwner", err)
	}
	moved := testReg("d1")
	moved.Owner = "o2"
	if _, err := r.Register(moved, obs('o', 2)); err != nil {
		t.Errorf("a device moving between pollers: %v", err)
	}
	if owner, _ := r.Owner("d1"); owner != "o2" {
		t.Errorf("owner after the move: %q", owner)
	}
}

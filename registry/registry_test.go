package registry

import (
	"encoding/json"
	"testing"
	"time"
)

type recorder struct{ events []Event }

func (r *recorder) sink(e Event) { r.events = append(r.events, e) }

func newTestRegistry(rec *recorder) *Registry {
	p := DefaultPolicy()
	p.DeregisterCriticalAfter = time.Second
	p.RefreshInterval = 10 * time.Second
	return New(Options{Gateway: "gw1", Epoch: 3, Policy: p, Sink: rec.sink})
}

func testReg(id string) Registration {
	return Registration{
		ID: id, Service: "servo-drive", Profile: "p",
		Endpoint:     Endpoint{Transport: "modbus-rtu", Bus: "bus1", Device: "/dev/x", Baud: 115200, Unit: 1},
		Identity:     Identity{Vendor: "v", Serial: "s"},
		DiscoveredBy: []string{"rtu-sweep"},
		Check:        Check{IntervalMS: 100, TimeoutMS: 20, DetectBudgetMS: 400},
		Owner:        "o",
	}
}

func TestRegistryLifecycle(t *testing.T) {
	rec := &recorder{}
	r := newTestRegistry(rec)
	first := obs('o', 0)
	first.State = map[string]any{"cia402": "operation_enabled", "fault": false}
	r.Register(testReg("v-s"), first)
	if len(rec.events) != 1 || rec.events[0].Kind != Upsert || rec.events[0].Record.Status != Passing {
		t.Fatalf("register: events %+v", rec.events)
	}
	r0 := rec.events[0].Record
	if r0.Revision != 3<<32+1 || r0.Epoch != 3 || r0.Gateway != "gw1" || r0.Schema != Schema {
		t.Fatalf("record header %+v", r0)
	}
	// Unchanged good polls within the refresh interval publish nothing.
	for i := 1; i < 5; i++ {
		o := obs('o', i)
		o.State = map[string]any{"cia402": "operation_enabled", "fault": false}
		if !r.Observe("v-s", "o", o) {
			t.Fatal("instance not live")
		}
	}
	if len(rec.events) != 1 {
		t.Fatalf("unchanged polls published %d events", len(rec.events)-1)
	}
	// State change publishes even without a status change.
	o := obs('o', 5)
	o.State = map[string]any{"cia402": "switched_on", "fault": false}
	r.Observe("v-s", "o", o)
	if len(rec.events) != 2 || rec.events[1].Transition {
		t.Fatalf("state change: events %+v", rec.events)
	}
	// Three failures: critical.
	for i := 6; i <= 8; i++ {
		r.Observe("v-s", "o", obs('x', i))
	}
	last := rec.events[len(rec.events)-1]
	if last.Record.Status != Critical || !last.Transition || last.Record.Check.Failures != 3 {
		t.Fatalf("after 3 failures: %+v", last)
	}
	// Still critical 1 s later: deregistered, and no longer live.
	var live bool
	for i := 9; i <= 20; i++ {
		live = r.Observe("v-s", "o", obs('x', i))
	}
	if live {
		t.Fatal("still live after deregister_critical_after")
	}
	last = rec.events[len(rec.events)-1]
	if last.Kind != Deregister || last.Record.ID != "v-s" || last.Record.Service != "servo-drive" {
		t.Fatalf("deregister event %+v", last)
	}
	if _, ok := r.Get("v-s"); ok || len(r.Snapshot()) != 0 {
		t.Fatal("deregistered instance still in the catalog")
	}
	// Comes back: same id, higher revision, passing.
	prevRev := rec.events[len(rec.events)-2].Record.Revision
	r.Register(testReg("v-s"), obs('o', 30))
	last = rec.events[len(rec.events)-1]
	if last.Kind != Upsert || last.Record.Status != Passing || last.Record.Revision <= prevRev {
		t.Fatalf("re-registration %+v (previous revision %d)", last, prevRev)
	}
}

func TestRegistryRefreshInterval(t *testing.T) {
	rec := &recorder{}
	r := newTestRegistry(rec)
	r.Register(testReg("a"), obs('o', 0))
	o := obs('o', 0)
	o.At = t0.Add(10 * time.Second)
	r.Observe("a", "o", o)
	if len(rec.events) != 2 {
		t.Fatalf("no refresh after refresh_interval: %d events", len(rec.events))
	}
	if got := rec.events[1].Record.LastSeen.Time; !got.Equal(o.At) {
		t.Fatalf("refreshed last_seen %v, want %v", got, o.At)
	}
}

func TestRegistryMergeDiscoveredBy(t *testing.T) {
	rec := &recorder{}
	r := newTestRegistry(rec)
	r.Register(testReg("a"), obs('o', 0))
	reg := testReg("a")
	reg.DiscoveredBy = []string{"mdns"}
	got := r.Register(reg, obs('o', 1))
	if len(got.DiscoveredBy) != 2 || got.DiscoveredBy[0] != "mdns" || got.DiscoveredBy[1] != "rtu-sweep" {
		t.Fatalf("discovered_by %v", got.DiscoveredBy)
	}
}

func TestRevisionMonotonicAcrossEpochs(t *testing.T) {
	if Revision(2, 1) <= Revision(1, 1<<31) {
		t.Fatal("revision of a later epoch not higher")
	}
	if Revision(1<<21-1, 1<<32-1) >= 1<<53 {
		t.Fatal("revision exceeds 2^53")
	}
}

func TestTimeJSON(t *testing.T) {
	tm := Time{time.Date(2026, 1, 2, 3, 4, 5, 6_000_000, time.FixedZone("x", 3600))}
	b, _ := tm.MarshalJSON()
	if string(b) != `"2026-01-02T02:04:05.006Z"` {
		t.Fatalf("got %s", b)
	}
	var back Time
	if err := back.UnmarshalJSON(b); err != nil || !back.Equal(tm.Time) {
		t.Fatalf("round trip %v %v", back, err)
	}
}

func TestRegistrySetCheck(t *testing.T) {
	rec := &recorder{}
	r := newTestRegistry(rec)
	r.Register(testReg("a"), obs('o', 0))
	chk := testReg("a").Check
	r.SetCheck("a", chk) // unchanged: nothing published
	if len(rec.events) != 1 {
		t.Fatalf("unchanged check published: %d events", len(rec.events))
	}
	chk.DetectBudgetMS = 999
	r.SetCheck("a", chk)
	if len(rec.events) != 2 || rec.events[1].Record.Check.DetectBudgetMS != 999 || rec.events[1].Transition {
		t.Fatalf("changed check: %+v", rec.events)
	}
	r.SetCheck("unknown", chk) // no panic, nothing published
	if len(rec.events) != 2 {
		t.Fatal("unknown instance published")
	}
}

func TestRegistryOwnerMove(t *testing.T) {
	rec := &recorder{}
	r := newTestRegistry(rec)
	r.Register(testReg("a"), obs('o', 0))
	moved := testReg("a")
	moved.Owner = "new"
	moved.Endpoint.Bus = "bus2"
	moved.DiscoveredBy = []string{"mdns"}
	got := r.Register(moved, obs('o', 1))
	if got.Endpoint.Bus != "bus2" || len(got.DiscoveredBy) != 2 {
		t.Fatalf("moved record %+v", got)
	}
	if r.Observe("a", "o", obs('x', 2)) {
		t.Fatal("old owner still counted")
	}
	if !r.Observe("a", "new", obs('o', 2)) {
		t.Fatal("new owner refused")
	}
	if rec, _ := r.Get("a"); rec.Check.Failures != 0 {
		t.Fatalf("old owner's failure counted: %+v", rec.Check)
	}
}

func TestEndpointJSON(t *testing.T) {
	b, _ := json.Marshal(Endpoint{Transport: "modbus-tcp", Host: "h", Port: 502, Unit: 0})
	if string(b) != `{"transport":"modbus-tcp","host":"h","port":502,"unit":0}` {
		t.Fatalf("modbus endpoint %s", b)
	}
	b, _ = json.Marshal(Endpoint{Transport: "http", Host: "h", Port: 80, URL: "http://h:80/"})
	if string(b) != `{"transport":"http","host":"h","port":80,"url":"http://h:80/"}` {
		t.Fatalf("http endpoint %s", b)
	}
}

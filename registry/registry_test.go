package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
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
		Endpoint:     contract.Endpoint{Transport: "modbus-rtu", Bus: "bus1", Device: "/dev/x", Baud: 115200, Unit: 1},
		Identity:     contract.Identity{Vendor: "v", Serial: "s"},
		DiscoveredBy: []string{"rtu-sweep"},
		Check:        contract.Check{IntervalMS: 100, TimeoutMS: 20, DetectBudgetMS: 400},
		Owner:        "o",
	}
}

func TestRegistryLifecycle(t *testing.T) {
	rec := &recorder{}
	r := newTestRegistry(rec)
	first := obs('o', 0)
	first.State = map[string]any{"cia402": "operation_enabled", "fault": false}
	r.Register(testReg("v-s"), first)
	if len(rec.events) != 1 || rec.events[0].Kind != Upsert || rec.events[0].Record.Status != contract.Passing {
		t.Fatalf("register: events %+v", rec.events)
	}
	r0 := rec.events[0].Record
	if r0.Revision != 3<<32+1 || r0.Epoch != 3 || r0.Gateway != "gw1" || r0.Schema != contract.Schema {
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
	if last.Record.Status != contract.Critical || !last.Transition || last.Record.Check.Failures != 3 {
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
	if last.Kind != Upsert || last.Record.Status != contract.Passing || last.Record.Revision <= prevRev {
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
	got, _ := r.Register(reg, obs('o', 1))
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
	tm := contract.Time{Time: time.Date(2026, 1, 2, 3, 4, 5, 6_000_000, time.FixedZone("x", 3600))}
	b, _ := tm.MarshalJSON()
	if string(b) != `"2026-01-02T02:04:05.006Z"` {
		t.Fatalf("got %s", b)
	}
	var back contract.Time
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
	got, _ := r.Register(moved, obs('o', 1))
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
	b, _ := json.Marshal(contract.Endpoint{Transport: "modbus-tcp", Host: "h", Port: 502, Unit: 0})
	if string(b) != `{"transport":"modbus-tcp","host":"h","port":502,"unit":0}` {
		t.Fatalf("modbus endpoint %s", b)
	}
	b, _ = json.Marshal(contract.Endpoint{Transport: "http", Host: "h", Port: 80, URL: "http://h:80/"})
	if string(b) != `{"transport":"http","host":"h","port":80,"url":"http://h:80/"}` {
		t.Fatalf("http endpoint %s", b)
	}
}

func TestRegistryAdoptUnclaimedGoesCriticalThenAway(t *testing.T) {
	rec := &recorder{}
	r := newTestRegistry(rec) // RestartGrace 5 s, DeregisterCriticalAfter 1 s
	old := contract.Record{Schema: contract.Schema, ID: "gone", Service: "servo-drive", Gateway: "gw1", Epoch: 2,
		Revision: Revision(2, 7), Status: contract.Passing, StatusSince: contract.Time{Time: t0.Add(-time.Hour)}}
	foreign := old
	foreign.ID, foreign.Gateway = "other", "gw2"
	if n, clear := r.Reconcile([]contract.Record{old, foreign}, t0); len(n) != 1 || len(clear) != 0 {
		t.Fatalf("adopted %d, cleared %v; want 1 adopted, none cleared", len(n), clear)
	}
	if len(rec.events) != 0 {
		t.Fatal("Adopt published")
	}
	r.Tick(t0.Add(4 * time.Second))
	if len(rec.events) != 0 {
		t.Fatal("critical before the restart grace")
	}
	r.Tick(t0.Add(5 * time.Second))
	if len(rec.events) != 1 || rec.events[0].Record.Status != contract.Critical || rec.events[0].Record.Epoch != 3 ||
		rec.events[0].Record.Revision <= old.Revision {
		t.Fatalf("after grace: %+v", rec.events)
	}
	r.Tick(t0.Add(6 * time.Second))
	if last := rec.events[len(rec.events)-1]; last.Kind != Deregister || last.Record.ID != "gone" {
		t.Fatalf("not deregistered: %+v", rec.events)
	}
	if len(r.Snapshot()) != 0 {
		t.Fatal("stale instance left")
	}
}

func TestRegistryAdoptClaimed(t *testing.T) {
	rec := &recorder{}
	r := newTestRegistry(rec)
	old := contract.Record{Schema: contract.Schema, ID: "a", Service: "servo-drive", Gateway: "gw1", Epoch: 2, Status: contract.Critical,
		StatusSince: contract.Time{Time: t0.Add(-time.Minute)}}
	r.Reconcile([]contract.Record{old}, t0)
	r.Register(testReg("a"), obs('o', 1))
	if last := rec.events[len(rec.events)-1]; last.Record.Status != contract.Passing {
		t.Fatalf("claimed instance not fresh: %+v", last)
	}
	r.Tick(t0.Add(time.Hour))
	if last := rec.events[len(rec.events)-1]; last.Kind != Upsert || last.Record.Status != contract.Passing {
		t.Fatalf("claimed instance taken down by Tick: %+v", last)
	}
}

// TestRegistryReconcileAnyEpoch: what the broker retains in the gateway's subtree is
// reconciled whatever its epoch. A record from a later epoch than ours (the state
// directory was lost) or a forged one is adopted and taken through critical to
// deregistration; a record of an instance this gateway deregistered (a broker restored
// from its persistence file) is returned to be cleared; a live instance's record is
// vouched for. Revisions continue above every revision read back.
func TestRegistryReconcileAnyEpoch(t *testing.T) {
	rec := &recorder{}
	r := newTestRegistry(rec) // epoch 3, RestartGrace 5 s, DeregisterCriticalAfter 1 s
	r.Register(testReg("live"), obs('o', 0))
	r.Register(testReg("dead"), obs('o', 0))
	for i := 1; i <= 3; i++ {
		r.Observe("dead", "o", obs('x', i))
	}
	r.Observe("dead", "o", obs('x', 30)) // critical for 2.7 s > 1 s: deregistered
	if _, ok := r.Get("dead"); ok {
		t.Fatal("dead instance still live")
	}
	rec.events = nil
	later := contract.Record{Schema: contract.Schema, ID: "later", Service: "servo-drive", Gateway: "gw1", Epoch: 9,
		Revision: Revision(9, 4), Status: contract.Passing, StatusSince: contract.Time{Time: t0.Add(-time.Hour)}}
	stale := later
	stale.ID, stale.Revision = "dead", Revision(3, 1)
	stale.Epoch = 3
	live := later
	live.ID, live.Revision, live.Epoch = "live", Revision(9, 9), 9
	n, clear := r.Reconcile([]contract.Record{later, stale, live}, t0)
	if len(n) != 1 || n[0].ID != "later" || len(clear) != 1 || clear[0].ID != "dead" {
		t.Fatalf("adopted %+v, clear %+v; want the later-epoch record adopted and the deregistered one cleared", n, clear)
	}
	// The live instance, published in this run below what was read back for its id, is
	// published again above it; nothing else is published.
	if len(rec.events) != 1 || rec.events[0].Record.ID != "live" || rec.events[0].Record.Revision <= live.Revision {
		t.Fatalf("events after Reconcile %+v, want one record of live above revision %d", rec.events, live.Revision)
	}
	r.Observe("live", "o", obs('x', 40))
	r.Observe("live", "o", obs('x', 41))
	r.Observe("live", "o", obs('x', 42)) // critical: a transition, published
	if got, _ := r.Get("live"); got.Revision <= live.Revision+1 {
		t.Fatalf("revision %d after reading back %d", got.Revision, live.Revision)
	}
	r.Tick(t0.Add(5 * time.Second))
	var crit *Event
	for i := range rec.events {
		if rec.events[i].Record.ID == "later" {
			crit = &rec.events[i]
		}
	}
	if crit == nil || crit.Record.Status != contract.Critical || crit.Record.Revision <= later.Revision {
		t.Fatalf("later-epoch record after the grace: %+v", crit)
	}
	r.Tick(t0.Add(6 * time.Second))
	if _, ok := r.Get("later"); ok {
		t.Fatal("later-epoch record not deregistered")
	}
	// A forged huge revision cannot push revisions past exact JSON numbers.
	huge := later
	huge.ID, huge.Revision = "huge", 1<<62
	r.Reconcile([]contract.Record{huge}, t0)
	r.Register(testReg("huge"), obs('o', 70))
	if got, _ := r.Get("huge"); got.Revision > 1<<53 {
		t.Fatalf("revision %d beyond 2^53", got.Revision)
	}
}

func TestRegistryPublicationLimit(t *testing.T) {
	rec := &recorder{}
	p := DefaultPolicy() // burst 5, one per second
	var limited []string
	r := New(Options{Gateway: "gw1", Epoch: 1, Policy: p, Sink: rec.sink, OnLimit: func(id string) { limited = append(limited, id) }})
	r.Register(testReg("f"), obs('o', 0))
	// A fault bit flapping on every poll for 2 s at 10 polls/s: 20 changes of state.
	for i := 1; i <= 20; i++ {
		o := obs('o', i)
		o.State = map[string]any{"fault": i%2 == 1}
		o.Degraded = i%2 == 1
		r.Observe("f", "o", o)
		r.Tick(o.At)
	}
	// 1 registration + at most burst-1 left + 2 s of refill.
	if n := len(rec.events); n > 1+4+2 {
		t.Fatalf("%d publications in 2 s, limit allows 7", n)
	}
	if len(limited) != 1 || limited[0] != "f" {
		t.Fatalf("limit engaged log: %v", limited)
	}
	// Quiet afterwards: the held-back last state goes out.
	r.Tick(t0.Add(10 * time.Second))
	last := rec.events[len(rec.events)-1]
	want, _ := r.Get("f")
	if last.Record.Status != want.Status || last.Record.State["fault"] != want.State["fault"] {
		t.Fatalf("last published %+v, registry has %+v", last.Record, want)
	}
}

// TestRegistryDeathNotHeldBack: after flapping has emptied the publication bucket, the
// transition to critical is published at the poll that makes it, not when a token is
// free again, so the published detect_budget_ms still holds.
func TestRegistryDeathNotHeldBack(t *testing.T) {
	rec := &recorder{}
	p := DefaultPolicy() // burst 5, one per second; 3 failures to critical
	r := New(Options{Gateway: "gw1", Epoch: 1, Policy: p, Sink: rec.sink})
	r.Register(testReg("f"), obs('o', 0))
	i := 1
	for ; i <= 10; i++ { // a fault bit flapping on every poll: the bucket runs dry
		o := obs('o', i)
		o.State = map[string]any{"fault": i%2 == 1}
		o.Degraded = i%2 == 1
		r.Observe("f", "o", o)
	}
	before := len(rec.events)
	if e, _ := r.Get("f"); e.Status == contract.Critical {
		t.Fatal("critical before the device went silent")
	}
	var diedAt time.Time
	for k := 0; k < p.FailuresBeforeCritical; k, i = k+1, i+1 { // then it dies
		o := obs('x', i)
		r.Observe("f", "o", o)
		diedAt = o.At
	}
	var got *Event
	for j := before; j < len(rec.events); j++ {
		if rec.events[j].Record.Status == contract.Critical {
			got = &rec.events[j]
			break
		}
	}
	if got == nil {
		t.Fatalf("no critical record published at the failing poll (events after flapping: %d)", len(rec.events)-before)
	}
	if !got.Transition || !got.Record.StatusSince.Equal(diedAt) {
		t.Fatalf("critical event %+v, want a transition at %v", got, diedAt)
	}
}

func TestRegistryCaps(t *testing.T) {
	rec := &recorder{}
	r := New(Options{Gateway: "gw1", Epoch: 1, Policy: DefaultPolicy(), Sink: rec.sink, MaxInstances: 2, MaxRecordBytes: 2048})
	for _, id := range []string{"a", "b"} {
		if _, err := r.Register(testReg(id), obs('o', 0)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Register(testReg("c"), obs('o', 0)); !errors.Is(err, ErrTooManyInstances) {
		t.Fatalf("third instance: %v", err)
	}
	if _, err := r.Register(testReg("a"), obs('o', 1)); err != nil {
		t.Fatalf("re-registering a live instance at the cap: %v", err)
	}
	big := testReg("a")
	big.Meta = map[string]string{"x": strings.Repeat("y", 4000)}
	if _, err := r.Register(big, obs('o', 2)); !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("oversized record: %v", err)
	}
	if len(r.Snapshot()) != 2 {
		t.Fatal("refused registrations changed the catalog")
	}
}

// TestRegistryInstanceLease: every record emitted carries valid_until = its publication
// time + InstanceLease, so a refresh renews it; without a lease it is omitted.
func TestRegistryInstanceLease(t *testing.T) {
	rec := &recorder{}
	p := DefaultPolicy()
	p.RefreshInterval, p.InstanceLease = time.Second, 3*time.Second
	r := New(Options{Gateway: "gw1", Epoch: 1, Policy: p, Sink: rec.sink})
	r.Register(testReg("a"), obs('o', 0))
	r.Observe("a", "o", obs('o', 15)) // 1.5 s later: a refresh
	if len(rec.events) != 2 {
		t.Fatalf("%d events, want the registration and one refresh", len(rec.events))
	}
	for i, at := range []time.Time{obs('o', 0).At, obs('o', 15).At} {
		if got, want := rec.events[i].Record.ValidUntil.Time, at.Add(p.InstanceLease); !got.Equal(want) {
			t.Errorf("event %d: valid_until %v, want %v", i, got, want)
		}
	}
	r2 := New(Options{Gateway: "gw1", Epoch: 1, Policy: DefaultPolicy(), Sink: rec.sink})
	if got, _ := r2.Register(testReg("b"), obs('o', 0)); !got.ValidUntil.IsZero() {
		t.Errorf("valid_until %v without a lease", got.ValidUntil)
	}
}

// TestStateEqual: stateEqual agrees with reflect.DeepEqual on the states decoders
// produce and on the values it hands to DeepEqual.
func TestStateEqual(t *testing.T) {
	base := func() map[string]any {
		return map[string]any{"cia402": "operation_enabled", "fault": false, "warning": true, "error_code": 0x2310}
	}
	nan := math.NaN()
	for _, c := range []struct {
		name string
		a, b map[string]any
		want bool
	}{
		{"same", base(), base(), true},
		{"both empty", map[string]any{}, map[string]any{}, true},
		{"nil and empty", nil, map[string]any{}, false},
		{"string differs", base(), with(base(), "cia402", "fault"), false},
		{"bool differs", base(), with(base(), "fault", true), false},
		{"int differs", base(), with(base(), "error_code", 0), false},
		{"type differs", base(), with(base(), "error_code", int64(0x2310)), false},
		{"key missing", base(), without(base(), "warning"), false},
		{"key renamed", with(without(base(), "warning"), "x", true), base(), false},
		{"float", map[string]any{"v": 1.5}, map[string]any{"v": 1.5}, true},
		{"NaN differs from itself", map[string]any{"v": nan}, map[string]any{"v": nan}, false},
		{"nested equal", map[string]any{"v": []int{1, 2}}, map[string]any{"v": []int{1, 2}}, true},
		{"nested differs", map[string]any{"v": []int{1, 2}}, map[string]any{"v": []int{1, 3}}, false},
		{"nil values", map[string]any{"v": nil}, map[string]any{"v": nil}, true},
	} {
		if got := stateEqual(c.a, c.b); got != c.want {
			t.Errorf("%s: stateEqual = %v, want %v", c.name, got, c.want)
		}
		if dg := reflect.DeepEqual(c.a, c.b); dg != c.want {
			t.Errorf("%s: the case disagrees with reflect.DeepEqual (%v)", c.name, dg)
		}
	}
}

func with(m map[string]any, k string, v any) map[string]any { m[k] = v; return m }
func without(m map[string]any, k string) map[string]any     { delete(m, k); return m }

// TestTickLooksOnlyAtTimedEntries: Tick visits held-back and adopted instances only, and
// forgets them once they no longer need it, so its cost does not grow with the catalog.
func TestTickLooksOnlyAtTimedEntries(t *testing.T) {
	rec := &recorder{}
	r := newTestRegistry(rec)
	for i := range 100 {
		r.Register(testReg(fmt.Sprintf("v-%d", i)), obs('o', 0))
	}
	if n := len(r.timed); n != 0 {
		t.Fatalf("%d entries to tick after plain registrations, want 0", n)
	}
	// One adopted record: ticked until it is deregistered.
	r.Reconcile([]contract.Record{{ID: "old", Service: "servo-drive", Gateway: "gw1", Epoch: 2, Revision: 2<<32 + 1,
		Status: contract.Passing}}, t0)
	if n := len(r.timed); n != 1 {
		t.Fatalf("%d entries to tick after adopting one, want 1", n)
	}
	p := r.Policy()
	r.Tick(t0.Add(p.RestartGrace))                             // critical
	r.Tick(t0.Add(p.RestartGrace + p.DeregisterCriticalAfter)) // deregistered
	if _, ok := r.Get("old"); ok {
		t.Fatal("adopted instance still live")
	}
	r.Tick(t0.Add(time.Hour))
	if n := len(r.timed); n != 0 {
		t.Fatalf("%d entries to tick once nothing is held or adopted, want 0", n)
	}
}

func BenchmarkObserveState(b *testing.B) {
	rec := &recorder{}
	r := newTestRegistry(rec)
	o := obs('o', 0)
	o.State = map[string]any{"cia402": "operation_enabled", "fault": false, "warning": false, "error_code": 0}
	r.Register(testReg("v-s"), o)
	b.ReportAllocs()
	for b.Loop() {
		o.State = map[string]any{"cia402": "operation_enabled", "fault": false, "warning": false, "error_code": 0}
		r.Observe("v-s", "o", o)
	}
}

// TestRegistrySelect: Select keeps the live instances of a service that pass keep,
// sorted by id, with their own copies of the maps; other services are never shown to
// keep.
func TestRegistrySelect(t *testing.T) {
	r := newTestRegistry(&recorder{})
	for _, id := range []string{"c", "a", "b"} {
		reg := testReg(id)
		reg.Meta = map[string]string{"axis": id}
		r.Register(reg, obs('o', 0))
	}
	other := testReg("z")
	other.Service = "vision"
	r.Register(other, obs('o', 0))
	seen := 0
	got := r.Select("servo-drive", func(owner string, rec *contract.Record) bool {
		if owner != "o" {
			t.Errorf("keep got owner %q", owner)
		}
		seen++
		if rec.Service != "servo-drive" {
			t.Errorf("keep saw service %q", rec.Service)
		}
		return rec.Meta["axis"] != "b"
	})
	if seen != 3 || len(got) != 2 || got[0].ID != "a" || got[1].ID != "c" {
		t.Fatalf("Select: %d seen, %v", seen, got)
	}
	got[0].Meta["axis"] = "changed"
	if rec, _ := r.Get("a"); rec.Meta["axis"] != "a" {
		t.Errorf("a selected record shares its meta with the registry: %v", rec.Meta)
	}
	if all := r.Select("", func(string, *contract.Record) bool { return true }); len(all) != 4 {
		t.Errorf("Select of every service: %d records, want 4", len(all))
	}
}

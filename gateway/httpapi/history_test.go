package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/registry"
)

// historyRig is a real registry whose events and polls feed a Hub, served by New.
type historyRig struct {
	reg *registry.Registry
	hub *Hub
	srv *httptest.Server
	t0  time.Time
}

func newHistoryRig(t *testing.T, withInstance bool) *historyRig {
	t.Helper()
	hub := NewHub(0)
	p := registry.DefaultPolicy()
	p.PublishBurst = -1 // every transition published at once: the test counts them
	p.DeregisterCriticalAfter = time.Minute
	reg := registry.New(registry.Options{Gateway: "gw", Epoch: 1, Policy: p, Sink: hub.Publish, Observed: hub.Observe})
	o := Options{Catalog: reg.Snapshot, Events: hub}
	if withInstance {
		o.Instance = reg.Get
	}
	srv := httptest.NewServer(New(o))
	t.Cleanup(srv.Close)
	return &historyRig{reg: reg, hub: hub, srv: srv, t0: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func driveReg(id string) registry.Registration {
	return registry.Registration{ID: id, Service: "servo-drive", Profile: "p", Owner: "rtu:bus1",
		Endpoint: contract.Endpoint{Transport: "modbus-rtu", Bus: "bus1", Device: "/dev/x", Baud: 115200, Unit: 2},
		Identity: contract.Identity{Vendor: "acme", ProductCode: "SD-1", Revision: "1.3", Serial: "S2"},
		Check:    contract.Check{IntervalMS: 100, TimeoutMS: 20, DetectBudgetMS: 400}}
}

// answered is a poll at t0+i×100 ms with a round trip of rtt.
func (h *historyRig) answered(i int, rtt time.Duration) registry.Observation {
	return registry.Observation{At: h.t0.Add(time.Duration(i) * 100 * time.Millisecond), Answered: true, RTT: rtt,
		Outcome: registry.OutcomeOK}
}

var errTimeout = errors.New("modbus: unit 2: no reply within 20ms")

func (h *historyRig) silent(i int) registry.Observation {
	return registry.Observation{At: h.t0.Add(time.Duration(i) * 100 * time.Millisecond), Err: errTimeout,
		Outcome: registry.OutcomeTimeout}
}

func (h *historyRig) detail(t *testing.T, id string) (int, InstanceDetail) {
	t.Helper()
	resp, body := get(t, h.srv, "/v1/instances/"+id)
	var d InstanceDetail
	if resp.StatusCode == http.StatusOK {
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		if err := json.Unmarshal([]byte(body), &d); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
	}
	return resp.StatusCode, d
}

// TestInstanceHistory: GET /v1/instances/{id} serves the record of a live instance of
// a real registry, its status transitions in order with times and reasons, and its
// heartbeat polls' round trips (null for a missed poll); an unknown id is 404. It runs
// with the record looked up by Options.Instance and in the Catalog.
func TestInstanceHistory(t *testing.T) {
	for _, withInstance := range []bool{true, false} {
		t.Run(fmt.Sprintf("Instance=%v", withInstance), func(t *testing.T) {
			h := newHistoryRig(t, withInstance)
			const id = "acme-s2"
			if _, err := h.reg.Register(driveReg(id), h.answered(0, 2*time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			other := driveReg("acme-s1")
			other.Endpoint.Unit = 1
			if _, err := h.reg.Register(other, h.answered(0, time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			i := 1
			for ; i <= 4; i++ { // passing
				h.reg.Observe(id, "rtu:bus1", h.answered(i, time.Duration(i)*time.Millisecond+250*time.Microsecond))
			}
			for ; i <= 7; i++ { // three missed polls: critical
				h.reg.Observe(id, "rtu:bus1", h.silent(i))
			}
			for ; i <= 9; i++ { // two answers: passing again
				h.reg.Observe(id, "rtu:bus1", h.answered(i, 3*time.Millisecond))
			}

			code, d := h.detail(t, id)
			if code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			if d.ID != id || d.Identity.Serial != "S2" || d.Endpoint.Unit != 2 || d.Status != contract.Passing {
				t.Errorf("record %+v", d.Record)
			}
			want := []struct {
				status contract.Status
				at     time.Time
				reason string
			}{
				{contract.Passing, h.t0, "registered"},
				{contract.Critical, h.t0.Add(700 * time.Millisecond), "3 failed polls: " + errTimeout.Error()},
				{contract.Passing, h.t0.Add(900 * time.Millisecond), ""},
			}
			if len(d.History) != len(want) {
				t.Fatalf("history %+v, want %d transitions", d.History, len(want))
			}
			for k, w := range want {
				got := d.History[k]
				if got.Status != w.status || !got.At.Equal(w.at) || got.Reason != w.reason {
					t.Errorf("history[%d] = %+v, want %s at %v, reason %q", k, got, w.status, w.at, w.reason)
				}
				if k > 0 && got.Revision <= d.History[k-1].Revision {
					t.Errorf("history[%d] revision %d not above the previous one's", k, got.Revision)
				}
			}
			// The registration's round trip, then the nine polls: 4 answered, 3 missed, 2.
			if len(d.RoundTrips) != 10 {
				t.Fatalf("round trips %d, want 10: %+v", len(d.RoundTrips), d.RoundTrips)
			}
			for k, p := range d.RoundTrips {
				at := h.t0.Add(time.Duration(k) * 100 * time.Millisecond)
				if !p.At.Equal(at) {
					t.Errorf("round_trips[%d].at %v, want %v", k, p.At, at)
				}
				missed := k >= 5 && k <= 7
				if (p.MS == nil) != missed {
					t.Errorf("round_trips[%d].ms %v, missed %v", k, p.MS, missed)
				}
			}
			if ms := d.RoundTrips[3].MS; ms == nil || *ms != 3.25 {
				t.Errorf("round_trips[3].ms = %v, want 3.25", ms)
			}

			// The JSON shape: null for a missed poll, the record's fields at the top level.
			_, body := get(t, h.srv, "/v1/instances/"+id)
			for _, s := range []string{`"ms":null`, `"history":[{"at":"2026-03-01T12:00:00.000Z","status":"passing"`,
				`"schema":"rollcall.instance/v1"`, `"round_trips":[{"at":"2026-03-01T12:00:00.000Z","ms":2}`} {
				if !strings.Contains(body, s) {
					t.Errorf("body lacks %s: %s", s, body)
				}
			}

			if code, _ := h.detail(t, "nope"); code != http.StatusNotFound {
				t.Errorf("unknown id: status %d, want 404", code)
			}
			// A poll of an instance by another owner is not applied, nor recorded.
			h.reg.Observe(id, "rtu:other", h.answered(99, 50*time.Millisecond))
			if _, d := h.detail(t, id); len(d.RoundTrips) != 10 {
				t.Errorf("a stranger's poll was recorded: %d round trips", len(d.RoundTrips))
			}
		})
	}
}

// TestInstanceHistoryBounded: the history keeps the last HistoryLen transitions and the
// last RoundTripLen polls, oldest first; both are dropped when the instance is
// deregistered, and a re-registration starts afresh.
func TestInstanceHistoryBounded(t *testing.T) {
	h := newHistoryRig(t, true)
	const id = "acme-s2"
	if _, err := h.reg.Register(driveReg(id), h.answered(0, time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	// Flap: 3 missed, 2 answered, 25 times: 50 transitions after the registration.
	i := 1
	for range 25 {
		for range 3 {
			h.reg.Observe(id, "rtu:bus1", h.silent(i))
			i++
		}
		for range 2 {
			h.reg.Observe(id, "rtu:bus1", h.answered(i, time.Duration(i)*time.Microsecond))
			i++
		}
	}
	_, d := h.detail(t, id)
	if len(d.History) != HistoryLen {
		t.Fatalf("%d transitions kept, want %d", len(d.History), HistoryLen)
	}
	for k := 1; k < len(d.History); k++ {
		if !d.History[k].At.After(d.History[k-1].At.Time) || d.History[k].Status == d.History[k-1].Status {
			t.Fatalf("history not ordered alternating transitions at %d: %+v", k, d.History)
		}
	}
	// The last one: passing at the second answer of the last round (poll i-1).
	last := d.History[HistoryLen-1]
	if last.Status != contract.Passing || !last.At.Equal(h.t0.Add(time.Duration(i-1)*100*time.Millisecond)) {
		t.Errorf("last transition %+v, want passing at poll %d", last, i-1)
	}
	if strings.Contains(fmt.Sprint(d.History), "registered") {
		t.Errorf("the registration should have been dropped: %+v", d.History)
	}
	if len(d.RoundTrips) != RoundTripLen {
		t.Fatalf("%d round trips kept, want %d", len(d.RoundTrips), RoundTripLen)
	}
	for k, p := range d.RoundTrips {
		if want := h.t0.Add(time.Duration(i-RoundTripLen+k) * 100 * time.Millisecond); !p.At.Equal(want) {
			t.Fatalf("round_trips[%d].at %v, want %v (the latest %d polls, oldest first)", k, p.At, want, RoundTripLen)
		}
	}

	// Deregistered (critical for DeregisterCriticalAfter): 404, and nothing kept.
	for range 3 {
		h.reg.Observe(id, "rtu:bus1", h.silent(i))
		i++
	}
	h.reg.Observe(id, "rtu:bus1", h.silent(i+int(time.Minute/(100*time.Millisecond))))
	if _, ok := h.reg.Get(id); ok {
		t.Fatal("still live")
	}
	if code, _ := h.detail(t, id); code != http.StatusNotFound {
		t.Errorf("deregistered: status %d, want 404", code)
	}
	if _, _, ok := h.hub.history(id); ok {
		t.Error("history kept after the deregistration")
	}
	h.hub.histMu.Lock()
	n := len(h.hub.hist)
	h.hub.histMu.Unlock()
	if n != 0 {
		t.Errorf("%d histories kept, want 0", n)
	}
	// Back: a fresh history.
	if _, err := h.reg.Register(driveReg(id), h.answered(i+1000, time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, d := h.detail(t, id); len(d.History) != 1 || d.History[0].Reason != "registered" || len(d.RoundTrips) != 1 {
		t.Errorf("re-registered: history %+v, round trips %+v", d.History, d.RoundTrips)
	}
}

// TestTransitionReasons: the reason of each kind of status.
func TestTransitionReasons(t *testing.T) {
	q := 0.9
	until := time.Date(2026, 3, 1, 13, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		rec  contract.Record
		err  error
		want string
	}{
		{"passing", contract.Record{Status: contract.Passing}, nil, ""},
		{"fault", contract.Record{Status: contract.Warning, State: map[string]any{"fault": true, "error_code": 0x2310}}, nil,
			"device fault 0x2310"},
		{"device warning", contract.Record{Status: contract.Warning, State: map[string]any{"fault": false, "warning": true}}, nil,
			"device warning"},
		{"link", contract.Record{Status: contract.Warning, Check: contract.Check{LinkQuality: &q}}, nil, "link quality 0.900"},
		{"exception", contract.Record{Status: contract.Warning}, errors.New("modbus: exception 0x02"), "modbus: exception 0x02"},
		{"check", contract.Record{Status: contract.Critical, Checks: []contract.CheckState{
			{Name: "poll", Kind: "poll", Status: contract.Passing},
			{Name: "disk", Kind: "script", Status: contract.Critical, Note: "92 % full"}}}, nil, "disk critical: 92 % full"},
		{"one failure", contract.Record{Status: contract.Warning, Check: contract.Check{Failures: 1}}, nil, "1 failed poll"},
		{"maintenance", contract.Record{Status: contract.Maintenance, Maintenance: &contract.MaintenanceInfo{Reason: "belt",
			Until: contract.Time{Time: until}}}, nil, "maintenance: belt (until 2026-03-01T13:00:00.000Z)"},
	}
	for _, c := range cases {
		if got := reason(&c.rec, c.err); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	long := strings.Repeat("é", maxReason)
	if got := cut(long); len(got) > maxReason || !strings.HasPrefix(long, got) || len(got) < maxReason-1 {
		t.Errorf("cut to %d bytes", len(got))
	}
}

// TestHubObserveDoesNotAllocate: recording a poll is a ring write.
func TestHubObserveDoesNotAllocate(t *testing.T) {
	h := newHistoryRig(t, true)
	if _, err := h.reg.Register(driveReg("acme-s2"), h.answered(0, time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	o := h.answered(1, time.Millisecond)
	if n := testing.AllocsPerRun(1000, func() { h.hub.Observe("acme-s2", o) }); n != 0 {
		t.Errorf("Hub.Observe: %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { h.hub.Observe("unknown", o) }); n != 0 {
		t.Errorf("Hub.Observe of an unknown id: %v allocations, want 0", n)
	}
}

// TestHistoryMemory: a live instance's history with a full poll ring and one
// transition takes about 0.7 KiB (the Hub's documentation).
func TestHistoryMemory(t *testing.T) {
	const n = 2000
	hub := NewHub(0)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("acme-%05d", i)
	}
	rec := record("", "servo-drive", contract.Passing, 1)
	o := registry.Observation{At: time.Now(), Answered: true, RTT: time.Millisecond}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, id := range ids {
		rec.ID = id
		hub.Publish(registry.Event{Kind: registry.Upsert, Record: rec, Transition: true})
		for range RoundTripLen {
			hub.Observe(id, o)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	t.Logf("history: %d bytes per instance", per)
	if per > 800 {
		t.Errorf("history takes %d bytes per instance, want at most 800", per)
	}
	runtime.KeepAlive(hub)
}

// BenchmarkObserveWithHub is the cost a Hub adds to each heartbeat poll: a registry's
// Observe with and without Options.Observed set to a Hub's Observe.
func BenchmarkObserveWithHub(b *testing.B) {
	for _, withHub := range []bool{false, true} {
		b.Run(fmt.Sprintf("hub=%v", withHub), func(b *testing.B) {
			hub := NewHub(0)
			o := registry.Options{Gateway: "gw", Epoch: 1, Policy: registry.DefaultPolicy(), Sink: hub.Publish}
			if withHub {
				o.Observed = hub.Observe
			}
			reg := registry.New(o)
			for i := range 100 {
				r := driveReg(fmt.Sprintf("acme-%03d", i))
				if _, err := reg.Register(r, registry.Observation{At: time.Now(), Answered: true, RTT: time.Millisecond}); err != nil {
					b.Fatal(err)
				}
			}
			obs := registry.Observation{At: time.Now(), Answered: true, RTT: time.Millisecond, Outcome: registry.OutcomeOK}
			b.ReportAllocs()
			for b.Loop() {
				reg.Observe("acme-042", "rtu:bus1", obs)
			}
		})
	}
}

// TestRoundTripTimes: poll times are kept as 32-bit offsets, yet come back exact after
// 50 days of hourly polls (the offsets' base moves up), and a clock set back starts the
// ring again instead of giving wrong times.
func TestRoundTripTimes(t *testing.T) {
	var hs history
	start := time.Date(2026, 1, 1, 0, 0, 0, 123e6, time.UTC)
	const polls = 50 * 24
	for i := range polls {
		hs.add(start.Add(time.Duration(i)*time.Hour), float32(i%7))
	}
	h := NewHub(0)
	h.hist["d"] = &hs
	_, rt, ok := h.history("d")
	if !ok || len(rt) != RoundTripLen {
		t.Fatalf("%d round trips, want %d", len(rt), RoundTripLen)
	}
	for k, p := range rt {
		i := polls - RoundTripLen + k
		if want := start.Add(time.Duration(i) * time.Hour); !p.At.Time.Equal(want) || p.MS == nil || *p.MS != float64(i%7) {
			t.Fatalf("poll %d: %v %v, want %v %d ms", k, p.At.Time, p.MS, want, i%7)
		}
	}
	back := start.Add(-time.Minute) // the clock set back, before every poll held
	hs.add(back, -1)
	_, rt, _ = h.history("d")
	if len(rt) != 1 || !rt[0].At.Time.Equal(back) || rt[0].MS != nil {
		t.Fatalf("after the clock was set back: %+v, want only the new poll (no answer)", rt)
	}
}

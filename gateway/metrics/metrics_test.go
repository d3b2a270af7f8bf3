package metrics

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/protocols/modbus"
	"github.com/rollcall-edge/rollcall/registry"
)

// series gathers m's registry into "name{label="value",...}" → value (counters, gauges,
// and histogram sample counts as name_count).
func series(t *testing.T, m *Metrics) map[string]float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			var ls []string
			for _, lp := range mt.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			sort.Strings(ls)
			key := mf.GetName()
			if len(ls) > 0 {
				key += "{" + strings.Join(ls, ",") + "}"
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = mt.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key] = mt.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[strings.Replace(key, mf.GetName(), mf.GetName()+"_count", 1)] = float64(mt.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

func expect(t *testing.T, got map[string]float64, want map[string]float64) {
	t.Helper()
	for k, v := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("series %s missing", k)
		} else if g != v {
			t.Errorf("%s = %v, want %v", k, g, v)
		}
	}
}

func rec(id string, st contract.Status, rev int64) contract.Record {
	return contract.Record{ID: id, Service: "servo-drive", Gateway: "gw", Epoch: 2, Revision: rev, Status: st}
}

func TestCatalogEvents(t *testing.T) {
	m := New(Options{Gateway: "gw", Epoch: 2, Version: "test"})
	up := func(id string, st contract.Status, rev int64, tr bool) {
		m.Event(registry.Event{Kind: registry.Upsert, Record: rec(id, st, rev), Transition: tr})
	}
	// An instance read back from epoch 1 and adopted (registry.Reconcile), warning: live,
	// not a registration.
	old := rec("old", contract.Warning, 1<<32+5)
	old.Epoch = 1
	m.Adopted([]contract.Record{old})

	up("a", contract.Passing, 10, true)
	up("b", contract.Passing, 10, true)
	up("a", contract.Passing, 11, false) // refresh
	up("a", contract.Critical, 12, true)
	up("a", contract.Passing, 11, false) // late, older: ignored
	up("old", contract.Critical, 2<<32+1, true)
	m.Event(registry.Event{Kind: registry.Deregister, Record: rec("b", contract.Passing, 10), Transition: true})
	m.Event(registry.Event{Kind: registry.Deregister, Record: rec("b", contract.Passing, 10), Transition: true}) // twice: once
	up("b", contract.Passing, 10, false)                                                                         // late, from before the deregistration: ignored
	up("b", contract.Warning, 13, true)                                                                          // back

	got := series(t, m)
	expect(t, got, map[string]float64{
		`rollcall_registrations_total`:                                    3,
		`rollcall_deregistrations_total`:                                  1,
		`rollcall_status_transitions_total{from="passing",to="critical"}`: 1,
		`rollcall_status_transitions_total{from="warning",to="critical"}`: 1,
		`rollcall_status_transitions_total{from="critical",to="passing"}`: 0,
		`rollcall_instances{status="passing"}`:                            0,
		`rollcall_instances{status="warning"}`:                            1,
		`rollcall_instances{status="critical"}`:                           2,
		`rollcall_gateway_epoch`:                                          2,
		`rollcall_gateway_info{gateway="gw",version="test"}`:              1,
	})
	if _, ok := got[`rollcall_status_transitions_total{from="critical",to="critical"}`]; ok {
		t.Error("a transition from a status to itself is exported")
	}
}

// TestDetections: a transition to critical counts a detection, observed as the time
// from the last answered poll to critical; over the published detect budget it is
// counted as over budget.
func TestDetections(t *testing.T) {
	m := New(Options{Gateway: "gw", Epoch: 2})
	t0 := time.Unix(1_800_000_000, 0)
	crit := func(id string, rev int64, took time.Duration) {
		r := rec(id, contract.Critical, rev)
		r.LastSeen = contract.Time{Time: t0}
		r.StatusSince = contract.Time{Time: t0.Add(took)}
		r.Check.DetectBudgetMS = 1000
		m.Event(registry.Event{Kind: registry.Upsert, Record: r, Transition: true})
	}
	m.Event(registry.Event{Kind: registry.Upsert, Record: rec("a", contract.Passing, 1), Transition: true})
	m.Event(registry.Event{Kind: registry.Upsert, Record: rec("b", contract.Passing, 1), Transition: true})
	crit("a", 2, 400*time.Millisecond)
	crit("b", 2, 1500*time.Millisecond)
	expect(t, series(t, m), map[string]float64{
		`rollcall_detections_total`:             2,
		`rollcall_detections_over_budget_total`: 1,
		`rollcall_detection_seconds_count`:      2,
	})
}

// TestPollOutcomes: rollcall_polls_total counts the outcome the producer of the
// observation classified (devices.Classify for Modbus polls), with one series per
// outcome label from the start; the error itself is not looked at again.
func TestPollOutcomes(t *testing.T) {
	m := New(Options{})
	u := m.Master("bus1").Unit("3")
	for _, o := range []registry.Observation{
		{Answered: true, Outcome: registry.OutcomeOK},
		{Answered: true, Degraded: true, Outcome: registry.OutcomeOK}, // CiA 402 fault bit: a valid reply
		{Answered: true, Degraded: true, Outcome: registry.OutcomeException, Err: &modbus.ExceptionError{Function: 3, Code: 6}},
		{Outcome: registry.OutcomeTimeout, Err: fmt.Errorf("read: %w", modbus.ErrTimeout)},
		{Outcome: registry.OutcomeBadFrame, Err: modbus.ErrCRC},
		{Outcome: registry.OutcomeBadFrame, Err: &modbus.WrongUnitError{Want: 2, Got: 3}},
		// The producer's outcome wins over what the error looks like.
		{Outcome: registry.OutcomeOther, Err: modbus.ErrTimeout},
		// Not classified: from Answered alone.
		{Answered: true},
		{Err: errors.New("x")},
	} {
		u.Poll(o)
	}
	got := series(t, m)
	expect(t, got, map[string]float64{
		`rollcall_polls_total{master="bus1",outcome="ok",unit="3"}`:        3,
		`rollcall_polls_total{master="bus1",outcome="exception",unit="3"}`: 1,
		`rollcall_polls_total{master="bus1",outcome="timeout",unit="3"}`:   1,
		`rollcall_polls_total{master="bus1",outcome="bad_frame",unit="3"}`: 2,
		`rollcall_polls_total{master="bus1",outcome="other",unit="3"}`:     2,
		`rollcall_poll_round_trip_seconds_count{master="bus1"}`:            4,
	})
	for k := range got {
		if strings.Contains(k, `outcome="unknown"`) {
			t.Errorf("series %s exported", k)
		}
	}
}

func TestMasterPollsAndClose(t *testing.T) {
	m := New(Options{Gateway: "gw", Epoch: 1})
	mm := m.Master("bus1")
	u := mm.Unit("2")
	u.Poll(registry.Observation{Answered: true, RTT: 4 * time.Millisecond})
	u.Poll(registry.Observation{Answered: true, RTT: 6 * time.Millisecond})
	u.Poll(registry.Observation{Err: modbus.ErrTimeout, Outcome: registry.OutcomeTimeout, RTT: 20 * time.Millisecond})
	mm.Probe(10*time.Millisecond, false)
	mm.Probe(10*time.Millisecond, true)
	mm.Sweep(0, 14)
	got := series(t, m)
	expect(t, got, map[string]float64{
		`rollcall_polls_total{master="bus1",outcome="ok",unit="2"}`:        2,
		`rollcall_polls_total{master="bus1",outcome="timeout",unit="2"}`:   1,
		`rollcall_polls_total{master="bus1",outcome="exception",unit="2"}`: 0,
		`rollcall_poll_round_trip_seconds_count{master="bus1"}`:            2,
		`rollcall_sweep_absent_units{master="bus1"}`:                       14,
		`rollcall_sweep_probed_units{master="bus1"}`:                       0,
		`rollcall_sweep_cycles_total{master="bus1"}`:                       1,
	})
	if b := got[`rollcall_master_busy_seconds_total{master="bus1"}`]; b < 0.0499 || b > 0.0501 {
		t.Errorf("busy seconds %v, want 0.05", b)
	}
	if u := got[`rollcall_master_utilisation_ratio{master="bus1"}`]; u <= 0 || u > 1 {
		t.Errorf("utilisation %v, want within (0, 1]", u)
	}
	mm.Close()
	for k := range series(t, m) {
		if strings.Contains(k, `master="bus1"`) {
			t.Errorf("series %s left after Close", k)
		}
	}
	// nil receivers do nothing (a master without metrics).
	var none *Metrics
	none.Master("x").Unit("1").Poll(registry.Observation{Answered: true})
	none.Master("x").Close()
}

func TestMasterSharedName(t *testing.T) {
	m := New(Options{})
	a, b := m.Master("10.0.0.5:502"), m.Master("10.0.0.5:502")
	a.Unit("1").Poll(registry.Observation{Answered: true})
	a.Close()
	if _, ok := series(t, m)[`rollcall_polls_total{master="10.0.0.5:502",outcome="ok",unit="1"}`]; !ok {
		t.Fatal("closing one of two masters of the same name removed the series of the other")
	}
	b.Close()
	if _, ok := series(t, m)[`rollcall_polls_total{master="10.0.0.5:502",outcome="ok",unit="1"}`]; ok {
		t.Fatal("series left after both closed")
	}
}

func TestUtilisationWindow(t *testing.T) {
	m := New(Options{})
	mm := m.Master("bus1")
	t0 := mm.started
	mm.busyNs.Add(int64(2 * time.Second))
	if got := mm.utilisation(t0.Add(4 * time.Second)); got != 0.5 {
		t.Errorf("first partial window: %v, want 0.5", got)
	}
	mm.busyNs.Add(int64(3 * time.Second))
	if got := mm.utilisation(t0.Add(10 * time.Second)); got != 0.5 {
		t.Errorf("first full window: %v, want 0.5", got)
	}
	mm.busyNs.Add(int64(time.Second))
	if got := mm.utilisation(t0.Add(15 * time.Second)); got != 0.5 {
		t.Errorf("within the next window: %v, want the last complete one (0.5)", got)
	}
	if got := mm.utilisation(t0.Add(20 * time.Second)); got != 0.1 {
		t.Errorf("second window: %v, want 0.1", got)
	}
}

// The heartbeat path must not allocate (issue 7: no allocation per poll).
func TestUnitPollDoesNotAllocate(t *testing.T) {
	m := New(Options{})
	u := m.Master("bus1").Unit("1")
	ok := registry.Observation{Answered: true, Outcome: registry.OutcomeOK, RTT: 5 * time.Millisecond}
	timeout := registry.Observation{Err: fmt.Errorf("x: %w", modbus.ErrTimeout), Outcome: registry.OutcomeTimeout, RTT: 20 * time.Millisecond}
	if n := testing.AllocsPerRun(1000, func() { u.Poll(ok) }); n != 0 {
		t.Errorf("answered poll: %v allocations", n)
	}
	if n := testing.AllocsPerRun(1000, func() { u.Poll(timeout) }); n != 0 {
		t.Errorf("timed-out poll: %v allocations", n)
	}
}

func BenchmarkUnitPoll(b *testing.B) {
	m := New(Options{})
	u := m.Master("bus1").Unit("1")
	o := registry.Observation{Answered: true, RTT: 5 * time.Millisecond}
	b.ReportAllocs()
	for b.Loop() {
		u.Poll(o)
	}
}

// TestPerUnitModes: per-unit series on, off and automatic (PerUnitAutoMax devices).
// Off, network endpoints are summed under master="*" and buses keep their own series
// with unit="".
func TestPerUnitModes(t *testing.T) {
	ok := registry.Observation{Answered: true, Outcome: registry.OutcomeOK, RTT: 4 * time.Millisecond}
	fill := func(m *Metrics) {
		bus := m.Bus("bus1")
		bus.Unit("1").Poll(ok)
		bus.Unit("2").Poll(ok)
		bus.Unit("2").Poll(registry.Observation{Outcome: registry.OutcomeTimeout, RTT: 50 * time.Millisecond})
		for _, ep := range []string{"10.0.0.1:502", "10.0.0.2:502"} {
			mm := m.Master(ep)
			mm.Sweep(0, 1)
			mm.Probe(time.Millisecond, true)
			mm.Unit("1").Poll(ok)
		}
	}

	on := New(Options{PerUnit: PerUnitOn})
	fill(on)
	expect(t, series(t, on), map[string]float64{
		`rollcall_polls_total{master="bus1",outcome="ok",unit="1"}`:         1,
		`rollcall_polls_total{master="bus1",outcome="timeout",unit="2"}`:    1,
		`rollcall_polls_total{master="10.0.0.1:502",outcome="ok",unit="1"}`: 1,
		`rollcall_poll_round_trip_seconds_count{master="10.0.0.2:502"}`:     1,
		`rollcall_sweep_cycles_total{master="10.0.0.2:502"}`:                1,
	})

	off := New(Options{PerUnit: PerUnitOff})
	fill(off)
	got := series(t, off)
	expect(t, got, map[string]float64{
		`rollcall_polls_total{master="bus1",outcome="ok",unit=""}`:      2,
		`rollcall_polls_total{master="bus1",outcome="timeout",unit=""}`: 1,
		`rollcall_poll_round_trip_seconds_count{master="bus1"}`:         2,
		`rollcall_polls_total{master="*",outcome="ok",unit=""}`:         2,
		`rollcall_polls_total{master="*",outcome="timeout",unit=""}`:    0,
		`rollcall_poll_round_trip_seconds_count{master="*"}`:            2,
		`rollcall_sweep_cycles_total{master="*"}`:                       2,
		`rollcall_sweep_absent_units{master="*"}`:                       2,
	})
	for k := range got {
		if strings.Contains(k, "10.0.0.") || strings.Contains(k, `unit="1"`) {
			t.Errorf("per-unit series %s exported with per-unit series off", k)
		}
	}
	if b := got[`rollcall_master_busy_seconds_total{master="*"}`]; b < 0.0099 || b > 0.0101 {
		t.Errorf(`busy seconds of master="*" %v, want 0.01 (2 polls of 4 ms, 2 probes of 1 ms)`, b)
	}
	if _, ok := got[`rollcall_master_utilisation_ratio{master="*"}`]; ok {
		t.Error(`a utilisation ratio is exported for master="*"`)
	}

	auto := New(Options{})
	fill(auto)
	if !auto.PerUnitSeries() || auto.Devices() != 4 {
		t.Fatalf("auto with %d devices: per-unit %v, want 4 devices and per-unit series", auto.Devices(), auto.PerUnitSeries())
	}
	mm := auto.Master("10.0.0.3:502")
	for i := range PerUnitAutoMax {
		mm.Unit(fmt.Sprint(i)) // the same unit twice counts once: unit "1" is new here
	}
	if auto.PerUnitSeries() {
		t.Fatalf("auto with %d devices (> %d): per-unit series", auto.Devices(), PerUnitAutoMax)
	}
	if _, ok := series(t, auto)[`rollcall_polls_total{master="*",outcome="ok",unit=""}`]; !ok {
		t.Error(`auto above the limit: no master="*" series`)
	}
	mm.Close()
	if !auto.PerUnitSeries() || auto.Devices() != 4 {
		t.Fatalf("auto after closing the big master: %d devices, per-unit %v", auto.Devices(), auto.PerUnitSeries())
	}
}

// TestRoundTripBuckets: the histogram kept in atomics uses RoundTripBuckets, upper
// bounds inclusive, like a Prometheus histogram.
func TestRoundTripBuckets(t *testing.T) {
	b := RoundTripBuckets()
	if len(b) != numRTTBuckets {
		t.Fatalf("%d buckets, numRTTBuckets %d", len(b), numRTTBuckets)
	}
	for i, ub := range b {
		ns := int64(ub*1e9 + 0.5)
		if got := rttBucket(ns); got != i {
			t.Errorf("%v s: bucket %d, want %d", ub, got, i)
		}
		if got := rttBucket(ns + 1); got != i+1 {
			t.Errorf("%v s + 1 ns: bucket %d, want %d", ub, got, i+1)
		}
	}
	m := New(Options{})
	u := m.Bus("bus1").Unit("1")
	for _, d := range []time.Duration{500 * time.Microsecond, time.Millisecond, 4 * time.Millisecond, time.Second} {
		u.Poll(registry.Observation{Answered: true, RTT: d})
	}
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "rollcall_poll_round_trip_seconds" {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		cum := map[float64]uint64{}
		for _, bk := range h.GetBucket() {
			cum[bk.GetUpperBound()] = bk.GetCumulativeCount()
		}
		if cum[0.001] != 2 || cum[0.005] != 3 || cum[0.5] != 3 || h.GetSampleCount() != 4 {
			t.Errorf("buckets %v, count %d: want ≤1ms 2, ≤5ms 3, ≤500ms 3, count 4", cum, h.GetSampleCount())
		}
		if s := h.GetSampleSum(); s < 1.0054 || s > 1.0056 {
			t.Errorf("sum %v, want 1.0055", s)
		}
		return
	}
	t.Fatal("no rollcall_poll_round_trip_seconds")
}

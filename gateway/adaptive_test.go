package gateway_test

import (
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
	"github.com/rollcall-edge/rollcall/internal/testutil/mosquitto"
	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
)

// TestAdaptiveTimeoutDetection: with adaptive timeouts, a silent drive goes critical after
// failures_before_critical polls that each wait only as long as the drive used to need,
// so long before one request could wait the bus's 3 s timeout (the ceiling), let alone
// the three a fixed timeout would take; the record says the ceiling and the link
// quality. The bystander stays passing throughout.
func TestAdaptiveTimeoutDetection(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	const ceiling = 3 * time.Second
	h := rig.New(t)
	s := h.StartSim(1, 2)
	g := h.StartGateway("embedded", `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1-2", timeout: 3s, adaptive_timeout: true}]
health: {poll_interval: 50ms, deregister_critical_after: 1m}
`)
	snap := rig.WaitCatalog(t, g, 15*time.Second, "2 passing instances", rig.Passing(2))
	victim, bystander := "rollcall-firmware-sim-sim-0002", "rollcall-firmware-sim-sim-0001"
	rec, _ := rig.Instance(snap, victim)
	if rec.Check.TimeoutMS != ceiling.Milliseconds() || rec.Check.LinkQuality == nil || *rec.Check.LinkQuality != 1 {
		t.Errorf("check of a healthy drive: %+v (want timeout_ms %d, link_quality 1)", rec.Check, ceiling.Milliseconds())
	}
	// Polls have gone on for a while: every turnaround window holds samples.
	rig.WaitAnswering(t, g, 10*time.Second, time.Now(), victim, bystander)
	if err := s.SetFault("bus1", 2, slave.Fault{Mode: slave.FaultSilent}); err != nil {
		t.Fatal(err)
	}
	silenced := time.Now()
	rig.WaitCatalog(t, g, 2*ceiling, victim+" critical", rig.StatusIs(victim, contract.Critical))
	if took := time.Since(silenced); took >= ceiling {
		t.Errorf("silent drive critical after %v: not before one request could wait the %v ceiling", took, ceiling)
	}
	if b, ok := g.Registry().Get(bystander); !ok || b.Status != contract.Passing {
		t.Errorf("bystander %+v, want passing", b)
	}
}

// TestSlowDeviceFoundByThoroughSweep: a drive that takes 15 ms to answer, slower than the
// 2 ms turnaround fast sweep cycles assume, is still found: every other sweep cycle waits
// the bus's timeout.
func TestSlowDeviceFoundByThoroughSweep(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	h := rig.New(t)
	h.StartSimYAML(`
buses:
  - name: bus1
    link: $LINK
    baud: 115200
    turnaround: 15ms
    drives: [{unit: 1, serial: SIM-0001}, {unit: 3, serial: SIM-0003}]
`)
	g := h.StartGateway("embedded", `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1-4"}]
health: {poll_interval: 100ms}
`)
	rig.WaitCatalog(t, g, 30*time.Second, "both slow drives passing", rig.Passing(2))
}

// TestNoisyLine: a drive on a line that garbles 15 % of its replies (firmware-sim fault
// "noisy": bad CRCs and garbage bursts between frames) is never critical: a garbled
// reply that arrives on time is retried at once. It is warning with a link quality below
// 0.97 in its record, its bus neighbour stays passing, and once the line is clean again
// it is back to passing. Every record published meanwhile is checked at a subscriber on
// Mosquitto. The bus waits a fixed 250 ms for a reply (no adaptive timeouts): the
// simulated drive runs on the test's host, and a host busy with other work can hold up
// the simulator's reply far longer than a few milliseconds; that would be a missed
// poll, which this test is not about (the adaptive timeouts have tests of their own).
func TestNoisyLine(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	broker := mosquitto.Start(t)
	h := rig.New(t)
	s := h.StartSim(1, 2)
	sub := subscribe(t, broker.URL())
	g := h.StartGateway(broker.URL(), `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1-2", timeout: 250ms, adaptive_timeout: false}]
health: {poll_interval: 20ms, deregister_critical_after: 1m}
http: {listen: "127.0.0.1:0"}
`)
	rig.WaitCatalog(t, g, 15*time.Second, "2 passing instances", rig.Passing(2))
	victim := "rollcall-firmware-sim-sim-0002"
	requests := func() uint64 {
		for _, d := range s.Devices() {
			if d.Unit == 2 && d.Transport == "modbus-rtu" {
				return d.Requests
			}
		}
		return 0
	}
	if err := s.SetFault("bus1", 2, slave.Fault{Mode: slave.FaultNoisy, Rate: 0.15, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	start := requests()
	// No record of either drive may be critical while the line is noisy; the victim must
	// be warning with its link quality, and polled 300 times on the noisy line.
	noCritical := func(m message, rec map[string]any) {
		if rec != nil && isCatalog(m) && rec["status"] == string(contract.Critical) {
			t.Fatalf("critical record on a noisy line: %s", m.payload)
		}
	}
	warned := false
	for !warned || requests()-start < 300 {
		sub.next(t, 20*time.Second, "the noisy drive warning, 300 requests on the noisy line", func(m message, rec map[string]any) bool {
			noCritical(m, rec)
			if rec == nil || rec["id"] != victim || rec["status"] != string(contract.Warning) {
				return true // any message: check the request count again
			}
			chk, _ := rec["check"].(map[string]any)
			if q, ok := chk["link_quality"].(float64); !ok || q >= 0.97 {
				t.Fatalf("warning record of the noisy drive without a link quality below 0.97: %s", m.payload)
			}
			warned = true
			return true
		})
	}
	// The metrics say so too: the victim's link quality (the latest, as in its record)
	// below 0.97, and garbled replies retried.
	m := scrape(t, "http://"+g.HTTPAddr()+"/metrics")
	if q, ok := m[`rollcall_link_quality_ratio{master="bus1",unit="2"}`]; !ok || q >= 0.97 {
		t.Errorf("rollcall_link_quality_ratio of the noisy drive = %v (present %v), want below 0.97", q, ok)
	}
	if q, ok := m[`rollcall_link_quality_ratio{master="bus1",unit="1"}`]; !ok || q < 0.97 {
		t.Errorf("rollcall_link_quality_ratio of the clean drive = %v (present %v), want at least 0.97", q, ok)
	}
	if r := m[`rollcall_link_retries_total{master="bus1"}`]; r < 1 {
		t.Errorf("rollcall_link_retries_total = %v, want garbled replies retried", r)
	}
	if err := s.SetFault("bus1", 2, slave.Fault{Mode: slave.FaultNone}); err != nil {
		t.Fatal(err)
	}
	sub.next(t, 20*time.Second, "the drive passing again on a clean line", func(m message, rec map[string]any) bool {
		noCritical(m, rec)
		return rec != nil && rec["id"] == victim && rec["status"] == string(contract.Passing)
	})
	if b, ok := g.Registry().Get("rollcall-firmware-sim-sim-0001"); !ok || b.Status != contract.Passing {
		t.Errorf("neighbour on the noisy line %+v, want passing", b)
	}
}

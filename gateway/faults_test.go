package gateway_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
)

// TestFaultModes injects each firmware-sim fault mode into one drive on an RTU bus and
// one behind a Modbus TCP endpoint, and checks the health outcome DESIGN.md prescribes
// ("Health semantics"): no valid answer → critical; an answer that reports a fault, an
// exception, or a round trip over slow_rtt → warning. A bystander on the same bus or
// endpoint keeps answering every poll, and clearing the fault brings the drive back to
// passing.
func TestFaultModes(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	faults := []struct {
		name  string
		fault slave.Fault
		want  contract.Status
	}{
		{"silent", slave.Fault{Mode: slave.FaultSilent}, contract.Critical},
		{"garbage", slave.Fault{Mode: slave.FaultGarbage}, contract.Critical},
		{"slow past timeout", slave.Fault{Mode: slave.FaultSlow, Delay: 600 * time.Millisecond}, contract.Critical},
		{"slow within timeout", slave.Fault{Mode: slave.FaultSlow, Delay: 150 * time.Millisecond}, contract.Warning},
		{"exception", slave.Fault{Mode: slave.FaultException, Code: 4}, contract.Warning},
		{"cia402 fault", slave.Fault{Mode: slave.FaultDevice}, contract.Warning},
	}
	transports := []struct {
		name, where       string
		victim, bystander string
	}{
		{"rtu", "bus1", "rollcall-firmware-sim-sim-0002", "rollcall-firmware-sim-sim-0001"},
		{"tcp", "tcp1", "rollcall-firmware-sim-sim-0102", "rollcall-firmware-sim-sim-0101"},
	}
	for _, tr := range transports {
		for _, f := range faults {
			t.Run(tr.name+"/"+f.name, func(t *testing.T) {
				h := newHarness(t)
				s := h.startSimYAML(`
buses:
  - name: bus1
    link: $LINK
    baud: 115200
    turnaround: 1ms
    drives: [{unit: 1, serial: SIM-0001}, {unit: 2, serial: SIM-0002}]
tcp:
  - name: tcp1
    listen: 127.0.0.1:0
    drives: [{unit: 1, serial: SIM-0101}, {unit: 2, serial: SIM-0102}]
`)
				g := h.startGateway("embedded", `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1-2", timeout: 300ms}]
  tcp: [{name: tcp1, address: "$ADDR(tcp1)", units: "1-2", timeout: 300ms}]
health: {poll_interval: 50ms, slow_rtt: 100ms, deregister_critical_after: 1m}
`)
				waitCatalog(t, g, 15*time.Second, "4 passing instances", func(r []contract.Record) bool {
					n := 0
					for _, rec := range r {
						if rec.Status == contract.Passing {
							n++
						}
					}
					return n == 4
				})
				if err := s.SetFault(tr.where, 2, f.fault); err != nil {
					t.Fatal(err)
				}
				snap := waitCatalog(t, g, 10*time.Second, fmt.Sprintf("%s %s", tr.victim, f.want), func(r []contract.Record) bool {
					rec, ok := instance(r, tr.victim)
					return ok && rec.Status == f.want
				})
				// The other device on the bus or endpoint keeps answering: every poll of it
				// succeeds (its round trip may grow while the victim holds the bus).
				if by, _ := instance(snap, tr.bystander); by.Status == contract.Critical || by.Check.Failures != 0 {
					t.Errorf("bystander %s: %s, %d failed polls", tr.bystander, by.Status, by.Check.Failures)
				}
				if v, _ := instance(snap, tr.victim); f.fault.Mode == slave.FaultDevice && v.State["fault"] != true {
					t.Errorf("faulted drive state %v", v.State)
				}
				if err := s.SetFault(tr.where, 2, slave.Fault{Mode: slave.FaultNone}); err != nil {
					t.Fatal(err)
				}
				waitCatalog(t, g, 10*time.Second, tr.victim+" passing again", func(r []contract.Record) bool {
					rec, ok := instance(r, tr.victim)
					return ok && rec.Status == contract.Passing
				})
			})
		}
	}
}

// TestHotPlug: a drive that starts answering while the gateway runs (plugged in) is
// found by the sweep of absent unit IDs, which goes on in its share of bus time while
// the known drives are polled.
func TestHotPlug(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	h := newHarness(t)
	s := h.startSim(1, 2, 7)
	if err := s.SetFault("bus1", 7, slave.Fault{Mode: slave.FaultSilent}); err != nil { // not plugged in yet
		t.Fatal(err)
	}
	g := h.startGateway("embedded", `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1-16", timeout: 20ms}]
health: {poll_interval: 50ms}
`)
	waitCatalog(t, g, 15*time.Second, "drives 1 and 2", func(r []contract.Record) bool { return len(r) == 2 })
	plugged := time.Now()
	if err := s.SetFault("bus1", 7, slave.Fault{Mode: slave.FaultNone}); err != nil {
		t.Fatal(err)
	}
	waitCatalog(t, g, 15*time.Second, "hot-plugged drive 7", func(r []contract.Record) bool {
		rec, ok := instance(r, "rollcall-firmware-sim-sim-0007")
		return ok && rec.Status == contract.Passing
	})
	t.Logf("hot-plugged drive found %v after it started answering (14 absent units, probe share 20 %%)", time.Since(plugged))
	for _, id := range []string{"rollcall-firmware-sim-sim-0001", "rollcall-firmware-sim-sim-0002"} {
		if rec, _ := g.Registry().Get(id); rec.Status != contract.Passing || rec.Check.Failures != 0 {
			t.Errorf("%s disturbed by the sweep: %+v", id, rec.Check)
		}
	}
}

// TestBusyBusStillFindsDrives: on a bus kept busy by polls (24 drives polled every
// 50 ms at 115200 baud need ~150 ms of bus time per round), probes still get their share
// of bus time, so every drive is found; before, probes ran only when no poll was due and
// drives past the first ~8 were never registered.
func TestBusyBusStillFindsDrives(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	h := newHarness(t)
	units := make([]int, 24)
	for i := range units {
		units[i] = i + 1
	}
	h.startSim(units...)
	g := h.startGateway("embedded", `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1-32", timeout: 20ms}]
health: {poll_interval: 50ms}
`)
	start := time.Now()
	waitCatalog(t, g, 60*time.Second, "24 drives registered", func(r []contract.Record) bool { return len(r) == 24 })
	t.Logf("24 drives on an overloaded bus registered in %v", time.Since(start))
}

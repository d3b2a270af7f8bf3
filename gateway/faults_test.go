package gateway_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
)

// TestFaultModes injects each firmware-sim fault mode into one drive on an RTU bus and
// one behind a Modbus TCP endpoint, and checks the health outcome the product's health
// semantics prescribe: no valid answer → critical; an answer that reports a fault, an
// exception, or a round trip over slow_rtt → warning. While the fault lasts, a
// bystander on the same bus or endpoint is seen answering its polls, and clearing the
// fault brings the drive back to passing.
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
		{"slow past timeout", slave.Fault{Mode: slave.FaultSlow, Delay: 1200 * time.Millisecond}, contract.Critical},
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
				h := rig.New(t)
				s := h.StartSimYAML(`
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
				// Reply timeouts: the Modbus TCP default (500 ms), and the same on the bus, so
				// that "slow within timeout" (150 ms) and "slow past timeout" (1.2 s) stay
				// on their side of it on a loaded machine.
				g := h.StartGateway("embedded", `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1-2", timeout: 500ms}]
  tcp: [{name: tcp1, address: "$ADDR(tcp1)", units: "1-2"}]
health: {poll_interval: 50ms, slow_rtt: 100ms, deregister_critical_after: 1m}
`)
				rig.WaitCatalog(t, g, 15*time.Second, "4 passing instances", rig.Passing(4))
				if err := s.SetFault(tr.where, 2, f.fault); err != nil {
					t.Fatal(err)
				}
				snap := rig.WaitCatalog(t, g, 10*time.Second, fmt.Sprintf("%s %s", tr.victim, f.want), rig.StatusIs(tr.victim, f.want))
				reached := time.Now()
				if v, _ := rig.Instance(snap, tr.victim); f.fault.Mode == slave.FaultDevice && v.State["fault"] != true {
					t.Errorf("faulted drive state %v", v.State)
				}
				// The other device on the bus or endpoint keeps answering while the victim
				// is faulted (its round trip may grow while the victim holds the bus):
				// passing, no failed poll pending, answered after the victim's status was
				// reached. A fault that kept it from answering fails this; a poll that a
				// CPU-starved simulator let time out does not, as the bystander answers
				// the next ones.
				rig.WaitAnswering(t, g, 10*time.Second, reached, tr.bystander)
				if v, ok := g.Registry().Get(tr.victim); !ok || v.Status != f.want {
					t.Errorf("victim %s no longer %s while faulted: %+v", tr.victim, f.want, v)
				}
				if err := s.SetFault(tr.where, 2, slave.Fault{Mode: slave.FaultNone}); err != nil {
					t.Fatal(err)
				}
				rig.WaitCatalog(t, g, 10*time.Second, tr.victim+" passing again", func(r []contract.Record) bool {
					rec, ok := rig.Instance(r, tr.victim)
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
	h := rig.New(t)
	s := h.StartSim(1, 2, 7)
	if err := s.SetFault("bus1", 7, slave.Fault{Mode: slave.FaultSilent}); err != nil { // not plugged in yet
		t.Fatal(err)
	}
	g := h.StartGateway("embedded", `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1-16"}]
health: {poll_interval: 50ms}
`)
	rig.WaitCatalog(t, g, 15*time.Second, "drives 1 and 2", func(r []contract.Record) bool { return len(r) == 2 })
	plugged := time.Now()
	if err := s.SetFault("bus1", 7, slave.Fault{Mode: slave.FaultNone}); err != nil {
		t.Fatal(err)
	}
	rig.WaitCatalog(t, g, 30*time.Second, "hot-plugged drive 7", func(r []contract.Record) bool {
		rec, ok := rig.Instance(r, "rollcall-firmware-sim-sim-0007")
		return ok && rec.Status == contract.Passing
	})
	t.Logf("hot-plugged drive found %v after it started answering (14 absent units, probe share 20 %%)", time.Since(plugged))
	// The sweep's probes of the 13 absent units (each one a timeout) do not keep the
	// known drives from answering: both answer polls after drive 7 was found, and all
	// three are passing.
	rig.WaitAnswering(t, g, 10*time.Second, time.Now(), "rollcall-firmware-sim-sim-0001", "rollcall-firmware-sim-sim-0002")
	rig.WaitCatalog(t, g, 10*time.Second, "drives 1, 2 and 7 passing", rig.Passing(3))
}

// TestBusyBusStillFindsDrives: on a bus kept busy by polls (24 drives polled every
// 50 ms at 115200 baud need ~150 ms of bus time per round), probes still get their share
// of bus time, so every drive is found; before, probes ran only when no poll was due and
// drives past the first ~8 were never registered.
func TestBusyBusStillFindsDrives(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	h := rig.New(t)
	units := make([]int, 24)
	for i := range units {
		units[i] = i + 1
	}
	h.StartSim(units...)
	g := h.StartGateway("embedded", `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1-32"}]
health: {poll_interval: 50ms}
`)
	start := time.Now()
	rig.WaitCatalog(t, g, 60*time.Second, "24 drives registered", func(r []contract.Record) bool { return len(r) == 24 })
	t.Logf("24 drives on an overloaded bus registered in %v", time.Since(start))
}

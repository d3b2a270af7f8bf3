package rig_test

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
)

// TestMain checks that the rig's cleanup leaves no simulator or gateway goroutine.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRig runs the harness end to end: a bus with two drives and a gateway on its
// embedded broker; both drives pass, a silent one goes critical within its published
// budget while the other keeps answering, and a restart raises the epoch.
func TestRig(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	r := rig.New(t)
	s := r.StartSim(1, 2)
	if r.Sim != s || r.Expand("$LINK") != r.Link {
		t.Fatalf("Sim %p (want %p), $LINK → %q (want %q)", r.Sim, s, r.Expand("$LINK"), r.Link)
	}
	const cfg = `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1-2"}]
health: {poll_interval: 50ms}
`
	g, stop := r.RunGateway("embedded", cfg)
	snap := rig.WaitCatalog(t, g, 15*time.Second, "2 passing drives", rig.Passing(2))
	d1, ok := rig.Instance(snap, "rollcall-firmware-sim-sim-0001")
	if !ok || d1.Gateway != rig.DefaultGatewayID || rig.DetectBudget(d1) <= 0 {
		t.Fatalf("drive 1: %+v (found %v)", d1, ok)
	}
	if _, ok := rig.Instance(snap, "nope"); ok {
		t.Fatal("Instance found an id that is not there")
	}

	silent := time.Now()
	if err := s.SetFault("bus1", 2, slave.Fault{Mode: slave.FaultSilent}); err != nil {
		t.Fatal(err)
	}
	rig.WaitCatalog(t, g, 10*time.Second, "drive 2 critical", rig.StatusIs("rollcall-firmware-sim-sim-0002", contract.Critical))
	if took := time.Since(silent); took > rig.DetectFactor*rig.DetectBudget(d1) {
		t.Errorf("silent → critical %v, more than %d × budget %v", took, rig.DetectFactor, rig.DetectBudget(d1))
	}
	rig.WaitAnswering(t, g, 10*time.Second, time.Now(), "rollcall-firmware-sim-sim-0001")

	epoch := g.Epoch()
	stop()
	stop() // idempotent
	g2, _ := r.RunGateway("embedded", cfg)
	if g2.Epoch() != epoch+1 {
		t.Errorf("epoch after restart %d, want %d", g2.Epoch(), epoch+1)
	}
}

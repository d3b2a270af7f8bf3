package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestFailover: the controller uses one of two TCP drives of axis group A; when that
// drive goes silent it moves to the other one. The time from the fault to the switch is
// logged (the controller's failover time).
func TestFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	r := rig.New(t)
	s := r.StartSimYAML(`
tcp:
  - {name: tcp1, listen: "127.0.0.1:0", drives: [{unit: 1, serial: SIM-0105}]}
  - {name: tcp2, listen: "127.0.0.1:0", drives: [{unit: 1, serial: SIM-0106}]}
`)
	r.GatewayID = "lc-gw"
	r.MQTTExtra = ", embedded_auth: {allow_anonymous: true}"
	g := r.StartGateway("embedded", `
discovery:
  tcp:
    - {name: tcp1, address: "$ADDR(tcp1)", meta: {axis_group: A, axis: "5"}}
    - {name: tcp2, address: "$ADDR(tcp2)", meta: {axis_group: A, axis: "6"}}
health: {poll_interval: 50ms}
`)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()

	drives := make(chan string, 8)
	var out testutil.SyncBuffer
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = run(ctx, Config{Broker: g.BrokerURL(), AxisGroup: "A", Every: 20 * time.Millisecond, TrustedKeys: r.TrustedKeys(),
			OnDrive: func(id string) { drives <- id }}, &out)
	}()
	var first string
	select {
	case first = <-drives:
	case <-time.After(20 * time.Second):
		t.Fatal("controller picked no drive")
	}
	testutil.Eventually(t, 10*time.Second, "a position read from the first drive", func() bool {
		return strings.Contains(out.String(), first+" position ")
	})
	listener := map[string]string{"rollcall-firmware-sim-sim-0105": "tcp1", "rollcall-firmware-sim-sim-0106": "tcp2"}[first]
	if listener == "" {
		t.Fatalf("picked %q", first)
	}
	killed := time.Now()
	if err := s.SetFault(listener, 1, slave.Fault{Mode: slave.FaultSilent}); err != nil {
		t.Fatal(err)
	}
	select {
	case next := <-drives:
		if next == first {
			t.Fatalf("switched to the dead drive %s", next)
		}
		t.Logf("controller failover %s → %s: %v after the drive went silent", first, next, time.Since(killed))
	case <-time.After(20 * time.Second):
		t.Fatalf("no failover; controller output:\n%s", out.String())
	}
}

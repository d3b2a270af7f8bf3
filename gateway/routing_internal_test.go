package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/registry"
)

// TestRoutingOnlyPolledInstances: the router's catalog offers, and forwards to, only
// instances polled by the master of their endpoint: a self-registered record that names
// a bus and unit (anyone allowed to register could) is never routed to.
func TestRoutingOnlyPolledInstances(t *testing.T) {
	reg := registry.New(registry.Options{Gateway: "gw", Epoch: 1, Policy: registry.DefaultPolicy()})
	now := time.Now()
	first := registry.Observation{At: now, Answered: true}
	ep := contract.Endpoint{Transport: "modbus-rtu", Bus: "bus1", Unit: 7}
	if _, err := reg.Register(registry.Registration{ID: "polled", Service: "drive", Endpoint: ep, Owner: rtuOwner("bus1")}, first); err != nil {
		t.Fatal(err)
	}
	forged := ep
	forged.Unit = 8
	if _, err := reg.RegisterSelf(registry.Registration{ID: "forged", Service: "drive", Endpoint: forged,
		Owner: mqttOwner("intruder")}, time.Minute, "", "", now); err != nil {
		t.Fatal(err)
	}
	dir := newMasterDir()
	dir.add(rtuOwner("bus1"), &master{cfg: masterConfig{Name: "bus1"}})
	cat := &catalog{reg: reg, dir: dir}
	live := cat.Live("drive", nil)
	if len(live) != 1 || live[0].ID != "polled" {
		t.Fatalf("Live: %+v, want only the polled instance", live)
	}
	if _, err := cat.Forward(context.Background(), "forged", []byte{3, 0, 0, 0, 1}); err == nil {
		t.Error("Forward to a self-registered record naming a bus: no error")
	}
}

package gateway_test

import (
	"net"
	"testing"
	"time"

	"github.com/grandcat/zeroconf"
	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
)

// TestTCPCheckAndBothSources: a non-Modbus module announced over mDNS with a `tcp`
// check is passing while it accepts connections and critical once it stops; a Modbus TCP
// drive configured as a static target AND announced over mDNS is one instance whose
// discovered_by lists both ways, with the TXT keys and the configured meta merged.
func TestTCPCheckAndBothSources(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	lo := loopback(t)
	names := testutil.NewMDNSNames(t)
	plcType := names.ServiceType("plc")
	h := rig.New(t)
	h.StartSimYAML(`
tcp:
  - name: both
    listen: 127.0.0.1:0
    drives: [{unit: 1, serial: SIM-0501}]
    mdns: {instance: ` + names.Instance("axis-9") + `, host: ` + names.Instance("axis-9-sim") + `, interfaces: [` + lo.Name + `], txt: {axis: "9"}}
`)
	plc, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { // accept and close: a module that only needs to be reachable
		for {
			c, err := plc.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	adv, err := zeroconf.RegisterProxy(names.Instance("plc-1"), plcType, "local.", plc.Addr().(*net.TCPAddr).Port, names.Instance("plc-1-sim"),
		[]string{"127.0.0.1"}, []string{"vendor=acme", "serial=PLC-1"}, []net.Interface{lo})
	if err != nil {
		t.Fatal(err)
	}
	defer adv.Shutdown()
	g := h.StartGateway("embedded", `
discovery:
  tcp: [{name: both, address: "$ADDR(both)", units: "1", meta: {line: press}}]
  mdns:
    enabled: true
    service_types: [_modbus._tcp, `+plcType+`]
    instance_patterns: ['`+names.InstancePattern()+`']
    interfaces: [`+lo.Name+`]
    window: 300ms
    every: 100ms
    checks: [{service_type: `+plcType+`, type: tcp, service: plc}]
health: {poll_interval: 50ms, deregister_critical_after: 1m}
`)
	snap := rig.WaitCatalog(t, g, 15*time.Second, "the drive seen both ways and the PLC passing", func(r []contract.Record) bool {
		d, ok := rig.Instance(r, "rollcall-firmware-sim-sim-0501")
		p, ok2 := rig.Instance(r, "acme-plc-1")
		return ok && ok2 && len(d.DiscoveredBy) == 2 && p.Status == contract.Passing
	})
	d, _ := rig.Instance(snap, "rollcall-firmware-sim-sim-0501")
	if d.DiscoveredBy[0] != "mdns" || d.DiscoveredBy[1] != "tcp-static" || d.Meta["axis"] != "9" || d.Meta["line"] != "press" {
		t.Fatalf("drive seen both ways: discovered_by %v meta %v", d.DiscoveredBy, d.Meta)
	}
	if n := len(snap); n != 2 {
		t.Fatalf("%d instances, want 2 (one per device)", n)
	}
	p, _ := rig.Instance(snap, "acme-plc-1")
	if p.Service != "plc" || p.Endpoint.Transport != "tcp" {
		t.Fatalf("PLC record %+v", p)
	}
	plc.Close()
	rig.WaitCatalog(t, g, 10*time.Second, "the PLC critical once it stops accepting", func(r []contract.Record) bool {
		p, ok := rig.Instance(r, "acme-plc-1")
		return ok && p.Status == contract.Critical
	})
}

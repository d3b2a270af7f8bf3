package main

import (
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/rollcall-edge/rollcall/firmware-sim/sim"
)

// TestDecodeSerial checks the serial number registers' decoding (2 characters per
// register, high byte first, NUL padded).
func TestDecodeSerial(t *testing.T) {
	regs := []uint16{0x5349, 0x4d2d, 0x3030, 0x3031, 0, 0, 0, 0} // "SIM-0001"
	if got := decodeSerial(regs); got != "SIM-0001" {
		t.Errorf("decodeSerial = %q, want SIM-0001", got)
	}
	if got := decodeSerial([]uint16{0x4100}); got != "A" {
		t.Errorf("decodeSerial odd length = %q, want A", got)
	}
}

// TestSumSeries checks the exposition parser and the per-master sum of
// rollcall_polls_total over units and outcomes.
func TestSumSeries(t *testing.T) {
	text := `# HELP rollcall_polls_total Heartbeat polls
# TYPE rollcall_polls_total counter
rollcall_polls_total{master="bus1",outcome="ok",unit="1"} 10
rollcall_polls_total{master="bus1",outcome="timeout",unit="1"} 2
rollcall_polls_total{master="bus1",outcome="ok",unit="2"} 5
rollcall_polls_total{master="127.0.0.1:502",outcome="ok",unit="1"} 100
rollcall_polls_total_extra{master="bus1"} 1000
rollcall_master_busy_seconds_total{master="bus1"} 1.5e-01
rollcall_route_requests_total{outcome="ok",service="a,b",unit="1"} 7
up 1
`
	samples, err := parseExposition(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	bus1 := map[string]string{"master": "bus1"}
	if got, ok := sumSeries(samples, "rollcall_polls_total", bus1); !ok || got != 17 {
		t.Errorf("polls of bus1 = %v, %v; want 17, true", got, ok)
	}
	if got, ok := sumSeries(samples, "rollcall_master_busy_seconds_total", bus1); !ok || got != 0.15 {
		t.Errorf("busy of bus1 = %v, %v; want 0.15, true", got, ok)
	}
	if got, ok := sumSeries(samples, "rollcall_route_requests_total", map[string]string{"service": "a,b"}); !ok || got != 7 {
		t.Errorf("route requests of service a,b = %v, %v; want 7, true (comma inside quotes)", got, ok)
	}
	if got, ok := sumSeries(samples, "up", nil); !ok || got != 1 {
		t.Errorf("up = %v, %v; want 1, true (no labels)", got, ok)
	}
	if _, ok := sumSeries(samples, "rollcall_polls_total", map[string]string{"master": "bus2"}); ok {
		t.Errorf("polls of bus2 found, want none")
	}
	if _, err := parseExposition(strings.NewReader("broken{a=\"b\" 1\n")); err == nil {
		t.Errorf("unterminated labels parsed without error")
	}
}

// TestTXTIDs checks the ids read from TXT records.
func TestTXTIDs(t *testing.T) {
	var rrs []dns.RR
	for _, s := range []string{
		`servo-drive.service.rollcall. 1 IN TXT "id=rollcall-firmware-sim-sim-0001" "endpoint=modbus-rtu bus bus1 unit 1" "unit=1"`,
		`servo-drive.service.rollcall. 1 IN TXT "id=rollcall-firmware-sim-sim-0102" "unit=1"`,
		`servo-drive.service.rollcall. 1 IN A 127.0.0.1`,
	} {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		rrs = append(rrs, rr)
	}
	ids := txtIDs(rrs)
	if len(ids) != 2 || !ids["rollcall-firmware-sim-sim-0001"] || !ids["rollcall-firmware-sim-sim-0102"] {
		t.Errorf("txtIDs = %v, want the two ids", ids)
	}
}

// TestRouteSimYAML checks that the figure's simulator config parses, with the bus's
// drives and the TCP listeners.
func TestRouteSimYAML(t *testing.T) {
	cfg, err := sim.ParseConfig("route.yaml", []byte(routeSimYAML("/tmp/route-bus")))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Buses) != 1 || len(cfg.Buses[0].Drives) != routeDrives {
		t.Errorf("buses %+v, want one with %d drives", cfg.Buses, routeDrives)
	}
	if len(cfg.TCP) != len(routeTCPDrives) {
		t.Errorf("%d TCP listeners, want %d", len(cfg.TCP), len(routeTCPDrives))
	}
}

// TestMinBudget checks the smaller-budget helper (0: none yet).
func TestMinBudget(t *testing.T) {
	for _, c := range []struct{ a, b, want int64 }{{0, 5, 5}, {5, 0, 5}, {3, 5, 3}, {5, 3, 3}, {0, 0, 0}} {
		if got := minBudget(c.a, c.b); got != c.want {
			t.Errorf("minBudget(%d, %d) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

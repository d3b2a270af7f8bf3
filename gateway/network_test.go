package gateway_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grandcat/zeroconf"

	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/mosquitto"
	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
)

// loopback returns the loopback interface, where mDNS works in-process (zeroconf needs
// it selected explicitly). Other processes announce and browse there too: tests name
// what they announce with testutil.MDNSNames and admit only those names. The
// real-multicast test between two network namespaces is TestMDNSAcrossNamespaces.
func loopback(t *testing.T) net.Interface {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 {
			return i
		}
	}
	t.Fatal("no loopback interface")
	return net.Interface{}
}

// TestOneGatewayAllSources is issue 3's combined test: one gateway serves an RTU bus,
// a static Modbus TCP target, a Modbus TCP drive found over mDNS and a non-Modbus module
// (HTTP) announced over mDNS, all published to Mosquitto. It then measures the time from
// an mDNS announcement to the passing record at the subscriber, restarts the mDNS drive
// on a new port (same serial: same id, no second live instance), and makes the HTTP
// module unhealthy (critical).
func TestOneGatewayAllSources(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	broker := mosquitto.Start(t)
	lo := loopback(t)
	names := testutil.NewMDNSNames(t)
	h := rig.New(t)
	s := h.StartSimYAML(`
buses:
  - name: bus1
    link: $LINK
    baud: 115200
    turnaround: 1ms
    drives: [{unit: 1, serial: SIM-0001}, {unit: 2, serial: SIM-0002}]
tcp:
  - name: static1
    listen: 127.0.0.1:0
    drives: [{unit: 1, serial: SIM-0101}]
  - name: axis7
    listen: 127.0.0.1:0
    drives: [{unit: 1, serial: SIM-0301}]
    mdns: {instance: ` + names.Instance("axis-7") + `, host: ` + names.Instance("axis-7-sim") + `, interfaces: [` + lo.Name + `], txt: {cell: "2", axis: "7"}}
`)
	// A vision module: HTTP health endpoint, announced with a service type of its own
	// (as _http._tcp would be, but no other process's HTTP announcements count).
	camType := names.ServiceType("vision")
	var healthy atomic.Bool
	healthy.Store(true)
	cam := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" || !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer cam.Close()
	camPort, _ := strconv.Atoi(cam.URL[strings.LastIndex(cam.URL, ":")+1:])
	adv, err := zeroconf.RegisterProxy(names.Instance("cam-1"), camType, "local.", camPort, names.Instance("cam-1-sim"), []string{"127.0.0.1"},
		[]string{"vendor=acme", "serial=CAM-1", "cell=2"}, []net.Interface{lo})
	if err != nil {
		t.Fatal(err)
	}
	defer adv.Shutdown()

	sub := subscribe(t, broker.URL())
	g := h.StartGateway(broker.URL(), `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1-4"}]
  tcp: [{name: static1, address: "$ADDR(static1)", units: "1", meta: {line: "press"}}]
  mdns:
    enabled: true
    service_types: [_modbus._tcp, `+camType+`]
    instance_patterns: ['`+names.InstancePattern()+`']
    interfaces: [`+lo.Name+`]
    window: 400ms
    every: 200ms
    checks: [{service_type: `+camType+`, type: http, path: /health, service: vision-module}]
health: {poll_interval: 50ms, deregister_critical_after: 1m}
`)
	_ = g
	want := map[string]func(t *testing.T, r map[string]any){
		"rollcall-firmware-sim-sim-0001": func(t *testing.T, r map[string]any) { wantEndpoint(t, r, "modbus-rtu", "rtu-sweep") },
		"rollcall-firmware-sim-sim-0002": func(t *testing.T, r map[string]any) { wantEndpoint(t, r, "modbus-rtu", "rtu-sweep") },
		"rollcall-firmware-sim-sim-0101": func(t *testing.T, r map[string]any) {
			wantEndpoint(t, r, "modbus-tcp", "tcp-static")
			if r["meta"].(map[string]any)["line"] != "press" {
				t.Errorf("static meta %v", r["meta"])
			}
		},
		"rollcall-firmware-sim-sim-0301": func(t *testing.T, r map[string]any) {
			wantEndpoint(t, r, "modbus-tcp", "mdns")
			meta := r["meta"].(map[string]any)
			if meta["cell"] != "2" || meta["axis"] != "7" || meta["serial"] != "SIM-0301" || meta["vendor"] != "rollcall firmware-sim" {
				t.Errorf("TXT not in meta: %v", meta)
			}
		},
		"acme-cam-1": func(t *testing.T, r map[string]any) {
			wantEndpoint(t, r, "http", "mdns")
			if r["service"] != "vision-module" || r["endpoint"].(map[string]any)["url"] != cam.URL+"/health" {
				t.Errorf("vision module record %v", r)
			}
		},
	}
	got := map[string]map[string]any{}
	for len(got) < len(want) {
		_, r := sub.next(t, 20*time.Second, "5 passing instances", func(m message, r map[string]any) bool {
			return isCatalog(m) && r != nil && r["status"] == "passing"
		})
		id := r["id"].(string)
		check, ok := want[id]
		if !ok {
			t.Fatalf("unexpected instance %s: %v", id, r)
		}
		if got[id] == nil {
			check(t, r)
		}
		got[id] = r
	}

	// Announcement → passing at the subscriber: a second simulator advertises a new
	// drive while the gateway is running.
	h2 := rig.New(t)
	start := time.Now()
	h2.StartSimYAML(`
tcp:
  - name: axis8
    listen: 127.0.0.1:0
    drives: [{unit: 1, serial: SIM-0302}]
    mdns: {instance: ` + names.Instance("axis-8") + `, host: ` + names.Instance("axis-8-sim") + `, interfaces: [` + lo.Name + `], txt: {cell: "2", axis: "8"}}
`)
	m, _ := sub.next(t, 20*time.Second, "axis-8 passing", func(m message, r map[string]any) bool {
		return r != nil && r["id"] == "rollcall-firmware-sim-sim-0302" && r["status"] == "passing"
	})
	t.Logf("mDNS announcement → passing record at the subscriber: %v (browse window 400ms, every 200ms)", m.at.Sub(start))

	// The mDNS drive restarts on a new port with the same serial: same id, new port,
	// and no second live instance for the old endpoint.
	oldPort := got["rollcall-firmware-sim-sim-0301"]["endpoint"].(map[string]any)["port"]
	newAddr, err := s.RestartListener("axis7", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, newPortStr, _ := net.SplitHostPort(newAddr)
	newPort, _ := strconv.Atoi(newPortStr)
	_, r := sub.next(t, 20*time.Second, "axis-7 passing on its new port", func(m message, r map[string]any) bool {
		if r != nil && isCatalog(m) {
			if _, known := want[r["id"].(string)]; !known && r["id"] != "rollcall-firmware-sim-sim-0302" {
				t.Errorf("a new instance appeared during the move: %v", r)
			}
		}
		return r != nil && r["id"] == "rollcall-firmware-sim-sim-0301" && r["status"] == "passing" &&
			r["endpoint"].(map[string]any)["port"] == float64(newPort)
	})
	t.Logf("axis-7 moved from port %v to %d and kept its id; revision %.0f", oldPort, newPort, r["revision"])
	snap := g.Registry().Snapshot()
	n := 0
	for _, rec := range snap {
		if rec.Identity.Serial == "SIM-0301" {
			n++
			if rec.Endpoint.Port != newPort {
				t.Errorf("registry still has port %d", rec.Endpoint.Port)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d live instances for serial SIM-0301, want 1", n)
	}

	// The vision module's health endpoint fails: critical through its HTTP check.
	healthy.Store(false)
	sub.next(t, 10*time.Second, "vision module critical", func(m message, r map[string]any) bool {
		return r != nil && r["id"] == "acme-cam-1" && r["status"] == "critical"
	})
}

func wantEndpoint(t *testing.T, r map[string]any, transport, source string) {
	t.Helper()
	ep := r["endpoint"].(map[string]any)
	if ep["transport"] != transport {
		t.Errorf("%s: endpoint %v, want transport %s", r["id"], ep, transport)
	}
	db, _ := r["discovered_by"].([]any)
	if len(db) != 1 || db[0] != source {
		t.Errorf("%s: discovered_by %v, want [%s]", r["id"], db, source)
	}
}

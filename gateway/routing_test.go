package gateway_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
	"github.com/rollcall-edge/rollcall/gateway"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
	"github.com/rollcall-edge/rollcall/protocols/modbus"
)

// routingSim is two drives on an RS-485 bus and two on Modbus TCP.
const routingSim = `
buses:
  - name: bus1
    link: $LINK
    baud: 115200
    turnaround: 1ms
    drives: [{unit: 1, serial: SIM-0001}, {unit: 2, serial: SIM-0002}]
tcp:
  - {name: tcp1, listen: 127.0.0.1:0, drives: [{unit: 1, serial: SIM-0101}]}
  - {name: tcp2, listen: 127.0.0.1:0, drives: [{unit: 1, serial: SIM-0102}]}
`

// routingGateway routes virtual unit 1 to the bus's drives (reads only), 2 to the TCP
// drives, 3 to the bus's drives with writes allowed; DNS on a free loopback port. Polls
// are 1 s apart, so that a silenced drive is still live (not yet critical) when the
// test's next read reaches it: the read must fail over.
const routingGateway = `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1-2", meta: {cell: a}}]
  tcp:
    - {name: tcp1, address: "$ADDR(tcp1)", units: "1", meta: {line: press}}
    - {name: tcp2, address: "$ADDR(tcp2)", units: "1", meta: {line: press}}
health: {poll_interval: 1s, deregister_critical_after: 1m}
http: {listen: "127.0.0.1:0"}
modbus_server:
  listen: 127.0.0.1:0
  routes:
    - {unit: 1, service: servo-drive, meta: {cell: a}}
    - {unit: 2, service: servo-drive, meta: {line: press}}
    - {unit: 3, service: servo-drive, meta: {cell: a}, writes: true}
dns: {listen: 127.0.0.1:0, domain: rollcall}
`

// TestModbusRouting runs the routing Modbus TCP server and the DNS interface of a
// gateway with two RTU and two Modbus TCP drives, against independent peers: mbpoll
// (libmodbus, from Debian) as the Modbus TCP master, dig as the DNS client.
//
//   - A read of virtual unit 1 (the bus's drives, sticky) is served by the first drive;
//     once that drive is silenced, the next read is served by the other one — before the
//     silenced drive is even critical — and the failover is counted in /metrics.
//   - A write to unit 1 (reads only) gets exception 0x01; a write to unit 3 (writes
//     allowed) reaches the drive.
//   - Unit 2 (the TCP drives) likewise fails over when its drive is silenced.
//   - DNS: A, SRV and TXT of servo-drive.service.rollcall before; after a drive's death,
//     its TXT is gone within the TTL of its critical status.
func TestModbusRouting(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	mbpoll := testutil.NeedTool(t, "mbpoll", "mbpoll")
	digPath := testutil.NeedTool(t, "dig", "bind9-dnsutils")
	h := rig.New(t)
	s := h.StartSimYAML(routingSim)
	g := h.StartGateway("embedded", routingGateway)
	rig.WaitCatalog(t, g, 30*time.Second, "4 passing instances", rig.Passing(4))
	addr := g.ModbusAddr()

	// Reads through the router: unit 1 sticks to the first bus drive by id.
	serial, out, err := testutil.MbpollSerial(mbpoll, addr, 1)
	if err != nil || serial != "SIM-0001" {
		t.Fatalf("mbpoll read of unit 1: %q, %v\n%s", serial, err, out)
	}
	if serial, out, err := testutil.MbpollSerial(mbpoll, addr, 2); err != nil || serial != "SIM-0101" {
		t.Fatalf("mbpoll read of unit 2: %q, %v\n%s", serial, err, out)
	}
	// DNS before any death.
	dnsAddr := g.DNSAddr()
	a := testutil.Dig(t, digPath, dnsAddr, "servo-drive.service.rollcall", "A")
	if len(a) != 1 || a[0] != "127.0.0.1" {
		t.Errorf("dig A: %q, want [127.0.0.1]", a)
	}
	srv := testutil.Dig(t, digPath, dnsAddr, "servo-drive.service.rollcall", "SRV")
	if len(srv) != 4 {
		t.Errorf("dig SRV: %q, want 4 records (2 TCP drives, 2 RTU drives through the router)", srv)
	}
	mbPort := addr[strings.LastIndexByte(addr, ':')+1:]
	routed := 0
	for _, r := range srv {
		if strings.Contains(r, " "+mbPort+" ") {
			routed++
		}
	}
	if routed != 2 {
		t.Errorf("dig SRV: %q: %d records on the Modbus TCP server's port %s, want 2 (the RTU drives)", srv, routed, mbPort)
	}
	txt := strings.Join(testutil.Dig(t, digPath, dnsAddr, "servo-drive.service.rollcall", "TXT"), "\n")
	for _, want := range []string{`"id=rollcall-firmware-sim-sim-0001"`, `"unit=1"`, `"id=rollcall-firmware-sim-sim-0102"`} {
		if !strings.Contains(txt, want) {
			t.Errorf("dig TXT: no %s in\n%s", want, txt)
		}
	}
	if got := testutil.Dig(t, digPath, dnsAddr, "line-press.servo-drive.service.rollcall", "SRV"); len(got) != 2 {
		t.Errorf("dig SRV line-press.servo-drive: %q, want the 2 TCP drives", got)
	}

	// Writes: refused on unit 1, allowed on unit 3 (controlword, register 2: shutdown).
	if out, err := testutil.MbpollWrite(mbpoll, addr, 1, 2, 6); err == nil || !strings.Contains(strings.ToLower(out), "illegal function") {
		t.Errorf("mbpoll write to read-only unit 1: %v\n%s\nwant exception 0x01 (illegal function)", err, out)
	}
	if out, err := testutil.MbpollWrite(mbpoll, addr, 3, 2, 15); err != nil {
		t.Errorf("mbpoll write to unit 3: %v\n%s", err, out)
	}

	// Failover on the bus: drive 1 silenced, the next read is served by drive 2.
	victim := "rollcall-firmware-sim-sim-0001"
	silenced := time.Now()
	if err := s.SetFault("bus1", 1, slave.Fault{Mode: slave.FaultSilent}); err != nil {
		t.Fatal(err)
	}
	serial, out, err = testutil.MbpollSerial(mbpoll, addr, 1)
	if err != nil || serial != "SIM-0002" {
		t.Fatalf("mbpoll read of unit 1 with drive 1 silent: %q, %v\n%s", serial, err, out)
	}
	t.Logf("RTU failover: the first read after drive 1 went silent was served by drive 2, %v after the fault",
		time.Since(silenced).Round(time.Millisecond))
	m := scrape(t, "http://"+g.HTTPAddr()+"/metrics")
	if f := m[`rollcall_route_failovers_total{service="servo-drive",unit="1"}`]; f < 1 {
		t.Errorf("rollcall_route_failovers_total for unit 1 = %v, want ≥ 1", f)
	}
	if n := m[`rollcall_route_requests_total{outcome="refused",service="servo-drive",unit="1"}`]; n != 1 {
		t.Errorf("refused requests of unit 1 = %v, want 1 (the write)", n)
	}

	// DNS after the death: the victim's records are gone once it is critical.
	rig.WaitCatalog(t, g, 30*time.Second, "drive 1 critical", rig.StatusIs(victim, contract.Critical))
	critical := time.Now()
	gone := testutil.EventuallyValue(t, 10*time.Second, "drive 1 absent from the DNS TXT answer", func() (string, bool) {
		txt := strings.Join(testutil.Dig(t, digPath, dnsAddr, "servo-drive.service.rollcall", "TXT"), "\n")
		return txt, !strings.Contains(txt, victim)
	})
	t.Logf("drive 1 absent from DNS %v after the registry had it critical", time.Since(critical).Round(time.Millisecond))
	if !strings.Contains(gone, "rollcall-firmware-sim-sim-0002") {
		t.Errorf("dig TXT after drive 1's death lost drive 2 too:\n%s", gone)
	}

	// Failover on Modbus TCP.
	if err := s.SetFault("tcp1", 1, slave.Fault{Mode: slave.FaultSilent}); err != nil {
		t.Fatal(err)
	}
	if serial, out, err := testutil.MbpollSerial(mbpoll, addr, 2); err != nil || serial != "SIM-0102" {
		t.Errorf("mbpoll read of unit 2 with tcp1 silent: %q, %v\n%s", serial, err, out)
	}
}

// TestRoutedLoadKeepsHeartbeats: while a client sends routed reads to a bus back to back
// (its own client, as fast as the router answers), a drive on that bus that dies is
// still detected within its published detect budget (which counts one routed request in
// flight), and the bus's other drive keeps answering its polls.
func TestRoutedLoadKeepsHeartbeats(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	h := rig.New(t)
	s := h.StartSim(1, 2)
	g := h.StartGateway("embedded", `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1-2"}]
health: {poll_interval: 50ms, deregister_critical_after: 1m}
modbus_server:
  listen: 127.0.0.1:0
  routes: [{unit: 7, service: servo-drive, strategy: round-robin}]
`)
	rig.WaitCatalog(t, g, 30*time.Second, "2 passing instances", rig.Passing(2))
	ctx, stop := context.WithCancel(context.Background())
	var reads atomic.Int64
	loadDone := make(chan struct{})
	go func() { defer close(loadDone); hammer(ctx, g, &reads) }()
	defer func() { stop(); <-loadDone }()
	// The load runs for 100 answered reads before the death, and goes on until it is
	// detected.
	testutil.Eventually(t, 30*time.Second, "100 routed reads answered", func() bool { return reads.Load() >= 100 })

	victim, bystander := "rollcall-firmware-sim-sim-0002", "rollcall-firmware-sim-sim-0001"
	rec, _ := g.Registry().Get(victim)
	budget := rig.DetectBudget(rec)
	before := reads.Load()
	silent := time.Now()
	if err := s.SetFault("bus1", 2, slave.Fault{Mode: slave.FaultSilent}); err != nil {
		t.Fatal(err)
	}
	rig.WaitCatalog(t, g, 30*time.Second, "drive 2 critical", rig.StatusIs(victim, contract.Critical))
	took := time.Since(silent)
	t.Logf("under routed load (%d reads answered before the death, %d while it was being detected): drive 2 critical %v after its death; published detect budget %v",
		before, reads.Load()-before, took.Round(time.Millisecond), budget)
	if took > rig.DetectFactor*budget {
		t.Errorf("death → critical took %v under routed load, more than %d × the detect budget %v", took, rig.DetectFactor, budget)
	}
	rig.WaitAnswering(t, g, 30*time.Second, time.Now(), bystander)
}

// hammer reads through the router's unit 7 back to back until ctx ends, counting the
// reads answered in n.
func hammer(ctx context.Context, g *gateway.Gateway, n *atomic.Int64) {
	c, err := modbus.NewTCP(modbus.TCPConfig{Address: g.ModbusAddr(), Timeout: 5 * time.Second})
	if err != nil {
		return
	}
	defer c.Close()
	for ctx.Err() == nil {
		if _, err := c.ReadRegisters(ctx, 7, modbus.FuncReadHoldingRegisters, 100, 8); err == nil {
			n.Add(1)
		}
	}
}

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
	"github.com/rollcall-edge/rollcall/protocols/modbus"
)

// Figure route: the routing Modbus TCP server (modbus_server) and the DNS interface of
// one in-process gateway.
const (
	routeDrives     = 4                     // drives on the RTU bus, units 1–4, meta cell=a
	routeService    = "servo-drive"         // firmware-sim drives' service
	routeUnitRTU    = 1                     // virtual unit routed to the bus's drives
	routeUnitTCP    = 2                     // virtual unit routed to the Modbus TCP drives
	routeSerialReg  = 100                   // serial number: holding registers 100–107 (docs/registers.md)
	routeSerialRegs = 8                     //
	routeReplyBytes = 5 + 2*routeSerialRegs // FC 03 reply ADU for 8 registers: unit, fc, count, data, CRC(2)
	routeLoaders    = 4                     // client goroutines of the routed load
	routeReaderGap  = 10 * time.Millisecond // between the failover reader's reads: about a third of the bus, within bus_share
	routePause      = 25 * time.Millisecond // between routed RTU reads of the round-trip figure: a PLC polling, well within bus_share
	routeDNSEvery   = 5 * time.Millisecond  // DNS query period of the DNS trials
	routeWaitState  = 30 * time.Second      // longest wait for one expected registry state
	routeWaitEvent  = 10 * time.Second      // longest wait for a failover, a DNS change or a detection
	routeBusTimeout = 50 * time.Millisecond // the bus's reply timeout if the config does not say (its default)
	routeHTTPTime   = 5 * time.Second       // timeout of one /metrics scrape
	routeClientTime = 5 * time.Second       // reply timeout of the bench's Modbus TCP clients
	routeRegister   = 30 * time.Second      // longest wait for the 6 drives to be passing
	routeCheckEvery = time.Millisecond      // registry polling period while waiting for a status
	routeDNSName    = routeService + ".service"
)

// routeTCPDrives are the Modbus TCP drives: listener name → serial (unit 1 each).
var routeTCPDrives = [][2]string{{"tcp1", "SIM-0101"}, {"tcp2", "SIM-0102"}}

// routeSimYAML is the simulator of figure route: the bus of simBusYAML with routeDrives
// drives, and one Modbus TCP listener per routeTCPDrives entry.
func routeSimYAML(link string) string {
	units := make([]int, routeDrives)
	for i := range units {
		units[i] = i + 1
	}
	var b strings.Builder
	b.WriteString(simBusYAML(link, rtuBaud, rtuTurnaround, units))
	b.WriteString("tcp:\n")
	for _, d := range routeTCPDrives {
		fmt.Fprintf(&b, "  - {name: %s, listen: \"127.0.0.1:0\", drives: [{unit: 1, serial: %s}]}\n", d[0], d[1])
	}
	return b.String()
}

// routeDrive is one simulated drive as the figure sees it.
type routeDrive struct {
	where  string // the simulator's bus or listener name
	unit   int
	serial string
	id     string // instance id in the gateway's registry
}

// decodeSerial turns the serial number registers (2 ASCII characters per register,
// high byte first, NUL padded) into the serial.
func decodeSerial(regs []uint16) string {
	b := make([]byte, 0, 2*len(regs))
	for _, r := range regs {
		b = append(b, byte(r>>8), byte(r))
	}
	return strings.TrimRight(string(b), "\x00")
}

// readSerial reads the serial number registers of unit through c.
func readSerial(ctx context.Context, c modbus.Client, unit byte) (string, error) {
	regs, err := c.ReadRegisters(ctx, unit, modbus.FuncReadHoldingRegisters, routeSerialReg, routeSerialRegs)
	if err != nil {
		return "", err
	}
	return decodeSerial(regs), nil
}

// timedReads reads the serial registers of unit through c n times (after warm reads not
// counted), pause apart (0: back to back), and returns each read's round trip, and the
// serial answered last. A read that fails, or answers a serial other than the first
// one, is an error.
func timedReads(ctx context.Context, c modbus.Client, unit byte, n, warm int, pause time.Duration) ([]time.Duration, string, error) {
	var serial string
	out := make([]time.Duration, 0, n)
	for i := 0; i < warm+n; i++ {
		if i > 0 && pause > 0 {
			if err := sleepCtx(ctx, pause); err != nil {
				return nil, "", err
			}
		}
		t0 := time.Now()
		got, err := readSerial(ctx, c, unit)
		d := time.Since(t0)
		if err != nil {
			return nil, "", fmt.Errorf("read %d of %d: %w", i+1, warm+n, err)
		}
		if serial == "" {
			serial = got
		} else if got != serial {
			return nil, "", fmt.Errorf("read %d of %d answered serial %q, earlier reads %q", i+1, warm+n, got, serial)
		}
		if i >= warm {
			out = append(out, d)
		}
	}
	return out, serial, nil
}

// figRoute measures figure route on one in-process gateway with routeDrives drives on a
// firmware-sim RTU bus at 115200 baud (1 ms turnaround, meta cell=a) and two Modbus TCP
// drives on loopback (meta line=press), polled every 100 ms, 3 failures before
// critical, a Modbus TCP server routing virtual unit 1 to the bus's drives and 2 to the
// TCP drives (sticky), and the DNS interface:
//
//  1. routed read round trip (8 holding registers at 100) against a direct read with
//     our own master, RTU and TCP;
//  2. failover gap: a reader on unit 1, the drive serving it silenced, until a read is
//     answered by another drive;
//  3. DNS: a drive silenced, until its TXT record is gone;
//  4. heartbeats under routed load: the bus's poll rate and the detection time without
//     and with routeLoaders clients reading unit 1 back to back.
func figRoute(ctx context.Context, b *bench) error {
	const fig = "route"
	n, trials, window := 200, 10, 3*time.Second
	if b.opt.quick {
		n, trials, window = 40, 3, time.Second
	}
	warm := 10
	log, closeLog, err := logFile(b.dir, "route.log")
	if err != nil {
		return fmt.Errorf("%s: log file: %w", fig, err)
	}
	defer closeLog()
	link := filepath.Join(b.dir, "route-bus")
	s, err := startSim(ctx, routeSimYAML(link), log)
	if err != nil {
		return fmt.Errorf("%s: %w", fig, err)
	}
	defer s.Stop()

	// 1a. Direct RTU reads, our own master on the bus before the gateway opens it.
	rtu, err := modbus.OpenRTU(modbus.SerialConfig{Device: link, Baud: rtuBaud, Parity: "none", Timeout: routeBusTimeout})
	if err != nil {
		return fmt.Errorf("%s: direct RTU: open %s: %w", fig, link, err)
	}
	directRTU, directRTUSerial, err := timedReads(ctx, rtu, routeUnitRTU, n, warm, routePause)
	_ = rtu.Close()
	if err != nil {
		return fmt.Errorf("%s: direct RTU reads of unit %d: %w", fig, routeUnitRTU, err)
	}

	// The gateway.
	gwID := "bench-route"
	g, cfg, err := startGateway(ctx, fmt.Sprintf(`gateway: {id: %s, state_dir: %s}
mqtt: {broker: embedded, embedded_listen: "127.0.0.1:0"}
discovery:
  serial:
    - {name: bus1, device: %s, baud: %d, parity: none, units: "1-%d", meta: {cell: a}}
  tcp:
    - {name: tcp1, address: %q, units: "1", meta: {line: press}}
    - {name: tcp2, address: %q, units: "1", meta: {line: press}}
health:
  poll_interval: %v
  failures_before_critical: %d
  deregister_critical_after: 1h
http: {listen: "127.0.0.1:0"}
modbus_server:
  listen: 127.0.0.1:0
  routes:
    - {unit: %d, service: %s, meta: {cell: a}}
    - {unit: %d, service: %s, meta: {line: press}}
dns: {listen: 127.0.0.1:0, domain: rollcall}
`, gwID, filepath.Join(b.dir, "state-"+gwID), link, rtuBaud, routeDrives, s.ListenerAddr("tcp1"), s.ListenerAddr("tcp2"),
		detectPoll, detectFailures, routeUnitRTU, routeService, routeUnitTCP, routeService), log)
	if err != nil {
		return fmt.Errorf("%s: %w", fig, err)
	}
	defer g.Stop()
	busTimeout := routeBusTimeout
	if len(cfg.Discovery.Serial) > 0 && cfg.Discovery.Serial[0].Timeout > 0 {
		busTimeout = cfg.Discovery.Serial[0].Timeout
	}
	busShare := cfg.ModbusServer.BusShare
	dnsName := routeDNSName + "." + cfg.DNS.Domain

	drives, err := routeCatalog(ctx, s, g)
	if err != nil {
		return fmt.Errorf("%s: registration: %w", fig, err)
	}
	b.log.Info("drives passing", "figure", fig, "drives", len(drives))

	// 1b. Routed RTU reads, then direct and routed TCP reads.
	router, err := modbus.NewTCP(modbus.TCPConfig{Address: g.ModbusAddr(), Timeout: routeClientTime})
	if err != nil {
		return fmt.Errorf("%s: routed client: %w", fig, err)
	}
	routedRTU, routedRTUSerial, err := timedReads(ctx, router, routeUnitRTU, n, warm, routePause)
	if err != nil {
		_ = router.Close()
		return fmt.Errorf("%s: routed RTU reads of unit %d: %w", fig, routeUnitRTU, err)
	}
	_, tcpSerial, err := timedReads(ctx, router, routeUnitTCP, 1, 0, 0)
	if err != nil {
		_ = router.Close()
		return fmt.Errorf("%s: routed TCP warm-up read of unit %d: %w", fig, routeUnitTCP, err)
	}
	tcpDrive, ok := drives[tcpSerial]
	if !ok || tcpDrive.where == "bus1" {
		_ = router.Close()
		return fmt.Errorf("%s: routed TCP read of unit %d answered serial %q, not one of the TCP drives", fig, routeUnitTCP, tcpSerial)
	}
	direct, err := modbus.NewTCP(modbus.TCPConfig{Address: s.ListenerAddr(tcpDrive.where), Timeout: routeClientTime})
	if err != nil {
		_ = router.Close()
		return fmt.Errorf("%s: direct TCP client: %w", fig, err)
	}
	directTCP, _, err := timedReads(ctx, direct, byte(tcpDrive.unit), n, warm, 0)
	_ = direct.Close()
	if err != nil {
		_ = router.Close()
		return fmt.Errorf("%s: direct TCP reads of %s unit %d: %w", fig, tcpDrive.where, tcpDrive.unit, err)
	}
	routedTCP, _, err := timedReads(ctx, router, routeUnitTCP, n, warm, 0)
	_ = router.Close()
	if err != nil {
		return fmt.Errorf("%s: routed TCP reads of unit %d: %w", fig, routeUnitTCP, err)
	}
	rtuMedian := percentile(directRTU, 50)

	// 2. Failover gap.
	rng := rand.New(rand.NewPCG(b.opt.seed, 0x726f757465)) // "route"
	fo := &failoverResult{}
	for t := 0; t < trials; t++ {
		if err := failoverTrial(ctx, s, g, drives, rng, fo); err != nil {
			return fmt.Errorf("%s: failover trial %d: %w", fig, t, err)
		}
	}

	// 3. DNS.
	busDrives := make([]routeDrive, 0, routeDrives)
	for _, d := range drives {
		if d.where == "bus1" {
			busDrives = append(busDrives, d)
		}
	}
	slices.SortFunc(busDrives, func(a, b routeDrive) int { return a.unit - b.unit })
	dc := &dns.Client{Net: "udp", Timeout: time.Second}
	var dnsGone, dnsLag []time.Duration
	dnsBudget := int64(0)
	for t := 0; t < trials; t++ {
		v := busDrives[rng.IntN(len(busDrives))]
		d, err := dnsTrial(ctx, s, g, dc, dnsName, v, rng)
		if err != nil {
			return fmt.Errorf("%s: DNS trial %d (unit %d): %w", fig, t, v.unit, err)
		}
		dnsGone = append(dnsGone, d.gone)
		dnsLag = append(dnsLag, d.gone-d.critical)
		dnsBudget = minBudget(dnsBudget, d.budget)
		b.log.Info("dns trial", "figure", fig, "trial", t, "unit", v.unit, "gone", d.gone.Round(time.Millisecond),
			"critical", d.critical.Round(time.Millisecond), "budget_ms", d.budget)
	}

	// 4. Heartbeats without and with routed load.
	metricsURL := "http://" + g.HTTPAddr() + "/metrics"
	hc := &http.Client{Timeout: routeHTTPTime}
	defer hc.CloseIdleConnections()
	idle, err := busWindow(ctx, hc, metricsURL, "bus1", window, nil)
	if err != nil {
		return fmt.Errorf("%s: poll rate without load: %w", fig, err)
	}
	idleDetect, idleBudget, err := detectTrials(ctx, s, g, busDrives, trials, rng)
	if err != nil {
		return fmt.Errorf("%s: detection without load: %w", fig, err)
	}
	ld := startLoad(ctx, g.ModbusAddr(), routeUnitRTU, routeLoaders)
	defer ld.stop() // idempotent
	if err := ld.waitReads(ctx, 10*routeLoaders, routeWaitEvent); err != nil {
		ld.stop()
		return fmt.Errorf("%s: routed load start: %w", fig, err)
	}
	loaded, err := busWindow(ctx, hc, metricsURL, "bus1", window, ld)
	if err != nil {
		ld.stop()
		return fmt.Errorf("%s: poll rate under routed load: %w", fig, err)
	}
	loadDetect, loadBudget, err := detectTrials(ctx, s, g, busDrives, trials, rng)
	ld.stop()
	if err != nil {
		return fmt.Errorf("%s: detection under routed load: %w", fig, err)
	}
	if loaded.reads == 0 {
		return fmt.Errorf("%s: routed load: no read answered in the %v window (first error: %v)", fig, window, ld.firstErr())
	}

	// The report.
	o := b.out
	wire := modbus.WireTime(rtuReqBytes, rtuBaud) + modbus.T35(rtuBaud) + rtuTurnaround + modbus.WireTime(routeReplyBytes, rtuBaud) + modbus.T35(rtuBaud)
	o.note("%s: one in-process gateway (embedded broker), %d drives on firmware-sim bus1 at %d baud, turnaround %v, meta cell=a, + %d Modbus TCP drives on loopback, meta line=press; "+
		"poll_interval %v, failures_before_critical %d, bus timeout %v, bus_share %.2f; routes: unit %d → cell=a, unit %d → line=press, sticky; "+
		"reads of %d holding registers at %d, %d after %d warm-up; RTU reads (direct and routed) %v apart (a PLC polling; a client reading "+
		"without pause gets bus_share of the bus, see the heartbeats line), TCP reads back to back (served by %s and %s)",
		fig, routeDrives, rtuBaud, rtuTurnaround, len(routeTCPDrives), detectPoll, detectFailures, busTimeout, busShare, routeUnitRTU, routeUnitTCP,
		routeSerialRegs, routeSerialReg, n, warm, routePause, routedRTUSerial, tcpSerial)
	o.note("%s rtu/tcp floors: the same read by our own master straight to the drive — RTU: modbus.RTU on the bus's pty before the gateway opened it (nothing else on the bus; "+
		"request and reply wire time, t3.5 before the device answers, its %v turnaround; the master's t3.5 gap has passed in the pause; wire floor with the gap %v), unit %d, serial %s; "+
		"TCP: modbus.TCP to the drive's listener %s while the gateway ran (its polls on another connection). The routed value adds the client→router hop, "+
		"the relay queue (a routed request starts only when no poll is due, then waits out bus_share pacing) and the reply hop",
		fig, rtuTurnaround, wire.Round(10*time.Microsecond), routeUnitRTU, directRTUSerial, tcpDrive.where)
	o.line("route_rtu_p50", ms(percentile(routedRTU, 50)), "ms", ms(rtuMedian), valueOverFloor)
	o.line("route_rtu_p99", ms(percentile(routedRTU, 99)), "ms", ms(percentile(directRTU, 99)), valueOverFloor)
	o.line("route_tcp_p50", ms(percentile(routedTCP, 50)), "ms", ms(percentile(directTCP, 50)), valueOverFloor)
	o.line("route_tcp_p99", ms(percentile(routedTCP, 99)), "ms", ms(percentile(directTCP, 99)), valueOverFloor)

	foFloor := busTimeout + rtuMedian
	o.note("%s failover: %d trials; a client reads unit %d, %v between reads (within bus_share: a reader without pause would be paced by it), the drive serving it (its serial in the reply) is silenced at T0; gap = T0 → completion of the first read "+
		"answered by another drive; floor = bus timeout %v (the first attempt's wait) + direct RTU read p50 %v = %v "+
		"(beyond it, by design: the failed drive's suspect polls, retried back to back, and the polls that fell due meanwhile go before the retried read); "+
		"%d reads answered 0x0B (both attempts failed) and %d other failures meanwhile, %d replies from the silenced drive completed after T0 (in flight at T0); victims %v",
		fig, len(fo.gaps), routeUnitRTU, routeReaderGap, busTimeout, rtuMedian.Round(10*time.Microsecond), foFloor.Round(10*time.Microsecond),
		fo.failed0B, fo.failedOther, fo.late, fo.victims)
	o.line("route_failover_p50", ms(percentile(fo.gaps, 50)), "ms", ms(foFloor), valueOverFloor)
	o.line("route_failover_max", ms(percentile(fo.gaps, 100)), "ms", ms(foFloor), valueOverFloor)

	o.note("%s dns: %d trials on random bus drives at a random phase of the poll schedule; T0 = silence → completion of the first UDP query of %s TXT (every %v) "+
		"without the drive's id=; budget = its published detect_budget_ms (%d ms); DNS removal after the registry's critical status (status_since): p50 %v, min %v, max %v",
		fig, len(dnsGone), dnsName, routeDNSEvery, dnsBudget, percentile(dnsLag, 50).Round(100*time.Microsecond),
		percentile(dnsLag, 1).Round(100*time.Microsecond), percentile(dnsLag, 100).Round(100*time.Microsecond))
	o.line("route_dns_p50", ms(percentile(dnsGone, 50)), "ms", float64(dnsBudget), valueOverBudget)
	o.line("route_dns_max", ms(percentile(dnsGone, 100)), "ms", float64(dnsBudget), valueOverBudget)

	idleRate, loadRate := idle.pollRate(), loaded.pollRate()
	readRate := float64(loaded.reads) / loaded.elapsed.Seconds()
	share := loaded.routedShare()
	o.note("%s heartbeats: bus1 polls/s = Δ rollcall_polls_total{master=\"bus1\"} (all units and outcomes) over %v windows (scraped over HTTP): without load %.1f, "+
		"under %d clients reading unit %d back to back %.1f (%d drives every %v: 40/s nominal); routed reads answered in the window %d (%.1f/s; bus requests beyond polls per "+
		"rollcall_modbus_requests_total %.0f), busy 0x06 %d, other failures %d (first: %v); routed share of bus time = Δ rollcall_master_routed_seconds_total / window (the bus time of its routed "+
		"requests; direct RTU read p50 %v for scale), budget bus_share (over time; 100 ms may run ahead); the master's own busy share (Δ rollcall_master_busy_seconds_total / window) %.3f without, %.3f with load",
		fig, window, idleRate, routeLoaders, routeUnitRTU, loadRate, routeDrives, detectPoll, loaded.reads, readRate,
		loaded.requests-loaded.polls, ld.busy.Load(), ld.failed.Load(), ld.firstErr(), rtuMedian.Round(10*time.Microsecond),
		idle.busyShare(), loaded.busyShare())
	o.line("route_polls_idle", idleRate, "polls/s", 0, noFloor)
	o.line("route_polls_load", loadRate, "polls/s", idleRate, valueOverFloor)
	o.line("route_load_reads", readRate, "reads/s", 0, noFloor)
	o.line("route_load_bus_share", share, "share", busShare, valueOverBudget)
	budget := minBudget(idleBudget, loadBudget)
	o.note("%s detect: %d trials each, a random bus drive silenced at a random phase → status_since of its critical record in the in-process registry (the confirming poll), "+
		"without load and under the routed load above; idle lines: budget = published detect_budget_ms (%d ms); load lines: floor = the same figure without load",
		fig, len(idleDetect), budget)
	o.line("route_detect_idle_p50", ms(percentile(idleDetect, 50)), "ms", float64(idleBudget), valueOverBudget)
	o.line("route_detect_idle_max", ms(percentile(idleDetect, 100)), "ms", float64(idleBudget), valueOverBudget)
	o.line("route_detect_load_p50", ms(percentile(loadDetect, 50)), "ms", ms(percentile(idleDetect, 50)), valueOverFloor)
	o.line("route_detect_load_max", ms(percentile(loadDetect, 100)), "ms", ms(percentile(idleDetect, 100)), valueOverFloor)
	o.goalAtLeast("route_polls", "bus1 poll rate under routed load / without", loadRate/idleRate, 0.95, "×")
	o.goalAtMost("route_detect_load", "max detection under routed load within detect_budget_ms", ms(percentile(loadDetect, 100)), float64(loadBudget), "ms")
	return nil
}

// minBudget is the smaller of two detect budgets, 0 meaning none yet.
func minBudget(a, b int64) int64 {
	if a == 0 || (b != 0 && b < a) {
		return b
	}
	return a
}

// routeCatalog waits until every simulated drive is passing in the gateway's registry
// and returns them by serial.
func routeCatalog(ctx context.Context, s *runningSim, g *runningGateway) (map[string]routeDrive, error) {
	want := map[string]routeDrive{}
	for _, d := range s.Devices() {
		want[d.Serial] = routeDrive{where: d.Bus, unit: d.Unit, serial: d.Serial}
	}
	deadline := time.Now().Add(routeRegister)
	for {
		got := 0
		for _, rec := range g.Registry().Snapshot() {
			d, ok := want[rec.Identity.Serial]
			if ok && rec.Status == contract.Passing {
				d.id = rec.ID
				want[rec.Identity.Serial] = d
				got++
			}
		}
		if got == len(want) {
			return want, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d of %d drives passing within %v", got, len(want), routeRegister)
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitInstance polls the registry record of id every routeCheckEvery until cond holds
// and returns it; an error naming what after deadline.
func waitInstance(ctx context.Context, g *runningGateway, id string, deadline time.Duration, what string, cond func(contract.Record) bool) (contract.Record, error) {
	end := time.Now().Add(deadline)
	for {
		rec, ok := g.Registry().Get(id)
		if ok && cond(rec) {
			return rec, nil
		}
		if time.Now().After(end) {
			return rec, fmt.Errorf("%s: not within %v (status %q, failures %d)", what, deadline, rec.Status, rec.Check.Failures)
		}
		if err := sleepCtx(ctx, routeCheckEvery); err != nil {
			return rec, err
		}
	}
}

// restore ends the fault of drive d and waits until it is passing again with a
// successful poll after the restore.
func restore(ctx context.Context, s *runningSim, g *runningGateway, d routeDrive) error {
	if err := s.SetFault(d.where, d.unit, slave.Fault{Mode: slave.FaultNone}); err != nil {
		return fmt.Errorf("restore %s unit %d: %w", d.where, d.unit, err)
	}
	at := time.Now()
	_, err := waitInstance(ctx, g, d.id, routeWaitState, fmt.Sprintf("%s unit %d passing again", d.where, d.unit), func(r contract.Record) bool {
		return r.Status == contract.Passing && r.Check.Failures == 0 && r.LastSeen.After(at)
	})
	return err
}

// silence makes drive d silent and returns when.
func silence(s *runningSim, d routeDrive) (time.Time, error) {
	if err := s.SetFault(d.where, d.unit, slave.Fault{Mode: slave.FaultSilent}); err != nil {
		return time.Time{}, fmt.Errorf("silence %s unit %d: %w", d.where, d.unit, err)
	}
	return time.Now(), nil
}

// randomPhase waits a random time below one poll interval, so that a fault falls at a
// random phase of the poll schedule.
func randomPhase(ctx context.Context, rng *rand.Rand) error {
	return sleepCtx(ctx, time.Duration(rng.Int64N(int64(detectPoll))))
}

// readResult is one read of a routed reader.
type readResult struct {
	at     time.Time // completion
	serial string
	err    error
}

// reader reads a virtual unit back to back on its own connection, sending every result
// on results, until stop.
type reader struct {
	results chan readResult
	cancel  context.CancelFunc
	done    chan struct{}
}

// startReader starts a reader of unit at the router addr, its reads pause apart.
func startReader(ctx context.Context, addr string, unit byte, pause time.Duration) (*reader, error) {
	c, err := modbus.NewTCP(modbus.TCPConfig{Address: addr, Timeout: routeClientTime})
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	r := &reader{results: make(chan readResult, 4096), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		defer c.Close()
		for rctx.Err() == nil {
			if pause > 0 && sleepCtx(rctx, pause) != nil {
				return
			}
			serial, err := readSerial(rctx, c, unit)
			select {
			case r.results <- readResult{at: time.Now(), serial: serial, err: err}:
			case <-rctx.Done():
				return
			}
		}
	}()
	return r, nil
}

// stop ends the reader and waits for it.
func (r *reader) stop() {
	r.cancel()
	<-r.done
}

// next returns the reader's next result, or an error after deadline.
func (r *reader) next(ctx context.Context, deadline *time.Timer, what string) (readResult, error) {
	select {
	case res := <-r.results:
		return res, nil
	case <-deadline.C:
		return readResult{}, fmt.Errorf("no %s within %v", what, routeWaitEvent)
	case <-ctx.Done():
		return readResult{}, ctx.Err()
	}
}

// failoverResult is what the failover trials measured.
type failoverResult struct {
	gaps        []time.Duration
	failed0B    int   // reads answered exception 0x0B after T0
	failedOther int   // other failed reads after T0
	late        int   // replies from the silenced drive completed after T0
	victims     []int // units silenced, in order
}

// failoverTrial runs one failover trial: a reader on the RTU route, the drive serving
// it silenced, the gap until a read is answered by another drive; then the drive is
// restored and passing again.
func failoverTrial(ctx context.Context, s *runningSim, g *runningGateway, drives map[string]routeDrive, rng *rand.Rand, res *failoverResult) error {
	rd, err := startReader(ctx, g.ModbusAddr(), routeUnitRTU, routeReaderGap)
	if err != nil {
		return fmt.Errorf("reader: %w", err)
	}
	defer rd.stop()
	deadline := time.NewTimer(routeWaitEvent)
	defer deadline.Stop()
	// A few good reads first: the serial of the last one is the serving drive.
	var last string
	for good := 0; good < 3; {
		r, err := rd.next(ctx, deadline, "3 routed reads before the fault")
		if err != nil {
			return err
		}
		if r.err == nil {
			good++
			last = r.serial
		}
	}
	// A random phase against the reads in flight (a routed read is some 10 ms).
	if err := sleepCtx(ctx, time.Duration(rng.Int64N(int64(20*time.Millisecond)))); err != nil {
		return err
	}
	for drained := false; !drained; {
		select {
		case r := <-rd.results:
			if r.err == nil {
				last = r.serial
			}
		default:
			drained = true
		}
	}
	victim, ok := drives[last]
	if !ok || victim.where != "bus1" {
		return fmt.Errorf("routed read answered serial %q, not one of the bus's drives", last)
	}
	t0, err := silence(s, victim)
	if err != nil {
		return err
	}
	res.victims = append(res.victims, victim.unit)
	for {
		r, err := rd.next(ctx, deadline, "read answered by another drive after silencing unit "+strconv.Itoa(victim.unit))
		if err != nil {
			_ = s.SetFault(victim.where, victim.unit, slave.Fault{Mode: slave.FaultNone})
			return err
		}
		if r.at.Before(t0) {
			continue
		}
		var ex *modbus.ExceptionError
		switch {
		case errors.As(r.err, &ex) && ex.Code == 0x0B:
			res.failed0B++
			continue
		case r.err != nil:
			res.failedOther++
			continue
		case r.serial == victim.serial:
			res.late++
			continue
		}
		res.gaps = append(res.gaps, r.at.Sub(t0))
		break
	}
	rd.stop()
	return restore(ctx, s, g, victim)
}

// dnsTXTIDs asks the DNS interface at addr for name's TXT records over UDP (EDNS0, so
// that every record fits) and returns the instance ids they carry (id=…).
func dnsTXTIDs(ctx context.Context, c *dns.Client, addr, name string) (map[string]bool, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	m.SetEdns0(4096, false)
	r, _, err := c.ExchangeContext(ctx, m, addr)
	if err != nil {
		return nil, err
	}
	if r.Truncated {
		return nil, fmt.Errorf("%s TXT: truncated answer (%d records)", name, len(r.Answer))
	}
	if r.Rcode != dns.RcodeSuccess {
		return nil, fmt.Errorf("%s TXT: rcode %s", name, dns.RcodeToString[r.Rcode])
	}
	return txtIDs(r.Answer), nil
}

// txtIDs returns the ids of "id=<id>" strings of the TXT records among rrs.
func txtIDs(rrs []dns.RR) map[string]bool {
	ids := map[string]bool{}
	for _, rr := range rrs {
		t, ok := rr.(*dns.TXT)
		if !ok {
			continue
		}
		for _, s := range t.Txt {
			if id, ok := strings.CutPrefix(s, "id="); ok {
				ids[id] = true
			}
		}
	}
	return ids
}

// dnsTrial silences drive v and times until the DNS TXT answer no longer has its id,
// and until its critical status in the registry; then restores it.
func dnsTrial(ctx context.Context, s *runningSim, g *runningGateway, c *dns.Client, name string, v routeDrive, rng *rand.Rand) (dnsSample, error) {
	addr := g.DNSAddr()
	// Present before the fault.
	end := time.Now().Add(routeWaitState)
	for {
		ids, err := dnsTXTIDs(ctx, c, addr, name)
		if err != nil {
			return dnsSample{}, fmt.Errorf("query before the fault: %w", err)
		}
		if ids[v.id] {
			break
		}
		if time.Now().After(end) {
			return dnsSample{}, fmt.Errorf("%s not in the TXT answer within %v before the fault", v.id, routeWaitState)
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return dnsSample{}, err
		}
	}
	if err := randomPhase(ctx, rng); err != nil {
		return dnsSample{}, err
	}
	t0, err := silence(s, v)
	if err != nil {
		return dnsSample{}, err
	}
	var gone time.Duration
	end = t0.Add(routeWaitEvent)
	for {
		next := time.Now().Add(routeDNSEvery)
		ids, err := dnsTXTIDs(ctx, c, addr, name)
		if err != nil {
			_ = s.SetFault(v.where, v.unit, slave.Fault{Mode: slave.FaultNone})
			return dnsSample{}, fmt.Errorf("query after the fault: %w", err)
		}
		if !ids[v.id] {
			gone = time.Since(t0)
			break
		}
		if time.Now().After(end) {
			_ = s.SetFault(v.where, v.unit, slave.Fault{Mode: slave.FaultNone})
			return dnsSample{}, fmt.Errorf("%s still in the TXT answer %v after its drive went silent", v.id, routeWaitEvent)
		}
		if err := sleepCtx(ctx, time.Until(next)); err != nil {
			return dnsSample{}, err
		}
	}
	rec, err := waitInstance(ctx, g, v.id, routeWaitEvent, fmt.Sprintf("unit %d critical after leaving DNS", v.unit), func(r contract.Record) bool {
		return r.Status == contract.Critical
	})
	if err != nil {
		_ = s.SetFault(v.where, v.unit, slave.Fault{Mode: slave.FaultNone})
		return dnsSample{}, err
	}
	return dnsSample{gone: gone, critical: rec.StatusSince.Sub(t0), budget: rec.Check.DetectBudgetMS}, restore(ctx, s, g, v)
}

// dnsSample is what one DNS trial measured, from the fault.
type dnsSample struct {
	gone     time.Duration // until the TXT answer had no record of the drive
	critical time.Duration // until the registry's critical status (status_since)
	budget   int64         // published detect_budget_ms
}

// detectTrials silences a random bus drive at a random phase per trial and times it to
// critical in the registry (the critical record's status_since, the confirming poll);
// it returns the times and the smallest published detect budget (ms).
func detectTrials(ctx context.Context, s *runningSim, g *runningGateway, busDrives []routeDrive, trials int, rng *rand.Rand) ([]time.Duration, int64, error) {
	var out []time.Duration
	var budget int64
	for t := 0; t < trials; t++ {
		v := busDrives[rng.IntN(len(busDrives))]
		if err := randomPhase(ctx, rng); err != nil {
			return nil, 0, err
		}
		t0, err := silence(s, v)
		if err != nil {
			return nil, 0, fmt.Errorf("trial %d: %w", t, err)
		}
		rec, err := waitInstance(ctx, g, v.id, routeWaitEvent, fmt.Sprintf("trial %d: unit %d critical", t, v.unit), func(r contract.Record) bool {
			return r.Status == contract.Critical
		})
		if err != nil {
			_ = s.SetFault(v.where, v.unit, slave.Fault{Mode: slave.FaultNone})
			return nil, 0, err
		}
		d := rec.StatusSince.Sub(t0)
		if d <= 0 { // status_since is wall-clock; guard against a clock step
			d = time.Since(t0)
		}
		out = append(out, d)
		budget = minBudget(budget, rec.Check.DetectBudgetMS)
		if err := restore(ctx, s, g, v); err != nil {
			return nil, 0, fmt.Errorf("trial %d: %w", t, err)
		}
	}
	return out, budget, nil
}

// load is routeLoaders clients reading a virtual unit back to back, each on its own
// connection, until stop.
type load struct {
	ok, busy, failed atomic.Int64
	first            atomic.Pointer[error]
	cancel           context.CancelFunc
	wg               sync.WaitGroup
	once             sync.Once
}

// startLoad starts k clients reading unit at the router addr.
func startLoad(ctx context.Context, addr string, unit byte, k int) *load {
	lctx, cancel := context.WithCancel(ctx)
	l := &load{cancel: cancel}
	for i := 0; i < k; i++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			c, err := modbus.NewTCP(modbus.TCPConfig{Address: addr, Timeout: routeClientTime})
			if err != nil {
				l.fail(err)
				return
			}
			defer c.Close()
			for lctx.Err() == nil {
				_, err := readSerial(lctx, c, unit)
				var ex *modbus.ExceptionError
				switch {
				case err == nil:
					l.ok.Add(1)
				case lctx.Err() != nil:
				case errors.As(err, &ex) && ex.Code == 0x06:
					l.busy.Add(1)
				default:
					l.failed.Add(1)
					l.fail(err)
				}
			}
		}()
	}
	return l
}

// fail keeps the first error.
func (l *load) fail(err error) { l.first.CompareAndSwap(nil, &err) }

// firstErr is the first error a client met, or nil.
func (l *load) firstErr() error {
	if p := l.first.Load(); p != nil {
		return *p
	}
	return nil
}

// stop ends the clients and waits for them; idempotent.
func (l *load) stop() {
	l.once.Do(func() {
		l.cancel()
		l.wg.Wait()
	})
}

// waitReads waits until the clients have n reads answered.
func (l *load) waitReads(ctx context.Context, n int64, deadline time.Duration) error {
	end := time.Now().Add(deadline)
	for l.ok.Load() < n {
		if time.Now().After(end) {
			return fmt.Errorf("%d of %d routed reads answered within %v (first error: %v)", l.ok.Load(), n, deadline, l.firstErr())
		}
		if err := sleepCtx(ctx, 5*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// busSample is one scrape of a bus's counters.
type busSample struct {
	polls, requests, busy float64 // rollcall_polls_total (summed), rollcall_modbus_requests_total, rollcall_master_busy_seconds_total
	routed                float64 // rollcall_master_routed_seconds_total
	at                    time.Time
}

// windowResult is the difference of two scrapes.
type windowResult struct {
	polls, requests, busy float64
	routed                float64
	reads                 int64 // routed reads the load answered in the window
	elapsed               time.Duration
}

func (w windowResult) pollRate() float64  { return w.polls / w.elapsed.Seconds() }
func (w windowResult) busyShare() float64 { return w.busy / w.elapsed.Seconds() }

// routedShare is the share of the window the bus spent in routed requests.
func (w windowResult) routedShare() float64 { return w.routed / w.elapsed.Seconds() }

// busWindow scrapes the bus master's counters, waits window, scrapes again and returns
// the differences (and the routed reads ld answered meanwhile, if any).
func busWindow(ctx context.Context, hc *http.Client, url, master string, window time.Duration, ld *load) (windowResult, error) {
	var reads0 int64
	if ld != nil {
		reads0 = ld.ok.Load()
	}
	a, err := scrapeBus(ctx, hc, url, master)
	if err != nil {
		return windowResult{}, fmt.Errorf("scrape before: %w", err)
	}
	if err := sleepCtx(ctx, window); err != nil {
		return windowResult{}, err
	}
	z, err := scrapeBus(ctx, hc, url, master)
	if err != nil {
		return windowResult{}, fmt.Errorf("scrape after: %w", err)
	}
	w := windowResult{polls: z.polls - a.polls, requests: z.requests - a.requests, busy: z.busy - a.busy, routed: z.routed - a.routed,
		elapsed: z.at.Sub(a.at)}
	if ld != nil {
		w.reads = ld.ok.Load() - reads0
	}
	return w, nil
}

// scrapeBus reads the counters of master from the gateway's /metrics at url.
func scrapeBus(ctx context.Context, hc *http.Client, url, master string) (busSample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return busSample{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return busSample{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return busSample{}, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	at := time.Now()
	samples, err := parseExposition(resp.Body)
	if err != nil {
		return busSample{}, fmt.Errorf("GET %s: %w", url, err)
	}
	lbl := map[string]string{"master": master}
	s := busSample{at: at}
	var found bool
	if s.polls, found = sumSeries(samples, "rollcall_polls_total", lbl); !found {
		return busSample{}, fmt.Errorf("GET %s: no rollcall_polls_total of master %q", url, master)
	}
	s.requests, _ = sumSeries(samples, "rollcall_modbus_requests_total", lbl)
	s.busy, _ = sumSeries(samples, "rollcall_master_busy_seconds_total", lbl)
	s.routed, _ = sumSeries(samples, "rollcall_master_routed_seconds_total", lbl)
	return s, nil
}

// sample is one line of a Prometheus text exposition.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseExposition parses the sample lines of a Prometheus text exposition (comments
// skipped; label values without escaped quotes, as rollcall's are).
func parseExposition(r io.Reader) ([]sample, error) {
	var out []sample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

// parseSample parses `name{k="v",…} value [timestamp]` or `name value [timestamp]`.
func parseSample(line string) (sample, error) {
	s := sample{labels: map[string]string{}}
	rest := line
	if i := strings.IndexAny(line, "{ "); i < 0 {
		return s, fmt.Errorf("metrics line %q: no value", line)
	} else {
		s.name, rest = line[:i], line[i:]
	}
	if strings.HasPrefix(rest, "{") {
		j := strings.LastIndexByte(rest, '}')
		if j < 0 {
			return s, fmt.Errorf("metrics line %q: unterminated labels", line)
		}
		for _, kv := range splitLabels(rest[1:j]) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return s, fmt.Errorf("metrics line %q: label %q", line, kv)
			}
			s.labels[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"`)
		}
		rest = rest[j+1:]
	}
	f := strings.Fields(rest)
	if len(f) == 0 {
		return s, fmt.Errorf("metrics line %q: no value", line)
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return s, fmt.Errorf("metrics line %q: %w", line, err)
	}
	s.value = v
	return s, nil
}

// splitLabels splits `k="v",k2="v2"` at the commas outside quotes.
func splitLabels(s string) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	if strings.TrimSpace(s[start:]) != "" {
		out = append(out, s[start:])
	}
	return out
}

// sumSeries sums the samples named name whose labels include every pair of match;
// found reports whether there was one.
func sumSeries(samples []sample, name string, match map[string]string) (sum float64, found bool) {
	for _, s := range samples {
		if s.name != name {
			continue
		}
		ok := true
		for k, v := range match {
			if s.labels[k] != v {
				ok = false
				break
			}
		}
		if ok {
			sum += s.value
			found = true
		}
	}
	return sum, found
}

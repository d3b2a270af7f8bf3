package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
)

// Figure noise: a noisy RS-485 line is not a dead drive.
const (
	noiseDrives = 4
	noiseRate   = 0.05 // share of replies corrupted (bad CRC), and of replies followed by a garbage burst
)

// figNoise measures figure noise: noiseDrives drives on one bus at 115200 baud whose
// every reply is corrupted with probability noiseRate, and followed by a garbage burst
// with the same probability (firmware-sim fault "noisy"), polled at 100 ms by a gateway
// with failures_before_critical 3 for b.opt.noiseFor. Every record is watched at a
// Mosquitto subscriber: the figure is the number of critical records (false criticals,
// goal 0), with the warnings (link quality) and the lowest link quality seen. Then, on
// the same noisy line, one drive answers only garbage and another goes silent: each must
// still reach critical within its published detect_budget_ms.
func figNoise(ctx context.Context, b *bench) error {
	const fig = "noise"
	log, closeLog, err := logFile(b.dir, "noise.log")
	if err != nil {
		return fmt.Errorf("%s: log file: %w", fig, err)
	}
	defer closeLog()
	broker, err := startMosquitto(b.dir)
	if err != nil {
		return fmt.Errorf("%s: start mosquitto: %w", fig, err)
	}
	defer broker.Stop()
	units := make([]int, noiseDrives)
	for i := range units {
		units[i] = i + 1
	}
	link := filepath.Join(b.dir, "noise-bus")
	s, err := startSim(ctx, simBusYAML(link, rtuBaud, rtuTurnaround, units), log)
	if err != nil {
		return fmt.Errorf("%s: sim: %w", fig, err)
	}
	defer s.Stop()
	const gwID = "bench-noise"
	sub, err := subscribe(broker.URL(), fmt.Sprintf("bench-noise-sub-%d", time.Now().UnixNano()), contract.Topics{}.GatewayCatalogFilter(gwID))
	if err != nil {
		return fmt.Errorf("%s: %w", fig, err)
	}
	defer sub.Close()
	g, _, err := startGateway(ctx, fmt.Sprintf(`gateway: {id: %s, state_dir: %s}
mqtt: {broker: %q}
discovery:
  serial:
    - {name: bus1, device: %s, baud: %d, parity: none, units: "1-%d"}
health:
  poll_interval: 100ms
  failures_before_critical: 3
  deregister_critical_after: 1h
`, gwID, filepath.Join(b.dir, "state-"+gwID), broker.URL(), link, rtuBaud, noiseDrives), log)
	if err != nil {
		return fmt.Errorf("%s: %w", fig, err)
	}
	defer g.Stop()

	// Registration on a clean line, then the noise.
	ids := map[int]string{}
	regDeadline := time.Now().Add(30 * time.Second)
	for len(ids) < noiseDrives {
		m, err := sub.next(ctx, time.Until(regDeadline), "records of every drive", func(message) bool { return true })
		if err != nil {
			return fmt.Errorf("%s: %d of %d drives registered: %w", fig, len(ids), noiseDrives, err)
		}
		if rec, err := m.record(); err == nil && rec != nil && rec.Status == contract.Passing {
			ids[rec.Endpoint.Unit] = rec.ID
		}
	}
	for i, u := range units {
		f := slave.Fault{Mode: slave.FaultNoisy, Rate: noiseRate, Seed: b.opt.seed + uint64(i)}
		if err := s.SetFault("bus1", u, f); err != nil {
			return fmt.Errorf("%s: noise on unit %d: %w", fig, u, err)
		}
	}
	b.log.Info("noisy line", "figure", fig, "for", b.opt.noiseFor)
	var critical, warning, records int
	lowest := 1.0
	end := time.Now().Add(b.opt.noiseFor)
	for {
		m, err := sub.next(ctx, time.Until(end), "", func(message) bool { return true })
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			break // the run's end
		}
		rec, err := m.record()
		if err != nil || rec == nil {
			continue
		}
		records++
		switch rec.Status {
		case contract.Critical:
			critical++
			b.log.Warn("false critical on a noisy line", "figure", fig, "instance", rec.ID, "failures", rec.Check.Failures)
		case contract.Warning:
			warning++
		}
		if q := rec.Check.LinkQuality; q != nil {
			lowest = min(lowest, *q)
		}
	}
	var requests, replies uint64
	for _, d := range s.Devices() {
		if d.Transport == "modbus-rtu" {
			requests += d.Requests
			replies += d.Replies
		}
	}

	// Real faults on the same noisy line: garbage only, then silence.
	type detection struct {
		what   string
		took   time.Duration
		budget time.Duration
	}
	var dets []detection
	for _, c := range []struct {
		what string
		unit int
		f    slave.Fault
	}{{"garbage only", 2, slave.Fault{Mode: slave.FaultGarbage}}, {"silent", 3, slave.Fault{Mode: slave.FaultSilent}}} {
		if err := s.SetFault("bus1", c.unit, c.f); err != nil {
			return fmt.Errorf("%s: %s: %w", fig, c.what, err)
		}
		at := time.Now()
		var got *contract.Record
		m, err := sub.next(ctx, 30*time.Second, c.what+" drive critical", func(m message) bool {
			rec, err := m.record()
			if err != nil || rec == nil || rec.ID != ids[c.unit] {
				return false
			}
			got = rec
			return rec.Status == contract.Critical
		})
		if err != nil {
			return fmt.Errorf("%s: %s drive: %w", fig, c.what, err)
		}
		dets = append(dets, detection{c.what, m.at.Sub(at), time.Duration(got.Check.DetectBudgetMS) * time.Millisecond})
	}

	o := b.out
	o.note("%s: %d drives on one bus, %d baud, sim turnaround %v, every reply corrupted (bad CRC) with probability %.2f and followed by a garbage burst with probability %.2f, "+
		"poll_interval 100ms, failures_before_critical 3, for %v: %d requests, %d replies; %d records at the subscriber, %d of them warning",
		fig, noiseDrives, rtuBaud, rtuTurnaround, noiseRate, noiseRate, b.opt.noiseFor, requests, replies, records, warning)
	o.line("noise_false_criticals", float64(critical), "records", 0, noFloor)
	o.line("noise_lowest_link_quality", lowest, "share", 0, noFloor)
	for _, d := range dets {
		name := "noise_detect_garbage_only"
		if d.what == "silent" {
			name = "noise_detect_silent"
		}
		o.line(name, ms(d.took), "ms", ms(d.budget), valueOverBudget)
		o.goalAtMost(name, d.what+" drive on a noisy line: critical within detect_budget_ms", ms(d.took), ms(d.budget), "ms")
	}
	o.goalAtMost(fig, fmt.Sprintf("critical records of live drives on a line with %.0f %% noise in %v", noiseRate*100, b.opt.noiseFor), float64(critical), 0, "records")
	return nil
}

package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	gmodbus "github.com/goburrow/modbus"

	"github.com/rollcall-edge/rollcall/protocols/modbus"
)

// Figure rtu_poll: FC 03 reads of 2 registers back to back against firmware-sim.
const (
	rtuBaud       = 115200
	rtuTurnaround = time.Millisecond // the simulator's configured processing time
	rtuReqBytes   = 8                // FC 03 request ADU: unit, fc, addr(2), qty(2), CRC(2)
	rtuReplyBytes = 9                // FC 03 reply ADU for 2 registers: unit, fc, count, 4 data, CRC(2)
)

// rtuFloor is the spec minimum of one poll at rtuBaud: request wire time + t3.5 (the
// slave sees the end of the request) + reply wire time + t3.5 (the gap the master must
// leave before its next request), 11 bits per character (Modbus over Serial Line V1.02
// §2.5.1), plus extra (the slave's processing time, when included).
func rtuFloor(extra time.Duration) time.Duration {
	return modbus.WireTime(rtuReqBytes, rtuBaud) + modbus.T35(rtuBaud) + modbus.WireTime(rtuReplyBytes, rtuBaud) +
		modbus.T35(rtuBaud) + extra
}

// pollRun is the outcome of polling back to back for a while.
type pollRun struct {
	ok, failed int
	elapsed    time.Duration
	times      []time.Duration // duration of each successful poll
	firstErr   error
}

// rate is the successful polls per second of wall time.
func (p *pollRun) rate() float64 { return float64(p.ok) / p.elapsed.Seconds() }

// merge adds q's polls to p.
func (p *pollRun) merge(q *pollRun) {
	p.ok += q.ok
	p.failed += q.failed
	p.elapsed += q.elapsed
	p.times = append(p.times, q.times...)
	if p.firstErr == nil {
		p.firstErr = q.firstErr
	}
}

// stalls returns how many successful polls took more than twice the median, the
// slowest, and the time they took beyond the median in total: work elsewhere on the
// machine (or a stalled simulator) shows up here.
func (p *pollRun) stalls() (n int, slowest, lost time.Duration) {
	med := percentile(p.times, 50)
	for _, t := range p.times {
		if t > 2*med {
			n++
			lost += t - med
		}
		slowest = max(slowest, t)
	}
	return n, slowest, lost
}

// pollFor calls poll back to back for d (after warm polls not counted).
func pollFor(ctx context.Context, d time.Duration, warm int, poll func() error) (*pollRun, error) {
	for i := 0; i < warm; i++ {
		if err := poll(); err != nil && i == warm-1 {
			return nil, fmt.Errorf("warm-up poll: %w", err)
		}
	}
	r := &pollRun{}
	start := time.Now()
	end := start.Add(d)
	for {
		t0 := time.Now()
		if !t0.Before(end) || ctx.Err() != nil {
			break
		}
		err := poll()
		if err != nil {
			r.failed++
			if r.firstErr == nil {
				r.firstErr = err
			}
			continue
		}
		r.ok++
		r.times = append(r.times, time.Since(t0))
	}
	r.elapsed = time.Since(start)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if r.ok == 0 {
		return nil, fmt.Errorf("no successful poll in %v: %v", d, r.firstErr)
	}
	return r, nil
}

// pollOurs polls unit 1 of link with rollcall's modbus.RTU for d.
func pollOurs(ctx context.Context, link string, d time.Duration) (*pollRun, error) {
	rtu, err := modbus.OpenRTU(modbus.SerialConfig{Device: link, Baud: rtuBaud, Parity: "none", Timeout: 100 * time.Millisecond})
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	defer rtu.Close()
	return pollFor(ctx, d, 20, func() error {
		_, err := rtu.ReadRegisters(ctx, 1, modbus.FuncReadHoldingRegisters, 0, 2)
		return err
	})
}

// pollGoburrow polls unit 1 of link with goburrow/modbus v0.1.0's own RTU client handler
// (its serial transporter, not ours) for d.
func pollGoburrow(ctx context.Context, link string, d time.Duration) (*pollRun, error) {
	h := gmodbus.NewRTUClientHandler(link)
	h.BaudRate = rtuBaud
	h.DataBits = 8
	h.Parity = "N"
	h.StopBits = 1
	h.SlaveId = 1
	h.Timeout = 500 * time.Millisecond
	h.IdleTimeout = 0 // no idle-close timer goroutine
	if err := h.Connect(); err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer h.Close()
	c := gmodbus.NewClient(h)
	return pollFor(ctx, d, 5, func() error {
		_, err := c.ReadHoldingRegisters(0, 2)
		return err
	})
}

// rawReplyLatency measures how late the simulator's replies arrive: a raw client (no
// gap keeping, no flushing) writes the FC 03 request to link and reads the 9-byte reply,
// idling 2 ms between transactions, for d; it returns the time from the write to the
// last reply byte of each transaction.
func rawReplyLatency(ctx context.Context, link string, d time.Duration) ([]time.Duration, error) {
	f, err := openRaw(link)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	pk := gmodbus.NewRTUClientHandler("") // packager only: encode with CRC
	pk.SlaveId = 1
	req, err := pk.Encode(&gmodbus.ProtocolDataUnit{FunctionCode: modbus.FuncReadHoldingRegisters, Data: []byte{0, 0, 0, 2}})
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 64)
	var out []time.Duration
	for end := time.Now().Add(d); time.Now().Before(end) && ctx.Err() == nil; {
		t0 := time.Now()
		if _, err := f.Write(req); err != nil {
			return nil, fmt.Errorf("write: %w", err)
		}
		for have := 0; have < rtuReplyBytes; {
			if err := f.SetReadDeadline(time.Now().Add(time.Second)); err != nil {
				return nil, err
			}
			n, err := f.Read(buf[have:])
			if err != nil {
				return nil, fmt.Errorf("read reply: %w", err)
			}
			have += n
		}
		out = append(out, time.Since(t0))
		time.Sleep(2 * time.Millisecond)
	}
	return out, ctx.Err()
}

// figRTUPoll measures figure rtu_poll: 2-register FC 03 reads back to back against one
// simulated drive at 115200 baud (1 ms turnaround), with our modbus.RTU and with
// goburrow's RTU handler, against the spec floor per poll; and ours once more against a
// simulator with no turnaround, to separate our overhead from the simulator's.
func figRTUPoll(ctx context.Context, b *bench) error {
	const fig = "rtu_poll"
	// Rounds interleave the clients, so that a burst of other work on the machine
	// hits them alike.
	rounds, per := 4, 2*time.Second
	if b.opt.quick {
		rounds = 1
	}
	d := time.Duration(rounds) * per
	log, closeLog, err := logFile(b.dir, "rtu-sim.log")
	if err != nil {
		return fmt.Errorf("%s: log file: %w", fig, err)
	}
	defer closeLog()
	linkT, link0 := filepath.Join(b.dir, "rtu-bus-t1"), filepath.Join(b.dir, "rtu-bus-t0")
	simT, err := startSim(ctx, simBusYAML(linkT, rtuBaud, rtuTurnaround, []int{1}), log)
	if err != nil {
		return fmt.Errorf("%s: sim (turnaround %v): %w", fig, rtuTurnaround, err)
	}
	defer simT.Stop()
	sim0, err := startSim(ctx, simBusYAML(link0, rtuBaud, 0, []int{1}), log)
	if err != nil {
		return fmt.Errorf("%s: sim (turnaround 0): %w", fig, err)
	}
	defer sim0.Stop()

	ours, gob, ours0 := &pollRun{}, &pollRun{}, &pollRun{}
	var raw []time.Duration
	for r := 0; r < rounds; r++ {
		b.log.Info("polling", "figure", fig, "round", r+1, "of", rounds, "per client", per)
		for _, c := range []struct {
			name string
			link string
			poll func(context.Context, string, time.Duration) (*pollRun, error)
			into *pollRun
		}{{"ours", linkT, pollOurs, ours}, {"goburrow", linkT, pollGoburrow, gob}, {"ours, sim turnaround 0", link0, pollOurs, ours0}} {
			pr, err := c.poll(ctx, c.link, per)
			if err != nil {
				return fmt.Errorf("%s: %s: round %d: %w", fig, c.name, r+1, err)
			}
			c.into.merge(pr)
		}
		rr, err := rawReplyLatency(ctx, linkT, per/2)
		if err != nil {
			return fmt.Errorf("%s: raw client: round %d: %w", fig, r+1, err)
		}
		raw = append(raw, rr...)
	}
	simDelay := modbus.WireTime(rtuReqBytes, rtuBaud) + modbus.T35(rtuBaud) + rtuTurnaround + modbus.WireTime(rtuReplyBytes, rtuBaud)

	floor := rtuFloor(0)
	floorT := rtuFloor(rtuTurnaround)
	floorRate, floorRateT := 1/floor.Seconds(), 1/floorT.Seconds()
	o := b.out
	o.note("%s: 1 drive, %d baud, 11 bits/char, sim turnaround %v, FC 03 ×2 registers back to back for %v per client; "+
		"floor/poll = wire(%d B) %v + t3.5 %v + wire(%d B) %v + t3.5 %v = %v (%.1f polls/s); with turnaround %v (%.1f polls/s)",
		fig, rtuBaud, rtuTurnaround, fmt.Sprintf("%v (%d interleaved rounds)", d, rounds), rtuReqBytes, modbus.WireTime(rtuReqBytes, rtuBaud), modbus.T35(rtuBaud),
		rtuReplyBytes, modbus.WireTime(rtuReplyBytes, rtuBaud), modbus.T35(rtuBaud), floor, floorRate, floorT, floorRateT)
	o.line("rtu_poll_rate_ours", ours.rate(), "polls/s", floorRate, valueOverFloor)
	o.line("rtu_poll_rate_ours_vs_floor_incl_turnaround", ours.rate(), "polls/s", floorRateT, valueOverFloor)
	o.line("rtu_poll_rate_goburrow", gob.rate(), "polls/s", floorRate, valueOverFloor)
	o.line("rtu_poll_rate_goburrow_vs_floor_incl_turnaround", gob.rate(), "polls/s", floorRateT, valueOverFloor)
	o.line("rtu_poll_rate_ours_sim_turnaround_0", ours0.rate(), "polls/s", floorRate, valueOverFloor)
	o.line("rtu_poll_time_ours_p50", ms(percentile(ours.times, 50)), "ms", ms(floorT), floorOverValue)
	o.line("rtu_poll_time_ours_p99", ms(percentile(ours.times, 99)), "ms", ms(floorT), floorOverValue)
	o.line("rtu_poll_time_goburrow_p50", ms(percentile(gob.times, 50)), "ms", ms(floorT), floorOverValue)
	o.line("rtu_sim_turnaround", ms(rtuTurnaround), "ms", 0, noFloor)
	o.line("rtu_sim_reply_latency_p50", ms(percentile(raw, 50)), "ms", ms(simDelay), floorOverValue)
	o.line("rtu_sim_reply_latency_p99", ms(percentile(raw, 99)), "ms", ms(simDelay), floorOverValue)
	for _, x := range []struct {
		name string
		r    *pollRun
	}{{"ours", ours}, {"goburrow", gob}, {"ours, sim turnaround 0", ours0}} {
		if x.r.failed > 0 {
			o.note("%s: %s: %d of %d polls failed, first: %v", fig, x.name, x.r.failed, x.r.failed+x.r.ok, x.r.firstErr)
		}
		if n, slowest, lost := x.r.stalls(); n > 0 {
			o.note("%s: %s: %d of %d polls took over twice the median (slowest %v), %v beyond the median in all, of %v",
				fig, x.name, n, x.r.ok, slowest.Round(100*time.Microsecond), lost.Round(time.Millisecond), x.r.elapsed.Round(time.Millisecond))
		}
	}
	o.goalAtLeast(fig, "ours (sim turnaround 1 ms) vs 0.9 × spec floor rate", ours.rate(), 0.9*floorRate, "polls/s")
	own := percentile(ours.times, 50) - percentile(raw, 50) - modbus.T35(rtuBaud)
	o.note("%s: against the floor incl. the sim's 1 ms turnaround ours reaches %.3f of %.1f polls/s; with a 0 ms sim turnaround %.3f of the spec floor; "+
		"the sim's replies arrive %v after the request at p50 (a raw client, %d samples) where its line model says %v, so the sim adds %v; "+
		"ours adds p50 poll − sim reply p50 − t3.5 = %v per poll",
		fig, ours.rate()/floorRateT, floorRateT, ours0.rate()/floorRate, percentile(raw, 50).Round(10*time.Microsecond), len(raw),
		simDelay.Round(10*time.Microsecond), (percentile(raw, 50) - simDelay).Round(10*time.Microsecond), own.Round(10*time.Microsecond))
	return nil
}

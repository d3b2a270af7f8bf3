package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	gmodbus "github.com/goburrow/modbus"
	"golang.org/x/sys/unix"

	"github.com/rollcall-edge/rollcall/protocols/modbus"
)

// Figure rtu_poll: FC 03 reads of 2 registers back to back against firmware-sim.
const (
	rtuBaud       = 115200
	rtuTurnaround = time.Millisecond // the simulator's configured processing time
	rtuReqBytes   = 8                // FC 03 request ADU: unit, fc, addr(2), qty(2), CRC(2)
	rtuReplyBytes = 9                // FC 03 reply ADU for 2 registers: unit, fc, count, 4 data, CRC(2)
)

// rtuFloor is the floor of one poll against firmware-sim at rtuBaud, 11 bits per
// character (Modbus over Serial Line V1.02 §2.5.1): the request's wire time, t3.5 (the
// device sees the request end after t3.5 of silence, §2.5.1.1, as firmware-sim models
// it), the device's turnaround, the reply's wire time, and t3.5 (the gap the master must
// leave before its next request). No client can poll faster than the device allows.
func rtuFloor(turnaround time.Duration) time.Duration {
	return modbus.WireTime(rtuReqBytes, rtuBaud) + modbus.T35(rtuBaud) + turnaround + modbus.WireTime(rtuReplyBytes, rtuBaud) +
		modbus.T35(rtuBaud)
}

// rtuFirstByte is when firmware-sim's line model delivers the first reply byte after the
// request was written: wire(request) + t3.5 + turnaround + one character time.
func rtuFirstByte(turnaround time.Duration) time.Duration {
	return modbus.WireTime(rtuReqBytes, rtuBaud) + modbus.T35(rtuBaud) + turnaround + modbus.CharTime(rtuBaud)
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

// rawRun is what the raw client measured: its polls, and the first reply byte's
// latency after each request was written.
type rawRun struct {
	*pollRun
	firstByte []time.Duration
}

// pollRaw polls unit 1 of link for d with a raw client: no Modbus library, a blocking
// descriptor in raw mode, waits in ppoll(2) (nanosecond timeouts, so the gap is kept to
// within the kernel's timer slack), the same t3.5 gap after the last byte as ours, no
// input flush. It is the fastest a client can poll this simulator on this machine.
func pollRaw(ctx context.Context, link string, d time.Duration) (*rawRun, error) {
	f, err := openRaw(link)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fd := int(f.Fd())                     // non-blocking; every read waits in ppoll first
	pk := gmodbus.NewRTUClientHandler("") // packager only: encode with CRC
	pk.SlaveId = 1
	req, err := pk.Encode(&gmodbus.ProtocolDataUnit{FunctionCode: modbus.FuncReadHoldingRegisters, Data: []byte{0, 0, 0, 2}})
	if err != nil {
		return nil, err
	}
	gap := modbus.T35(rtuBaud)
	buf := make([]byte, 64)
	// wait blocks until fd is readable or until; false on timeout.
	wait := func(until time.Time) (bool, error) {
		for {
			left := time.Until(until)
			if left <= 0 {
				return false, nil
			}
			ts := unix.NsecToTimespec(left.Nanoseconds())
			n, err := unix.Ppoll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, &ts, nil)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return n > 0, err
		}
	}
	var last time.Time // last byte received
	out := &rawRun{pollRun: &pollRun{}}
	poll := func() error {
		// The gap: t3.5 of silence since the last byte (stray bytes restart it).
		for !last.IsZero() {
			readable, err := wait(last.Add(gap))
			if err != nil {
				return err
			}
			if !readable {
				break
			}
			if _, err := unix.Read(fd, buf); err != nil && !errors.Is(err, unix.EAGAIN) {
				return err
			}
			last = time.Now()
		}
		if _, err := unix.Write(fd, req); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		sent := time.Now()
		have := 0
		for have < rtuReplyBytes {
			readable, err := wait(sent.Add(100 * time.Millisecond))
			if err != nil {
				return err
			}
			if !readable {
				last = time.Now()
				return fmt.Errorf("timeout after %d bytes", have)
			}
			n, err := unix.Read(fd, buf[have:])
			if err != nil && !errors.Is(err, unix.EAGAIN) {
				return err
			}
			if n > 0 && have == 0 {
				out.firstByte = append(out.firstByte, time.Since(sent))
			}
			have += max(n, 0)
			last = time.Now()
		}
		if _, err := pk.Decode(buf[:rtuReplyBytes]); err != nil {
			return err
		}
		return nil
	}
	pr, err := pollFor(ctx, d, 5, poll)
	if err != nil {
		return nil, err
	}
	out.pollRun = pr
	return out, nil
}

// figRTUPoll measures figure rtu_poll: 2-register FC 03 reads back to back against one
// simulated drive at 115200 baud (1 ms turnaround) with our modbus.RTU, goburrow's RTU
// handler and a raw client, against the floor per poll (rtuFloor, the simulator's
// turnaround included) and against the raw client measured in the same run; ours once
// more against a simulator with no turnaround; and the simulator's precision: how late
// the first reply byte reaches the raw client against the simulator's own line model.
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
	raw, raw0 := &rawRun{pollRun: &pollRun{}}, &rawRun{pollRun: &pollRun{}}
	rawPoll := func(into *rawRun) func(context.Context, string, time.Duration) (*pollRun, error) {
		return func(ctx context.Context, link string, d time.Duration) (*pollRun, error) {
			r, err := pollRaw(ctx, link, d)
			if err != nil {
				return nil, err
			}
			into.firstByte = append(into.firstByte, r.firstByte...)
			return r.pollRun, nil
		}
	}
	for r := 0; r < rounds; r++ {
		b.log.Info("polling", "figure", fig, "round", r+1, "of", rounds, "per client", per)
		for _, c := range []struct {
			name string
			link string
			poll func(context.Context, string, time.Duration) (*pollRun, error)
			into *pollRun
		}{
			{"raw", linkT, rawPoll(raw), raw.pollRun}, {"ours", linkT, pollOurs, ours}, {"goburrow", linkT, pollGoburrow, gob},
			{"raw, sim turnaround 0", link0, rawPoll(raw0), raw0.pollRun}, {"ours, sim turnaround 0", link0, pollOurs, ours0},
		} {
			pr, err := c.poll(ctx, c.link, per)
			if err != nil {
				return fmt.Errorf("%s: %s: round %d: %w", fig, c.name, r+1, err)
			}
			c.into.merge(pr)
		}
	}
	floorT, floor0 := rtuFloor(rtuTurnaround), rtuFloor(0)
	rateT, rate0 := 1/floorT.Seconds(), 1/floor0.Seconds()
	model := rtuFirstByte(rtuTurnaround)
	o := b.out
	o.note("%s: 1 drive, %d baud, 11 bits/char, sim turnaround %v, FC 03 ×2 registers back to back for %v per client; "+
		"floor/poll = wire(%d B) %v + t3.5 %v (the device sees the request end) + turnaround %v + wire(%d B) %v + t3.5 %v (master gap) = %v (%.1f polls/s); "+
		"with a 0 ms sim turnaround %v (%.1f polls/s); raw = a client without a Modbus library (ppoll(2) waits, same t3.5 gap, no flush), measured in the same run",
		fig, rtuBaud, rtuTurnaround, fmt.Sprintf("%v (%d interleaved rounds)", d, rounds), rtuReqBytes, modbus.WireTime(rtuReqBytes, rtuBaud), modbus.T35(rtuBaud),
		rtuTurnaround, rtuReplyBytes, modbus.WireTime(rtuReplyBytes, rtuBaud), modbus.T35(rtuBaud), floorT, rateT, floor0, rate0)
	o.line("rtu_poll_rate_ours", ours.rate(), "polls/s", rateT, valueOverFloor)
	o.line("rtu_poll_rate_ours_vs_raw", ours.rate(), "polls/s", raw.rate(), valueOverFloor)
	o.line("rtu_poll_rate_raw", raw.rate(), "polls/s", rateT, valueOverFloor)
	o.line("rtu_poll_rate_goburrow", gob.rate(), "polls/s", rateT, valueOverFloor)
	o.line("rtu_poll_rate_goburrow_vs_raw", gob.rate(), "polls/s", raw.rate(), valueOverFloor)
	o.line("rtu_poll_rate_ours_sim_turnaround_0", ours0.rate(), "polls/s", rate0, valueOverFloor)
	o.line("rtu_poll_rate_ours_sim_turnaround_0_vs_raw", ours0.rate(), "polls/s", raw0.rate(), valueOverFloor)
	o.line("rtu_poll_rate_raw_sim_turnaround_0", raw0.rate(), "polls/s", rate0, valueOverFloor)
	o.line("rtu_poll_time_ours_p50", ms(percentile(ours.times, 50)), "ms", ms(floorT), floorOverValue)
	o.line("rtu_poll_time_ours_p99", ms(percentile(ours.times, 99)), "ms", ms(floorT), floorOverValue)
	o.line("rtu_poll_time_raw_p50", ms(percentile(raw.times, 50)), "ms", ms(floorT), floorOverValue)
	o.line("rtu_poll_time_goburrow_p50", ms(percentile(gob.times, 50)), "ms", ms(floorT), floorOverValue)
	o.line("rtu_sim_turnaround", ms(rtuTurnaround), "ms", 0, noFloor)
	// The simulator's precision: first byte at the raw client against the line model.
	o.line("rtu_sim_first_byte_p50", ms(percentile(raw.firstByte, 50)), "ms", ms(model), valueOverFloor)
	o.line("rtu_sim_first_byte_p99", ms(percentile(raw.firstByte, 99)), "ms", ms(model), valueOverFloor)
	late50, late99 := percentile(raw.firstByte, 50)-model, percentile(raw.firstByte, 99)-model
	o.line("rtu_sim_first_byte_late_p50", ms(late50), "ms", 0.1, valueOverBudget)
	o.line("rtu_sim_first_byte_late_p99", ms(late99), "ms", 0.5, valueOverBudget)
	for _, x := range []struct {
		name string
		r    *pollRun
	}{{"raw", raw.pollRun}, {"ours", ours}, {"goburrow", gob}, {"raw, sim turnaround 0", raw0.pollRun}, {"ours, sim turnaround 0", ours0}} {
		if x.r.failed > 0 {
			o.note("%s: %s: %d of %d polls failed, first: %v", fig, x.name, x.r.failed, x.r.failed+x.r.ok, x.r.firstErr)
		}
		if n, slowest, lost := x.r.stalls(); n > 0 {
			o.note("%s: %s: %d of %d polls took over twice the median (slowest %v), %v beyond the median in all, of %v",
				fig, x.name, n, x.r.ok, slowest.Round(100*time.Microsecond), lost.Round(time.Millisecond), x.r.elapsed.Round(time.Millisecond))
		}
	}
	o.goalAtLeast(fig, "ours vs 0.95 × floor rate (sim turnaround 1 ms)", ours.rate(), 0.95*rateT, "polls/s")
	o.goalAtMost(fig+"_sim", "first reply byte later than the line model, p50", ms(late50), 0.1, "ms")
	o.goalAtMost(fig+"_sim", "first reply byte later than the line model, p99", ms(late99), 0.5, "ms")
	o.note("%s: ours reaches %.3f of the floor and %.3f of the raw client; the sim's first byte reaches the raw client %v after the request at p50 (%d samples) where its line model says %v",
		fig, ours.rate()/rateT, ours.rate()/raw.rate(), percentile(raw.firstByte, 50).Round(10*time.Microsecond), len(raw.firstByte),
		model.Round(10*time.Microsecond))
	return nil
}

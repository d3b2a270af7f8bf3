package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rollcall-edge/rollcall/internal/termios"
	"github.com/rollcall-edge/rollcall/protocols/modbus"
)

// Figure sweep: the gateway's first full sweep of unit IDs 1–247 with nobody there.
const (
	sweepUnits    = 247
	sweepReqBytes = 7 // FC 0x2B/0x0E request ADU: unit, fc, MEI type, code, object id, CRC(2)
	sweepGoal     = 2 * time.Second
)

// sweepProbeFloor is the floor of probing one absent unit at rtuBaud: the request's wire
// time, t3.5 (the slave sees the request end), the slave's turnaround (the earliest
// instant a reply could start: a shorter reply timeout would miss a present device),
// and t3.5 (the master's gap before its next request). The turnaround is the
// simulator's, 1 ms.
func sweepProbeFloor() time.Duration {
	return modbus.WireTime(sweepReqBytes, rtuBaud) + modbus.T35(rtuBaud) + rtuTurnaround + modbus.T35(rtuBaud)
}

// tapFrame is one request the gateway wrote to the bus, seen by the tap.
type tapFrame struct {
	at   time.Time // arrival of its first byte at the tap
	unit byte
	fn   byte
}

// figSweep measures figure sweep: a gateway (in-process, embedded broker) sweeps a bus
// with units "1-247" on which firmware-sim serves no drive at all. The gateway's serial
// device is a tap: a pseudo-terminal whose other end this command reads, timestamps
// every request and forwards it to the simulator's bus (nothing answers). The first
// full sweep runs from the first request to unit 1 to the first request to unit 1 of
// the second cycle (the master is then done with unit 247, resync included).
func figSweep(ctx context.Context, b *bench) error {
	const fig = "sweep"
	log, closeLog, err := logFile(b.dir, "sweep.log")
	if err != nil {
		return fmt.Errorf("%s: log file: %w", fig, err)
	}
	defer closeLog()
	simLink := filepath.Join(b.dir, "sweep-sim-bus")
	s, err := startSim(ctx, simBusYAML(simLink, rtuBaud, rtuTurnaround, nil), log)
	if err != nil {
		return fmt.Errorf("%s: %w", fig, err)
	}
	defer s.Stop()

	tap, err := startTap(ctx, simLink)
	if err != nil {
		return fmt.Errorf("%s: tap: %w", fig, err)
	}
	defer tap.close()
	tapLink := filepath.Join(b.dir, "sweep-tap")
	if err := os.Symlink(tap.path, tapLink); err != nil {
		return fmt.Errorf("%s: tap link: %w", fig, err)
	}

	g, cfg, err := startGateway(ctx, fmt.Sprintf(`gateway: {id: bench-sweep, state_dir: %s}
mqtt: {broker: embedded, embedded_listen: "127.0.0.1:0"}
discovery:
  serial:
    - {name: bus1, device: %s, baud: %d, parity: none, units: "1-%d"}
`, filepath.Join(b.dir, "state-sweep"), tapLink, rtuBaud, sweepUnits), log)
	if err != nil {
		return fmt.Errorf("%s: %w", fig, err)
	}
	defer g.Stop()
	bus := cfg.Discovery.Serial[0]

	frames, err := tap.waitSweep(ctx, 90*time.Second)
	if err != nil {
		return fmt.Errorf("%s: %w", fig, err)
	}
	start, end := frames[0].at, frames[len(frames)-1].at
	sweep := end.Sub(start)
	var gaps []time.Duration
	for i := 1; i < len(frames); i++ {
		gaps = append(gaps, frames[i].at.Sub(frames[i-1].at))
	}
	other := 0
	for _, f := range frames[:len(frames)-1] {
		if f.fn != modbus.FuncEncapsulatedInterface {
			other++
		}
	}
	pf := sweepProbeFloor()
	floor := time.Duration(sweepUnits) * pf
	o := b.out
	o.note("%s: gateway sweeping units 1-%d at %d baud, firmware-sim bus with no drive, requests timestamped by a pty tap "+
		"in front of the sim; %d requests in the first cycle (%d not FC 0x2B); bus config defaults: timeout %v, assumed turnaround %v; "+
		"floor = %d × (wire(%d B) %v + t3.5 %v + sim turnaround %v + t3.5 %v) = %v",
		fig, sweepUnits, rtuBaud, len(frames)-1, other, bus.Timeout, bus.Turnaround,
		sweepUnits, sweepReqBytes, modbus.WireTime(sweepReqBytes, rtuBaud), modbus.T35(rtuBaud), rtuTurnaround,
		modbus.T35(rtuBaud), floor)
	o.line("sweep_1_247", sweep.Seconds(), "s", floor.Seconds(), valueOverFloor)
	o.line("sweep_probe_period_p50", ms(percentile(gaps, 50)), "ms", ms(pf), valueOverFloor)
	o.line("sweep_probe_period_max", ms(percentile(gaps, 100)), "ms", ms(pf), valueOverFloor)
	o.goalAtMost(fig, "first full sweep 1–247", sweep.Seconds(), sweepGoal.Seconds(), "s")
	return nil
}

// tap is a pseudo-terminal in front of a simulated bus: the gateway opens path (the
// pty's slave side); the tap reads the master side, records each request and forwards
// the bytes to the simulator, and forwards the simulator's bytes back.
type tap struct {
	path   string   // slave device, /dev/pts/N
	master *os.File // our end (non-blocking, deadlines work)
	slave  *os.File // kept open so the master side never sees a hang-up
	sim    *os.File // the simulator's bus, opened raw
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	frames []tapFrame
	buf    []byte
	bufAt  time.Time
	notify chan struct{} // signalled (non-blocking) after new frames
}

// startTap opens the pty pair and the simulator's link and starts forwarding until
// ctx ends or close is called.
func startTap(ctx context.Context, simLink string) (*tap, error) {
	master, path, err := openPTYMaster()
	if err != nil {
		return nil, err
	}
	slave, err := openRaw(path)
	if err != nil {
		master.Close()
		return nil, err
	}
	sim, err := openRaw(simLink)
	if err != nil {
		master.Close()
		slave.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	t := &tap{path: path, master: master, slave: slave, sim: sim, cancel: cancel, notify: make(chan struct{}, 1)}
	t.wg.Add(2)
	go func() { defer t.wg.Done(); t.pump(ctx, t.master, t.sim, true) }()
	go func() { defer t.wg.Done(); t.pump(ctx, t.sim, t.master, false) }()
	return t, nil
}

// close stops the pumps, waits for them and closes the files.
func (t *tap) close() {
	t.cancel()
	t.wg.Wait()
	t.master.Close()
	t.slave.Close()
	t.sim.Close()
}

// pump copies from → to until ctx ends; record: parse what passes as requests.
func (t *tap) pump(ctx context.Context, from, to *os.File, record bool) {
	buf := make([]byte, 512)
	for ctx.Err() == nil {
		_ = from.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, err := from.Read(buf)
		if n > 0 {
			at := time.Now()
			if record {
				t.add(buf[:n], at)
			}
			_, _ = to.Write(buf[:n])
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			// EIO while the other side is closed: wait a little and go on.
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
}

// add appends bytes received at at and cuts complete request frames off the buffer.
func (t *tap) add(p []byte, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.buf) == 0 || at.Sub(t.bufAt) > 5*time.Millisecond {
		t.buf, t.bufAt = t.buf[:0], at // a silence ends whatever was partial
	}
	t.buf = append(t.buf, p...)
	added := false
	for len(t.buf) >= 2 {
		n := requestLen(t.buf)
		if n == 0 || len(t.buf) < n {
			break
		}
		if n < 0 {
			n = len(t.buf) // unknown function: the chunk is the frame
		}
		t.frames = append(t.frames, tapFrame{at: t.bufAt, unit: t.buf[0], fn: t.buf[1]})
		t.buf = append(t.buf[:0], t.buf[n:]...)
		t.bufAt = at
		added = true
	}
	if added {
		select {
		case t.notify <- struct{}{}:
		default:
		}
	}
}

// requestLen is the RTU request length for the functions a gateway sends: > 0 bytes,
// 0 when more bytes are needed, −1 when unknown.
func requestLen(b []byte) int {
	switch b[1] {
	case modbus.FuncReadHoldingRegisters, modbus.FuncReadInputRegisters, modbus.FuncWriteSingleRegister:
		return 8
	case modbus.FuncEncapsulatedInterface:
		return 7
	case modbus.FuncWriteMultipleRegisters:
		if len(b) < 7 {
			return 0
		}
		return 9 + int(b[6])
	}
	return -1
}

// waitSweep waits until the gateway has probed every unit 1–sweepUnits and then sent
// its first request of the next cycle, and returns the cycle's requests followed by
// that one.
func (t *tap) waitSweep(ctx context.Context, deadline time.Duration) ([]tapFrame, error) {
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	for {
		t.mu.Lock()
		frames := append([]tapFrame(nil), t.frames...)
		t.mu.Unlock()
		if len(frames) > 0 && frames[0].unit != 1 {
			return nil, fmt.Errorf("first request was to unit %d, not 1", frames[0].unit)
		}
		seen := map[byte]bool{}
		for i, f := range frames {
			if i > 0 && f.unit == 1 && len(seen) == sweepUnits {
				return frames[:i+1], nil
			}
			seen[f.unit] = true
		}
		select {
		case <-t.notify:
		case <-timer.C:
			return nil, fmt.Errorf("sweep not complete after %v: %d requests, %d distinct units", deadline, len(frames), len(seen))
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// openPTYMaster opens a new pseudo-terminal's master side, non-blocking (a pollable
// *os.File whose reads honour deadlines), and returns it with the slave's path.
func openPTYMaster() (*os.File, string, error) {
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, "", fmt.Errorf("open /dev/ptmx: %w", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err == nil {
		err = unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0) // unlockpt
	}
	if err != nil {
		unix.Close(fd)
		return nil, "", fmt.Errorf("ptmx ioctl: %w", err)
	}
	return os.NewFile(uintptr(fd), "/dev/ptmx"), fmt.Sprintf("/dev/pts/%d", n), nil
}

// openRaw opens a terminal non-blocking in raw mode (cfmakeraw: no echo, no line
// editing, no CR/LF translation, 8 bits).
func openRaw(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := termios.MakeRaw(fd); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("raw mode %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

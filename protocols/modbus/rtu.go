package modbus

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gmodbus "github.com/goburrow/modbus"
	"go.bug.st/serial"
)

// Defaults of SerialConfig.
const (
	// DefaultTimeout is the reply timeout when SerialConfig.Timeout is 0: 100 ms from the
	// last byte of the request to the first byte of the reply.
	DefaultTimeout = 100 * time.Millisecond
	// DefaultFrameGapMargin is added to t3.5 for the default SerialConfig.FrameGap of a
	// USB serial adapter (ttyUSB*, ttyACM*, or a tty whose sysfs device is on the USB
	// bus; any port when sysfs cannot tell): USB adapters deliver received bytes in
	// bursts (the FTDI latency timer is 16 ms by default), so a silence of t3.5 seen by
	// the host does not yet end a frame.
	DefaultFrameGapMargin = 20 * time.Millisecond
	// LocalFrameGapMargin is added to t3.5 for the default SerialConfig.FrameGap of an
	// on-board UART (ttyS*, ttyAMA*, ...: a tty whose sysfs device is not on the USB
	// bus): bytes reach the host within the UART's receive FIFO timeout (about 4
	// character times), so the margin is the FIFO timeout beyond t3.5 and the host's
	// scheduling allowance.
	LocalFrameGapMargin = 2 * time.Millisecond
	// PTYFrameGapMargin is added to t3.5 for the default SerialConfig.FrameGap of a
	// pseudo-terminal (/dev/pts/N, e.g. firmware-sim): bytes are delivered as written,
	// so the margin is the scheduling allowance of the program writing them on the same
	// host, which on a loaded machine stalls for milliseconds now and then (a simulator
	// streaming a 130-byte identification reply at line pace writes for 11 ms).
	PTYFrameGapMargin = 10 * time.Millisecond
	// MaxDeviceIDContinuations is how many "more follows" continuations
	// ReadDeviceIdentification follows after the first request.
	MaxDeviceIDContinuations = 32
)

// cancelPoll bounds every blocking read so that ctx cancellation and Close are noticed
// within this time: go.bug.st/serial cannot interrupt a pending Read except by closing
// the port.
const cancelPoll = 10 * time.Millisecond

// SerialConfig describes one RS-485/RS-232 bus and how its master times a transaction.
type SerialConfig struct {
	// Device is the serial device path, e.g. /dev/ttyUSB0, or a pseudo-terminal
	// (/dev/pts/N or a symlink to it, as made by firmware-sim).
	Device string
	// Baud is the line speed in bits/s (required, > 0), e.g. 9600, 19200, 115200.
	Baud int
	// Parity is "none", "even" or "odd" (case-insensitive). Empty means "even", the
	// default parity of Modbus over Serial Line V1.02 §2.5.1.
	Parity string
	// StopBits is 1 or 2; 0 means 1. (§2.5.1 asks for 2 stop bits without parity; many
	// devices use 1.)
	StopBits int
	// Timeout is the reply timeout: from the last byte of the request leaving the port to
	// the first byte of the reply. 0 means DefaultTimeout (100 ms).
	Timeout time.Duration
	// Turnaround is how long to wait after a broadcast (unit 0) write so that every slave
	// can process it before the next request (Modbus over Serial Line V1.02 §2.4.1,
	// typically 100–200 ms). 0 means Timeout.
	Turnaround time.Duration
	// FrameGap is the silence after a received byte that ends a partial reply early (with
	// ErrShortFrame). 0 means T35(Baud) + DefaultFrameGapMargin on a USB serial adapter
	// (or a port whose kind cannot be told), + LocalFrameGapMargin on an on-board UART,
	// + PTYFrameGapMargin on a pseudo-terminal; values below T35(Baud)
	// are raised to it (§2.5.1.1).
	FrameGap time.Duration
	// Resync is how long the master keeps listening after a failed transaction (timeout,
	// CRC error, short, malformed or wrong-unit reply), discarding whatever arrives
	// (a late reply to the failed request), before it flushes the input and frees the
	// bus. Listening goes on while bytes keep arriving, until FrameGap of silence.
	// 0 means Timeout (like libmodbus' protocol error recovery); values below FrameGap
	// are raised to it.
	Resync time.Duration
}

// Stats are cumulative per-bus counters since OpenRTU; every field counts events.
type Stats struct {
	Requests    uint64 // requests written to the bus, broadcasts included
	Broadcasts  uint64 // broadcast (unit 0) writes
	Replies     uint64 // valid normal replies
	Exceptions  uint64 // valid exception replies (*ExceptionError)
	Timeouts    uint64 // ErrTimeout
	CRCErrors   uint64 // ErrCRC
	ShortFrames uint64 // ErrShortFrame
	BadFrames   uint64 // ErrBadFrame
	WrongUnits  uint64 // *WrongUnitError
	IOErrors    uint64 // errors of the serial port itself
	Resyncs     uint64 // listen-discard-flush rounds after a failure
}

type rtuCounters struct {
	requests, broadcasts, replies, exceptions, timeouts, crcErrors,
	shortFrames, badFrames, wrongUnits, ioErrors, resyncs atomic.Uint64
}

// RTU is a Modbus RTU master on one serial bus (Modbus over Serial Line V1.02). It
// implements Client. A bus has one master: one transaction at a time, in the order the
// bus lock is acquired; callers waiting for the bus give up when their ctx ends.
// Framing (encode, CRC, unit check, decode) uses the RTU packager of
// github.com/goburrow/modbus v0.1.0; the transport (line timing, resync, cancellation)
// is this package's own.
//
// Line discipline per transaction: listen until t3.5 has passed since the last byte sent
// or received (§2.5.1.1); flush the input; write the request and drain it; read until the reply is
// complete (its length is known from its function code, byte count, exception bit or
// 0x2B object list), the reply timeout passes with nothing received (ErrTimeout), or a
// partial reply goes silent for FrameGap (ErrShortFrame). After any failure except a
// Modbus exception, it listens for the request's resync time (SerialConfig.Resync, or
// WithResync), discards what arrives and flushes the input, so a late reply is not
// taken for the reply to the next request. A transaction abandoned by its ctx or Close
// leaves that resync owed, and the next request pays it first.
type RTU struct {
	cfg       SerialConfig // normalised; read-only after OpenRTU
	t35       time.Duration
	sem       chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
	stats     rtuCounters
	lock      *busLock // the device's exclusive lock, released by Close

	// Guarded by sem (the bus lock).
	port         serial.Port
	pk           *gmodbus.RTUClientHandler // packager only, never connected
	lastActivity time.Time                 // last byte sent or received
	heard        bool                      // a byte was received since the last request was sent
	late         time.Duration             // how late the latest timed-out read of this transaction returned, at most
	dirty        bool                      // a resync is owed before the next request
	owed         time.Duration             // resync listening owed while dirty (of the failed request)
	buf          [MaxADU]byte
	scratch      [MaxADU]byte
}

var _ Client = (*RTU)(nil)

// OpenRTU opens cfg.Device as an RTU bus: 8 data bits, cfg's parity and stop bits, raw
// mode, modem status lines left as the driver sets them (Mode.InitialStatusBits nil, so
// pseudo-terminals work).
//
// One master per bus: on Linux, OpenRTU first takes an exclusive advisory lock on the
// device (flock(2) LOCK_EX|LOCK_NB on a descriptor of its own, symlinks resolved) and
// holds it until Close; an open that fails releases it. When another master holds the
// device (the lock is taken, in this process or another; or the device is open with
// exclusive access and open(2) fails with EBUSY) it fails at once, in a few ms, with a
// *BusInUseError matching ErrBusInUse that names the holders' pids and command lines
// (from /proc/locks, else /proc/*/fd), or says "holder unknown". Other systems take no
// lock; an EBUSY open there is ErrBusInUse with the holder unknown.
//
// It also returns an error naming the device when the configuration is invalid
// (ErrInvalidRequest: no device, baud <= 0, unknown parity, stop bits other than 1 or 2,
// negative durations) or the port cannot be opened (the system's error: no such device,
// permission denied, not a terminal).
func OpenRTU(cfg SerialConfig) (*RTU, error) {
	// The lock and the port are opened on the resolved path, so that a symlink replaced
	// in between (firmware-sim replaces its link on restart) cannot leave the lock on one
	// device and the port on another. A path that does not resolve is opened as given,
	// for the open to report the error (or, outside Linux, to name a port like COM3).
	path, err := filepath.EvalSymlinks(cfg.Device)
	if err != nil {
		path = cfg.Device
	}
	cfg, mode, err := normaliseConfig(cfg, frameGapMargin(path))
	if err != nil {
		return nil, fmt.Errorf("modbus: open %q: %w", cfg.Device, err)
	}
	name := deviceName(cfg.Device, path)
	// The lock is taken before serial.Open: go.bug.st/serial v1.6.4 (serial_unix.go,
	// nativeOpen) opens the port O_RDWR|O_NOCTTY|O_NDELAY and, once it is configured, sets
	// TIOCEXCL on it (acquireExclusiveAccess, its error ignored; Close clears it with
	// TIOCNXCL). While another master's port is open, any further open(2) of the tty by a
	// process without CAP_SYS_ADMIN fails with EBUSY, which the library returns as
	// *serial.PortError with code PortBusy (not a wrapped errno); root is not stopped by
	// it at all. So the lock comes first, and an EBUSY on the lock's own open is reported
	// as ErrBusInUse with the holder looked up like a lock conflict.
	lock, err := lockBus(cfg.Device, path)
	if err != nil {
		if errors.Is(err, ErrBusInUse) {
			return nil, err
		}
		return nil, fmt.Errorf("modbus: open %s: %w", name, unwrapPath(err))
	}
	port, err := serial.Open(path, mode)
	if err != nil {
		_ = lock.release() // first: not to be found among the holders
		var pe *serial.PortError
		if errors.As(err, &pe) && pe.Code() == serial.PortBusy {
			// Opened exclusively (between our lock and our open) by a program that does
			// not take the lock.
			return nil, busInUse(cfg.Device, path, err)
		}
		return nil, fmt.Errorf("modbus: open %s: %w", name, err)
	}
	if err := port.ResetInputBuffer(); err != nil {
		_ = port.Close()
		_ = lock.release()
		return nil, fmt.Errorf("modbus: open %s: flush input: %w", name, err)
	}
	r := &RTU{
		cfg:          cfg,
		t35:          T35(cfg.Baud),
		sem:          make(chan struct{}, 1),
		closed:       make(chan struct{}),
		lock:         lock,
		port:         port,
		pk:           gmodbus.NewRTUClientHandler(""),
		lastActivity: time.Now(),
		owed:         cfg.Resync,
	}
	return r, nil
}

// unwrapPath strips the *os.PathError around a system error: the caller names the device.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// normaliseConfig checks cfg and fills in its defaults; margin is added to t3.5 for the
// default frame gap (DefaultFrameGapMargin, LocalFrameGapMargin or PTYFrameGapMargin).
func normaliseConfig(cfg SerialConfig, margin time.Duration) (SerialConfig, *serial.Mode, error) {
	if cfg.Device == "" {
		return cfg, nil, fmt.Errorf("%w: no serial device", ErrInvalidRequest)
	}
	if cfg.Baud <= 0 {
		return cfg, nil, fmt.Errorf("%w: baud rate %d", ErrInvalidRequest, cfg.Baud)
	}
	mode := &serial.Mode{BaudRate: cfg.Baud, DataBits: 8}
	switch strings.ToLower(cfg.Parity) {
	case "", "even":
		cfg.Parity, mode.Parity = "even", serial.EvenParity
	case "none":
		cfg.Parity, mode.Parity = "none", serial.NoParity
	case "odd":
		cfg.Parity, mode.Parity = "odd", serial.OddParity
	default:
		return cfg, nil, fmt.Errorf("%w: parity %q (want none, even or odd)", ErrInvalidRequest, cfg.Parity)
	}
	switch cfg.StopBits {
	case 0, 1:
		cfg.StopBits, mode.StopBits = 1, serial.OneStopBit
	case 2:
		mode.StopBits = serial.TwoStopBits
	default:
		return cfg, nil, fmt.Errorf("%w: %d stop bits (want 1 or 2)", ErrInvalidRequest, cfg.StopBits)
	}
	if cfg.Timeout < 0 || cfg.Turnaround < 0 || cfg.FrameGap < 0 || cfg.Resync < 0 {
		return cfg, nil, fmt.Errorf("%w: negative duration", ErrInvalidRequest)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Turnaround == 0 {
		cfg.Turnaround = cfg.Timeout
	}
	t35 := T35(cfg.Baud)
	if cfg.FrameGap == 0 {
		cfg.FrameGap = t35 + margin
	}
	cfg.FrameGap = max(cfg.FrameGap, t35)
	if cfg.Resync == 0 {
		cfg.Resync = cfg.Timeout
	}
	cfg.Resync = max(cfg.Resync, cfg.FrameGap)
	return cfg, mode, nil
}

// Device is the serial device path this bus was opened with.
func (r *RTU) Device() string { return r.cfg.Device }

// Config is the bus configuration, defaults filled in; constant after OpenRTU.
func (r *RTU) Config() SerialConfig { return r.cfg }

// Timeout is the default reply timeout of a request (SerialConfig.Timeout, defaults
// filled in): from the last byte of the request leaving the port to the first byte of
// the reply. A request's WithTimeout option overrides it for that request.
func (r *RTU) Timeout() time.Duration { return r.cfg.Timeout }

// Resync is the default time the bus keeps listening after a failed request
// (SerialConfig.Resync, defaults filled in, at least FrameGap). A request's WithResync
// option overrides it for that request.
func (r *RTU) Resync() time.Duration { return r.cfg.Resync }

// Counters implements Client.Counters from Stats.
func (r *RTU) Counters() Counters {
	s := r.Stats()
	return Counters{Requests: s.Requests, Replies: s.Replies, Exceptions: s.Exceptions, Timeouts: s.Timeouts,
		CRCErrors: s.CRCErrors, BadFrames: s.ShortFrames + s.BadFrames + s.WrongUnits, Serial: true}
}

// timing resolves the timing of one request from the defaults and opts. The resync may
// be shorter than FrameGap: resync itself listens until FrameGap has passed since the
// last byte (Modbus over Serial Line V1.02 §2.5.1.1: a frame ends after t3.5 of
// silence, and FrameGap ≥ t3.5).
func (r *RTU) timing(opts []RequestOption) timing {
	return timing{timeout: r.cfg.Timeout, resync: r.cfg.Resync}.apply(opts)
}

// Stats returns the bus counters (cheap atomic loads; fields may be mutually
// inconsistent by a transaction in flight).
func (r *RTU) Stats() Stats {
	c := &r.stats
	return Stats{
		Requests:    c.requests.Load(),
		Broadcasts:  c.broadcasts.Load(),
		Replies:     c.replies.Load(),
		Exceptions:  c.exceptions.Load(),
		Timeouts:    c.timeouts.Load(),
		CRCErrors:   c.crcErrors.Load(),
		ShortFrames: c.shortFrames.Load(),
		BadFrames:   c.badFrames.Load(),
		WrongUnits:  c.wrongUnits.Load(),
		IOErrors:    c.ioErrors.Load(),
		Resyncs:     c.resyncs.Load(),
	}
}

// Close ends the bus: waiting callers get ErrClosed, a transaction in progress is
// abandoned within about 10 ms (ErrClosed), then the port is closed and the device's
// lock released (also when closing the port fails), so another master may open it. A
// second Close returns ErrClosed.
func (r *RTU) Close() error {
	first := false
	r.closeOnce.Do(func() {
		first = true
		close(r.closed)
	})
	if !first {
		return fmt.Errorf("%s: %w", r.cfg.Device, ErrClosed)
	}
	r.sem <- struct{}{} // take the bus for good
	perr := r.port.Close()
	lerr := r.lock.release()
	if err := errors.Join(perr, lerr); err != nil {
		return fmt.Errorf("modbus: close %s: %w", r.cfg.Device, err)
	}
	return nil
}

// ReadRegisters reads qty (1–125) registers from 0-based address addr of unit (1–247)
// with fn FuncReadHoldingRegisters or FuncReadInputRegisters (Modbus Application
// Protocol V1.1b3 §6.3, §6.4). opts set this request's timeout and resync (WithTimeout,
// WithResync). Errors: ErrInvalidRequest, ErrTimeout, ErrCRC, ErrShortFrame,
// ErrBadFrame (byte count not 2×qty), *WrongUnitError, *ExceptionError, ErrClosed,
// ctx.Err(), a serial port error; all wrapped with device and unit.
func (r *RTU) ReadRegisters(ctx context.Context, unit byte, fn byte, addr, qty uint16, opts ...RequestOption) ([]uint16, error) {
	if fn != FuncReadHoldingRegisters && fn != FuncReadInputRegisters {
		return nil, r.wrap(unit, fmt.Errorf("%w: read function 0x%02X", ErrInvalidRequest, fn))
	}
	if qty < 1 || qty > MaxReadRegisters || int(addr)+int(qty) > 0x10000 {
		return nil, r.wrap(unit, fmt.Errorf("%w: read %d registers at %d", ErrInvalidRequest, qty, addr))
	}
	if err := checkUnit(unit, false); err != nil {
		return nil, r.wrap(unit, err)
	}
	var regs []uint16
	err := r.transact(ctx, unit, pduReadRegisters(fn, addr, qty), r.timing(opts), func(data []byte) error {
		var err error
		regs, err = checkReadReply(qty, data)
		return err
	})
	return regs, err
}

// WriteRegister writes value to holding register addr of unit with FC 06 (Modbus
// Application Protocol V1.1b3 §6.6); the reply must echo address and value. Unit 0
// broadcasts: no reply, then SerialConfig.Turnaround is waited (WithTimeout does not
// change it). opts as ReadRegisters. Errors as ReadRegisters (ErrBadFrame: wrong echo).
func (r *RTU) WriteRegister(ctx context.Context, unit byte, addr, value uint16, opts ...RequestOption) error {
	if err := checkUnit(unit, true); err != nil {
		return r.wrap(unit, err)
	}
	pdu := pduWriteRegister(addr, value)
	return r.transact(ctx, unit, pdu, r.timing(opts), func(data []byte) error { return checkEcho(pdu.Data, data) })
}

// WriteRegisters writes values (1–123 registers) from holding register addr of unit with
// FC 16 (Modbus Application Protocol V1.1b3 §6.12); the reply must echo address and
// quantity. Unit 0 broadcasts as WriteRegister does. opts and errors as ReadRegisters.
func (r *RTU) WriteRegisters(ctx context.Context, unit byte, addr uint16, values []uint16, opts ...RequestOption) error {
	if len(values) < 1 || len(values) > MaxWriteRegisters || int(addr)+len(values) > 0x10000 {
		return r.wrap(unit, fmt.Errorf("%w: write %d registers at %d", ErrInvalidRequest, len(values), addr))
	}
	if err := checkUnit(unit, true); err != nil {
		return r.wrap(unit, err)
	}
	pdu := pduWriteRegisters(addr, values)
	return r.transact(ctx, unit, pdu, r.timing(opts), func(data []byte) error { return checkEcho(pdu.Data, data) })
}

// ReadDeviceIDPart runs one FC 0x2B/0x0E Read Device Identification request for unit
// (1–247) with read device ID code (DevIDBasic…DevIDSpecific) from objectID (Modbus
// Application Protocol V1.1b3 §6.21) and returns that one reply, without following
// "more follows". opts as ReadRegisters. Errors as ReadRegisters (ErrBadFrame: see
// ParseDeviceIDReply).
func (r *RTU) ReadDeviceIDPart(ctx context.Context, unit, code, objectID byte, opts ...RequestOption) (DeviceIDPart, error) {
	if code < DevIDBasic || code > DevIDSpecific {
		return DeviceIDPart{}, r.wrap(unit, fmt.Errorf("%w: read device ID code %d", ErrInvalidRequest, code))
	}
	if err := checkUnit(unit, false); err != nil {
		return DeviceIDPart{}, r.wrap(unit, err)
	}
	var part DeviceIDPart
	err := r.transact(ctx, unit, pduReadDeviceID(code, objectID), r.timing(opts), func(data []byte) error {
		var err error
		part, err = ParseDeviceIDReply(data)
		return err
	})
	return part, err
}

// ReadDeviceIdentification reads the identification objects of unit (1–247) with read
// device ID code (DevIDBasic, DevIDRegular, DevIDExtended, or DevIDSpecific for object
// 0 alone) starting at object 0, following "more follows" from each reply's next object
// id up to MaxDeviceIDContinuations times, and merges the objects (Modbus Application
// Protocol V1.1b3 §6.21). Each part is its own transaction, with opts (as
// ReadRegisters). Conformity is that of the first reply. Errors: those of
// ReadDeviceIDPart, and ErrBadFrame when the next object id does not advance or the
// device still has more after MaxDeviceIDContinuations continuations.
func (r *RTU) ReadDeviceIdentification(ctx context.Context, unit byte, code byte, opts ...RequestOption) (*DeviceIdentification, error) {
	return followDeviceID(
		func(obj byte) (DeviceIDPart, error) { return r.ReadDeviceIDPart(ctx, unit, code, obj, opts...) },
		func(err error) error { return r.wrap(unit, err) })
}

// Transact relays one request PDU to unit (1–247; no broadcast: a relayed request
// expects its reply) and returns its normal reply PDU (Client.Transact). opts and
// errors as ReadRegisters, plus ErrInvalidRequest for a PDU Transact cannot carry
// (checkRelayPDU).
func (r *RTU) Transact(ctx context.Context, unit byte, pdu []byte, opts ...RequestOption) ([]byte, error) {
	if err := checkRelayPDU(pdu); err != nil {
		return nil, r.wrap(unit, err)
	}
	if err := checkUnit(unit, false); err != nil {
		return nil, r.wrap(unit, err)
	}
	var reply []byte
	err := r.transact(ctx, unit, gmodbus.ProtocolDataUnit{FunctionCode: pdu[0], Data: pdu[1:]}, r.timing(opts), func(data []byte) error {
		reply = relayReply(pdu[0], data)
		return nil
	})
	return reply, err
}

// checkUnit enforces the serial line address range (§2.2 of Modbus over Serial Line
// V1.02): 1–247, or 0 (broadcast) for writes.
func checkUnit(unit byte, broadcastOK bool) error {
	switch {
	case unit == BroadcastUnit && !broadcastOK:
		return fmt.Errorf("%w: broadcast (unit 0) gets no reply", ErrInvalidRequest)
	case unit > MaxUnit:
		return fmt.Errorf("%w: unit %d above %d", ErrInvalidRequest, unit, MaxUnit)
	}
	return nil
}

func (r *RTU) wrap(unit byte, err error) error {
	return fmt.Errorf("%s unit %d: %w", r.cfg.Device, unit, err)
}

// ioError marks an error of the serial port itself (not a protocol outcome).
type ioError struct{ err error }

func (e *ioError) Error() string { return "serial: " + e.err.Error() }
func (e *ioError) Unwrap() error { return e.err }

// transact runs one request with timing tm on the bus and hands the data of a valid
// normal reply to check (under the bus lock; check must copy what it keeps). Unit 0: no
// reply.
func (r *RTU) transact(ctx context.Context, unit byte, pdu gmodbus.ProtocolDataUnit, tm timing, check func(data []byte) error) error {
	if err := r.acquire(ctx); err != nil {
		return r.wrap(unit, err)
	}
	defer func() { <-r.sem }()
	if err := r.exchange(ctx, unit, pdu, tm, check); err != nil {
		return r.wrap(unit, err)
	}
	return nil
}

// acquire takes the bus lock, or gives up when ctx ends or the bus is closed.
func (r *RTU) acquire(ctx context.Context) error {
	if err := r.interrupted(ctx); err != nil {
		return err
	}
	select {
	case r.sem <- struct{}{}:
	case <-r.closed:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := r.interrupted(ctx); err != nil {
		<-r.sem
		return err
	}
	return nil
}

// interrupted reports ErrClosed or ctx.Err() without blocking.
func (r *RTU) interrupted(ctx context.Context) error {
	select {
	case <-r.closed:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	default:
		return nil
	}
}

// pause waits d, or until ctx ends or the bus is closed.
func (r *RTU) pause(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return r.interrupted(ctx)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-r.closed:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// readUntil reads what has arrived into p, waiting at most until until (and at most
// cancelPoll). (0, nil) means nothing arrived in that time.
//
// A read that times out records how late it returned (r.late, the largest of the
// transaction): the host's scheduling latency, which a device simulated on the same
// host suffers too.
func (r *RTU) readUntil(until time.Time, p []byte) (int, error) {
	d := min(max(time.Until(until), 0), cancelPoll)
	if err := r.port.SetReadTimeout(d); err != nil {
		return 0, &ioError{err}
	}
	target := time.Now().Add(d)
	n, err := r.port.Read(p)
	if err != nil {
		return n, &ioError{err}
	}
	if n == 0 {
		r.late = max(r.late, time.Since(target))
	}
	return n, nil
}

// exchange is one transaction under the bus lock. A resync owed by an earlier request
// is paid first, with that request's resync time; a failure of this one owes (and, unless
// it was abandoned, pays at once) tm.resync.
func (r *RTU) exchange(ctx context.Context, unit byte, pdu gmodbus.ProtocolDataUnit, tm timing, check func([]byte) error) error {
	r.late = 0
	if tm.trace != nil {
		defer func() { tm.trace.Late = r.late }()
	}
	if r.dirty {
		if err := r.resync(ctx); err != nil {
			return r.failed(err)
		}
	}
	r.pk.SlaveId = unit
	req, err := r.pk.Encode(&pdu)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidRequest, err)
	}
	if err := r.waitGap(ctx); err != nil {
		return err
	}
	if err := r.send(req); err != nil {
		r.owe(tm.resync)
		return r.failed(err)
	}
	if tm.trace != nil {
		*tm.trace = Trace{Sent: r.lastActivity, RequestBytes: len(req)}
	}
	if unit == BroadcastUnit {
		r.stats.broadcasts.Add(1)
		if err := r.pause(ctx, r.cfg.Turnaround); err != nil {
			r.owe(tm.resync) // the next request must not follow too soon
			return err
		}
		return nil
	}
	err = r.receive(ctx, req, tm.timeout, check, tm.trace)
	if err == nil {
		r.stats.replies.Add(1)
		return nil
	}
	var ex *ExceptionError
	if errors.As(err, &ex) {
		r.stats.exceptions.Add(1) // a complete, valid reply: the bus is in sync
		return err
	}
	r.owe(tm.resync)
	if errors.Is(err, ErrClosed) || (ctx.Err() != nil && errors.Is(err, ctx.Err())) {
		return err // abandoned: the resync is owed by the next transaction
	}
	r.failed(err)
	_ = r.resync(ctx) // if this is cut short the bus stays dirty; err is what the caller needs
	return err
}

// owe marks the bus dirty: before the next transaction it listens for d, and at least
// until FrameGap has passed since the last byte, and flushes (resync).
func (r *RTU) owe(d time.Duration) {
	r.dirty = true
	r.owed = d
}

// failed counts err in the stats and returns it.
func (r *RTU) failed(err error) error {
	var wu *WrongUnitError
	var ioe *ioError
	switch {
	case errors.As(err, &ioe):
		r.stats.ioErrors.Add(1)
	case errors.Is(err, ErrTimeout):
		r.stats.timeouts.Add(1)
	case errors.Is(err, ErrCRC):
		r.stats.crcErrors.Add(1)
	case errors.Is(err, ErrShortFrame):
		r.stats.shortFrames.Add(1)
	case errors.Is(err, ErrBadFrame):
		r.stats.badFrames.Add(1)
	case errors.As(err, &wu):
		r.stats.wrongUnits.Add(1)
	}
	return err
}

// waitGap keeps the inter-frame gap (Modbus over Serial Line V1.02 §2.5.1.1): it listens
// until t3.5 has passed since the last byte sent or received on the bus. Stray bytes
// arriving meanwhile are discarded and restart the gap (for at most Resync). Waiting in a
// read (select(2) with a µs timeout) keeps the gap close to t3.5; a Go timer would
// overshoot by up to a millisecond.
func (r *RTU) waitGap(ctx context.Context) error {
	stop := time.Now().Add(r.cfg.Resync)
	for {
		until := r.lastActivity.Add(r.t35)
		if now := time.Now(); !now.Before(until) || !now.Before(stop) {
			return nil
		}
		if err := r.interrupted(ctx); err != nil {
			return err
		}
		k, err := r.readUntil(earlier(until, stop), r.scratch[:])
		if err != nil {
			return err
		}
		if k > 0 {
			r.lastActivity = time.Now()
		}
	}
}

// send flushes the input, writes req and waits until it has left the port.
//
// A system call interrupted by a signal (EINTR) is made again: go.bug.st/serial v1.6.4
// returns the raw errno of tcdrain (ioctl TCSBRK), write(2) and tcflush, and the Go
// runtime's own signals (SIGURG for asynchronous preemption) interrupt a tcdrain that is
// waiting — about once a minute at 40 polls/s, which counted as a failed poll.
func (r *RTU) send(req []byte) error {
	if err := retryEINTR(r.port.ResetInputBuffer); err != nil {
		return &ioError{fmt.Errorf("flush input: %w", err)}
	}
	for p := req; len(p) > 0; {
		n, err := r.port.Write(p)
		if err != nil && !(errors.Is(err, syscall.EINTR) && n == 0) {
			return &ioError{fmt.Errorf("write: %w", err)}
		}
		p = p[n:]
	}
	if err := retryEINTR(r.port.Drain); err != nil {
		return &ioError{fmt.Errorf("drain: %w", err)}
	}
	r.lastActivity = time.Now()
	r.heard = false
	r.stats.requests.Add(1)
	return nil
}

// receive reads the reply to req (sent at r.lastActivity) and checks it; timeout is the
// wait for its first byte. tr, if not nil, gets the first byte's latency and the bytes
// received.
func (r *RTU) receive(ctx context.Context, req []byte, timeout time.Duration, check func([]byte) error, tr *Trace) error {
	sent := r.lastActivity
	deadline := sent.Add(timeout)
	hardCap := deadline.Add(WireTime(MaxADU, r.cfg.Baud) + r.cfg.FrameGap)
	have := 0
	var last time.Time
	for {
		if have > 0 {
			n, known, err := ExpectedReplyLength(req[1], r.buf[:have])
			if err != nil {
				return err
			}
			if known && have >= n {
				if have > n {
					return fmt.Errorf("%w: %d bytes run on after a %d-byte frame", ErrBadFrame, have-n, n)
				}
				return r.decode(req, r.buf[:n], check)
			}
			if have == len(r.buf) { // cannot happen: unknown lengths are bounded by MaxADU
				return fmt.Errorf("%w: no complete frame in %d bytes", ErrBadFrame, have)
			}
		}
		if err := r.interrupted(ctx); err != nil {
			return err
		}
		until := deadline
		if have > 0 {
			until = earlier(last.Add(r.cfg.FrameGap), hardCap)
		}
		if !time.Now().Before(until) {
			if have == 0 {
				return fmt.Errorf("%w (%v)", ErrTimeout, timeout)
			}
			return fmt.Errorf("%w: %d bytes, then silence", ErrShortFrame, have)
		}
		k, err := r.readUntil(until, r.buf[have:])
		if err != nil {
			return err
		}
		if k > 0 {
			last = time.Now()
			if have == 0 && tr != nil {
				tr.FirstByte = max(last.Sub(sent), time.Nanosecond)
			}
			have += k
			r.lastActivity = last
			r.heard = true
			if tr != nil {
				tr.ReplyBytes = have
			}
		}
	}
}

// decode checks a complete frame: CRC (goburrow Decode), unit (goburrow Verify),
// function code and exception bit (not checked by goburrow v0.1.0), then the reply data.
func (r *RTU) decode(req, frame []byte, check func([]byte) error) error {
	pdu, err := r.pk.Decode(frame)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCRC, err)
	}
	if err := r.pk.Verify(req, frame); err != nil {
		if frame[0] != req[0] {
			return &WrongUnitError{Want: req[0], Got: frame[0]}
		}
		return fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	switch pdu.FunctionCode {
	case req[1]:
		return check(pdu.Data)
	case req[1] | 0x80:
		if len(pdu.Data) != 1 {
			return fmt.Errorf("%w: exception reply with %d data bytes", ErrBadFrame, len(pdu.Data))
		}
		return &ExceptionError{Function: req[1], Code: pdu.Data[0]}
	}
	return fmt.Errorf("%w: function code 0x%02X in reply to 0x%02X", ErrBadFrame, pdu.FunctionCode, req[1])
}

// resync listens for at least the owed resync time (the failed request's: SerialConfig.
// Resync or its WithResync) and until FrameGap of silence since the last byte received
// (bounded), discards what arrives, and flushes the input. When nothing was received
// since the request, t3.5 since it is all the spec needs to have passed (Modbus over
// Serial Line V1.02 §2.5.1.1: no frame is in progress). On success the bus is clean.
func (r *RTU) resync(ctx context.Context) error {
	r.dirty = true
	r.stats.resyncs.Add(1)
	gap := r.cfg.FrameGap
	if !r.heard {
		gap = r.t35
	}
	quiet := later(time.Now().Add(r.owed), r.lastActivity.Add(gap))
	stop := quiet.Add(WireTime(2*MaxADU, r.cfg.Baud) + r.cfg.FrameGap) // a babbling line
	for {
		now := time.Now()
		if !now.Before(quiet) || !now.Before(stop) {
			break
		}
		if err := r.interrupted(ctx); err != nil {
			return err
		}
		k, err := r.readUntil(earlier(quiet, stop), r.scratch[:])
		if err != nil {
			return err
		}
		if k > 0 {
			r.lastActivity = time.Now()
			r.heard = true
			quiet = later(quiet, r.lastActivity.Add(r.cfg.FrameGap))
		}
	}
	if err := r.port.ResetInputBuffer(); err != nil {
		return &ioError{fmt.Errorf("flush input: %w", err)}
	}
	r.dirty = false
	return nil
}

// retryEINTR calls f again while it fails with EINTR (a system call interrupted by a
// signal, to be restarted), at most 100 times.
func retryEINTR(f func() error) error {
	err := f()
	for i := 0; i < 100 && errors.Is(err, syscall.EINTR); i++ {
		err = f()
	}
	return err
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

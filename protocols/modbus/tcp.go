package modbus

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	gmodbus "github.com/goburrow/modbus"
)

// Defaults of TCPConfig.
const (
	// DefaultTCPTimeout is the reply timeout when TCPConfig.Timeout is 0: 500 ms from
	// sending the request to the last byte of the reply.
	DefaultTCPTimeout = 500 * time.Millisecond
	// DefaultMinBackoff is the first reconnect backoff after a failed dial when
	// TCPConfig.MinBackoff is 0.
	DefaultMinBackoff = 100 * time.Millisecond
	// DefaultMaxBackoff caps the reconnect backoff when TCPConfig.MaxBackoff is 0.
	DefaultMaxBackoff = 5 * time.Second
)

// MBAP framing (Modbus Messaging on TCP/IP Implementation Guide V1.0b §3.1.3): a 7-byte
// header (transaction identifier, protocol identifier, length, all big-endian 16-bit,
// then the unit identifier) followed by the PDU (function code and data, at most 253
// bytes; Modbus Application Protocol V1.1b3 §4.1). The length field counts the unit
// identifier and the PDU.
const (
	// MBAPHeaderLen is the length of the MBAP header in bytes, unit identifier included.
	MBAPHeaderLen = 7
	// MaxTCPADU is the largest Modbus TCP ADU in bytes: MBAP header + a 253-byte PDU.
	MaxTCPADU = MBAPHeaderLen + maxPDU
	// maxPDU is the largest PDU: function code + 252 data bytes (§4.1 of the application
	// protocol: 256-byte RTU frame minus address and CRC).
	maxPDU = 253
	// mbapMinLength is the smallest valid length field: unit identifier + function code.
	mbapMinLength = 2
	// mbapMaxLength is the largest valid length field: unit identifier + maxPDU.
	mbapMaxLength = 1 + maxPDU
	// mbapProtocolID is the protocol identifier of Modbus (§3.1.3: 0 = MODBUS protocol).
	mbapProtocolID = 0
)

// TCP unit identifiers (Modbus Messaging on TCP/IP Implementation Guide V1.0b §4.4.2).
const (
	// TCPUnitNotUsed (0xFF) is the unit identifier to use when addressing a Modbus TCP
	// server directly, not a device behind a gateway. A Modbus TCP master accepts every
	// unit identifier 0–255; 1–247 address serial devices behind a gateway, 0 is answered
	// by many servers too (there is no broadcast on TCP: every request gets a reply).
	TCPUnitNotUsed byte = 0xFF
)

// TCPConfig describes one Modbus TCP endpoint and how its master times a transaction
// and reconnects.
type TCPConfig struct {
	// Address is the endpoint as host:port, e.g. "192.168.1.10:502" (502 is the
	// registered Modbus port, Implementation Guide V1.0b §4.1.2) or "[fe80::1%eth0]:502".
	Address string
	// Timeout is the reply timeout: from sending the request to the last byte of its
	// reply. 0 means DefaultTCPTimeout (500 ms).
	Timeout time.Duration
	// DialTimeout bounds one connection attempt. 0 means Timeout.
	DialTimeout time.Duration
	// MinBackoff is how long calls fail at once with ErrUnreachable after the first
	// failed dial; every further failed dial doubles it, up to MaxBackoff. A successful
	// exchange (a complete reply, normal or exception) starts over from MinBackoff.
	// 0 means DefaultMinBackoff (100 ms).
	MinBackoff time.Duration
	// MaxBackoff caps the reconnect backoff. 0 means DefaultMaxBackoff (5 s), or
	// MinBackoff if that is longer; it must not be below MinBackoff.
	MaxBackoff time.Duration
}

// TCPStats are cumulative per-endpoint counters since NewTCP; every field counts events.
type TCPStats struct {
	Requests     uint64 // requests written to a connection
	Replies      uint64 // valid normal replies
	Exceptions   uint64 // valid exception replies (*ExceptionError)
	Timeouts     uint64 // ErrTimeout
	ShortFrames  uint64 // ErrShortFrame: the deadline or a peer close in the middle of a reply
	BadFrames    uint64 // ErrBadFrame
	WrongUnits   uint64 // *WrongUnitError
	StaleReplies uint64 // replies with an earlier transaction id, read and discarded
	IOErrors     uint64 // connection errors of a request: EOF, reset, write failure
	Dials        uint64 // connection attempts
	DialFailures uint64 // failed connection attempts (each starts or extends a backoff)
	Unreachable  uint64 // calls refused at once during the backoff, without dialling
	Resets       uint64 // connections closed by the master after a failed transaction
	PeerCloses   uint64 // idle connections found closed by the peer before a request
}

type tcpCounters struct {
	requests, replies, exceptions, timeouts, shortFrames, badFrames, wrongUnits,
	staleReplies, ioErrors, dials, dialFailures, unreachable, resets, peerCloses atomic.Uint64
}

// TCP is a Modbus TCP master for one endpoint (Modbus Messaging on TCP/IP
// Implementation Guide V1.0b). It implements Client. All unit IDs of the endpoint share
// one connection, one transaction at a time, in the order the lock is acquired; callers
// waiting for the lock give up when their ctx ends. The MBAP header is written and
// checked here; the transport (connection, transaction ids, deadlines) is this
// package's own, not goburrow's.
//
// Connection lifecycle: the connection is dialled lazily by the first request, so a
// gateway can start while the device is off. Each request gets the next transaction id.
// A reply with a transaction id sent earlier on the connection (a late reply to a
// request abandoned by its ctx, or a duplicate) is read and discarded, and reading goes
// on until the request's own reply or the deadline. After a timeout, a peer close or
// reset, any other connection error, or a malformed reply (ErrShortFrame, ErrBadFrame:
// protocol id not 0, length field out of range, unknown transaction id, bad PDU), the
// connection is closed and the next request redials; a Modbus exception or a complete
// reply from another unit id (*WrongUnitError) leaves it open. An idle connection that
// the peer has closed (e.g. a server's idle timeout) is noticed before a request is sent
// and redialled at no cost to the request (Linux; elsewhere that request fails with a
// connection error). A failed dial starts a backoff (TCPConfig MinBackoff, doubling up
// to MaxBackoff) during which calls fail at once with ErrUnreachable; a successful
// exchange resets it. There is no resync: WithResync is ignored.
//
// The end of a request's ctx interrupts its transaction at once. The master watches the
// ctx of its latest request (one context.AfterFunc, kept while requests come with the
// same ctx, as a poller's do, and dropped by Close) rather than registering a watch per
// request; a request with another ctx moves the watch to it.
type TCP struct {
	cfg       TCPConfig // normalised; read-only after NewTCP
	sem       chan struct{}
	closed    chan struct{} // closed by Close
	closeOnce sync.Once
	stats     tcpCounters
	now       func() time.Time // clock of the backoff; time.Now except in tests

	// Guarded by sem (the connection lock).
	conn       net.Conn
	rd         *bufio.Reader
	probe      *peerProbe // conn's check for a peer that closed it while idle
	tid        uint16     // transaction id of the last request sent
	sentOnConn uint64     // requests sent on conn: how far back a stale transaction id may go
	backoff    time.Duration
	retryAt    time.Time // no dial before this while dialErr is set
	dialErr    error     // the last dial error, until a dial succeeds
	watchDone  <-chan struct{}
	watchStop  func() bool // stops the watch of the ctx whose Done channel is watchDone
	// wbuf holds the request ADU: requests of up to tcpSmallADU bytes (reads,
	// identification, single writes) are built in it, longer ones (FC 16) allocate.
	wbuf [tcpSmallADU]byte

	// The transaction in flight, for the watch of its ctx and for Close, which move its
	// deadline into the past to end a blocked Write or Read at once, and the dial in
	// progress, which Close cancels. Guarded by activeMu; set and cleared under sem too.
	activeMu   sync.Mutex
	active     net.Conn        // nil between transactions
	activeDone <-chan struct{} // the Done channel of its ctx
	dialing    context.CancelFunc
}

// tcpSmallADU is the size of the request buffer kept per TCP master (see TCP.wbuf):
// an MBAP header and a PDU of up to 9 bytes.
const tcpSmallADU = 16

var _ Client = (*TCP)(nil)

// NewTCP returns a master for the endpoint cfg.Address, defaults filled in. It does not
// connect: the first request dials. It returns an error wrapping ErrInvalidRequest when
// the address is not host:port or a duration is negative or MinBackoff exceeds
// MaxBackoff.
func NewTCP(cfg TCPConfig) (*TCP, error) {
	cfg, err := normaliseTCPConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("modbus: tcp %q: %w", cfg.Address, err)
	}
	t := &TCP{
		cfg:    cfg,
		sem:    make(chan struct{}, 1),
		closed: make(chan struct{}),
		now:    time.Now,
	}
	return t, nil
}

func normaliseTCPConfig(cfg TCPConfig) (TCPConfig, error) {
	// An empty host means the local system, as for net.Dial.
	if _, port, err := net.SplitHostPort(cfg.Address); err != nil || port == "" {
		return cfg, fmt.Errorf("%w: address %q is not host:port", ErrInvalidRequest, cfg.Address)
	}
	if cfg.Timeout < 0 || cfg.DialTimeout < 0 || cfg.MinBackoff < 0 || cfg.MaxBackoff < 0 {
		return cfg, fmt.Errorf("%w: negative duration", ErrInvalidRequest)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTCPTimeout
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = cfg.Timeout
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = max(DefaultMaxBackoff, cfg.MinBackoff)
	}
	if cfg.MinBackoff > cfg.MaxBackoff {
		return cfg, fmt.Errorf("%w: min backoff %v above max backoff %v", ErrInvalidRequest, cfg.MinBackoff, cfg.MaxBackoff)
	}
	return cfg, nil
}

// Address is the endpoint (host:port) this master was made for.
func (t *TCP) Address() string { return t.cfg.Address }

// Config is the endpoint configuration, defaults filled in; constant after NewTCP.
func (t *TCP) Config() TCPConfig { return t.cfg }

// Timeout is the default reply timeout of a request (TCPConfig.Timeout, defaults
// filled in): from sending the request to the last byte of its reply. A request's
// WithTimeout option overrides it for that request; the dial timeout is separate
// (TCPConfig.DialTimeout).
func (t *TCP) Timeout() time.Duration { return t.cfg.Timeout }

// Resync is 0: Modbus TCP has no resync listening (a failed transaction closes the
// connection; a late reply on a kept one is discarded by its transaction id), and
// WithResync is ignored.
func (t *TCP) Resync() time.Duration { return 0 }

// Counters implements Client.Counters from Stats.
func (t *TCP) Counters() Counters {
	s := t.Stats()
	return Counters{Requests: s.Requests, Replies: s.Replies, Exceptions: s.Exceptions, Timeouts: s.Timeouts,
		BadFrames: s.ShortFrames + s.BadFrames + s.WrongUnits}
}

// timing resolves the timing of one request from the default timeout and opts.
func (t *TCP) timing(opts []RequestOption) timing {
	return timing{timeout: t.cfg.Timeout}.apply(opts)
}

// Stats returns the endpoint counters (cheap atomic loads; fields may be mutually
// inconsistent by a transaction in flight).
func (t *TCP) Stats() TCPStats {
	c := &t.stats
	return TCPStats{
		Requests:     c.requests.Load(),
		Replies:      c.replies.Load(),
		Exceptions:   c.exceptions.Load(),
		Timeouts:     c.timeouts.Load(),
		ShortFrames:  c.shortFrames.Load(),
		BadFrames:    c.badFrames.Load(),
		WrongUnits:   c.wrongUnits.Load(),
		StaleReplies: c.staleReplies.Load(),
		IOErrors:     c.ioErrors.Load(),
		Dials:        c.dials.Load(),
		DialFailures: c.dialFailures.Load(),
		Unreachable:  c.unreachable.Load(),
		Resets:       c.resets.Load(),
		PeerCloses:   c.peerCloses.Load(),
	}
}

// Close ends the master: waiting callers get ErrClosed, a transaction or dial in
// progress is abandoned at once (ErrClosed), then the connection is closed and the
// watch of the requests' ctx (see TCP) is dropped. A second Close returns ErrClosed.
func (t *TCP) Close() error {
	first := false
	t.closeOnce.Do(func() {
		first = true
		close(t.closed)
	})
	if !first {
		return fmt.Errorf("%s: %w", t.cfg.Address, ErrClosed)
	}
	t.interrupt(nil)    // a transaction in flight ends now
	t.sem <- struct{}{} // take the connection for good
	if t.watchStop != nil {
		t.watchStop()
		t.watchStop, t.watchDone = nil, nil
	}
	if t.conn != nil {
		err := t.conn.Close()
		t.conn, t.rd = nil, nil
		if err != nil {
			return fmt.Errorf("modbus: close %s: %w", t.cfg.Address, err)
		}
	}
	return nil
}

// ReadRegisters reads qty (1–125) registers from 0-based address addr of unit (0–255)
// with fn FuncReadHoldingRegisters or FuncReadInputRegisters (Modbus Application
// Protocol V1.1b3 §6.3, §6.4). Errors: ErrInvalidRequest, ErrUnreachable, ErrTimeout,
// ErrShortFrame, ErrBadFrame (also: byte count not 2×qty), *WrongUnitError,
// *ExceptionError, ErrClosed, ctx.Err(), a connection error (e.g. io.EOF,
// syscall.ECONNRESET); all wrapped with address and unit. opts: WithTimeout sets this
// request's reply timeout; WithResync is ignored.
func (t *TCP) ReadRegisters(ctx context.Context, unit byte, fn byte, addr, qty uint16, opts ...RequestOption) ([]uint16, error) {
	if fn != FuncReadHoldingRegisters && fn != FuncReadInputRegisters {
		return nil, t.wrap(unit, fmt.Errorf("%w: read function 0x%02X", ErrInvalidRequest, fn))
	}
	if qty < 1 || qty > MaxReadRegisters || int(addr)+int(qty) > 0x10000 {
		return nil, t.wrap(unit, fmt.Errorf("%w: read %d registers at %d", ErrInvalidRequest, qty, addr))
	}
	var regs []uint16
	err := t.transact(ctx, unit, pduReadRegisters(fn, addr, qty), t.timing(opts), func(data []byte) error {
		var err error
		regs, err = checkReadReply(qty, data)
		return err
	})
	return regs, err
}

// WriteRegister writes value to holding register addr of unit (0–255) with FC 06
// (Modbus Application Protocol V1.1b3 §6.6); the reply must echo address and value.
// There is no broadcast on TCP: unit 0 gets a reply like any other. opts and errors as
// ReadRegisters (ErrBadFrame: wrong echo).
func (t *TCP) WriteRegister(ctx context.Context, unit byte, addr, value uint16, opts ...RequestOption) error {
	pdu := pduWriteRegister(addr, value)
	return t.transact(ctx, unit, pdu, t.timing(opts), func(data []byte) error { return checkEcho(pdu.Data, data) })
}

// WriteRegisters writes values (1–123 registers) from holding register addr of unit
// (0–255) with FC 16 (Modbus Application Protocol V1.1b3 §6.12); the reply must echo
// address and quantity. opts and errors as ReadRegisters.
func (t *TCP) WriteRegisters(ctx context.Context, unit byte, addr uint16, values []uint16, opts ...RequestOption) error {
	if len(values) < 1 || len(values) > MaxWriteRegisters || int(addr)+len(values) > 0x10000 {
		return t.wrap(unit, fmt.Errorf("%w: write %d registers at %d", ErrInvalidRequest, len(values), addr))
	}
	pdu := pduWriteRegisters(addr, values)
	return t.transact(ctx, unit, pdu, t.timing(opts), func(data []byte) error { return checkEcho(pdu.Data, data) })
}

// ReadDeviceIDPart runs one FC 0x2B/0x0E Read Device Identification request for unit
// (0–255) with read device ID code (DevIDBasic…DevIDSpecific) from objectID (Modbus
// Application Protocol V1.1b3 §6.21) and returns that one reply, without following
// "more follows". opts and errors as ReadRegisters (ErrBadFrame: see
// ParseDeviceIDReply).
func (t *TCP) ReadDeviceIDPart(ctx context.Context, unit, code, objectID byte, opts ...RequestOption) (DeviceIDPart, error) {
	if code < DevIDBasic || code > DevIDSpecific {
		return DeviceIDPart{}, t.wrap(unit, fmt.Errorf("%w: read device ID code %d", ErrInvalidRequest, code))
	}
	var part DeviceIDPart
	err := t.transact(ctx, unit, pduReadDeviceID(code, objectID), t.timing(opts), func(data []byte) error {
		var err error
		part, err = ParseDeviceIDReply(data)
		return err
	})
	return part, err
}

// ReadDeviceIdentification reads the identification objects of unit (0–255) with read
// device ID code (DevIDBasic, DevIDRegular, DevIDExtended, or DevIDSpecific for object
// 0 alone) starting at object 0, following "more follows" from each reply's next object
// id up to MaxDeviceIDContinuations times, and merges the objects (Modbus Application
// Protocol V1.1b3 §6.21). Each part is its own transaction, with opts (as
// ReadRegisters). Conformity is that of the first reply. Errors: those of ReadDeviceIDPart, and ErrBadFrame when the next object
// id does not advance or the device still has more after MaxDeviceIDContinuations
// continuations.
func (t *TCP) ReadDeviceIdentification(ctx context.Context, unit byte, code byte, opts ...RequestOption) (*DeviceIdentification, error) {
	return followDeviceID(
		func(obj byte) (DeviceIDPart, error) { return t.ReadDeviceIDPart(ctx, unit, code, obj, opts...) },
		func(err error) error { return t.wrap(unit, err) })
}

// Transact relays one request PDU to unit (0–255) and returns its normal reply PDU
// (Client.Transact). opts and errors as ReadRegisters, plus ErrInvalidRequest for a PDU
// Transact cannot carry (checkRelayPDU).
func (t *TCP) Transact(ctx context.Context, unit byte, pdu []byte, opts ...RequestOption) ([]byte, error) {
	if err := checkRelayPDU(pdu); err != nil {
		return nil, t.wrap(unit, err)
	}
	var reply []byte
	err := t.transact(ctx, unit, gmodbus.ProtocolDataUnit{FunctionCode: pdu[0], Data: pdu[1:]}, t.timing(opts), func(data []byte) error {
		reply = relayReply(pdu[0], data)
		return nil
	})
	return reply, err
}

func (t *TCP) wrap(unit byte, err error) error {
	return fmt.Errorf("%s unit %d: %w", t.cfg.Address, unit, err)
}

// appendMBAP appends the Modbus TCP ADU of pdu for unit with transaction id tid to dst:
// transaction id, protocol id 0, length (unit + PDU), unit, function code, data
// (Implementation Guide V1.0b §3.1.3).
func appendMBAP(dst []byte, tid uint16, unit byte, pdu gmodbus.ProtocolDataUnit) []byte {
	dst = binary.BigEndian.AppendUint16(dst, tid)
	dst = binary.BigEndian.AppendUint16(dst, mbapProtocolID)
	dst = binary.BigEndian.AppendUint16(dst, uint16(2+len(pdu.Data)))
	dst = append(dst, unit, pdu.FunctionCode)
	return append(dst, pdu.Data...)
}

// mbapHeader is a decoded MBAP header.
type mbapHeader struct {
	tid    uint16 // transaction identifier
	length uint16 // bytes that follow the length field: unit + PDU
	unit   byte   // unit identifier
}

// parseMBAPHeader decodes the 7-byte MBAP header h (Implementation Guide V1.0b
// §3.1.3). It returns an error wrapping ErrBadFrame when the protocol identifier is not
// 0 or the length field is outside 2–254 (unit + function code, up to unit + a 253-byte
// PDU): the stream cannot be trusted to be framed after such a header.
func parseMBAPHeader(h []byte) (mbapHeader, error) {
	hdr := mbapHeader{
		tid:    binary.BigEndian.Uint16(h),
		length: binary.BigEndian.Uint16(h[4:]),
		unit:   h[6],
	}
	if pid := binary.BigEndian.Uint16(h[2:]); pid != mbapProtocolID {
		return hdr, fmt.Errorf("%w: MBAP protocol id %d, want 0", ErrBadFrame, pid)
	}
	if hdr.length < mbapMinLength || hdr.length > mbapMaxLength {
		return hdr, fmt.Errorf("%w: MBAP length %d outside %d–%d", ErrBadFrame, hdr.length, mbapMinLength, mbapMaxLength)
	}
	return hdr, nil
}

// connError marks an error of the connection itself (not a protocol outcome).
type connError struct{ err error }

func (e *connError) Error() string { return "connection: " + e.err.Error() }
func (e *connError) Unwrap() error { return e.err }

// transact runs one request with timing tm on the connection and hands the data of a
// valid normal reply to check (under the lock; check must copy what it keeps).
func (t *TCP) transact(ctx context.Context, unit byte, pdu gmodbus.ProtocolDataUnit, tm timing, check func(data []byte) error) error {
	if err := t.acquire(ctx); err != nil {
		return t.wrap(unit, err)
	}
	defer func() { <-t.sem }()
	if err := t.exchange(ctx, unit, pdu, tm.timeout, check); err != nil {
		return t.wrap(unit, err)
	}
	return nil
}

// acquire takes the connection lock, or gives up when ctx ends or the master is closed.
func (t *TCP) acquire(ctx context.Context) error {
	if err := t.interrupted(ctx); err != nil {
		return err
	}
	select {
	case t.sem <- struct{}{}:
	case <-t.closed:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := t.interrupted(ctx); err != nil {
		<-t.sem
		return err
	}
	return nil
}

// interrupted reports ErrClosed or ctx.Err() without blocking.
func (t *TCP) interrupted(ctx context.Context) error {
	select {
	case <-t.closed:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	default:
		return nil
	}
}

// exchange is one transaction under the lock, with reply timeout timeout.
func (t *TCP) exchange(ctx context.Context, unit byte, pdu gmodbus.ProtocolDataUnit, timeout time.Duration, check func([]byte) error) error {
	if err := t.connect(ctx); err != nil {
		return err
	}
	// The end of ctx, or Close, moves the deadline into the past, which ends a blocked
	// Write or Read at once; activeMu keeps that from hitting the next transaction.
	t.watch(ctx)
	t.activeMu.Lock()
	t.active, t.activeDone = t.conn, ctx.Done()
	err := t.conn.SetDeadline(time.Now().Add(timeout))
	t.activeMu.Unlock()
	defer func() {
		t.activeMu.Lock()
		t.active, t.activeDone = nil, nil
		t.activeMu.Unlock()
	}()
	if err != nil {
		t.reset()
		return t.failed(&connError{err})
	}
	// Ended before the transaction was marked active: the watch or Close found nothing
	// to interrupt.
	if err := t.interrupted(ctx); err != nil {
		return err
	}

	t.tid++
	req := appendMBAP(t.wbuf[:0], t.tid, unit, pdu)
	if _, err := t.conn.Write(req); err != nil {
		t.reset() // part of the request may be on the wire
		if e := t.interrupted(ctx); e != nil {
			return e
		}
		return t.failed(&connError{fmt.Errorf("write: %w", err)})
	}
	t.sentOnConn++
	t.stats.requests.Add(1)

	if err = t.receive(ctx, req, timeout, check); err == nil {
		t.stats.replies.Add(1)
		t.backoff = 0
		return nil
	}
	return t.receiveFailed(ctx, err)
}

// receiveFailed accounts a transaction whose reply was not a valid normal one, and
// resets the connection unless the stream is still in step.
func (t *TCP) receiveFailed(ctx context.Context, err error) error {
	var ex *ExceptionError
	var wu *WrongUnitError
	switch {
	case errors.As(err, &ex):
		t.stats.exceptions.Add(1) // a complete, valid reply: the device is alive
		t.backoff = 0
		return err
	case errors.As(err, &wu):
		// A complete frame with our transaction id: the stream is in step, keep it.
		t.stats.wrongUnits.Add(1)
		return err
	case errors.Is(err, ErrClosed) || (ctx.Err() != nil && errors.Is(err, ctx.Err())):
		return err // receive has reset the connection if it stopped inside a frame
	}
	t.reset()
	return t.failed(err)
}

// watch makes sure that the end of ctx interrupts the transactions run with it (see
// interrupt). One watch (context.AfterFunc) is kept per TCP and replaced only when a
// call brings a ctx with another Done channel, so a master polling with one long-lived
// ctx registers it once, not on every request. Under sem.
func (t *TCP) watch(ctx context.Context) {
	done := ctx.Done()
	if done == nil || done == t.watchDone {
		return
	}
	if t.watchStop != nil {
		t.watchStop()
	}
	t.watchDone = done
	t.watchStop = context.AfterFunc(ctx, func() { t.interrupt(done) })
}

// interrupt moves the deadline of the transaction in flight into the past when its
// ctx's Done channel is done; or, when done is nil (Close), that of any transaction,
// and cancels a dial in progress.
func (t *TCP) interrupt(done <-chan struct{}) {
	t.activeMu.Lock()
	defer t.activeMu.Unlock()
	if t.active != nil && (done == nil || t.activeDone == done) {
		_ = t.active.SetDeadline(time.Unix(1, 0))
	}
	if done == nil && t.dialing != nil {
		t.dialing()
	}
}

// connect makes sure there is a live connection: it drops one the peer has closed,
// refuses at once during the reconnect backoff, or dials (bounded by ctx, Close and
// DialTimeout).
func (t *TCP) connect(ctx context.Context) error {
	if t.conn != nil {
		if t.rd.Buffered() > 0 || !t.probe.closed() {
			return nil
		}
		t.stats.peerCloses.Add(1)
		t.drop()
	}
	if t.dialErr != nil {
		if now := t.now(); now.Before(t.retryAt) {
			t.stats.unreachable.Add(1)
			return fmt.Errorf("%w (next dial in %v): %w", ErrUnreachable, t.retryAt.Sub(now).Round(time.Millisecond), t.dialErr)
		}
	}
	t.stats.dials.Add(1)
	op, cancel := context.WithCancel(ctx) // ends with ctx or Close (interrupt)
	defer cancel()
	t.activeMu.Lock()
	t.dialing = cancel
	t.activeMu.Unlock()
	defer func() {
		t.activeMu.Lock()
		t.dialing = nil
		t.activeMu.Unlock()
	}()
	if err := t.interrupted(ctx); err != nil {
		return err // closed before the dial could be cancelled
	}
	d := net.Dialer{Timeout: t.cfg.DialTimeout}
	conn, err := d.DialContext(op, "tcp", t.cfg.Address)
	if err != nil {
		if e := t.interrupted(ctx); e != nil {
			return e // abandoned, not a failure of the endpoint
		}
		t.stats.dialFailures.Add(1)
		if t.backoff == 0 {
			t.backoff = t.cfg.MinBackoff
		} else {
			t.backoff = min(2*t.backoff, t.cfg.MaxBackoff)
		}
		t.retryAt = t.now().Add(t.backoff)
		t.dialErr = err
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	t.dialErr = nil // the backoff step itself is reset by a successful exchange
	t.conn = conn
	t.probe = newPeerProbe(conn)
	t.rd = bufio.NewReaderSize(conn, MaxTCPADU) // receive peeks a whole frame in it
	t.sentOnConn = 0
	return nil
}

// receive reads frames until the reply to req (same transaction id) and checks it.
// Frames with a transaction id sent earlier on this connection are discarded. timeout
// is the request's reply timeout (for the error message; the deadline is set).
//
// A frame is read in place: its bytes are peeked in the connection's reader (which
// holds MaxTCPADU, a whole frame) and discarded once handled, so check sees them in the
// reader's buffer. A read that fails leaves the bytes of the frame so far unconsumed;
// the connection is reset then, except when nothing of the frame had arrived.
func (t *TCP) receive(ctx context.Context, req []byte, timeout time.Duration, check func([]byte) error) error {
	for {
		h, err := t.rd.Peek(MBAPHeaderLen)
		if err != nil {
			return t.readFailed(ctx, len(h), timeout, err)
		}
		hdr, err := parseMBAPHeader(h)
		if err != nil {
			return err
		}
		size := MBAPHeaderLen + int(hdr.length) - 1
		frame, err := t.rd.Peek(size)
		if err != nil {
			return t.readFailed(ctx, len(frame), timeout, err)
		}
		if hdr.tid != t.tid {
			if d := t.tid - hdr.tid; uint64(d) < t.sentOnConn {
				t.stats.staleReplies.Add(1)
				_, _ = t.rd.Discard(size)
				continue
			}
			return fmt.Errorf("%w: transaction id %d, want %d (never sent on this connection)", ErrBadFrame, hdr.tid, t.tid)
		}
		err = decodeTCPReply(req, hdr.unit, frame[MBAPHeaderLen:], check)
		_, _ = t.rd.Discard(size)
		return err
	}
}

// decodeTCPReply checks the unit and PDU (function code, data) of the reply to the
// Modbus TCP request req: *WrongUnitError, an *ExceptionError (§7 of the application
// protocol; exactly one data byte), ErrBadFrame for another function code, or check's
// verdict on the data of a normal reply.
func decodeTCPReply(req []byte, unit byte, pdu []byte, check func([]byte) error) error {
	if want := req[6]; unit != want {
		return &WrongUnitError{Want: want, Got: unit}
	}
	fn := req[MBAPHeaderLen]
	switch pdu[0] {
	case fn:
		return check(pdu[1:])
	case fn | 0x80:
		if len(pdu) != 2 {
			return fmt.Errorf("%w: exception reply with %d data bytes", ErrBadFrame, len(pdu)-1)
		}
		return &ExceptionError{Function: fn, Code: pdu[1]}
	}
	return fmt.Errorf("%w: function code 0x%02X in reply to 0x%02X", ErrBadFrame, pdu[0], fn)
}

// readFailed turns a read error after got bytes of a frame, in a transaction with reply
// timeout timeout, into the transaction's error. A read cut short inside a frame leaves the stream out of step: when the
// transaction was interrupted, the connection is reset here (other errors are reset by
// exchange).
func (t *TCP) readFailed(ctx context.Context, got int, timeout time.Duration, err error) error {
	if e := t.interrupted(ctx); e != nil {
		if got > 0 {
			t.reset()
		}
		return e // the reply may still come: the next request discards it by its id
	}
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded) && got == 0:
		return fmt.Errorf("%w (%v)", ErrTimeout, timeout)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%w: %d bytes, then the deadline", ErrShortFrame, got)
	case got > 0:
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF
		}
		return fmt.Errorf("%w: %d bytes, then connection: %w", ErrShortFrame, got, err)
	case errors.Is(err, io.EOF):
		return &connError{fmt.Errorf("closed by peer: %w", err)}
	}
	return &connError{err}
}

// failed counts err in the stats and returns it.
func (t *TCP) failed(err error) error {
	var ce *connError
	switch {
	case errors.Is(err, ErrTimeout):
		t.stats.timeouts.Add(1)
	case errors.Is(err, ErrShortFrame):
		t.stats.shortFrames.Add(1)
	case errors.Is(err, ErrBadFrame):
		t.stats.badFrames.Add(1)
	case errors.As(err, &ce):
		t.stats.ioErrors.Add(1)
	}
	return err
}

// reset closes the connection after a failed transaction; the next request redials.
func (t *TCP) reset() {
	if t.conn != nil {
		t.stats.resets.Add(1)
		t.drop()
	}
}

// drop closes the connection, if any.
func (t *TCP) drop() {
	if t.conn != nil {
		_ = t.conn.Close()
		t.conn, t.rd, t.probe = nil, nil, nil
	}
}

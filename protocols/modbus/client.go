// Package modbus is rollcall's Modbus master: an RTU transport over a serial port (one
// master per bus, line timing per Modbus over Serial Line V1.02), a Modbus TCP transport
// (one connection per endpoint, MBAP framing per Modbus Messaging on TCP/IP
// Implementation Guide V1.0b), FC 0x2B/0x0E Read Device Identification, and typed errors
// so callers can tell a dead link from a live device that refuses a request.
//
// RTU framing (ADU encode, CRC, verify, decode) uses the packager of
// github.com/goburrow/modbus v0.1.0; the MBAP header is written and checked here. No
// goburrow transport is used: the line discipline of a bus (t3.5 inter-frame gaps,
// listening and flushing after a failed transaction, cancellation by ctx and Close,
// per-request timeouts) and MBAP transaction handling are implemented in this package.
package modbus

import (
	"context"
	"time"
)

// Function codes rollcall uses or relays (Modbus Application Protocol V1.1b3 §6).
const (
	FuncReadCoils              byte = 0x01 // §6.1
	FuncReadDiscreteInputs     byte = 0x02 // §6.2
	FuncReadHoldingRegisters   byte = 0x03 // §6.3
	FuncReadInputRegisters     byte = 0x04 // §6.4
	FuncWriteSingleCoil        byte = 0x05 // §6.5
	FuncWriteSingleRegister    byte = 0x06 // §6.6
	FuncWriteMultipleCoils     byte = 0x0F // §6.11
	FuncWriteMultipleRegisters byte = 0x10 // §6.12
	FuncMaskWriteRegister      byte = 0x16 // §6.16
	FuncReadWriteMultipleRegs  byte = 0x17 // §6.17
	FuncEncapsulatedInterface  byte = 0x2B // §6.21, with MEI type 0x0E
	MEIReadDeviceID            byte = 0x0E // MEI type of Read Device Identification
)

// MaxPDU is the largest Modbus PDU in bytes: function code and data (Modbus
// Application Protocol V1.1b3 §4.1: 256-byte RTU ADU − unit − CRC).
const MaxPDU = 253

// Read Device ID codes (Modbus Application Protocol V1.1b3 §6.21, table "Read Device ID code").
const (
	DevIDBasic    byte = 0x01 // stream access, objects 0x00–0x02
	DevIDRegular  byte = 0x02 // stream access, objects 0x03–0x7F
	DevIDExtended byte = 0x03 // stream access, objects 0x80–0xFF
	DevIDSpecific byte = 0x04 // one object
)

// Standard object IDs of Read Device Identification (§6.21).
const (
	ObjVendorName          byte = 0x00
	ObjProductCode         byte = 0x01
	ObjMajorMinorRevision  byte = 0x02
	ObjVendorURL           byte = 0x03
	ObjProductName         byte = 0x04
	ObjModelName           byte = 0x05
	ObjUserApplicationName byte = 0x06
)

// DeviceIdentification is the merged answer of one Read Device Identification
// request, after following every "more follows" continuation.
type DeviceIdentification struct {
	// Conformity is the conformity level byte of the reply (e.g. 0x83).
	Conformity byte
	// Objects maps object ID to its value as sent (bytes taken as a string; not
	// validated as UTF-8 here).
	Objects map[byte]string
}

// Client is one Modbus master endpoint: an RTU bus (many unit IDs behind one serial port)
// or a Modbus TCP endpoint (many unit IDs behind one connection, e.g. a TCP/RTU
// gateway). Implementations serialise requests: at most one transaction is on the wire
// at a time. Every method honours ctx cancellation and the request's reply timeout
// (the client's default, Timeout, unless a WithTimeout option sets another for that
// request), and returns the typed errors of errors.go (ErrTimeout, ErrCRC,
// *ExceptionError, *WrongUnitError, ErrShortFrame, ErrUnreachable, ...), wrapped with %w
// so errors.Is/As work.
//
// Per-request options (WithTimeout, WithResync) apply to that one call only (to every
// transaction of it: ReadDeviceIdentification may take several) and never change the
// client's defaults, so concurrent callers with different options do not affect each
// other. Implemented by *RTU and *TCP.
type Client interface {
	// ReadRegisters reads qty (1–125) 16-bit registers starting at 0-based address addr
	// with function fn, which must be FuncReadHoldingRegisters or FuncReadInputRegisters
	// (Modbus Application Protocol V1.1b3 §6.3, §6.4).
	ReadRegisters(ctx context.Context, unit byte, fn byte, addr, qty uint16, opts ...RequestOption) ([]uint16, error)
	// WriteRegister writes one holding register (FC 06, §6.6).
	WriteRegister(ctx context.Context, unit byte, addr, value uint16, opts ...RequestOption) error
	// WriteRegisters writes 1–123 holding registers starting at addr (FC 16, §6.12).
	WriteRegisters(ctx context.Context, unit byte, addr uint16, values []uint16, opts ...RequestOption) error
	// ReadDeviceIdentification runs FC 0x2B/0x0E (§6.21) with the given read device ID
	// code (DevIDBasic, DevIDRegular, DevIDExtended; DevIDSpecific reads object 0 alone)
	// starting at object 0, following "more follows" until the device says it is done
	// (at most 32 continuations), and merges the objects. opts apply to every part.
	ReadDeviceIdentification(ctx context.Context, unit byte, code byte, opts ...RequestOption) (*DeviceIdentification, error)
	// Transact sends one request PDU (function code and data, as a client sent it) to
	// unit and returns the PDU of its normal reply as received, byte for byte (a copy),
	// for relaying: a gateway that forwards another master's requests. The function code
	// must be one whose reply this package can delimit (RelayableFunction); an exception
	// reply is returned as *ExceptionError, whose Function and Code are the exception
	// PDU's two bytes. The reply is checked only as a frame (unit, function code, CRC on
	// RTU, MBAP on TCP), not against the request's addresses or quantities.
	Transact(ctx context.Context, unit byte, pdu []byte, opts ...RequestOption) ([]byte, error)
	// Timeout is the default reply timeout of a request (one without WithTimeout), as
	// configured (SerialConfig.Timeout, TCPConfig.Timeout); constant for the client's life.
	Timeout() time.Duration
	// Resync is the default time the client keeps listening after a failed request (one
	// without WithResync) before the next request may start: SerialConfig.Resync on an
	// RTU bus, 0 on Modbus TCP (which closes the connection instead, see TCP). Constant
	// for the client's life. Timeout()+Resync() is about the longest a failed request
	// keeps the client busy (plus the request's wire time and t3.5 on a bus).
	Resync() time.Duration
	// Counters returns the transaction counters every client keeps (since it was made);
	// the transport-specific details are in RTU.Stats and TCP.Stats.
	Counters() Counters
	// Close releases the port or connection. Calls after Close return ErrClosed.
	Close() error
}

// Counters are the transaction counters common to every Modbus client, counted since
// the client was made. Safe to read while requests run.
type Counters struct {
	Requests   uint64 // requests written (on RTU, broadcasts included)
	Replies    uint64 // valid normal replies
	Exceptions uint64 // valid exception replies (*ExceptionError)
	Timeouts   uint64 // ErrTimeout
	// CRCErrors counts ErrCRC: replies whose CRC-16 did not match (Modbus over Serial
	// Line V1.02 §2.5.1.2). Always 0 on Modbus TCP, whose frames carry no CRC.
	CRCErrors uint64
	// BadFrames counts replies that were short, malformed or from another unit
	// (ErrShortFrame, ErrBadFrame, *WrongUnitError).
	BadFrames uint64
	// Serial is true for an RTU bus (CRCErrors is meaningful).
	Serial bool
}

// RequestOption sets a parameter of one request (see Client). Make one with WithTimeout
// or WithResync; the zero value changes nothing. When several options set the same
// parameter, the last one wins. Options are plain values: passing them allocates
// nothing beyond the variadic slice.
type RequestOption struct {
	timeout time.Duration // > 0: reply timeout of this request
	resync  time.Duration // > 0: resync listening after this request fails (RTU)
	trace   *Trace        // non-nil: filled with the request's timing (RTU)
}

// WithTimeout sets the reply timeout of one request to d instead of the client's
// default (Client.Timeout). On an RTU bus it runs from the last byte of the request
// leaving the port to the first byte of the reply (a reply that has started is then
// bounded by the frame gap, SerialConfig.FrameGap); on Modbus TCP from sending the
// request to the last byte of its reply. A caller can compute it per request, e.g.
// t3.5 (T35, Modbus over Serial Line V1.02 §2.5.1.1) + the device's turnaround + the
// wire time of the expected reply (WireTime) + a margin. d <= 0 keeps the default.
func WithTimeout(d time.Duration) RequestOption { return RequestOption{timeout: d} }

// WithResync sets how long an RTU bus keeps listening after this request fails
// (timeout, CRC error, short, malformed or wrong-unit reply), discarding a late reply,
// before it flushes its input and frees the bus for the next request; see
// SerialConfig.Resync. Whatever d is, listening goes on until the frame gap
// (SerialConfig.FrameGap, at least t3.5 of Modbus over Serial Line V1.02 §2.5.1.1) has
// passed since the last byte received, or t3.5 since the request when nothing was
// received, which is all the spec needs: after a timeout with nothing received that is
// already over, after a garbled reply it ends the frame. So WithResync(time.Nanosecond)
// asks for the shortest resync the spec allows:
// right when the reply timeout already covers the device's slowest reply (an adaptive
// per-request timeout) or no device, hence no late reply, is expected (a sweep probe).
// d <= 0 keeps the default (Client.Resync). Modbus TCP ignores it: a failed TCP
// transaction closes the connection, and a late reply on a kept connection is told apart
// by its MBAP transaction identifier.
func WithResync(d time.Duration) RequestOption { return RequestOption{resync: d} }

// WithTrace asks an RTU bus to record the timing of this request in t (overwritten; for
// ReadDeviceIdentification, that of its last transaction). t must not be shared by
// concurrent requests. Modbus TCP leaves t unchanged.
func WithTrace(t *Trace) RequestOption { return RequestOption{trace: t} }

// Trace is the timing of one RTU transaction, filled by a request made WithTrace.
type Trace struct {
	// Sent is when the request's last byte had been handed to the port and drained
	// (tcdrain: on a real line, when it has left the transmitter); zero if it was never
	// sent.
	Sent time.Time
	// FirstByte is the time from Sent to the first byte of the reply being read; 0 when
	// nothing arrived before the reply timeout. It is the device's response latency as
	// the master sees it: t3.5 (the device's end-of-frame detection) + its turnaround +
	// one character time on a physical line, plus the request's wire time when the port
	// drains at once (a pseudo-terminal).
	FirstByte time.Duration
	// RequestBytes and ReplyBytes are the lengths of the request ADU and of what was
	// received (0 if nothing), in bytes.
	RequestBytes, ReplyBytes int
	// Late is how much later than asked the master's timed waits of this transaction
	// (the inter-frame gap, the reply timeout) returned, at most: the scheduling latency
	// of the master's host at that moment, 0 when none of them timed out.
	Late time.Duration
}

// timing is the resolved timing of one request.
type timing struct {
	timeout time.Duration // reply timeout (> 0)
	resync  time.Duration // resync listening after a failure (RTU)
	trace   *Trace        // nil, or where an RTU transaction records its timing
}

// apply returns t with opts applied in order.
func (t timing) apply(opts []RequestOption) timing {
	for _, o := range opts {
		if o.timeout > 0 {
			t.timeout = o.timeout
		}
		if o.resync > 0 {
			t.resync = o.resync
		}
		if o.trace != nil {
			t.trace = o.trace
		}
	}
	return t
}

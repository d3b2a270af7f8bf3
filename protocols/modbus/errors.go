package modbus

import (
	"errors"
	"fmt"
)

// Sentinel errors returned (wrapped) by Client implementations.
var (
	// ErrTimeout: not one byte of a reply within the request timeout. The device may be
	// absent or silent; the bus is resynchronised (a late reply listened for and
	// discarded, input flushed) before the next request. On Modbus TCP the connection is
	// closed and the next request redials.
	ErrTimeout = errors.New("modbus: timeout waiting for reply")
	// ErrCRC: a reply of the expected length arrived with a bad CRC-16
	// (Modbus over Serial Line V1.02 §2.5.1.2).
	ErrCRC = errors.New("modbus: CRC error")
	// ErrShortFrame: some bytes of a reply arrived, but the reply ended (inter-frame
	// silence, or the deadline; on Modbus TCP also the peer closing the connection)
	// before its expected length.
	ErrShortFrame = errors.New("modbus: short frame")
	// ErrBadFrame: the reply is malformed: a function code that is neither the
	// request's nor its exception (seen as soon as the second byte arrives), a byte
	// count or echo that disagrees with the request, an unparsable 0x2B object list, or
	// extra bytes run on after a complete frame (no inter-frame silence). On Modbus TCP
	// also an MBAP header with a protocol identifier other than 0, a length field out of
	// range, or a transaction identifier that was never sent on the connection.
	ErrBadFrame = errors.New("modbus: malformed reply")
	// ErrDeviceIDLoop: a Read Device Identification (FC 0x2B/0x0E) that still says
	// "more follows" after MaxDeviceIDContinuations continuations, or whose next object
	// id does not advance (Modbus Application Protocol V1.1b3 §6.21): a device in a loop.
	// It wraps ErrBadFrame.
	ErrDeviceIDLoop = fmt.Errorf("%w: device identification does not end", ErrBadFrame)
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("modbus: client closed")
	// ErrInvalidRequest: the request was refused before anything was sent: a quantity
	// out of range, an unsupported function or read device ID code, a unit address
	// above 247, or broadcast (unit 0) for a request that needs a reply (RTU; Modbus TCP
	// accepts every unit ID 0–255).
	ErrInvalidRequest = errors.New("modbus: invalid request")
	// ErrUnreachable: a Modbus TCP endpoint has no connection and cannot get one now:
	// the dial of this call failed, or an earlier dial failed and the reconnect backoff
	// has not run out yet (the call fails at once, without dialling). The error wraps the
	// last dial error (e.g. syscall.ECONNREFUSED, a dial timeout).
	ErrUnreachable = errors.New("modbus: endpoint not connected, in reconnect backoff")
)

// ExceptionError is a Modbus exception reply (function code | 0x80, one exception code
// byte; Modbus Application Protocol V1.1b3 §7). The device is alive but refused.
type ExceptionError struct {
	Function byte // the request's function code (without the 0x80 bit)
	Code     byte // exception code: 1 illegal function, 2 illegal data address, 3 illegal data value, 4 server device failure, 6 busy, ...
}

// Error describes the exception: code, its name, and the function it refused.
func (e *ExceptionError) Error() string {
	return fmt.Sprintf("modbus: exception %d (%s) for function 0x%02X", e.Code, ExceptionName(e.Code), e.Function)
}

// ExceptionName is the name of a Modbus exception code (§7), or "unknown".
func ExceptionName(code byte) string {
	switch code {
	case 1:
		return "illegal function"
	case 2:
		return "illegal data address"
	case 3:
		return "illegal data value"
	case 4:
		return "server device failure"
	case 5:
		return "acknowledge"
	case 6:
		return "server device busy"
	case 8:
		return "memory parity error"
	case 0x0A:
		return "gateway path unavailable"
	case 0x0B:
		return "gateway target device failed to respond"
	}
	return "unknown"
}

// WrongUnitError: a reply with a valid CRC came from another unit ID than the one asked
// (two slaves with one address, or a late reply to an earlier request). On Modbus TCP:
// the reply carries the request's transaction identifier but another MBAP unit
// identifier.
type WrongUnitError struct {
	Want, Got byte
}

// Error names the unit that answered and the unit asked.
func (e *WrongUnitError) Error() string {
	return fmt.Sprintf("modbus: reply from unit %d, expected unit %d", e.Got, e.Want)
}

// IsAnswer reports whether err still proves the device answered (a Modbus exception):
// for health, an exception is a heartbeat (degraded), a timeout/CRC/framing error is not.
func IsAnswer(err error) bool {
	var ex *ExceptionError
	return errors.As(err, &ex)
}

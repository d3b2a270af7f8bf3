package modbus

import (
	"errors"
	"fmt"
)

// Sentinel errors returned (wrapped) by Client implementations.
var (
	// ErrTimeout: no complete reply within the request timeout. The device may be absent
	// or silent; the bus has been resynchronised (inter-frame gap waited, input flushed).
	ErrTimeout = errors.New("modbus: timeout waiting for reply")
	// ErrCRC: a reply of the expected length arrived with a bad CRC-16
	// (Modbus over Serial Line V1.02 §2.5.1.2).
	ErrCRC = errors.New("modbus: CRC error")
	// ErrShortFrame: the reply ended (inter-frame silence) before its expected length,
	// or is shorter than the smallest valid ADU.
	ErrShortFrame = errors.New("modbus: short frame")
	// ErrBadFrame: the reply is the expected length and passes the CRC but is
	// malformed: wrong function code, byte count that disagrees with the request,
	// or an unparsable 0x2B object list.
	ErrBadFrame = errors.New("modbus: malformed reply")
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("modbus: client closed")
)

// ExceptionError is a Modbus exception reply (function code | 0x80, one exception code
// byte; Modbus Application Protocol V1.1b3 §7). The device is alive but refused.
type ExceptionError struct {
	Function byte // the request's function code (without the 0x80 bit)
	Code     byte // exception code: 1 illegal function, 2 illegal data address, 3 illegal data value, 4 server device failure, 6 busy, ...
}

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
// (two slaves with one address, or a late reply to an earlier request).
type WrongUnitError struct {
	Want, Got byte
}

func (e *WrongUnitError) Error() string {
	return fmt.Sprintf("modbus: reply from unit %d, expected unit %d", e.Got, e.Want)
}

// IsAnswer reports whether err still proves the device answered (a Modbus exception):
// for health, an exception is a heartbeat (degraded), a timeout/CRC/framing error is not.
func IsAnswer(err error) bool {
	var ex *ExceptionError
	return errors.As(err, &ex)
}

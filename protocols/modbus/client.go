// Package modbus is rollcall's Modbus master: an RTU transport over a serial port (one
// master per bus, line timing per Modbus over Serial Line V1.02), a Modbus TCP transport
// (one connection per endpoint, MBAP framing per Modbus Messaging on TCP/IP
// Implementation Guide V1.0b), FC 0x2B/0x0E Read Device Identification, and typed errors
// so callers can tell a dead link from a live device that refuses a request.
//
// RTU framing (ADU encode, CRC, verify, decode) uses the packager of
// github.com/goburrow/modbus v0.1.0; the MBAP header is written and checked here. No
// goburrow transport is used (see ../../../shared/LIBRARIES.md).
package modbus

import (
	"context"
	"time"
)

// Function codes used by rollcall (Modbus Application Protocol V1.1b3 §6).
const (
	FuncReadHoldingRegisters   byte = 0x03 // §6.3
	FuncReadInputRegisters     byte = 0x04 // §6.4
	FuncWriteSingleRegister    byte = 0x06 // §6.6
	FuncWriteMultipleRegisters byte = 0x10 // §6.12
	FuncEncapsulatedInterface  byte = 0x2B // §6.21, with MEI type 0x0E
	MEIReadDeviceID            byte = 0x0E // MEI type of Read Device Identification
)

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
// at a time. Every method honours ctx cancellation and its own per-request timeout, and
// returns the typed errors of errors.go (ErrTimeout, ErrCRC, *ExceptionError,
// *WrongUnitError, ErrShortFrame, ErrUnreachable, ...), wrapped with %w so errors.Is/As
// work.
type Client interface {
	// ReadRegisters reads qty (1–125) 16-bit registers starting at 0-based address addr
	// with function fn, which must be FuncReadHoldingRegisters or FuncReadInputRegisters.
	ReadRegisters(ctx context.Context, unit byte, fn byte, addr, qty uint16) ([]uint16, error)
	// WriteRegister writes one holding register (FC 06).
	WriteRegister(ctx context.Context, unit byte, addr, value uint16) error
	// WriteRegisters writes 1–123 holding registers starting at addr (FC 16).
	WriteRegisters(ctx context.Context, unit byte, addr uint16, values []uint16) error
	// ReadDeviceIdentification runs FC 0x2B/0x0E with the given read device ID code
	// (DevIDBasic, DevIDRegular, DevIDExtended; DevIDSpecific reads object 0 alone)
	// starting at object 0, following "more follows" until the device says it is done
	// (at most 32 continuations), and merges the objects.
	ReadDeviceIdentification(ctx context.Context, unit byte, code byte) (*DeviceIdentification, error)
	// Timeout is the per-request reply timeout currently in force.
	Timeout() time.Duration
	// Close releases the port or connection. Calls after Close return ErrClosed.
	Close() error
}

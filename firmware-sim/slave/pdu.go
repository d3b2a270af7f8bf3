// Package slave is firmware-sim's Modbus server (slave) side: a PDU handler shared by
// transports, and the Modbus RTU transport on a byte stream (a pseudo-terminal) with
// framing, CRC-16, resynchronisation, line-timing emulation and fault injection.
//
// It is an implementation independent of rollcall's master side (protocols/modbus), with
// its own CRC and framing, so the two sides cross-check each other. References:
// Modbus Application Protocol Specification V1.1b3 (function codes §6, exceptions §7)
// and Modbus over Serial Line Specification and Implementation Guide V1.02 (RTU framing
// §2.5.1, CRC §6.2.2).
package slave

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Function codes served (Modbus Application Protocol V1.1b3 §6).
const (
	FuncReadHoldingRegisters   byte = 0x03 // §6.3
	FuncReadInputRegisters     byte = 0x04 // §6.4
	FuncWriteSingleRegister    byte = 0x06 // §6.6
	FuncWriteMultipleRegisters byte = 0x10 // §6.12
	FuncEncapsulatedInterface  byte = 0x2B // §6.19–6.21 (MEI transport)
	MEIReadDeviceID            byte = 0x0E // §6.21 Read Device Identification
)

// Limits (Modbus Application Protocol V1.1b3 §4.1, §6.3, §6.12).
const (
	MaxPDU           = 253 // bytes: function code + data
	MaxReadQuantity  = 125 // registers per FC 03/04 request
	MaxWriteQuantity = 123 // registers per FC 16 request
)

// Exception is a Modbus exception code (Modbus Application Protocol V1.1b3 §7). It
// implements error, so a Device may return it.
type Exception byte

// Exception codes (§7).
const (
	IllegalFunction     Exception = 0x01
	IllegalDataAddress  Exception = 0x02
	IllegalDataValue    Exception = 0x03
	ServerDeviceFailure Exception = 0x04
	// GatewayPathUnavailable: a gateway cannot route the request (§7, code 0x0A).
	GatewayPathUnavailable Exception = 0x0A
	// GatewayTargetFailed: a gateway got no answer from the target device (§7, code
	// 0x0B "gateway target device failed to respond"). A multi-unit TCPServer answers
	// it for a unit ID it does not serve.
	GatewayTargetFailed Exception = 0x0B
)

// Error implements error.
func (e Exception) Error() string {
	switch e {
	case IllegalFunction:
		return "modbus exception 1: illegal function"
	case IllegalDataAddress:
		return "modbus exception 2: illegal data address"
	case IllegalDataValue:
		return "modbus exception 3: illegal data value"
	case ServerDeviceFailure:
		return "modbus exception 4: server device failure"
	case GatewayPathUnavailable:
		return "modbus exception 10: gateway path unavailable"
	case GatewayTargetFailed:
		return "modbus exception 11: gateway target device failed to respond"
	}
	return fmt.Sprintf("modbus exception %d", byte(e))
}

// ExceptionCode returns the exception code byte.
func (e Exception) ExceptionCode() byte { return byte(e) }

// exceptionCoder is implemented by errors that carry a Modbus exception code, such as
// Exception and drive.Exception.
type exceptionCoder interface{ ExceptionCode() byte }

// Device is what the PDU handler serves: one address space of 16-bit registers shared
// by FC 03, 04, 06 and 16, and the Read Device Identification objects.
//
// Register methods return an error carrying the exception to answer: any error with an
// ExceptionCode() byte method (found with errors.As) answers that code; any other error
// answers 0x04 server device failure. *drive.Drive implements Device.
type Device interface {
	// ReadRegisters returns qty (1–125) registers from PDU address addr.
	ReadRegisters(addr, qty uint16) ([]uint16, error)
	// WriteRegisters writes 1–123 registers from PDU address addr, all or nothing.
	WriteRegisters(addr uint16, values []uint16) error
	// IdentificationObject returns the value of object id, ok false when absent.
	IdentificationObject(id byte) (value []byte, ok bool)
}

// Options tune the PDU handler.
type Options struct {
	// DevIDMaxReply is the largest Read Device Identification reply PDU in bytes
	// (function code included) before a stream reply is split with "more follows";
	// 0 means MaxPDU (253). A single object that does not fit alone is still sent
	// alone, truncated to MaxPDU if need be.
	DevIDMaxReply int
}

// ExceptionPDU returns the exception reply PDU for function code fc: fc|0x80 and the
// code (Modbus Application Protocol V1.1b3 §7).
func ExceptionPDU(fc, code byte) []byte { return []byte{fc | 0x80, code} }

// HandlePDU executes one request PDU (function code + data) on dev and returns the reply
// PDU: a normal reply, or an exception reply — 01 illegal function for a function code
// or MEI type other than 03, 04, 06, 16, 0x2B/0x0E; 02 illegal data address; 03 illegal
// data value for a quantity out of range, a byte count that disagrees with the quantity,
// a wrong request length or an unknown Read Device ID code; 04 for a device error
// without an exception code. An empty request returns nil (nothing to answer).
func HandlePDU(dev Device, req []byte, opt Options) []byte {
	if len(req) == 0 {
		return nil
	}
	fc, data := req[0], req[1:]
	switch fc {
	case FuncReadHoldingRegisters, FuncReadInputRegisters: // §6.3, §6.4
		if len(data) != 4 {
			return ExceptionPDU(fc, byte(IllegalDataValue))
		}
		addr, qty := be16(data[0:]), be16(data[2:])
		if qty < 1 || qty > MaxReadQuantity {
			return ExceptionPDU(fc, byte(IllegalDataValue))
		}
		if uint32(addr)+uint32(qty) > 0x10000 {
			return ExceptionPDU(fc, byte(IllegalDataAddress))
		}
		vals, err := dev.ReadRegisters(addr, qty)
		if err != nil {
			return ExceptionPDU(fc, exceptionCode(err))
		}
		if len(vals) != int(qty) {
			return ExceptionPDU(fc, byte(ServerDeviceFailure))
		}
		out := make([]byte, 2, 2+2*len(vals))
		out[0], out[1] = fc, byte(2*qty)
		for _, v := range vals {
			out = binary.BigEndian.AppendUint16(out, v)
		}
		return out
	case FuncWriteSingleRegister: // §6.6
		if len(data) != 4 {
			return ExceptionPDU(fc, byte(IllegalDataValue))
		}
		addr, val := be16(data[0:]), be16(data[2:])
		if err := dev.WriteRegisters(addr, []uint16{val}); err != nil {
			return ExceptionPDU(fc, exceptionCode(err))
		}
		return append([]byte{fc}, data...) // echo of the request
	case FuncWriteMultipleRegisters: // §6.12
		if len(data) < 5 {
			return ExceptionPDU(fc, byte(IllegalDataValue))
		}
		addr, qty, bc := be16(data[0:]), be16(data[2:]), int(data[4])
		if qty < 1 || qty > MaxWriteQuantity || bc != 2*int(qty) || len(data) != 5+bc {
			return ExceptionPDU(fc, byte(IllegalDataValue))
		}
		if uint32(addr)+uint32(qty) > 0x10000 {
			return ExceptionPDU(fc, byte(IllegalDataAddress))
		}
		vals := make([]uint16, qty)
		for i := range vals {
			vals[i] = be16(data[5+2*i:])
		}
		if err := dev.WriteRegisters(addr, vals); err != nil {
			return ExceptionPDU(fc, exceptionCode(err))
		}
		return []byte{fc, data[0], data[1], data[2], data[3]}
	case FuncEncapsulatedInterface: // §6.19
		if len(data) < 1 || data[0] != MEIReadDeviceID {
			return ExceptionPDU(fc, byte(IllegalFunction))
		}
		return readDeviceID(dev, data, opt)
	}
	return ExceptionPDU(fc, byte(IllegalFunction))
}

// exceptionCode maps a Device error to an exception code (04 unless it carries one).
func exceptionCode(err error) byte {
	var ec exceptionCoder
	if errors.As(err, &ec) {
		if c := ec.ExceptionCode(); c != 0 {
			return c
		}
	}
	return byte(ServerDeviceFailure)
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

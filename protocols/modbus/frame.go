package modbus

import (
	"encoding/binary"
	"fmt"

	gmodbus "github.com/goburrow/modbus"
)

// RTU frame sizes (Modbus over Serial Line V1.02 §2.5.1.1: address, function, data,
// CRC; 256 bytes at most).
const (
	// MaxADU is the largest RTU frame in bytes (unit + PDU of 253 bytes + CRC).
	MaxADU = 256
	// exceptionADU is the length of an exception reply: unit, fc|0x80, code, CRC (2).
	exceptionADU = 5
	// deviceIDHeader is the fixed part of a 0x2B/0x0E reply before its object list:
	// unit, 0x2B, 0x0E, read device ID code, conformity, more follows, next object id,
	// number of objects (Modbus Application Protocol V1.1b3 §6.21).
	deviceIDHeader = 8
	// crcLen is the length of the RTU CRC-16 in bytes.
	crcLen = 2
)

// Request limits (Modbus Application Protocol V1.1b3 §6.3, §6.4, §6.12).
const (
	MaxReadRegisters  = 125 // registers per FC 03/04 request
	MaxWriteRegisters = 123 // registers per FC 16 request
)

// Unit addresses on a serial line (Modbus over Serial Line V1.02 §2.2).
const (
	BroadcastUnit = 0   // write requests only; no reply
	MaxUnit       = 247 // highest individual slave address; 248–255 are reserved
)

// ExpectedReplyLength tells how long the RTU reply to a request with function code
// reqFunction is, given its first bytes (reply, starting at the unit address).
//
// n is in bytes, unit address through CRC. known reports whether n is the exact total
// length; when it is false, n is a lower bound: the caller reads at least up to n bytes
// and asks again. The length comes from the reply itself (Modbus Application Protocol
// V1.1b3 §6 and §7): an exception (reqFunction|0x80) is 5 bytes; FC 01, 02, 03, 04 and
// 23 are 5 + byte count; FC 05, 06, 15 and 16 are 8 (an echo of address and value or
// quantity); FC 22 is 10; FC 0x2B/0x0E is found by walking its object list (header:
// unit, 0x2B, 0x0E, code, conformity, more follows, next object id, number of
// objects; then per object id, length, value; then 2 CRC bytes).
//
// err wraps ErrBadFrame when the bytes cannot be the start of a reply to this request:
// another function code (a reply to something else, or noise), a 0x2B reply with
// another MEI type, a function code this master does not know how to frame
// (RelayableFunction is false), or a length over MaxADU. It is a pure function.
func ExpectedReplyLength(reqFunction byte, reply []byte) (n int, known bool, err error) {
	if len(reply) < 2 {
		// The shortest reply to anything is an exception.
		return exceptionADU, false, nil
	}
	fc := reply[1]
	switch {
	case fc == reqFunction|0x80:
		return exceptionADU, true, nil
	case fc != reqFunction:
		return 0, false, fmt.Errorf("%w: function code 0x%02X in reply to 0x%02X", ErrBadFrame, fc, reqFunction)
	}
	switch fc {
	case FuncReadCoils, FuncReadDiscreteInputs, FuncReadHoldingRegisters, FuncReadInputRegisters, FuncReadWriteMultipleRegs:
		if len(reply) < 3 {
			return exceptionADU, false, nil
		}
		n = 3 + int(reply[2]) + crcLen
		if n > MaxADU {
			return 0, false, fmt.Errorf("%w: byte count %d makes a %d-byte frame", ErrBadFrame, reply[2], n)
		}
		return n, true, nil
	case FuncWriteSingleCoil, FuncWriteSingleRegister, FuncWriteMultipleCoils, FuncWriteMultipleRegisters:
		return 8, true, nil
	case FuncMaskWriteRegister:
		return 10, true, nil
	case FuncEncapsulatedInterface:
		return deviceIDLength(reply)
	}
	return 0, false, fmt.Errorf("%w: cannot frame function code 0x%02X", ErrBadFrame, fc)
}

// RelayableFunction reports whether Transact can carry a request with function code
// fc: one whose RTU reply length ExpectedReplyLength can tell (FC 01–06, 15, 16, 22,
// 23, and 43 with MEI type 0x0E). On Modbus TCP the MBAP length delimits any reply,
// but the same set applies, so that a relayed request behaves alike on both.
func RelayableFunction(fc byte) bool {
	switch fc {
	case FuncReadCoils, FuncReadDiscreteInputs, FuncReadHoldingRegisters, FuncReadInputRegisters,
		FuncWriteSingleCoil, FuncWriteSingleRegister, FuncWriteMultipleCoils, FuncWriteMultipleRegisters,
		FuncMaskWriteRegister, FuncReadWriteMultipleRegs, FuncEncapsulatedInterface:
		return true
	}
	return false
}

// checkRelayPDU checks a request PDU for Transact: 1–MaxPDU bytes, a relayable function
// code (RelayableFunction), and for FC 0x2B the MEI type 0x0E (the only one whose reply
// can be delimited on RTU). Errors wrap ErrInvalidRequest.
func checkRelayPDU(pdu []byte) error {
	switch {
	case len(pdu) == 0 || len(pdu) > MaxPDU:
		return fmt.Errorf("%w: a PDU of %d bytes (1–%d)", ErrInvalidRequest, len(pdu), MaxPDU)
	case !RelayableFunction(pdu[0]):
		return fmt.Errorf("%w: function code 0x%02X cannot be relayed", ErrInvalidRequest, pdu[0])
	case pdu[0] == FuncEncapsulatedInterface && (len(pdu) < 2 || pdu[1] != MEIReadDeviceID):
		return fmt.Errorf("%w: FC 0x2B with an MEI type other than 0x0E cannot be relayed", ErrInvalidRequest)
	}
	if n := RequestPDULength(pdu); n != len(pdu) {
		return fmt.Errorf("%w: %d bytes for function code 0x%02X, whose request is %d bytes", ErrInvalidRequest, len(pdu), pdu[0], n)
	}
	return nil
}

// RequestPDULength is the length in bytes a request PDU with pdu's function code must
// have, from its first bytes (Modbus Application Protocol V1.1b3 §6): FC 01–06 are 5
// bytes (function, address, quantity or value); FC 15 and 16 are 6 + their byte count
// (pdu[5]); FC 22 is 7; FC 23 is 10 + its write byte count (pdu[9]); FC 0x2B/0x0E is 4
// (function, MEI type, read device ID code, object id). It returns -1 when pdu is too
// short to tell, or its function code is not relayable (RelayableFunction). A device on
// a serial line delimits requests by these lengths, so a request of another length
// would run into the next frame there: such a request is refused, not relayed.
func RequestPDULength(pdu []byte) int {
	if len(pdu) == 0 {
		return -1
	}
	switch pdu[0] {
	case FuncReadCoils, FuncReadDiscreteInputs, FuncReadHoldingRegisters, FuncReadInputRegisters,
		FuncWriteSingleCoil, FuncWriteSingleRegister:
		return 5
	case FuncWriteMultipleCoils, FuncWriteMultipleRegisters:
		if len(pdu) < 6 {
			return -1
		}
		return 6 + int(pdu[5])
	case FuncMaskWriteRegister:
		return 7
	case FuncReadWriteMultipleRegs:
		if len(pdu) < 10 {
			return -1
		}
		return 10 + int(pdu[9])
	case FuncEncapsulatedInterface:
		return 4
	}
	return -1
}

// relayReply returns a copy of a normal reply PDU: function code fc and data.
func relayReply(fc byte, data []byte) []byte {
	out := make([]byte, 1+len(data))
	out[0] = fc
	copy(out[1:], data)
	return out
}

// deviceIDLength walks the object list of a (partial) 0x2B/0x0E reply ADU.
func deviceIDLength(reply []byte) (int, bool, error) {
	if len(reply) < 3 {
		return deviceIDHeader + crcLen, false, nil
	}
	if reply[2] != MEIReadDeviceID {
		return 0, false, fmt.Errorf("%w: MEI type 0x%02X, want 0x%02X", ErrBadFrame, reply[2], MEIReadDeviceID)
	}
	if len(reply) < deviceIDHeader {
		return deviceIDHeader + crcLen, false, nil
	}
	count := int(reply[7])
	pos := deviceIDHeader
	for i := 0; i < count; i++ {
		if pos+2 > len(reply) {
			// Need this object's id and length: at least 2 bytes per remaining object.
			n := pos + 2*(count-i) + crcLen
			if n > MaxADU {
				return 0, false, fmt.Errorf("%w: %d objects do not fit in a frame", ErrBadFrame, count)
			}
			return n, false, nil
		}
		pos += 2 + int(reply[pos+1])
		if pos+2*(count-i-1)+crcLen > MaxADU {
			return 0, false, fmt.Errorf("%w: object list of %d objects runs past %d bytes", ErrBadFrame, count, MaxADU)
		}
	}
	return pos + crcLen, true, nil
}

// DeviceIDObject is one object of a Read Device Identification reply
// (Modbus Application Protocol V1.1b3 §6.21).
type DeviceIDObject struct {
	ID    byte   // object id, e.g. ObjVendorName
	Value string // the object's bytes as sent
}

// DeviceIDPart is one 0x2B/0x0E reply: a part of the device's identification.
type DeviceIDPart struct {
	Code        byte             // read device ID code echoed by the device (DevIDBasic…DevIDSpecific)
	Conformity  byte             // conformity level, e.g. 0x81 (basic, stream and individual access)
	MoreFollows bool             // the device has more objects: ask again from NextObject
	NextObject  byte             // object id to ask for next; meaningful when MoreFollows
	Objects     []DeviceIDObject // in the order sent
}

// ParseDeviceIDReply parses the data of a 0x2B/0x0E reply PDU: the bytes after the
// function code (MEI type 0x0E, read device ID code, conformity level, more follows,
// next object id, number of objects, then per object: id, length in bytes, value), as
// laid out in Modbus Application Protocol V1.1b3 §6.21.
//
// It returns an error wrapping ErrBadFrame when the data is shorter than its 6-byte
// header, the MEI type is not 0x0E, "more follows" is neither 0x00 nor 0xFF, the number
// of objects is more than the data holds, an object's length runs past the end, or bytes
// are left over after the last object.
func ParseDeviceIDReply(pduData []byte) (DeviceIDPart, error) {
	const header = 6
	var part DeviceIDPart
	if len(pduData) < header {
		return part, fmt.Errorf("%w: device identification reply of %d bytes, header needs %d", ErrBadFrame, len(pduData), header)
	}
	if pduData[0] != MEIReadDeviceID {
		return part, fmt.Errorf("%w: MEI type 0x%02X, want 0x%02X", ErrBadFrame, pduData[0], MEIReadDeviceID)
	}
	part.Code = pduData[1]
	part.Conformity = pduData[2]
	switch pduData[3] {
	case 0x00:
	case 0xFF:
		part.MoreFollows = true
	default:
		return part, fmt.Errorf("%w: more-follows byte 0x%02X, want 0x00 or 0xFF", ErrBadFrame, pduData[3])
	}
	part.NextObject = pduData[4]
	count := int(pduData[5])
	part.Objects = make([]DeviceIDObject, 0, count)
	pos := header
	for i := 0; i < count; i++ {
		if pos+2 > len(pduData) {
			return DeviceIDPart{}, fmt.Errorf("%w: reply says %d objects, data ends after %d", ErrBadFrame, count, i)
		}
		id, size := pduData[pos], int(pduData[pos+1])
		pos += 2
		if pos+size > len(pduData) {
			return DeviceIDPart{}, fmt.Errorf("%w: object 0x%02X is %d bytes, only %d left", ErrBadFrame, id, size, len(pduData)-pos)
		}
		part.Objects = append(part.Objects, DeviceIDObject{ID: id, Value: string(pduData[pos : pos+size])})
		pos += size
	}
	if pos != len(pduData) {
		return DeviceIDPart{}, fmt.Errorf("%w: %d bytes after the last of %d objects", ErrBadFrame, len(pduData)-pos, count)
	}
	return part, nil
}

// followDeviceID runs the "more follows" loop of Read Device Identification (Modbus
// Application Protocol V1.1b3 §6.21) for a transport: read(objectID) runs one 0x2B/0x0E
// request and returns its reply (its errors are returned as they are); the loop starts
// at object 0, asks again from each reply's next object id while the device has more,
// up to MaxDeviceIDContinuations times, and merges the objects. Conformity is that of
// the first reply. Its own errors (ErrBadFrame: the next object id does not advance, or
// still more after MaxDeviceIDContinuations continuations) are passed through wrap.
func followDeviceID(read func(objectID byte) (DeviceIDPart, error), wrap func(error) error) (*DeviceIdentification, error) {
	id := &DeviceIdentification{Objects: make(map[byte]string)}
	obj := byte(0)
	for i := 0; ; i++ {
		part, err := read(obj)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			id.Conformity = part.Conformity
		}
		for _, o := range part.Objects {
			id.Objects[o.ID] = o.Value
		}
		if !part.MoreFollows {
			return id, nil
		}
		if i == MaxDeviceIDContinuations {
			return nil, wrap(fmt.Errorf("%w: still more after %d continuations", ErrDeviceIDLoop, i))
		}
		if part.NextObject <= obj {
			return nil, wrap(fmt.Errorf("%w: next object id 0x%02X after a request from 0x%02X", ErrDeviceIDLoop, part.NextObject, obj))
		}
		obj = part.NextObject
	}
}

// PDU builders (Modbus Application Protocol V1.1b3 §6).

func pduReadRegisters(fn byte, addr, qty uint16) gmodbus.ProtocolDataUnit {
	data := make([]byte, 4)
	binary.BigEndian.PutUint16(data, addr)
	binary.BigEndian.PutUint16(data[2:], qty)
	return gmodbus.ProtocolDataUnit{FunctionCode: fn, Data: data}
}

func pduWriteRegister(addr, value uint16) gmodbus.ProtocolDataUnit {
	data := make([]byte, 4)
	binary.BigEndian.PutUint16(data, addr)
	binary.BigEndian.PutUint16(data[2:], value)
	return gmodbus.ProtocolDataUnit{FunctionCode: FuncWriteSingleRegister, Data: data}
}

func pduWriteRegisters(addr uint16, values []uint16) gmodbus.ProtocolDataUnit {
	data := make([]byte, 5+2*len(values))
	binary.BigEndian.PutUint16(data, addr)
	binary.BigEndian.PutUint16(data[2:], uint16(len(values)))
	data[4] = byte(2 * len(values))
	for i, v := range values {
		binary.BigEndian.PutUint16(data[5+2*i:], v)
	}
	return gmodbus.ProtocolDataUnit{FunctionCode: FuncWriteMultipleRegisters, Data: data}
}

func pduReadDeviceID(code, objectID byte) gmodbus.ProtocolDataUnit {
	return gmodbus.ProtocolDataUnit{FunctionCode: FuncEncapsulatedInterface, Data: []byte{MEIReadDeviceID, code, objectID}}
}

// Reply checks: the reply PDU data (after the function code) of a normal reply, against
// the request.

// checkReadReply: byte count, then 2×qty bytes (§6.3, §6.4).
func checkReadReply(qty uint16, data []byte) ([]uint16, error) {
	want := 2 * int(qty)
	if len(data) < 1 || int(data[0]) != want || len(data) != 1+want {
		bc := -1
		if len(data) > 0 {
			bc = int(data[0])
		}
		return nil, fmt.Errorf("%w: byte count %d (%d data bytes), want %d for %d registers", ErrBadFrame, bc, len(data)-1, want, qty)
	}
	regs := make([]uint16, qty)
	for i := range regs {
		regs[i] = binary.BigEndian.Uint16(data[1+2*i:])
	}
	return regs, nil
}

// checkEcho: FC 06 echoes address and value, FC 16 echoes address and quantity
// (§6.6, §6.12): the first 4 bytes of the request data.
func checkEcho(req, data []byte) error {
	if len(data) != 4 || string(data) != string(req[:4]) {
		return fmt.Errorf("%w: echo % X, want % X", ErrBadFrame, data, req[:4])
	}
	return nil
}

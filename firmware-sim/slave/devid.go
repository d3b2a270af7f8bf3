package slave

// Read Device Identification (FC 0x2B, MEI type 0x0E), Modbus Application Protocol
// V1.1b3 §6.21, with the categories of docs/registers.md.

// Read Device ID codes (§6.21). A stream access code from object 0 streams its
// category and the ones below it (basic ⊂ regular ⊂ extended, the nesting of the
// conformity levels of §6.21), as pymodbus and common devices answer: a master that
// asks for the regular objects gets the basic ones first.
const (
	DevIDBasic      byte = 0x01 // stream access, basic objects 0x00–0x02
	DevIDRegular    byte = 0x02 // stream access, basic and regular objects 0x00–0x06 present
	DevIDExtended   byte = 0x03 // stream access, basic, regular and extended objects: 0x00–0x06 and 0x80–0xFF present
	DevIDIndividual byte = 0x04 // individual access: one object, any present id
)

// ConformityLevel is the conformity level answered: 0x83, basic, regular and extended
// identification with stream and individual access (§6.21).
const ConformityLevel byte = 0x83

// devIDHeader is the length of a reply PDU before the object list: function code, MEI
// type, read device ID code, conformity level, more follows, next object id, number of
// objects.
const devIDHeader = 7

// inStream reports whether object id belongs to the stream of access code code (a
// stream access code): basic 0x00–0x02; regular 0x00–0x06 (§6.21 defines regular
// objects 0x03–0x06; 0x07–0x7F are reserved); extended adds the private objects
// 0x80–0xFF.
func inStream(code, id byte) bool {
	switch code {
	case DevIDBasic:
		return id <= 0x02
	case DevIDRegular:
		return id <= 0x06
	}
	return id <= 0x06 || id >= 0x80
}

// readDeviceID answers a 0x2B/0x0E request; data is the request after the function
// code: MEI type, read device ID code, object id.
func readDeviceID(dev Device, data []byte, opt Options) []byte {
	const fc = FuncEncapsulatedInterface
	if len(data) != 3 {
		return ExceptionPDU(fc, byte(IllegalDataValue))
	}
	code, objID := data[1], data[2]
	maxReply := opt.DevIDMaxReply
	if maxReply <= 0 || maxReply > MaxPDU {
		maxReply = MaxPDU
	}
	reply := []byte{fc, MEIReadDeviceID, code, ConformityLevel, 0x00, 0x00, 0}
	switch code {
	case DevIDIndividual:
		v, ok := dev.IdentificationObject(objID)
		if !ok {
			return ExceptionPDU(fc, byte(IllegalDataAddress))
		}
		reply[6] = 1
		return appendObject(reply, objID, v)
	case DevIDBasic, DevIDRegular, DevIDExtended:
	default:
		return ExceptionPDU(fc, byte(IllegalDataValue))
	}

	var ids []byte
	start := -1
	for id := 0; id <= 0xFF; id++ {
		if !inStream(code, byte(id)) {
			continue
		}
		if _, ok := dev.IdentificationObject(byte(id)); ok {
			if byte(id) == objID {
				start = len(ids)
			}
			ids = append(ids, byte(id))
		}
	}
	// An object id that is not a present object of the stream restarts it at object 0
	// (§6.21: "as if object 0 were pointed out").
	if start < 0 {
		start = 0
	}
	for _, id := range ids[start:] {
		v, _ := dev.IdentificationObject(id)
		if reply[6] > 0 && len(reply)+2+len(v) > maxReply {
			reply[4], reply[5] = 0xFF, id // more follows, next object id
			break
		}
		reply = appendObject(reply, id, v)
		reply[6]++
	}
	return reply
}

// appendObject appends object id, length and value, truncating the value so that the
// PDU stays within MaxPDU bytes.
func appendObject(reply []byte, id byte, v []byte) []byte {
	if room := MaxPDU - len(reply) - 2; len(v) > room {
		v = v[:room]
	}
	reply = append(reply, id, byte(len(v)))
	return append(reply, v...)
}

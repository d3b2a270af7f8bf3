package modbus

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	gmodbus "github.com/goburrow/modbus"
	"github.com/rollcall-edge/rollcall/internal/testutil"
)

// testCRC is an independent bitwise CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF;
// Modbus over Serial Line V1.02 §6.2.2), low byte first on the wire.
func testCRC(b []byte) []byte {
	crc := uint16(0xFFFF)
	for _, x := range b {
		crc ^= uint16(x)
		for i := 0; i < 8; i++ {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return []byte{byte(crc), byte(crc >> 8)}
}

// withCRC appends the CRC to the frame given in hex.
func withCRC(t testing.TB, s string) []byte {
	b := testutil.Unhex(t, s)
	return append(b, testCRC(b)...)
}

func TestTestCRCKnownFrames(t *testing.T) {
	// Published examples: the test's own CRC must agree before it judges anything.
	for _, s := range []string{
		"01 03 00 00 00 02 C4 0B",
		"11 03 00 6B 00 03 76 87", // Modbus Application Protocol §6.3 example, slave 0x11
		"01 06 00 01 00 03 98 0B",
		"01 10 00 01 00 02 04 00 0A 01 02 92 30",
	} {
		b := testutil.Unhex(t, s)
		if got := testCRC(b[:len(b)-2]); !bytes.Equal(got, b[len(b)-2:]) {
			t.Errorf("CRC of %s = % X", s, got)
		}
	}
}

func TestEncodeRequests(t *testing.T) {
	tests := []struct {
		name string
		unit byte
		pdu  gmodbus.ProtocolDataUnit
		want string
	}{
		{"FC03 2 regs at 0", 1, pduReadRegisters(FuncReadHoldingRegisters, 0, 2), "01 03 00 00 00 02 C4 0B"},
		{"FC03 spec example", 0x11, pduReadRegisters(FuncReadHoldingRegisters, 0x6B, 3), "11 03 00 6B 00 03 76 87"},
		{"FC04 1 reg at 0", 1, pduReadRegisters(FuncReadInputRegisters, 0, 1), "01 04 00 00 00 01 31 CA"},
		{"FC04 unit 247 max qty", 247, pduReadRegisters(FuncReadInputRegisters, 0xFFFF, 0x7D), "F7 04 FF FF 00 7D 24 99"},
		{"FC06 reg 1 = 3", 1, pduWriteRegister(1, 3), "01 06 00 01 00 03 98 0B"},
		{"FC06 broadcast", 0, pduWriteRegister(2, 0x1234), "00 06 00 02 12 34 24 AC"},
		{"FC16 2 regs at 1", 1, pduWriteRegisters(1, []uint16{0x000A, 0x0102}), "01 10 00 01 00 02 04 00 0A 01 02 92 30"},
		{"FC2B basic from 0", 1, pduReadDeviceID(DevIDBasic, 0), "01 2B 0E 01 00 70 77"},
		{"FC2B regular from 3", 1, pduReadDeviceID(DevIDRegular, 3), "01 2B 0E 02 03 30 86"},
	}
	pk := gmodbus.NewRTUClientHandler("")
	for _, tt := range tests {
		pk.SlaveId = tt.unit
		got, err := pk.Encode(&tt.pdu)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if want := testutil.Unhex(t, tt.want); !bytes.Equal(got, want) {
			t.Errorf("%s: encoded % X, want % X", tt.name, got, want)
		}
	}
}

func TestExpectedReplyLength(t *testing.T) {
	// A two-object 0x2B reply: objects 0 "abc" and 1 "xy": 8 + 5 + 4 + 2 = 19 bytes.
	devID := "01 2B 0E 01 81 00 00 02 00 03 61 62 63 01 02 78 79"
	tests := []struct {
		name      string
		fc        byte
		reply     string
		n         int
		known     bool
		badFrame  bool
		wholeSize bool // reply is a whole frame: n must equal its length
	}{
		{"empty", FuncReadHoldingRegisters, "", 5, false, false, false},
		{"unit only", FuncReadHoldingRegisters, "01", 5, false, false, false},
		{"FC03 no byte count yet", FuncReadHoldingRegisters, "01 03", 5, false, false, false},
		{"FC03 2 regs", FuncReadHoldingRegisters, "01 03 04", 9, true, false, false},
		{"FC03 2 regs whole", FuncReadHoldingRegisters, "01 03 04 00 01 00 02 2A 32", 9, true, false, true},
		{"FC04 125 regs", FuncReadInputRegisters, "01 04 FA", 255, true, false, false},
		{"FC04 byte count 0xFB fills 256", FuncReadInputRegisters, "01 04 FB", 256, true, false, false},
		{"FC04 byte count 0xFC too long", FuncReadInputRegisters, "01 04 FC", 0, false, true, false},
		{"FC03 byte count 0", FuncReadHoldingRegisters, "01 03 00", 5, true, false, false},
		{"FC03 exception", FuncReadHoldingRegisters, "01 83", 5, true, false, false},
		{"FC03 exception whole", FuncReadHoldingRegisters, "01 83 02 C0 F1", 5, true, false, true},
		{"FC04 exception", FuncReadInputRegisters, "01 84 02", 5, true, false, false},
		{"FC06", FuncWriteSingleRegister, "01 06", 8, true, false, false},
		{"FC06 exception", FuncWriteSingleRegister, "01 86", 5, true, false, false},
		{"FC16", FuncWriteMultipleRegisters, "01 10 00", 8, true, false, false},
		{"FC16 exception", FuncWriteMultipleRegisters, "01 90 03", 5, true, false, false},
		{"FC03 request, FC04 reply", FuncReadHoldingRegisters, "01 04", 0, false, true, false},
		{"FC03 request, FC04 exception", FuncReadHoldingRegisters, "01 84", 0, false, true, false},
		{"unframable function", 0x08, "01 08", 0, false, true, false},
		{"FC01 1 byte", FuncReadCoils, "01 01 01", 6, true, false, false},
		{"FC02 byte count", FuncReadDiscreteInputs, "01 02 03", 8, true, false, false},
		{"FC05", FuncWriteSingleCoil, "01 05", 8, true, false, false},
		{"FC15", FuncWriteMultipleCoils, "01 0F", 8, true, false, false},
		{"FC22", FuncMaskWriteRegister, "01 16", 10, true, false, false},
		{"FC23 byte count", FuncReadWriteMultipleRegs, "01 17 04", 9, true, false, false},
		{"FC23 exception", FuncReadWriteMultipleRegs, "01 97", 5, true, false, false},
		{"FC2B exception", FuncEncapsulatedInterface, "01 AB 01", 5, true, false, false},
		{"FC2B fc only", FuncEncapsulatedInterface, "01 2B", 10, false, false, false},
		{"FC2B other MEI", FuncEncapsulatedInterface, "01 2B 0D", 0, false, true, false},
		{"FC2B partial header", FuncEncapsulatedInterface, "01 2B 0E 01 81", 10, false, false, false},
		{"FC2B zero objects", FuncEncapsulatedInterface, "01 2B 0E 01 81 00 00 00", 10, true, false, false},
		{"FC2B header, 2 objects to come", FuncEncapsulatedInterface, devID[:8*3-1], 14, false, false, false},
		{"FC2B first object header", FuncEncapsulatedInterface, devID[:10*3-1], 17, false, false, false},
		{"FC2B first object value", FuncEncapsulatedInterface, devID[:13*3-1], 17, false, false, false},
		{"FC2B second object header", FuncEncapsulatedInterface, devID[:15*3-1], 19, true, false, false},
		{"FC2B two objects", FuncEncapsulatedInterface, devID, 19, true, false, false},
		{"FC2B lying object count", FuncEncapsulatedInterface, "01 2B 0E 01 81 00 00 FF", 0, false, true, false},
		{"FC2B object past 256 bytes", FuncEncapsulatedInterface, "01 2B 0E 01 81 00 00 02 00 FA", 0, false, true, false},
		{"FC2B last object fills 256", FuncEncapsulatedInterface, "01 2B 0E 01 81 00 00 01 00 F4", 256, true, false, false},
		{"FC2B last object one past", FuncEncapsulatedInterface, "01 2B 0E 01 81 00 00 01 00 F5", 0, false, true, false},
	}
	for _, tt := range tests {
		reply := testutil.Unhex(t, tt.reply)
		n, known, err := ExpectedReplyLength(tt.fc, reply)
		if tt.badFrame {
			if !errors.Is(err, ErrBadFrame) {
				t.Errorf("%s: err = %v, want ErrBadFrame", tt.name, err)
			}
			continue
		}
		if err != nil || n != tt.n || known != tt.known {
			t.Errorf("%s: ExpectedReplyLength(0x%02X, % X) = %d, %v, %v; want %d, %v, nil", tt.name, tt.fc, reply, n, known, err, tt.n, tt.known)
		}
		if tt.wholeSize && n != len(reply) {
			t.Errorf("%s: n = %d for a whole %d-byte frame", tt.name, n, len(reply))
		}
		if !known && n <= len(reply) {
			t.Errorf("%s: lower bound %d does not ask for more than the %d bytes held", tt.name, n, len(reply))
		}
	}
}

// TestExpectedReplyLengthByteByByte feeds whole replies one byte at a time, as a serial
// port may deliver them: the length must never be claimed known and wrong, and the lower
// bound must never pass the real length.
func TestExpectedReplyLengthByteByByte(t *testing.T) {
	frames := []struct {
		fc    byte
		frame []byte
	}{
		{FuncReadHoldingRegisters, withCRC(t, "01 03 04 12 34 AB CD")},
		{FuncReadHoldingRegisters, withCRC(t, "01 83 02")},
		{FuncWriteMultipleRegisters, withCRC(t, "01 10 00 01 00 02")},
		{FuncEncapsulatedInterface, withCRC(t, "01 2B 0E 01 81 FF 02 02 00 03 61 62 63 01 02 78 79")},
		{FuncEncapsulatedInterface, withCRC(t, "01 2B 0E 01 81 00 00 00")},
	}
	for _, f := range frames {
		for i := 0; i <= len(f.frame); i++ {
			n, known, err := ExpectedReplyLength(f.fc, f.frame[:i])
			if err != nil {
				t.Fatalf("% X after %d bytes: %v", f.frame, i, err)
			}
			if known && n != len(f.frame) {
				t.Errorf("% X after %d bytes: known length %d, real %d", f.frame, i, n, len(f.frame))
			}
			if !known && n > len(f.frame) {
				t.Errorf("% X after %d bytes: lower bound %d past real length %d", f.frame, i, n, len(f.frame))
			}
		}
	}
}

func TestParseDeviceIDReply(t *testing.T) {
	good := []struct {
		name string
		data string
		want DeviceIDPart
	}{
		{
			name: "basic, three objects",
			data: "0E 01 81 00 00 03 00 04 41 43 4D 45 01 02 50 31 02 03 31 2E 30",
			want: DeviceIDPart{Code: 1, Conformity: 0x81, Objects: []DeviceIDObject{
				{ObjVendorName, "ACME"}, {ObjProductCode, "P1"}, {ObjMajorMinorRevision, "1.0"},
			}},
		},
		{
			name: "more follows from object 3",
			data: "0E 02 82 FF 03 01 00 01 58",
			want: DeviceIDPart{Code: 2, Conformity: 0x82, MoreFollows: true, NextObject: 3, Objects: []DeviceIDObject{{0, "X"}}},
		},
		{
			name: "empty object value",
			data: "0E 04 81 00 00 01 05 00",
			want: DeviceIDPart{Code: 4, Conformity: 0x81, Objects: []DeviceIDObject{{ObjModelName, ""}}},
		},
		{
			name: "no objects",
			data: "0E 01 01 00 00 00",
			want: DeviceIDPart{Code: 1, Conformity: 0x01, Objects: []DeviceIDObject{}},
		},
	}
	for _, tt := range good {
		got, err := ParseDeviceIDReply(testutil.Unhex(t, tt.data))
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}

	bad := []struct{ name, data string }{
		{"empty", ""},
		{"header cut short", "0E 01 81 00 00"},
		{"other MEI type", "0D 01 81 00 00 00"},
		{"more follows neither 00 nor FF", "0E 01 81 01 00 00"},
		{"lying object count", "0E 01 81 00 00 03 00 01 41 01 01 42"},
		{"count with no objects at all", "0E 01 81 00 00 01"},
		{"object length past the end", "0E 01 81 00 00 01 00 0A 41 43 4D"},
		{"object header cut short", "0E 01 81 00 00 02 00 01 41 01"},
		{"bytes after the last object", "0E 01 81 00 00 01 00 01 41 99"},
	}
	for _, tt := range bad {
		if _, err := ParseDeviceIDReply(testutil.Unhex(t, tt.data)); !errors.Is(err, ErrBadFrame) {
			t.Errorf("%s: err = %v, want ErrBadFrame", tt.name, err)
		}
	}
}

func TestCheckReadReply(t *testing.T) {
	regs, err := checkReadReply(2, testutil.Unhex(t, "04 12 34 AB CD"))
	if err != nil || !reflect.DeepEqual(regs, []uint16{0x1234, 0xABCD}) {
		t.Errorf("got %04X, %v", regs, err)
	}
	for _, data := range []string{"", "02 12 34", "04 12 34 AB", "06 12 34 AB CD 00 00", "04 12 34 AB CD EF"} {
		if _, err := checkReadReply(2, testutil.Unhex(t, data)); !errors.Is(err, ErrBadFrame) {
			t.Errorf("data % s: err = %v, want ErrBadFrame", data, err)
		}
	}
}

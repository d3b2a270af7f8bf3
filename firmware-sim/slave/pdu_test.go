package slave

import (
	"bytes"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rollcall-edge/rollcall/firmware-sim/drive"
	"github.com/rollcall-edge/rollcall/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func fixedClock() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }

func newTestDrive(t testing.TB, serial string, enabled bool) *drive.Drive {
	t.Helper()
	d, err := drive.New(drive.Options{Serial: serial, Enabled: enabled, Now: fixedClock})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// The CRC vectors are independent of this implementation: the first two are frames
// from the Modbus specifications' examples, 0x4B37 is the CRC-16/MODBUS check value
// of "123456789".
func TestCRC16(t *testing.T) {
	tests := []struct {
		in   string
		want uint16
	}{
		{"01 03 00 00 00 02", 0x0BC4},
		{"11 03 00 6B 00 03", 0x8776},
		{"01 83 02", 0xF1C0},
		{hex.EncodeToString([]byte("123456789")), 0x4B37},
		{"", 0xFFFF},
	}
	for _, tt := range tests {
		if got := CRC16(testutil.Unhex(t, tt.in)); got != tt.want {
			t.Errorf("CRC16(%s) = %#04x, want %#04x", tt.in, got, tt.want)
		}
	}
	if got := AppendCRC(testutil.Unhex(t, "01 03 00 00 00 02")); !bytes.Equal(got, testutil.Unhex(t, "01 03 00 00 00 02 C4 0B")) {
		t.Errorf("AppendCRC = % X", got)
	}
	if !CheckCRC(testutil.Unhex(t, "01 03 00 00 00 02 C4 0B")) || CheckCRC(testutil.Unhex(t, "01 03 00 00 00 02 0B C4")) || CheckCRC(testutil.Unhex(t, "C4 0B")) {
		t.Error("CheckCRC wrong")
	}
}

func TestTiming(t *testing.T) {
	tests := []struct {
		baud int
		t35  time.Duration
	}{
		{9600, 4010416 * time.Nanosecond}, // 38.5 bits / 9600 baud
		{19200, 2005208 * time.Nanosecond},
		{19201, 1750 * time.Microsecond},
		{115200, 1750 * time.Microsecond},
	}
	for _, tt := range tests {
		if got := InterFrameDelay(tt.baud); got != tt.t35 {
			t.Errorf("InterFrameDelay(%d) = %v, want %v", tt.baud, got, tt.t35)
		}
	}
	if got, want := WireTime(9, 115200), 859375*time.Nanosecond; got != want {
		t.Errorf("WireTime(9, 115200) = %v, want %v", got, want)
	}
	// 2-register read at 115200 with 1 ms turnaround: 8 + 9 bytes × 11 bits + 1.75 ms + 1 ms
	if got, want := ReplyDelay(8, 9, 115200, time.Millisecond), 4373263*time.Nanosecond; got != want {
		t.Errorf("ReplyDelay = %v, want %v", got, want)
	}
}

// failingDevice returns errors without exception codes.
type failingDevice struct{}

func (failingDevice) ReadRegisters(addr, qty uint16) ([]uint16, error) {
	return nil, errors.New("sensor unplugged")
}
func (failingDevice) WriteRegisters(addr uint16, values []uint16) error {
	return Exception(0x06) // server device busy
}
func (failingDevice) IdentificationObject(id byte) ([]byte, bool) { return nil, false }

func TestHandlePDU(t *testing.T) {
	tests := []struct {
		name, req, reply string
	}{
		{"FC03 statusword+error", "03 0000 0002", "03 04 0237 0000"},
		{"FC04 same address space", "04 0000 0002", "04 04 0237 0000"},
		{"FC03 serial", "03 0064 0008", "03 10 5349 4D2D 3030 3031 0000 0000 0000 0000"},
		{"FC03 qty 0", "03 0000 0000", "83 03"},
		{"FC03 qty 126", "03 0000 007E", "83 03"},
		{"FC03 unmapped", "03 0005 0001", "83 02"},
		{"FC03 range past 0xFFFF", "03 FFFF 0002", "83 02"},
		{"FC03 short", "03 0000 00", "83 03"},
		{"FC06 controlword", "06 0002 0006", "06 0002 0006"},
		{"FC06 read-only", "06 0000 0001", "86 02"},
		{"FC06 bad mode value", "06 0004 0080", "86 03"},
		{"FC16 target velocity", "10 000E 0002 04 0000 03E8", "10 000E 0002"},
		{"FC16 byte count mismatch", "10 000E 0002 03 0000 03", "90 03"},
		{"FC16 data shorter than byte count", "10 000E 0002 04 0000", "90 03"},
		{"FC16 qty 0", "10 000E 0000 00", "90 03"},
		{"FC16 qty 124", "10 0000 007C F8" + strings.Repeat("00", 248), "90 03"},
		{"FC16 read-only", "10 0000 0001 02 0001", "90 02"},
		{"FC01 illegal function", "01 0000 0001", "81 01"},
		{"FC05 illegal function", "05 0000 FF00", "85 01"},
		{"FC2B MEI 0x0D illegal function", "2B 0D 01 00", "AB 01"},
		{"FC2B no MEI", "2B", "AB 01"},
		{"FC2B bad code", "2B 0E 05 00", "AB 03"},
		{"FC2B code 0", "2B 0E 00 00", "AB 03"},
		{"FC2B short", "2B 0E 01", "AB 03"},
		{"FC2B individual model", "2B 0E 04 05", "2B 0E 04 83 00 00 01 05 0C" + hex.EncodeToString([]byte("SIM-402-400W"))},
		{"FC2B individual unknown", "2B 0E 04 06", "AB 02"},
		{"FC2B basic", "2B 0E 01 00", "2B 0E 01 83 00 00 03" +
			" 00 15" + hex.EncodeToString([]byte("rollcall firmware-sim")) +
			" 01 0A" + hex.EncodeToString([]byte("RC-SIM-402")) +
			" 02 03" + hex.EncodeToString([]byte("1.2"))},
		{"FC2B regular from 0: basic objects first", "2B 0E 02 00", "2B 0E 02 83 00 00 06" +
			" 00 15" + hex.EncodeToString([]byte("rollcall firmware-sim")) +
			" 01 0A" + hex.EncodeToString([]byte("RC-SIM-402")) +
			" 02 03" + hex.EncodeToString([]byte("1.2")) +
			" 03 25" + hex.EncodeToString([]byte("https://rollcall.invalid/firmware-sim")) +
			" 04 15" + hex.EncodeToString([]byte("Simulated servo drive")) +
			" 05 0C" + hex.EncodeToString([]byte("SIM-402-400W"))},
		{"FC2B extended from 0x80", "2B 0E 03 80", "2B 0E 03 83 00 00 01 80 08" + hex.EncodeToString([]byte("SIM-0001"))},
		{"FC2B extended from 0x05", "2B 0E 03 05", "2B 0E 03 83 00 00 02 05 0C" + hex.EncodeToString([]byte("SIM-402-400W")) +
			" 80 08" + hex.EncodeToString([]byte("SIM-0001"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newTestDrive(t, "SIM-0001", true)
			got := HandlePDU(d, testutil.Unhex(t, tt.req), Options{})
			if want := testutil.Unhex(t, tt.reply); !bytes.Equal(got, want) {
				t.Fatalf("reply\n got % X\nwant % X", got, want)
			}
		})
	}
	t.Run("write effects", func(t *testing.T) {
		d := newTestDrive(t, "SIM-0001", true)
		HandlePDU(d, testutil.Unhex(t, "10 000E 0002 04 0000 03E8"), Options{})
		HandlePDU(d, testutil.Unhex(t, "06 0002 0007"), Options{})
		if st := d.Status(); st.TargetVelocity != 1000 || st.State != drive.SwitchedOn {
			t.Fatalf("%+v", st)
		}
	})
	t.Run("device errors", func(t *testing.T) {
		if got := HandlePDU(failingDevice{}, testutil.Unhex(t, "03 0000 0001"), Options{}); !bytes.Equal(got, testutil.Unhex(t, "83 04")) {
			t.Errorf("plain error → % X, want 83 04", got)
		}
		if got := HandlePDU(failingDevice{}, testutil.Unhex(t, "06 0000 0001"), Options{}); !bytes.Equal(got, testutil.Unhex(t, "86 06")) {
			t.Errorf("Exception(6) → % X, want 86 06", got)
		}
	})
	if got := HandlePDU(failingDevice{}, nil, Options{}); got != nil {
		t.Errorf("empty PDU → % X", got)
	}
}

// obj is one decoded identification object.
type obj struct {
	id byte
	v  string
}

// parseDevID decodes a 0x2B/0x0E reply PDU.
func parseDevID(t *testing.T, pdu []byte) (more bool, next byte, objs []obj) {
	t.Helper()
	if len(pdu) < 7 || pdu[0] != 0x2B || pdu[1] != 0x0E || pdu[3] != ConformityLevel {
		t.Fatalf("not a device ID reply: % X", pdu)
	}
	n := int(pdu[6])
	rest := pdu[7:]
	for i := 0; i < n; i++ {
		if len(rest) < 2 || len(rest) < 2+int(rest[1]) {
			t.Fatalf("truncated object list: % X", pdu)
		}
		objs = append(objs, obj{rest[0], string(rest[2 : 2+int(rest[1])])})
		rest = rest[2+int(rest[1]):]
	}
	if len(rest) != 0 {
		t.Fatalf("trailing bytes: % X", pdu)
	}
	return pdu[4] == 0xFF, pdu[5], objs
}

func TestReadDeviceIDSplit(t *testing.T) {
	d := newTestDrive(t, "SIM-0001", true)
	opt := Options{DevIDMaxReply: 40}

	// Basic stream from 0x00: VendorName (7+2+21 = 30 bytes) fits, ProductCode would
	// make 42 > 40: split, next object 0x01.
	got := HandlePDU(d, testutil.Unhex(t, "2B 0E 01 00"), opt)
	want := testutil.Unhex(t, "2B 0E 01 83 FF 01 01 00 15"+hex.EncodeToString([]byte("rollcall firmware-sim")))
	if !bytes.Equal(got, want) {
		t.Fatalf("first part\n got % X\nwant % X", got, want)
	}
	got = HandlePDU(d, testutil.Unhex(t, "2B 0E 01 01"), opt)
	want = testutil.Unhex(t, "2B 0E 01 83 00 00 02 01 0A"+hex.EncodeToString([]byte("RC-SIM-402"))+"02 03"+hex.EncodeToString([]byte("1.2")))
	if !bytes.Equal(got, want) {
		t.Fatalf("second part\n got % X\nwant % X", got, want)
	}

	// Walk every category the way a master does and check that all objects arrive
	// once, in order, with no reply over the limit except a lone over-sized object.
	// Each stream code from object 0 streams its category and those below it (§6.21),
	// continuing across the categories.
	basic := []obj{{0x00, drive.Vendor}, {0x01, drive.ProductCode}, {0x02, "1.2"}}
	regular := append(slices.Clone(basic), obj{0x03, drive.VendorURL}, obj{0x04, drive.ProductName}, obj{0x05, drive.DefaultModel})
	wantAll := map[byte][]obj{
		DevIDBasic:    basic,
		DevIDRegular:  regular,
		DevIDExtended: append(slices.Clone(regular), obj{0x80, "SIM-0001"}),
	}
	for _, limit := range []int{16, 40, 60, 253, 0} {
		for code, want := range wantAll {
			var all []obj
			next, parts := byte(0), 0
			for {
				pdu := HandlePDU(d, []byte{0x2B, 0x0E, code, next}, Options{DevIDMaxReply: limit})
				more, nxt, objs := parseDevID(t, pdu)
				if limit > 0 && len(pdu) > limit && len(objs) != 1 {
					t.Fatalf("limit %d code %d: %d-byte reply with %d objects", limit, code, len(pdu), len(objs))
				}
				all = append(all, objs...)
				parts++
				if !more {
					if nxt != 0 {
						t.Fatalf("last part with next object %#x", nxt)
					}
					break
				}
				if parts > 10 || nxt <= next { // a master such as rollcall's needs it to advance
					t.Fatalf("limit %d code %d: no progress: next object %#x after a request from %#x", limit, code, nxt, next)
				}
				next = nxt
			}
			if len(all) != len(want) {
				t.Fatalf("limit %d code %d: got %v, want %v", limit, code, all, want)
			}
			for i := range want {
				if all[i] != want[i] {
					t.Fatalf("limit %d code %d: got %v, want %v", limit, code, all, want)
				}
			}
		}
	}

	// The 37-byte VendorUrl does not fit 40 bytes even alone: it is sent alone.
	more, next, objs := parseDevID(t, HandlePDU(d, testutil.Unhex(t, "2B 0E 02 03"), opt))
	if !more || next != 0x04 || len(objs) != 1 || objs[0].id != 0x03 {
		t.Fatalf("regular from 0x03 at 40 bytes: more %v next %#x objs %v", more, next, objs)
	}
}

func TestReadDeviceIDRestart(t *testing.T) {
	d := newTestDrive(t, "SIM-0001", true)
	// An object id that is not a present object of the code's stream restarts the
	// stream at object 0 (Modbus Application Protocol V1.1b3 §6.21).
	tests := []struct {
		req   string
		first byte
		n     int
	}{
		{"2B 0E 01 07", 0x00, 3},
		{"2B 0E 01 02", 0x02, 1},
		{"2B 0E 01 05", 0x00, 3}, // a regular object: not in the basic stream
		{"2B 0E 02 00", 0x00, 6},
		{"2B 0E 02 03", 0x03, 3},
		{"2B 0E 02 06", 0x00, 6}, // UserApplicationName: absent
		{"2B 0E 02 05", 0x05, 1},
		{"2B 0E 02 80", 0x00, 6}, // an extended object: not in the regular stream
		{"2B 0E 03 00", 0x00, 7},
		{"2B 0E 03 02", 0x02, 5},
		{"2B 0E 03 80", 0x80, 1},
		{"2B 0E 03 81", 0x00, 7},
	}
	for _, tt := range tests {
		_, _, objs := parseDevID(t, HandlePDU(d, testutil.Unhex(t, tt.req), Options{}))
		if len(objs) != tt.n || objs[0].id != tt.first {
			t.Errorf("%s: objects %v, want %d from %#02x", tt.req, objs, tt.n, tt.first)
		}
	}
}

func TestFaultValidate(t *testing.T) {
	good := []Fault{{}, {Mode: FaultNone}, {Mode: FaultSilent}, {Mode: FaultSlow, Delay: time.Millisecond},
		{Mode: FaultException}, {Mode: FaultException, Code: 6}, {Mode: FaultGarbage}, {Mode: FaultDevice}}
	for _, f := range good {
		if err := f.Validate(); err != nil {
			t.Errorf("%+v: %v", f, err)
		}
	}
	bad := []Fault{{Mode: "broken"}, {Mode: FaultSlow}, {Mode: FaultSlow, Delay: -1}, {Mode: FaultSlow, Delay: 2 * time.Minute}}
	for _, f := range bad {
		if err := f.Validate(); err == nil {
			t.Errorf("%+v accepted", f)
		}
	}
	if n := (Fault{Mode: FaultException}).Normalize(); n.Code != 4 {
		t.Errorf("default exception code = %d", n.Code)
	}
	if n := (Fault{Delay: time.Second, Code: 3}).Normalize(); n != (Fault{Mode: FaultNone}) {
		t.Errorf("Normalize = %+v", n)
	}
	if s := (Fault{Mode: FaultSlow, Delay: 200 * time.Millisecond}).String(); s != "slow(200ms)" {
		t.Errorf("String = %q", s)
	}
}

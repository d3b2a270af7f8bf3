package modbus

import (
	"errors"
	"testing"
)

// FuzzExpectedReplyLength feeds arbitrary bytes as an RTU reply to every function code
// rollcall sends: the length logic must never panic, never claim a frame longer than an
// RTU ADU (256 bytes, Modbus over Serial Line V1.02 §2.5.1), and only fail with
// ErrBadFrame.
func FuzzExpectedReplyLength(f *testing.F) {
	f.Add(byte(0x03), []byte{0x01, 0x03, 0x04, 0x02, 0x37, 0x00, 0x00, 0x00, 0x00})
	f.Add(byte(0x03), []byte{0x01, 0x83, 0x02, 0xC0, 0xF1})
	f.Add(byte(0x2B), []byte{0x01, 0x2B, 0x0E, 0x01, 0x83, 0x00, 0x00, 0x01, 0x00, 0x03, 'A', 'B', 'C'})
	f.Add(byte(0x2B), []byte{0x01, 0x2B, 0x0E, 0x01, 0x83, 0xFF, 0x02, 0xFF, 0x00, 0xFF})
	f.Add(byte(0x10), []byte{0x01, 0x10, 0x00, 0x02, 0x00, 0x02, 0xE0, 0x08})
	f.Fuzz(func(t *testing.T, fn byte, reply []byte) {
		n, known, err := ExpectedReplyLength(fn, reply)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("error %v is not ErrBadFrame", err)
			}
			return
		}
		if n < 0 || n > MaxADU {
			t.Fatalf("length %d outside 0–%d (known %v)", n, MaxADU, known)
		}
		if !known && n <= len(reply) && len(reply) >= MaxADU {
			t.Fatalf("still unknown with %d bytes, asking for %d", len(reply), n)
		}
	})
}

// FuzzParseDeviceIDReply: a hostile FC 0x2B/0x0E reply never panics, and whatever is
// accepted is consistent (objects within the PDU, continuation flag 0x00 or 0xFF).
func FuzzParseDeviceIDReply(f *testing.F) {
	f.Add([]byte{0x0E, 0x01, 0x83, 0x00, 0x00, 0x02, 0x00, 0x03, 'A', 'B', 'C', 0x01, 0x01, 'X'})
	f.Add([]byte{0x0E, 0x03, 0x83, 0xFF, 0x81, 0x01, 0x80, 0x04, 'S', 'I', 'M', '1'})
	f.Add([]byte{0x0E, 0x01, 0x83, 0x00, 0x00, 0x09, 0x00, 0xFF})
	f.Fuzz(func(t *testing.T, data []byte) {
		part, err := ParseDeviceIDReply(data)
		if err != nil {
			return
		}
		total := 0
		for _, o := range part.Objects {
			total += 2 + len(o.Value)
		}
		if total > len(data) {
			t.Fatalf("objects (%d bytes) larger than the PDU data (%d bytes)", total, len(data))
		}
	})
}

// FuzzMBAPHeader: any 7 bytes either give a header whose length field leaves room for a
// unit and a function code within one TCP ADU, or ErrBadFrame.
func FuzzMBAPHeader(f *testing.F) {
	f.Add([]byte{0x00, 0x01, 0x00, 0x00, 0x00, 0x06, 0x01})
	f.Add([]byte{0x00, 0x01, 0xFF, 0xFF, 0x00, 0x06, 0x01})
	f.Add([]byte{0x00, 0x01, 0x00, 0x00, 0xFF, 0xFF, 0x01})
	f.Fuzz(func(t *testing.T, h []byte) {
		if len(h) < MBAPHeaderLen {
			return
		}
		hdr, err := parseMBAPHeader(h[:MBAPHeaderLen])
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("error %v is not ErrBadFrame", err)
			}
			return
		}
		if hdr.length < 2 || int(hdr.length)+6 > MaxTCPADU {
			t.Fatalf("accepted length %d", hdr.length)
		}
	})
}

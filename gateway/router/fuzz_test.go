package router

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/protocols/modbus"
)

// FuzzHandle feeds arbitrary MBAP headers and request PDUs to the router: the header
// check never panics and accepts exactly the lengths 2–254 with protocol identifier 0;
// Handle always answers, with the request's function code (exception bit aside), an
// exception being exactly two bytes, and forwards only what a device on a serial line
// can delimit (modbus.RequestPDULength).
func FuzzHandle(f *testing.F) {
	f.Add([]byte{0, 1, 0, 0, 0, 6, 1}, []byte{0x03, 0, 0, 0, 2})
	f.Add([]byte{0, 1, 0, 0, 0, 9, 1}, []byte{0x10, 0, 1, 0, 1, 2, 0, 5})
	f.Add([]byte{0, 1, 0, 1, 1, 0, 9}, []byte{0x2B, 0x0E, 1, 0})
	f.Add([]byte{0xFF, 0xFF, 0, 0, 0, 2, 1}, []byte{0x17, 0, 0, 0, 1, 0, 0, 0, 1, 2, 0, 0})
	forwarded := func(_ context.Context, pdu []byte) ([]byte, error) {
		if modbus.RequestPDULength(pdu) != len(pdu) {
			panic("forwarded a request a serial device cannot delimit")
		}
		return append([]byte{pdu[0]}, 0), nil
	}
	cat := &fakeCatalog{targets: []Target{{ID: "a", Passing: true}},
		answer: map[string]func(context.Context, []byte) ([]byte, error){"a": forwarded}}
	rt, err := New(Options{Routes: []Route{{Unit: 1, Service: "s", Writes: true}, {Unit: 9, Service: "s"}},
		Catalog: cat, RequestTimeout: time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, hdr, pdu []byte) {
		var h [mbapHeaderLen]byte
		copy(h[:], hdr)
		n, err := requestLength(h)
		pid, length := int(h[2])<<8|int(h[3]), int(h[4])<<8|int(h[5])
		if ok := pid == 0 && length >= 2 && length <= 254; ok != (err == nil) || (ok && n != length) {
			t.Fatalf("requestLength(% X) = %d, %v", h, n, err)
		}
		if len(pdu) == 0 || len(pdu) > modbus.MaxPDU {
			return // the server never reads such a PDU
		}
		reply := rt.Handle(context.Background(), h[6], pdu)
		if len(reply) == 0 || reply[0]&0x7F != pdu[0]&0x7F || (reply[0]&0x80 != 0 && len(reply) != 2) {
			t.Fatalf("Handle(unit %d, % X) = % X", h[6], pdu, reply)
		}
	})
}

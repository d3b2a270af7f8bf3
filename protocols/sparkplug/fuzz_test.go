package sparkplug

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

// FuzzDecode: arbitrary bytes never make Decode (or MetricValue on what it returns)
// panic, and whatever decodes re-encodes to bytes that decode to an equal message.
func FuzzDecode(f *testing.F) {
	for _, p := range []*Payload{
		{},
		samplePayload(),
		{Seq: proto.Uint64(255), Metrics: []*Payload_Metric{NullMetric("n", Int32), DateTimeMetric("t", time.UnixMilli(-1))}},
	} {
		b, err := Encode(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x12, 0x03, 0x9a, 0x01, 0x00})                         // metric: empty extension_value
	f.Add([]byte{0x12, 0x03, 0x8a, 0x01, 0x00})                         // metric: empty dataset_value
	f.Add([]byte{0x12, 0x07, 0x8a, 0x01, 0x04, 0x1a, 0x02, 0x01, 0x02}) // data set: packed types
	f.Add([]byte{0x12, 0x04, 0x0a, 0x02, 0xff, 0xfe, 0xa0, 0x06, 0x01}) // invalid UTF-8 name; field 100 (extension range)
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Decode(b)
		if err != nil {
			return
		}
		for _, m := range p.GetMetrics() {
			_ = MetricValue(m)
			_ = MetricValueAs(m, DateTime)
			_ = MetricValueAs(m, Int8)
		}
		b2, err := Encode(p)
		if errors.Is(err, ErrTooLarge) {
			// Packed repeated uint32 input re-encodes unpacked, as proto2 asks: larger.
			return
		}
		if err != nil {
			t.Fatalf("decoded payload does not re-encode: %v", err)
		}
		p2, err := Decode(b2)
		if err != nil {
			t.Fatalf("re-encoded payload does not decode: %v", err)
		}
		if !proto.Equal(p, p2) {
			t.Fatalf("round trip changed the payload:\n%v\n%v", p, p2)
		}
	})
}

package mqtt

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/registry"
)

// fullRecord returns a record with every field set; times have millisecond precision
// and State holds JSON-native types, so a decoded copy is reflect.DeepEqual.
func fullRecord(gateway, id string, revision int64) registry.Record {
	return registry.Record{
		Schema:      registry.Schema,
		ID:          id,
		Service:     "servo-drive",
		Gateway:     gateway,
		Epoch:       7,
		Revision:    revision,
		Status:      registry.Warning,
		StatusSince: registry.Time{Time: time.Date(2025, 3, 4, 5, 6, 7, 123_000_000, time.UTC)},
		LastSeen:    registry.Time{Time: time.Date(2025, 3, 4, 5, 6, 8, 456_000_000, time.UTC)},
		Endpoint: registry.Endpoint{
			Transport: "modbus-rtu", Bus: "bus1", Device: "/dev/ttyUSB0", Baud: 115200, Unit: 3,
		},
		Identity: registry.Identity{
			Vendor: "ACME", ProductCode: "SD-200", Revision: "1.4", Model: "SD200-A", Serial: "SN/0001",
		},
		Profile: "acme-sd200",
		State:   map[string]any{"cia402": "fault", "fault": true, "error_code": float64(0x2310)},
		Check: registry.Check{
			IntervalMS: 250, TimeoutMS: 50, Failures: 1, RTTMS: 4.37, DetectBudgetMS: 900,
		},
		DiscoveredBy: []string{"rtu-sweep", "mdns"},
		Meta:         map[string]string{"cell": "2", "axis": "7"},
	}
}

func TestRecordRoundTrip(t *testing.T) {
	rec := fullRecord("cell2-gw", "acme-sn-0001", 42)
	b, err := EncodeRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"schema":"rollcall.instance/v1"`,
		`"status_since":"2025-03-04T05:06:07.123Z"`,
		`"last_seen":"2025-03-04T05:06:08.456Z"`,
		`"endpoint":{"transport":"modbus-rtu","bus":"bus1","device":"/dev/ttyUSB0","baud":115200,"unit":3}`,
		`"rtt_ms":4.37`,
	} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("encoded record lacks %s:\n%s", want, b)
		}
	}
	got, err := DecodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, rec) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", *got, rec)
	}
}

func TestRecordTimesMilliseconds(t *testing.T) {
	rec := fullRecord("g", "i", 1)
	rec.StatusSince.Time = time.Date(2025, 1, 2, 3, 4, 5, 987_654_321, time.FixedZone("CET", 3600))
	rec.LastSeen.Time = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	b, err := EncodeRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"status_since":"2025-01-02T02:04:05.987Z"`)) ||
		!bytes.Contains(b, []byte(`"last_seen":"2025-01-02T03:04:05.000Z"`)) {
		t.Fatalf("times not RFC 3339 UTC with milliseconds:\n%s", b)
	}
	got, err := DecodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := rec.StatusSince.Truncate(time.Millisecond); !got.StatusSince.Equal(want) {
		t.Fatalf("status_since decoded %v, want %v", got.StatusSince, want)
	}
	// Readers accept any RFC 3339 time, e.g. with an offset and nanoseconds.
	in := []byte(`{"schema":"rollcall.instance/v1","id":"i","service":"s","gateway":"g","last_seen":"2025-01-02T04:04:05.5+01:00","status_since":null}`)
	got, err = DecodeRecord(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2025, 1, 2, 3, 4, 5, 500_000_000, time.UTC); !got.LastSeen.Equal(want) || !got.StatusSince.IsZero() {
		t.Fatalf("decoded last_seen %v status_since %v", got.LastSeen, got.StatusSince)
	}
}

func TestDecodeRecordUnknownFieldsIgnored(t *testing.T) {
	rec := fullRecord("g", "i", 3)
	b, err := EncodeRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["future_field"] = map[string]any{"x": []int{1, 2}}
	m["endpoint"].(map[string]any)["vlan"] = 12
	b2, _ := json.Marshal(m)
	got, err := DecodeRecord(b2)
	if err != nil {
		t.Fatalf("unknown fields: %v", err)
	}
	if !reflect.DeepEqual(*got, rec) {
		t.Fatalf("with unknown fields:\n got %+v\nwant %+v", *got, rec)
	}
}

func TestDecodeRecordEmptyIsDeregistered(t *testing.T) {
	for _, p := range [][]byte{nil, {}} {
		rec, err := DecodeRecord(p)
		if rec != nil || err != nil {
			t.Fatalf("DecodeRecord(%q) = %v, %v; want nil, nil", p, rec, err)
		}
	}
}

func TestDecodeRecordErrors(t *testing.T) {
	big := `{"schema":"rollcall.instance/v1","id":"i","service":"s","gateway":"g","profile":"` + strings.Repeat("x", MaxPayloadSize) + `"}`
	tests := []struct {
		name    string
		payload string
		want    error
	}{
		{"not json", "hello", ErrInvalidRecord},
		{"json null", "null", ErrSchema},
		{"array", "[]", ErrInvalidRecord},
		{"trailing garbage", `{"schema":"rollcall.instance/v1","id":"i","service":"s","gateway":"g"} x`, ErrInvalidRecord},
		{"no schema", `{"id":"i","service":"s","gateway":"g"}`, ErrSchema},
		{"v2 schema", `{"schema":"rollcall.instance/v2","id":"i","service":"s","gateway":"g"}`, ErrSchema},
		{"no id", `{"schema":"rollcall.instance/v1","service":"s","gateway":"g"}`, ErrInvalidRecord},
		{"no service", `{"schema":"rollcall.instance/v1","id":"i","gateway":"g"}`, ErrInvalidRecord},
		{"no gateway", `{"schema":"rollcall.instance/v1","id":"i","service":"s"}`, ErrInvalidRecord},
		{"bad time", `{"schema":"rollcall.instance/v1","id":"i","service":"s","gateway":"g","last_seen":"yesterday"}`, ErrInvalidRecord},
		{"too large", big, ErrPayloadTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := DecodeRecord([]byte(tc.payload))
			if !errors.Is(err, tc.want) || rec != nil {
				t.Fatalf("DecodeRecord = %v, %v; want error %v", rec, err, tc.want)
			}
		})
	}
}

func TestEncodeRecord(t *testing.T) {
	rec := fullRecord("g", "i", 1)
	rec.Schema = ""
	b, err := EncodeRecord(rec)
	if err != nil || !bytes.Contains(b, []byte(`"schema":"rollcall.instance/v1"`)) {
		t.Fatalf("empty schema not filled in: %s, %v", b, err)
	}
	rec.Schema = "other/v9"
	if _, err := EncodeRecord(rec); !errors.Is(err, ErrSchema) {
		t.Fatalf("foreign schema: %v, want ErrSchema", err)
	}
	rec = fullRecord("g", "", 1)
	if _, err := EncodeRecord(rec); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("empty id: %v, want ErrInvalidRecord", err)
	}
	rec = fullRecord("g", "i", 1)
	rec.Meta["blob"] = strings.Repeat("x", MaxPayloadSize)
	if _, err := EncodeRecord(rec); !errors.Is(err, ErrPayloadTooLarge) {
		t.Fatalf("huge record: %v, want ErrPayloadTooLarge", err)
	}
}

func TestGatewayRecordCodec(t *testing.T) {
	g := registry.GatewayRecord{
		State: StateOnline, Gateway: "cell2-gw", Epoch: 12, Version: "v0.1.0",
		Started: registry.Time{Time: time.Date(2025, 5, 6, 7, 8, 9, 10_000_000, time.UTC)},
	}
	b, err := EncodeGatewayRecord(g)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"state":"online","gateway":"cell2-gw","epoch":12,"started":"2025-05-06T07:08:09.010Z","version":"v0.1.0"}`; string(b) != want {
		t.Fatalf("encoded %s\nwant    %s", b, want)
	}
	got, err := DecodeGatewayRecord(b)
	if err != nil || !reflect.DeepEqual(*got, g) {
		t.Fatalf("decoded %+v, %v", got, err)
	}
	if got, err := DecodeGatewayRecord(nil); got != nil || err != nil {
		t.Fatalf("empty payload: %v, %v", got, err)
	}
	for _, bad := range []string{`{"state":"online"}`, `{"state":"asleep","gateway":"g"}`, `nope`} {
		if _, err := DecodeGatewayRecord([]byte(bad)); !errors.Is(err, ErrInvalidRecord) {
			t.Errorf("DecodeGatewayRecord(%s) = %v, want ErrInvalidRecord", bad, err)
		}
	}
	if _, err := EncodeGatewayRecord(registry.GatewayRecord{Gateway: "g"}); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("empty state: %v", err)
	}
}

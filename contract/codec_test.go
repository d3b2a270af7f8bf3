package contract_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/internal/testutil"
)

func TestRecordRoundTrip(t *testing.T) {
	rec := testutil.FullRecord("cell2-gw", "acme-sn-0001", 42)
	b, err := contract.EncodeRecord(rec)
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
	got, err := contract.DecodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, rec) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", *got, rec)
	}
}

func TestRecordTimesMilliseconds(t *testing.T) {
	rec := testutil.FullRecord("g", "i", 1)
	rec.StatusSince.Time = time.Date(2025, 1, 2, 3, 4, 5, 987_654_321, time.FixedZone("CET", 3600))
	rec.LastSeen.Time = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	b, err := contract.EncodeRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"status_since":"2025-01-02T02:04:05.987Z"`)) ||
		!bytes.Contains(b, []byte(`"last_seen":"2025-01-02T03:04:05.000Z"`)) {
		t.Fatalf("times not RFC 3339 UTC with milliseconds:\n%s", b)
	}
	got, err := contract.DecodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := rec.StatusSince.Truncate(time.Millisecond); !got.StatusSince.Equal(want) {
		t.Fatalf("status_since decoded %v, want %v", got.StatusSince, want)
	}
	// Readers accept any RFC 3339 time, e.g. with an offset and nanoseconds.
	in := []byte(`{"schema":"rollcall.instance/v1","id":"i","service":"s","gateway":"g","last_seen":"2025-01-02T04:04:05.5+01:00","status_since":null}`)
	got, err = contract.DecodeRecord(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2025, 1, 2, 3, 4, 5, 500_000_000, time.UTC); !got.LastSeen.Equal(want) || !got.StatusSince.IsZero() {
		t.Fatalf("decoded last_seen %v status_since %v", got.LastSeen, got.StatusSince)
	}
}

func TestDecodeRecordUnknownFieldsIgnored(t *testing.T) {
	rec := testutil.FullRecord("g", "i", 3)
	b, err := contract.EncodeRecord(rec)
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
	got, err := contract.DecodeRecord(b2)
	if err != nil {
		t.Fatalf("unknown fields: %v", err)
	}
	if !reflect.DeepEqual(*got, rec) {
		t.Fatalf("with unknown fields:\n got %+v\nwant %+v", *got, rec)
	}
}

func TestDecodeRecordEmptyIsDeregistered(t *testing.T) {
	for _, p := range [][]byte{nil, {}} {
		rec, err := contract.DecodeRecord(p)
		if rec != nil || err != nil {
			t.Fatalf("DecodeRecord(%q) = %v, %v; want nil, nil", p, rec, err)
		}
	}
}

func TestDecodeRecordErrors(t *testing.T) {
	big := `{"schema":"rollcall.instance/v1","id":"i","service":"s","gateway":"g","profile":"` + strings.Repeat("x", contract.MaxPayloadSize) + `"}`
	tests := []struct {
		name    string
		payload string
		want    error
	}{
		{"not json", "hello", contract.ErrInvalidRecord},
		{"json null", "null", contract.ErrSchema},
		{"array", "[]", contract.ErrInvalidRecord},
		{"trailing garbage", `{"schema":"rollcall.instance/v1","id":"i","service":"s","gateway":"g"} x`, contract.ErrInvalidRecord},
		{"no schema", `{"id":"i","service":"s","gateway":"g"}`, contract.ErrSchema},
		{"v2 schema", `{"schema":"rollcall.instance/v2","id":"i","service":"s","gateway":"g"}`, contract.ErrSchema},
		{"no id", `{"schema":"rollcall.instance/v1","service":"s","gateway":"g"}`, contract.ErrInvalidRecord},
		{"no service", `{"schema":"rollcall.instance/v1","id":"i","gateway":"g"}`, contract.ErrInvalidRecord},
		{"no gateway", `{"schema":"rollcall.instance/v1","id":"i","service":"s"}`, contract.ErrInvalidRecord},
		{"bad time", `{"schema":"rollcall.instance/v1","id":"i","service":"s","gateway":"g","last_seen":"yesterday"}`, contract.ErrInvalidRecord},
		{"too large", big, contract.ErrPayloadTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := contract.DecodeRecord([]byte(tc.payload))
			if !errors.Is(err, tc.want) || rec != nil {
				t.Fatalf("DecodeRecord = %v, %v; want error %v", rec, err, tc.want)
			}
		})
	}
}

func TestEncodeRecord(t *testing.T) {
	rec := testutil.FullRecord("g", "i", 1)
	rec.Schema = ""
	b, err := contract.EncodeRecord(rec)
	if err != nil || !bytes.Contains(b, []byte(`"schema":"rollcall.instance/v1"`)) {
		t.Fatalf("empty schema not filled in: %s, %v", b, err)
	}
	rec.Schema = "other/v9"
	if _, err := contract.EncodeRecord(rec); !errors.Is(err, contract.ErrSchema) {
		t.Fatalf("foreign schema: %v, want ErrSchema", err)
	}
	rec = testutil.FullRecord("g", "", 1)
	if _, err := contract.EncodeRecord(rec); !errors.Is(err, contract.ErrInvalidRecord) {
		t.Fatalf("empty id: %v, want ErrInvalidRecord", err)
	}
	rec = testutil.FullRecord("g", "i", 1)
	rec.Meta["blob"] = strings.Repeat("x", contract.MaxPayloadSize)
	if _, err := contract.EncodeRecord(rec); !errors.Is(err, contract.ErrPayloadTooLarge) {
		t.Fatalf("huge record: %v, want ErrPayloadTooLarge", err)
	}
}

func TestGatewayRecordCodec(t *testing.T) {
	g := contract.GatewayRecord{
		State: contract.StateOnline, Gateway: "cell2-gw", Epoch: 12, Version: "v0.1.0",
		Started: contract.Time{Time: time.Date(2025, 5, 6, 7, 8, 9, 10_000_000, time.UTC)},
	}
	b, err := contract.EncodeGatewayRecord(g)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"state":"online","gateway":"cell2-gw","epoch":12,"started":"2025-05-06T07:08:09.010Z","version":"v0.1.0"}`; string(b) != want {
		t.Fatalf("encoded %s\nwant    %s", b, want)
	}
	got, err := contract.DecodeGatewayRecord(b)
	if err != nil || !reflect.DeepEqual(*got, g) {
		t.Fatalf("decoded %+v, %v", got, err)
	}
	if got, err := contract.DecodeGatewayRecord(nil); got != nil || err != nil {
		t.Fatalf("empty payload: %v, %v", got, err)
	}
	for _, bad := range []string{`{"state":"online"}`, `{"state":"asleep","gateway":"g"}`, `nope`} {
		if _, err := contract.DecodeGatewayRecord([]byte(bad)); !errors.Is(err, contract.ErrInvalidRecord) {
			t.Errorf("DecodeGatewayRecord(%s) = %v, want ErrInvalidRecord", bad, err)
		}
	}
	if _, err := contract.EncodeGatewayRecord(contract.GatewayRecord{Gateway: "g"}); !errors.Is(err, contract.ErrInvalidRecord) {
		t.Fatalf("empty state: %v", err)
	}
}

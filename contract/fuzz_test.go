package contract_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/rollcall-edge/rollcall/contract"
)

// FuzzInstanceTopic: whatever a device or an mDNS packet says, the instance topic has
// exactly the contract's levels, each a slug: never a wildcard, '$', NUL, an empty
// level or an extra level (docs/contract.md, "Topics and payloads").
func FuzzInstanceTopic(f *testing.F) {
	f.Add("servo-drive", "cell2-gw", "acme-SN42")
	f.Add("a/b", "+", "#")
	f.Add("$SYS", "\x00", "\xff\xfe")
	f.Add("", "", strings.Repeat("x", 10000))
	f.Fuzz(func(t *testing.T, service, gateway, id string) {
		topic := contract.Topics{}.Instance(service, gateway, id)
		levels := strings.Split(topic, "/")
		if len(levels) != 6 || levels[0] != "rollcall" || levels[1] != "v1" || levels[2] != "catalog" {
			t.Fatalf("topic %q", topic)
		}
		for _, l := range levels[3:] {
			if !contract.IsSlug(l) || l == "" || len(l) > 64 || strings.ContainsAny(l, "+#$/\x00") || !utf8.ValidString(l) {
				t.Fatalf("level %q of %q is not a slug", l, topic)
			}
		}
		if s, g, i, ok := (contract.Topics{}).ParseInstanceTopic(topic); !ok || s != levels[3] || g != levels[4] || i != levels[5] {
			t.Fatalf("ParseInstanceTopic(%q) = %q %q %q %v", topic, s, g, i, ok)
		}
	})
}

// FuzzDecodeRecord: the consumer-side decoder never panics on a hostile payload, and a
// record it accepts survives a round trip through EncodeRecord.
func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte(`{"schema":"rollcall.instance/v1","id":"a","service":"servo-drive","gateway":"g","epoch":1,"revision":2,"status":"passing","status_since":"2026-01-01T00:00:00.000Z","last_seen":null,"endpoint":{"transport":"modbus-rtu","unit":1},"identity":{},"profile":"p","state":{},"check":{"interval_ms":1,"timeout_ms":1,"failures":0,"rtt_ms":0,"detect_budget_ms":1},"discovered_by":[],"meta":{}}`))
	f.Add([]byte(`{"schema":"rollcall.instance/v1","id":"../../x","extra":[1,2,3]}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, payload []byte) {
		rec, err := contract.DecodeRecord(payload)
		if err != nil || rec == nil {
			return
		}
		b, err := contract.EncodeRecord(*rec)
		if err != nil {
			return // accepted on read but refused on write: allowed (e.g. hostile ids)
		}
		if _, err := contract.DecodeRecord(b); err != nil {
			t.Fatalf("re-decoding an encoded record: %v\n%s", err, b)
		}
	})
}

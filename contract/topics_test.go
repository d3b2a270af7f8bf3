package contract_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/rollcall-edge/rollcall/contract"
)

func TestSlug(t *testing.T) {
	long := strings.Repeat("a", 100)
	tests := []struct {
		name, in, want string
	}{
		{"plain", "servo-drive", "servo-drive"},
		{"upper", "Cell2-GW", "cell2-gw"},
		{"dots underscores", "axis_7.left", "axis_7.left"},
		{"empty", "", "-"},
		{"slash", "a/b", "a-b"},
		{"plus", "a+b", "a-b"},
		{"hash", "a#b", "a-b"},
		{"dollar", "$SYS", "-sys"},
		{"nul", "a\x00b", "a-b"},
		{"space", "line 2", "line-2"},
		{"only slash", "/", "-"},
		{"wildcards only", "+/#", "---"},
		{"unicode rune is one dash", "Zürich", "z-rich"},
		{"invalid utf8 byte each", "a\xff\xfeb", "a--b"},
		{"kelvin sign not lowered", "\u212a", "-"},
		{"runs kept", "a//b", "a--b"},
		{"exactly 64", strings.Repeat("x", 64), strings.Repeat("x", 64)},
		{"65 hashed", strings.Repeat("x", 65), strings.Repeat("x", 55) + "-" + fnvHex(strings.Repeat("x", 65))},
		{"100 hashed", long, strings.Repeat("a", 55) + "-" + fnvHex(long)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := contract.Slug(tc.in)
			if got != tc.want {
				t.Fatalf("Slug(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if !contract.IsSlug(got) {
				t.Fatalf("Slug(%q) = %q is not a valid slug", tc.in, got)
			}
			if again := contract.Slug(got); again != got {
				t.Fatalf("Slug not idempotent: %q → %q", got, again)
			}
		})
	}
}

func TestSlugLongNamesDoNotCollide(t *testing.T) {
	prefix := strings.Repeat("drive-serial-", 10)
	a, b := contract.Slug(prefix+"A0001"), contract.Slug(prefix+"A0002")
	if a == b {
		t.Fatalf("two long names share slug %q", a)
	}
	if len(a) != contract.MaxSlugLen || len(b) != contract.MaxSlugLen {
		t.Fatalf("long slugs have lengths %d and %d, want %d", len(a), len(b), contract.MaxSlugLen)
	}
	// The hash is of the original string, not of the slugged one.
	if contract.Slug(strings.Repeat("/", 70)) == contract.Slug(strings.Repeat("+", 70)) {
		t.Fatal("different long originals that slug alike must differ by hash")
	}
}

// hostile inputs for every level that comes from device or network data.
var hostile = []string{
	"", "/", "//", "+", "#", "$", "$SYS/broker", "a/b/c", "+/#", "\x00", "a\x00b",
	"\xff\xfe\xfd", "  ", "\t\n", "../..", ".", "UPPER", "ünïcödé", "emoji-🚀",
	strings.Repeat("x", 10<<10), strings.Repeat("/", 10<<10), strings.Repeat("\xff", 10<<10),
	strings.Repeat("é", 5000),
}

// checkTopic fails unless topic has exactly want levels, none empty and none with a
// wildcard, '$' or NUL.
func checkTopic(t *testing.T, topic string, want int) {
	t.Helper()
	if strings.ContainsAny(topic, "+#$\x00") {
		t.Fatalf("topic %q contains a wildcard, '$' or NUL", topic)
	}
	levels := strings.Split(topic, "/")
	if len(levels) != want {
		t.Fatalf("topic %q has %d levels, want %d", topic, len(levels), want)
	}
	for i, l := range levels {
		if l == "" {
			t.Fatalf("topic %q has an empty level %d", topic, i)
		}
	}
}

func TestTopicsHostile(t *testing.T) {
	for _, prefix := range []string{"", "plant7/rollcall/v1"} {
		tp := contract.Topics{Prefix: prefix}
		pl := len(strings.Split(tp.Root(), "/"))
		for _, a := range hostile {
			for _, b := range hostile {
				inst := tp.Instance(a, b, a+b)
				checkTopic(t, inst, pl+4)
				svc, gw, id, ok := tp.ParseInstanceTopic(inst)
				if !ok || svc != contract.Slug(a) || gw != contract.Slug(b) || id != contract.Slug(a+b) {
					t.Fatalf("ParseInstanceTopic(%q) = %q %q %q %v", inst, svc, gw, id, ok)
				}
			}
			st := tp.GatewayStatus(a)
			checkTopic(t, st, pl+3)
			if gw, ok := tp.ParseGatewayStatusTopic(st); !ok || gw != contract.Slug(a) {
				t.Fatalf("ParseGatewayStatusTopic(%q) = %q %v", st, gw, ok)
			}
			f := tp.CatalogFilter(a)
			if a != "" && (strings.ContainsAny(f[:len(f)-4], "+#$\x00") || !strings.HasSuffix(f, "/+/+")) {
				t.Fatalf("CatalogFilter(%q) = %q", a, f)
			}
		}
	}
}

func TestTopics(t *testing.T) {
	var tp contract.Topics
	if got, want := tp.Instance("servo-drive", "cell2-gw", "acme-SN1"), "rollcall/v1/catalog/servo-drive/cell2-gw/acme-sn1"; got != want {
		t.Fatalf("Instance = %q, want %q", got, want)
	}
	if got, want := tp.GatewayStatus("cell2-gw"), "rollcall/v1/gateways/cell2-gw/status"; got != want {
		t.Fatalf("GatewayStatus = %q, want %q", got, want)
	}
	if got, want := tp.CatalogFilter(""), "rollcall/v1/catalog/+/+/+"; got != want {
		t.Fatalf("CatalogFilter(\"\") = %q, want %q", got, want)
	}
	if got, want := tp.CatalogFilter("Servo Drive"), "rollcall/v1/catalog/servo-drive/+/+"; got != want {
		t.Fatalf("CatalogFilter = %q, want %q", got, want)
	}
	if got, want := tp.GatewayStatusFilter(), "rollcall/v1/gateways/+/status"; got != want {
		t.Fatalf("GatewayStatusFilter = %q, want %q", got, want)
	}
	custom := contract.Topics{Prefix: "site/a"}
	if got, want := custom.Instance("s", "g", "i"), "site/a/catalog/s/g/i"; got != want {
		t.Fatalf("custom Instance = %q, want %q", got, want)
	}
}

func TestParseInstanceTopicRejects(t *testing.T) {
	var tp contract.Topics
	for _, topic := range []string{
		"",
		"rollcall/v1/catalog/s/g",
		"rollcall/v1/catalog/s/g/i/extra",
		"rollcall/v1/catalog//g/i",
		"rollcall/v1/catalog/s/g/",
		"rollcall/v1/catalog/S/g/i",
		"rollcall/v2/catalog/s/g/i",
		"other/rollcall/v1/catalog/s/g/i",
		"rollcall/v1/gateways/g/status",
		"rollcall/v1/catalog/s/g/" + strings.Repeat("i", 65),
	} {
		if s, g, i, ok := tp.ParseInstanceTopic(topic); ok {
			t.Errorf("ParseInstanceTopic(%q) = %q %q %q, true; want false", topic, s, g, i)
		}
	}
	for _, topic := range []string{
		"", "rollcall/v1/gateways/status", "rollcall/v1/gateways//status",
		"rollcall/v1/gateways/a/b/status", "rollcall/v1/gateways/g/state", "rollcall/v1/gateways/G/status",
	} {
		if g, ok := tp.ParseGatewayStatusTopic(topic); ok {
			t.Errorf("ParseGatewayStatusTopic(%q) = %q, true; want false", topic, g)
		}
	}
}

func TestTopicsValidate(t *testing.T) {
	for _, ok := range []string{"", "rollcall/v1", "plant 7/rollcall/v1", "a"} {
		if err := (contract.Topics{Prefix: ok}).Validate(); err != nil {
			t.Errorf("Validate(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"/rollcall", "rollcall/", "a//b", "a/+/b", "a/#", "$SYS/x", "a\x00", "\xff", strings.Repeat("a", 1025)} {
		if err := (contract.Topics{Prefix: bad}).Validate(); !errors.Is(err, contract.ErrInvalidPrefix) {
			t.Errorf("Validate(%q) = %v, want ErrInvalidPrefix", bad, err)
		}
	}
}

func fnvHex(s string) string {
	// FNV-1a 32 computed independently of Slug's use of hash/fnv.
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	const hexdigits = "0123456789abcdef"
	var b [8]byte
	for i := 7; i >= 0; i-- {
		b[i] = hexdigits[h&0xf]
		h >>= 4
	}
	return string(b[:])
}

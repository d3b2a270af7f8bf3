package mdns

import (
	"fmt"
	"maps"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseTXT(t *testing.T) {
	longKey := strings.Repeat("k", MaxTXTKeyLen)
	tests := []struct {
		name string
		in   []string
		want map[string]string
	}{
		{"nil", nil, map[string]string{}},
		{"single empty string means no data (§6.1)", []string{""}, map[string]string{}},
		{"key=value", []string{"vendor=ACME", "model=X1", "serial=SN-1"},
			map[string]string{"vendor": "ACME", "model": "X1", "serial": "SN-1"}},
		{"split at the first '=' (§6.3)", []string{"expr=a=b=c"}, map[string]string{"expr": "a=b=c"}},
		{"boolean attribute without '=' (§6.4)", []string{"secure"}, map[string]string{"secure": "true"}},
		{"empty value is kept", []string{"cell="}, map[string]string{"cell": ""}},
		{"missing key is ignored (§6.4)", []string{"=x", "=", "a=1"}, map[string]string{"a": "1"}},
		{"keys lower-cased", []string{"Vendor=ACME", "MODEL=X"}, map[string]string{"vendor": "ACME", "model": "X"}},
		{"first occurrence wins (§6.4)", []string{"axis=7", "axis=8"}, map[string]string{"axis": "7"}},
		{"first wins across case", []string{"Axis=7", "aXiS=8", "axis"}, map[string]string{"axis": "7"}},
		{"boolean first, then value", []string{"flag", "flag=no"}, map[string]string{"flag": "true"}},
		{"topic characters survive in values", []string{"model=/+#$ x"}, map[string]string{"model": "/+#$ x"}},
		{"key with spaces is printable ASCII", []string{"my key=v"}, map[string]string{"my key": "v"}},
		{"key with NUL ignored", []string{"ve\x00ndor=x", "vendor=y"}, map[string]string{"vendor": "y"}},
		{"key with control or non-ASCII ignored", []string{"a\tb=1", "k\xff=2", "kü=3", "ok=4"},
			map[string]string{"ok": "4"}},
		{"key at the bound kept, beyond ignored", []string{longKey + "=1", longKey + "x=2"},
			map[string]string{longKey: "1"}},
		{"NUL and controls removed from values", []string{"cell=2\x00", "axis=\x1b[31m7\x7f", "unit=\u00851"},
			map[string]string{"cell": "2", "axis": "[31m7", "unit": "1"}},
		{"bidi controls removed", []string{"name=abc\u202edcba\u2066"}, map[string]string{"name": "abcdcba"}},
		{"invalid UTF-8 replaced", []string{"vendor=M\xfcller", "x=\xc3"},
			map[string]string{"vendor": "M\ufffdller", "x": "\ufffd"}},
		{"valid UTF-8 kept", []string{"vendor=Müller 株式会社"}, map[string]string{"vendor": "Müller 株式会社"}},
		{"empty records between", []string{"", "a=1", "", "b"}, map[string]string{"a": "1", "b": "true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ParseTXT(tt.in)
			if got == nil {
				t.Fatal("nil map")
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("ParseTXT(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseTXTBounds(t *testing.T) {
	t.Run("10 KB value truncated to MaxTXTValueLen", func(t *testing.T) {
		got := ParseTXT([]string{"v=" + strings.Repeat("x", 10*1024)})["v"]
		if got != strings.Repeat("x", MaxTXTValueLen) {
			t.Errorf("len %d, want %d", len(got), MaxTXTValueLen)
		}
	})
	t.Run("multi-byte value cut at a character boundary", func(t *testing.T) {
		got := ParseTXT([]string{"v=" + strings.Repeat("€", 1000)})["v"] // 3 bytes each
		if len(got) != 255 || !utf8.ValidString(got) {
			t.Errorf("len %d valid %v", len(got), utf8.ValidString(got))
		}
		got = ParseTXT([]string{"v=a" + strings.Repeat("€", 1000)})["v"]
		if len(got) != 253 || !utf8.ValidString(got) {
			t.Errorf("len %d valid %v", len(got), utf8.ValidString(got))
		}
	})
	t.Run("invalid bytes expand to U+FFFD within the bound", func(t *testing.T) {
		got := ParseTXT([]string{"v=" + strings.Repeat("\xfe", 10*1024)})["v"]
		if len(got) != 255 || got != strings.Repeat("\ufffd", 85) {
			t.Errorf("len %d %q", len(got), got)
		}
	})
	t.Run("1000 keys: the first MaxTXTKeys kept", func(t *testing.T) {
		var in []string
		for i := range 1000 {
			in = append(in, fmt.Sprintf("k%03d=%d", i, i))
		}
		got := ParseTXT(in)
		if len(got) != MaxTXTKeys {
			t.Fatalf("%d keys, want %d", len(got), MaxTXTKeys)
		}
		for i := range MaxTXTKeys {
			if got[fmt.Sprintf("k%03d", i)] != fmt.Sprint(i) {
				t.Errorf("key k%03d missing or wrong: %q", i, got[fmt.Sprintf("k%03d", i)])
			}
		}
	})
	t.Run("ignored strings do not use up the key budget", func(t *testing.T) {
		in := []string{}
		for range 1000 {
			in = append(in, "=x", "bad\x00=1", "")
		}
		in = append(in, "late=1")
		if got := ParseTXT(in); got["late"] != "1" || len(got) != 1 {
			t.Errorf("got %q", got)
		}
	})
	t.Run("hostile mix", func(t *testing.T) {
		in := []string{"/+#$=/+#$", "\x00=\x00", "k=\x00\xff/+#$\x00", strings.Repeat("=", 300)}
		got := ParseTXT(in)
		want := map[string]string{"/+#$": "/+#$", "k": "\ufffd/+#$"}
		if !maps.Equal(got, want) {
			t.Errorf("got %q, want %q", got, want)
		}
		for k, v := range got {
			if !utf8.ValidString(k) || !utf8.ValidString(v) || strings.ContainsRune(k+v, 0) {
				t.Errorf("unclean %q=%q", k, v)
			}
		}
	})
}

func TestCleanText(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{"axis-7", 63, "axis-7"},
		{"a\x00b\x01c\x7f\u0080d", 63, "abcd"},
		{"line\u2028break\u2029\ufeff", 63, "linebreak"},
		{"\xff\xfe", 63, "\ufffd\ufffd"},
		{strings.Repeat("\xff", 30), 63, strings.Repeat("\ufffd", 21)},
		{strings.Repeat("a", 100), 63, strings.Repeat("a", 63)},
		{"ab€", 4, "ab"},
		{"", 63, ""},
	}
	for _, tt := range tests {
		if got := cleanText(tt.in, tt.max); got != tt.want {
			t.Errorf("cleanText(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
		}
	}
}

func TestUnescapeDNS(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{`My\ Drive`, "My Drive"},
		{`a\.b`, "a.b"},
		{`q\"x\\y`, `q"x\y`},
		{`nul\000x`, "nul\x00x"},
		{`\255\254`, "\xff\xfe"},
		{`\195\188`, "ü"},
		{`\999`, "999"}, // not a byte: the escaped character is '9'
		{`\12`, "12"},
		{`trailing\`, `trailing\`},
		{`/+#$`, "/+#$"},
	}
	for _, tt := range tests {
		if got := unescapeDNS(tt.in); got != tt.want {
			t.Errorf("unescapeDNS(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestInstanceFromZeroconf(t *testing.T) {
	tests := []struct{ in, want string }{
		{"axis-7", "axis-7"},
		{`dot\`, `dot\.`},       // "dot." lost its dot to zeroconf's trimming
		{`a\.\`, `a\.\.`},       // "a.."
		{`back\\`, `back\\`},    // "back\" is intact
		{`back\\\`, `back\\\.`}, // "back\."
	}
	for _, tt := range tests {
		if got := instanceFromZeroconf(tt.in); got != tt.want {
			t.Errorf("instanceFromZeroconf(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

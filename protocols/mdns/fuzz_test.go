package mdns

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseTXT: TXT strings from an unauthenticated multicast network become bounded,
// clean meta (RFC 6763 §6): at most MaxTXTKeys keys, printable lower-case keys, values
// valid UTF-8 without NUL or control characters and at most MaxTXTValueLen bytes.
func FuzzParseTXT(f *testing.F) {
	f.Add("vendor=acme", "serial=SN\x00/+#$", "unit=1")
	f.Add("=x", "A=1", "a=2")
	f.Add("key\xff=v", "k=\xff\xfe", strings.Repeat("v", 1000))
	f.Fuzz(func(t *testing.T, a, b, c string) {
		m := ParseTXT([]string{a, b, c, a + "=" + b})
		if len(m) > MaxTXTKeys {
			t.Fatalf("%d keys", len(m))
		}
		for k, v := range m {
			if k == "" || len(k) > MaxTXTKeyLen || k != strings.ToLower(k) {
				t.Fatalf("key %q", k)
			}
			if !utf8.ValidString(v) || len(v) > MaxTXTValueLen || strings.ContainsRune(v, 0) {
				t.Fatalf("value %q", v)
			}
			for _, r := range v {
				if r < 0x20 || r == 0x7f {
					t.Fatalf("control character in %q", v)
				}
			}
		}
	})
}

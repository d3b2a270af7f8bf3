package devices

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzCleanString: identification strings from a device become valid UTF-8 without NUL
// or control characters, at most MaxObjectLen bytes.
func FuzzCleanString(f *testing.F) {
	f.Add("rollcall firmware-sim\x00\x00")
	f.Add("\xff\xfe/+#$")
	f.Add(strings.Repeat("é", 200))
	f.Fuzz(func(t *testing.T, s string) {
		c := CleanString(s)
		if !utf8.ValidString(c) || len(c) > MaxObjectLen || strings.ContainsRune(c, 0) {
			t.Fatalf("CleanString(%q) = %q", s, c)
		}
	})
}

// FuzzParseProfile: a broken profile file is an error naming the file, never a panic.
func FuzzParseProfile(f *testing.F) {
	f.Add([]byte("name: a\nservice: s\nmatch: {vendor: x}\nstatus: {read: {count: 2}, decode: cia402, statusword: 1}\n"))
	f.Add([]byte("name: a\nservice: s\nfallback: true\nstatus: {device_id: true}\n"))
	f.Add([]byte("match: {vendor: '('}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := ParseProfile("p.yaml", data)
		if err != nil && !strings.Contains(err.Error(), "p.yaml") {
			t.Fatalf("error does not name the file: %v", err)
		}
	})
}

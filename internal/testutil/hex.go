package testutil

import (
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

// Unhex decodes hex written for people, "01 03 00 00 00 02 C4 0B": spaces (and tabs or
// newlines) between bytes are ignored, either case is accepted. Malformed hex fails the
// test.
func Unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// Hex formats b the way Unhex reads it and test failures print frames: upper-case
// bytes separated by spaces, "01 03 00 00".
func Hex(b []byte) string { return fmt.Sprintf("% X", b) }

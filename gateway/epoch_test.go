package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBumpEpoch(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	for want := int64(1); want <= 3; want++ {
		got, err := BumpEpoch(dir)
		if err != nil || got != want {
			t.Fatalf("bump %d: got %d, %v", want, got, err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, EpochFile), []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := BumpEpoch(dir); err == nil || !strings.Contains(err.Error(), "expected a non-negative integer") {
		t.Fatalf("corrupt epoch file: %v", err)
	}
}

package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse: the config loader never panics, and every error names the file (and so
// can be acted on: "file:line: key: what is expected").
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yml")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("discovery:\n  serial:\n    - {name: a, device: /dev/x, units: \"1-2,5\"}\n  tcp: [{name: t, address: \"h:502\"}]\n"))
	f.Add([]byte("health: {poll_interval: -1s}\n"))
	f.Add([]byte("&a [*a, *a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := Parse("fuzz.yml", data)
		if err != nil && !strings.Contains(err.Error(), "fuzz.yml") {
			t.Fatalf("error does not name the file: %v", err)
		}
	})
}

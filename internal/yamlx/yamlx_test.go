package yamlx

import (
	"strings"
	"testing"
	"time"
)

type inner struct {
	Baud  int           `yaml:"baud"`
	Name  string        `yaml:"name"`
	Every time.Duration `yaml:"every"`
}
type outer struct {
	Buses []inner `yaml:"buses"`
	On    bool    `yaml:"on"`
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"unknown key", "buses:\n  - name: a\n    baudrate: 9600\n", `f.yaml:3: buses[0].baudrate: unknown key "baudrate"`},
		{"type mismatch", "buses:\n  - name: a\n    baud: fast\n", `f.yaml:3: buses[0].baud: expected an integer, got str "fast"`},
		{"bool", "on: maybe\n", `f.yaml:1: on: expected true or false, got str "maybe"`},
		{"duration", "buses:\n  - every: soon\n", `f.yaml:2: buses[0].every: expected a duration`},
		{"two documents", "on: true\n---\non: false\n", "f.yaml:2: only one YAML document is allowed"},
		{"syntax", "buses: [\n", "f.yaml:"},
		{"duplicate", "on: true\non: false\n", `key "on" appears twice`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var o outer
			_, err := Decode("f.yaml", []byte(tc.in), &o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestDecodeGoodAndLine(t *testing.T) {
	var o outer
	doc, err := Decode("f.yaml", []byte("on: true\nbuses:\n  - name: a\n    baud: 9600\n    every: 250ms\n"), &o)
	if err != nil || !o.On || o.Buses[0].Baud != 9600 || o.Buses[0].Every != 250*time.Millisecond {
		t.Fatalf("decode: %+v %v", o, err)
	}
	if got := doc.Line("buses[0].baud"); got != 4 {
		t.Fatalf("line of buses[0].baud = %d, want 4", got)
	}
	if got := doc.Errorf("buses[0].name", "must be unique").Error(); got != "f.yaml:3: buses[0].name: must be unique" {
		t.Fatalf("Errorf: %s", got)
	}
}

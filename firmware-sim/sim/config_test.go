package sim

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestLoadSampleConfig(t *testing.T) {
	path := filepath.Join("..", "testdata", "sim.yaml")
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.File != path || cfg.Control.Listen != "127.0.0.1:18081" || len(cfg.Buses) != 2 || len(cfg.TCP) != 0 {
		t.Fatalf("config %+v", cfg)
	}
	b := cfg.Buses[0]
	if b.Name != "bus1" || b.Link != "/tmp/rollcall/bus1" || b.Baud != 115200 || b.Turnaround != time.Millisecond ||
		b.Parity != "none" || b.DevIDMaxReply != 253 || len(b.Drives) != 3 {
		t.Fatalf("bus1 %+v", b)
	}
	want := []Drive{
		{Unit: 1, Serial: "SIM-0001"},
		{Unit: 2, Serial: "SIM-0002", Model: "SIM-402-750W", Revision: "1.3"},
		{Unit: 3, Serial: "SIM-0003", Disabled: true},
	}
	for i, d := range want {
		if b.Drives[i] != d {
			t.Errorf("drive %d = %+v, want %+v", i, b.Drives[i], d)
		}
	}
	if b := cfg.Buses[1]; b.Name != "bus2" || b.Baud != 19200 || b.Turnaround != 2*time.Millisecond || b.Parity != "even" {
		t.Errorf("bus2 %+v", b)
	}
}

func TestParseConfigTCPSchema(t *testing.T) {
	const doc = `buses:
  - {name: bus1, link: /tmp/x, baud: 9600, drives: [{unit: 1, serial: A}]}
tcp:
  - name: tcp1
    listen: 127.0.0.1:15020
    drives: [{unit: 1, serial: SIM-0101}]
    mdns: {instance: axis-7, service: _modbus._tcp, txt: {cell: "2", axis: 7}}
`
	cfg, err := ParseConfig("sim.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	tl := cfg.TCP[0]
	if tl.Name != "tcp1" || tl.Listen != "127.0.0.1:15020" || len(tl.Drives) != 1 || tl.MDNS == nil ||
		tl.MDNS.Instance != "axis-7" || tl.MDNS.Service != "_modbus._tcp" || tl.MDNS.TXT["cell"] != "2" || tl.MDNS.TXT["axis"] != "7" {
		t.Fatalf("tcp %+v mdns %+v", tl, tl.MDNS)
	}
	_, err = New(cfg, nil)
	if err == nil || err.Error() != "sim.yaml:3: tcp: tcp listeners are not implemented yet" {
		t.Fatalf("New with tcp: %v", err)
	}
}

func TestParseConfigErrors(t *testing.T) {
	const bus = "buses:\n  - name: bus1\n    link: /tmp/x\n    baud: 9600\n"
	tests := []struct {
		name, doc string
		want      []string // each must appear in the error text
	}{
		{"baud not an integer", "control: {listen: 127.0.0.1:0}\nbuses:\n  - name: bus1\n    link: /tmp/x\n    drives:\n      - {unit: 1, serial: A}\n    baud: fast\n",
			[]string{`sim.yaml:7: buses[0].baud: must be a positive integer, got "fast"`}},
		{"baud zero", bus[:len(bus)-5] + "0\n",
			[]string{`sim.yaml:4: buses[0].baud: must be a positive integer, got 0`}},
		{"baud negative", "buses:\n  - {name: b, link: /x, baud: -5}\n",
			[]string{`sim.yaml:2: buses[0].baud: must be a positive integer, got -5`}},
		{"baud missing", "buses:\n  - name: b\n    link: /x\n",
			[]string{`sim.yaml:2: buses[0].baud: must be a positive integer, got 0`}},
		{"unknown bus key", bus + "    bauds: 3\n",
			[]string{`sim.yaml:5: buses[0].bauds: unknown key (expected one of: name, link, baud, turnaround, parity, devid_max_reply, drives)`}},
		{"unknown top key", "contrl: {listen: x}\n" + bus,
			[]string{`sim.yaml:1: contrl: unknown key (expected one of: control, buses, tcp)`}},
		{"unknown drive key", bus + "    drives:\n      - {unit: 1, serial: A, colour: red}\n",
			[]string{`sim.yaml:6: buses[0].drives[0].colour: unknown key (expected one of: unit, serial, model, revision, enabled)`}},
		{"duplicate key", bus + "    baud: 19200\n",
			[]string{`sim.yaml:5: buses[0].baud: duplicate key (first at line 4)`}},
		{"duplicate bus name", bus + "  - name: bus1\n    link: /tmp/y\n    baud: 9600\n",
			[]string{`sim.yaml:5: buses[1].name: duplicate name "bus1" (also at line 2)`}},
		{"bad bus name", "buses:\n  - {name: bus/1, link: /x, baud: 1}\n",
			[]string{`sim.yaml:2: buses[0].name: must be 1–64 characters of A–Z a–z 0–9 . _ -, got "bus/1"`}},
		{"missing link", "buses:\n  - name: bus1\n    baud: 9600\n",
			[]string{`sim.yaml:2: buses[0].link: required`}},
		{"unit out of range", bus + "    drives:\n      - {unit: 248, serial: A}\n",
			[]string{`sim.yaml:6: buses[0].drives[0].unit: must be an integer from 1 to 247, got 248`}},
		{"unit zero", bus + "    drives:\n      - {unit: 0, serial: A}\n",
			[]string{`buses[0].drives[0].unit: must be an integer from 1 to 247, got 0`}},
		{"unit not a number", bus + "    drives:\n      - {unit: one, serial: A}\n",
			[]string{`sim.yaml:6: buses[0].drives[0].unit: must be an integer from 1 to 247, got "one"`}},
		{"duplicate unit", bus + "    drives:\n      - {unit: 1, serial: A}\n      - {unit: 1, serial: B}\n",
			[]string{`sim.yaml:7: buses[0].drives[1].unit: duplicate unit 1 on bus "bus1" (also at line 6)`}},
		{"duplicate serial across buses", bus + "    drives: [{unit: 1, serial: A}]\n  - name: bus2\n    link: /y\n    baud: 1\n    drives: [{unit: 1, serial: A}]\n",
			[]string{`sim.yaml:9: buses[1].drives[0].serial: duplicate serial "A" (also at line 5)`}},
		{"missing serial", bus + "    drives:\n      - {unit: 1}\n",
			[]string{`sim.yaml:6: buses[0].drives[0].serial: required`}},
		{"serial too long", bus + "    drives:\n      - {unit: 1, serial: SIM-0123456789ABC}\n",
			[]string{`sim.yaml:6: buses[0].drives[0].serial: must be 1–16 printable ASCII characters, got "SIM-0123456789ABC"`}},
		{"enabled not a bool", bus + "    drives:\n      - {unit: 1, serial: A, enabled: maybe}\n",
			[]string{`sim.yaml:6: buses[0].drives[0].enabled: must be true or false, got "maybe"`}},
		{"turnaround not a duration", bus + "    turnaround: soon\n",
			[]string{`sim.yaml:5: buses[0].turnaround: must be a non-negative duration such as "1ms", got "soon"`}},
		{"turnaround negative", bus + "    turnaround: -1ms\n",
			[]string{`sim.yaml:5: buses[0].turnaround: must be a non-negative duration such as "1ms", got "-1ms"`}},
		{"parity", bus + "    parity: mark\n",
			[]string{`sim.yaml:5: buses[0].parity: must be none, even or odd, got "mark"`}},
		{"devid_max_reply", bus + "    devid_max_reply: 300\n",
			[]string{`sim.yaml:5: buses[0].devid_max_reply: must be an integer from 16 to 253, got 300`}},
		{"buses not a list", "buses: bus1\n",
			[]string{`sim.yaml:1: buses: must be a list, got "bus1"`}},
		{"drive not a mapping", bus + "    drives: [1]\n",
			[]string{`sim.yaml:5: buses[0].drives[0]: must be a mapping with keys unit, serial, model, revision, enabled, got "1"`}},
		{"control listen", "control: {listen: nonsense}\n" + bus,
			[]string{`sim.yaml:1: control.listen: must be host:port such as 127.0.0.1:18081, got "nonsense"`}},
		{"no buses", "buses: []\n",
			[]string{`sim.yaml:1: buses: at least one bus is required`}},
		{"empty file", "",
			[]string{`sim.yaml: empty config`}},
		{"not a mapping", "- a\n",
			[]string{`sim.yaml:1: the config must be a mapping with keys control, buses, tcp, got a list`}},
		{"YAML syntax", "buses:\n  - name: [\n",
			[]string{`sim.yaml:2: invalid YAML: did not find expected node content`}},
		{"two documents", bus + "---\nbuses: []\n",
			[]string{`more than one YAML document`}},
		{"several problems reported together", "buses:\n  - {name: a, link: /x, baud: 0}\n  - {name: a, link: '', baud: 1}\n",
			[]string{`sim.yaml:2: buses[0].baud: must be a positive integer, got 0`,
				`sim.yaml:3: buses[1].name: duplicate name "a" (also at line 2)`,
				`sim.yaml:3: buses[1].link: required`}},
		{"tcp listen", bus + "tcp:\n  - {name: t, listen: 15020}\n",
			[]string{`sim.yaml:6: tcp[0].listen: must be host:port such as 127.0.0.1:15020, got "15020"`}},
		{"tcp name clashes with bus", bus + "tcp:\n  - {name: bus1, listen: ':1'}\n",
			[]string{`sim.yaml:6: tcp[0].name: duplicate name "bus1" (also at line 2)`}},
		{"mdns unknown key", bus + "tcp:\n  - name: t\n    listen: ':1'\n    mdns: {host: x}\n",
			[]string{`sim.yaml:8: tcp[0].mdns.host: unknown key (expected one of: instance, service, txt)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig("sim.yaml", []byte(tt.doc))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n  %v\nlacks\n  %s", err, w)
				}
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Errorf("error %T is not a *ConfigError", err)
			}
		})
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := LoadConfig(path)
	if err == nil || !strings.Contains(err.Error(), path) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
}

func TestValidateInCode(t *testing.T) {
	cfg := &Config{Buses: []Bus{{Name: "b", Link: "/x", Baud: 0, Drives: []Drive{{Unit: 1, Serial: "A"}}}}}
	err := cfg.Validate()
	if err == nil || err.Error() != "buses[0].baud: must be a positive integer, got 0" {
		t.Fatalf("err = %v", err)
	}
	cfg.Buses[0].Baud = 9600
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

package sim

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
	"github.com/rollcall-edge/rollcall/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestLoadSampleConfig(t *testing.T) {
	path := filepath.Join("..", "testdata", "sim.yaml")
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.File != path || cfg.Control.Listen != "127.0.0.1:18081" || len(cfg.Buses) != 2 || len(cfg.TCP) != 2 {
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
		if !reflect.DeepEqual(b.Drives[i], d) {
			t.Errorf("drive %d = %+v, want %+v", i, b.Drives[i], d)
		}
	}
	if b := cfg.Buses[1]; b.Name != "bus2" || b.Baud != 19200 || b.Turnaround != 2*time.Millisecond || b.Parity != "even" {
		t.Errorf("bus2 %+v", b)
	}
	if d := cfg.Buses[1].Drives[0]; d.Repeat != time.Minute || !reflect.DeepEqual(d.Schedule, []ScheduleStep{
		{After: 20 * time.Second, Fault: slave.Fault{Mode: slave.FaultSilent}},
		{After: 30 * time.Second, Fault: slave.Fault{Mode: slave.FaultNone}},
		{After: 40 * time.Second, Fault: slave.Fault{Mode: slave.FaultNoisy, Rate: 0.05, Seed: 7}},
	}) {
		t.Errorf("bus2 unit 5 schedule %+v repeat %v", d.Schedule, d.Repeat)
	}
	tl := cfg.TCP[0]
	wantMDNS := &MDNS{Instance: "axis-7", Service: "_modbus._tcp", Domain: "local.", Host: "axis-7-sim",
		Interfaces: []string{"lo"}, TXT: map[string]string{"cell": "2", "axis": "7"}}
	if tl.Name != "tcp1" || tl.Listen != "127.0.0.1:15020" || len(tl.Drives) != 1 || tl.Drives[0].Serial != "SIM-0101" ||
		!reflect.DeepEqual(tl.MDNS, wantMDNS) {
		t.Errorf("tcp1 %+v mdns %+v", tl, tl.MDNS)
	}
	gw := cfg.TCP[1]
	if gw.Name != "gw1" || len(gw.Drives) != 2 || gw.MDNS == nil || gw.MDNS.Host != "" ||
		len(gw.Drives[1].Schedule) != 3 || gw.Drives[1].Schedule[1].Fault != (slave.Fault{Mode: slave.FaultSlow, Delay: 300 * time.Millisecond}) ||
		gw.Drives[1].Schedule[2].Fault != (slave.Fault{Mode: slave.FaultException, Code: 6}) {
		t.Errorf("gw1 %+v", gw)
	}
	if m := gw.MDNS.withDefaults(gw.Name); m.Host != "cell2-gateway" || m.Service != DefaultMDNSService || m.Domain != DefaultMDNSDomain {
		t.Errorf("gw1 mdns defaults %+v", m)
	}
}

func TestParseConfigTCP(t *testing.T) {
	const doc = `tcp:
  - name: tcp1
    listen: 127.0.0.1:15020
    drives:
      - unit: 1
        serial: SIM-0101
        schedule:
          - {after: 50ms, mode: silent}
          - {after: 150ms, mode: none}
        repeat: 1s
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
	if d := tl.Drives[0]; d.Repeat != time.Second || len(d.Schedule) != 2 || d.Schedule[0].After != 50*time.Millisecond ||
		d.Schedule[0].Fault.Mode != slave.FaultSilent || d.Schedule[1].Fault.Mode != slave.FaultNone {
		t.Fatalf("drive %+v", d)
	}
	if _, err := New(cfg, nil); err != nil {
		t.Fatalf("New with tcp: %v", err)
	}
}

func TestHostSlug(t *testing.T) {
	for in, want := range map[string]string{
		"axis-7": "axis-7", "Axis 7 (cell 2)": "axis-7-cell-2", "--x--": "x", "!!!": "", "ÄÖ robot": "robot",
		strings.Repeat("a", 70): strings.Repeat("a", 63), strings.Repeat("a", 62) + " b": strings.Repeat("a", 62),
	} {
		if got := hostSlug(in); got != want {
			t.Errorf("hostSlug(%q) = %q, want %q", in, got, want)
		}
	}
	if m := (MDNS{Instance: "!!!"}).withDefaults("Tcp_1"); m.Host != "tcp-1" {
		t.Errorf("host from listener name = %q", m.Host)
	}
}

func TestParseConfigErrors(t *testing.T) {
	const bus = "buses:\n  - name: bus1\n    link: /tmp/x\n    baud: 9600\n"
	const tcpBase = "tcp:\n  - name: t\n    listen: 127.0.0.1:0\n    drives:\n      - unit: 1\n        serial: A\n"
	tests := []struct {
		name, doc string
		want      []string // the errors, in order
	}{
		{"baud not an integer", "control: {listen: 127.0.0.1:0}\nbuses:\n  - name: bus1\n    link: /tmp/x\n    drives:\n      - {unit: 1, serial: A}\n    baud: fast\n",
			[]string{`sim.yaml:7:11: buses[0].baud: expected an integer, got "fast"`}},
		{"baud zero", bus[:len(bus)-5] + "0\n",
			[]string{`sim.yaml:4:5: buses[0].baud: must be an integer from 300 to 4000000, got 0: at least 300 (no RS-485 line runs slower)`}},
		{"baud negative", "buses:\n  - {name: b, link: /x, baud: -5}\n",
			[]string{`sim.yaml:2:25: buses[0].baud: must be an integer from 300 to 4000000, got -5: at least 300 (no RS-485 line runs slower)`}},
		{"baud missing", "buses:\n  - name: b\n    link: /x\n",
			[]string{`sim.yaml:2:5: buses[0].baud: must be an integer from 300 to 4000000, got 0: at least 300 (no RS-485 line runs slower)`}},
		{"unknown bus key", bus + "    bauds: 3\n",
			[]string{`sim.yaml:5:5: buses[0].bauds: unknown key "bauds" (expected one of: name, link, baud, turnaround, parity, devid_max_reply, drives)`}},
		{"unknown top key", "contrl: {listen: x}\n" + bus,
			[]string{`sim.yaml:1:1: contrl: unknown key "contrl" (expected one of: control, buses, tcp)`}},
		{"unknown drive key", bus + "    drives:\n      - {unit: 1, serial: A, colour: red}\n",
			[]string{`sim.yaml:6:30: buses[0].drives[0].colour: unknown key "colour" (expected one of: unit, serial, model, revision, enabled, schedule, repeat)`}},
		{"duplicate key", bus + "    baud: 19200\n",
			[]string{`sim.yaml:5:5: buses[0].baud: key "baud" appears twice (first at line 4)`}},
		{"duplicate bus name", bus + "  - name: bus1\n    link: /tmp/y\n    baud: 9600\n",
			[]string{`sim.yaml:5:5: buses[1].name: duplicate name "bus1" (also at line 2)`}},
		{"bad bus name", "buses:\n  - {name: bus/1, link: /x, baud: 9600}\n",
			[]string{`sim.yaml:2:6: buses[0].name: must be 1–64 characters of A–Z a–z 0–9 . _ -, got "bus/1"`}},
		{"missing link", "buses:\n  - name: bus1\n    baud: 9600\n",
			[]string{`sim.yaml:2:5: buses[0].link: required: the path of the symlink to the bus's pseudo-terminal`}},
		{"unit out of range", bus + "    drives:\n      - {unit: 248, serial: A}\n",
			[]string{`sim.yaml:6:10: buses[0].drives[0].unit: must be an integer from 1 to 247, got 248`}},
		{"unit zero", bus + "    drives:\n      - {unit: 0, serial: A}\n",
			[]string{`sim.yaml:6:10: buses[0].drives[0].unit: must be an integer from 1 to 247, got 0`}},
		{"unit not a number", bus + "    drives:\n      - {unit: one, serial: A}\n",
			[]string{`sim.yaml:6:16: buses[0].drives[0].unit: expected an integer, got "one"`}},
		{"duplicate unit", bus + "    drives:\n      - {unit: 1, serial: A}\n      - {unit: 1, serial: B}\n",
			[]string{`sim.yaml:7:10: buses[0].drives[1].unit: duplicate unit 1 on bus "bus1" (also at line 6)`}},
		{"duplicate serial across buses", bus + "    drives: [{unit: 1, serial: A}]\n  - name: bus2\n    link: /y\n    baud: 9600\n    drives: [{unit: 1, serial: A}]\n",
			[]string{`sim.yaml:9:24: buses[1].drives[0].serial: duplicate serial "A" (also at line 5)`}},
		{"missing serial", bus + "    drives:\n      - {unit: 1}\n",
			[]string{`sim.yaml:6:9: buses[0].drives[0].serial: required: 1–16 printable ASCII characters`}},
		{"serial too long", bus + "    drives:\n      - {unit: 1, serial: SIM-0123456789ABC}\n",
			[]string{`sim.yaml:6:19: buses[0].drives[0].serial: must be 1–16 printable ASCII characters, got "SIM-0123456789ABC"`}},
		{"enabled not a bool", bus + "    drives:\n      - {unit: 1, serial: A, enabled: maybe}\n",
			[]string{`sim.yaml:6:39: buses[0].drives[0].enabled: expected true or false, got "maybe"`}},
		{"turnaround not a duration", bus + "    turnaround: soon\n",
			[]string{`sim.yaml:5:17: buses[0].turnaround: expected a duration such as "250ms" or "30s", got "soon"`}},
		{"turnaround negative", bus + "    turnaround: -1ms\n",
			[]string{`sim.yaml:5:5: buses[0].turnaround: must be a non-negative duration, got -1ms`}},
		{"baud too high", bus[:len(bus)-5] + "4000001\n",
			[]string{`sim.yaml:4:5: buses[0].baud: must be an integer from 300 to 4000000, got 4000001: at most 4000000 (faster than RS-485 transceivers go)`}},
		{"turnaround too long", bus + "    turnaround: 2s\n",
			[]string{`sim.yaml:5:5: buses[0].turnaround: must be a duration from 0s to 1s, got 2s: at most 1s (a drive slower to answer is beyond every master's timeout)`}},
		{"duplicate link", bus + "  - name: bus2\n    link: /tmp/./x/\n    baud: 9600\n",
			[]string{`sim.yaml:6:5: buses[1].link: duplicate link "/tmp/./x/" (also at line 3): each bus needs its own pseudo-terminal link`}},
		{"parity", bus + "    parity: mark\n",
			[]string{`sim.yaml:5:5: buses[0].parity: must be none, even or odd, got "mark"`}},
		{"devid_max_reply", bus + "    devid_max_reply: 300\n",
			[]string{`sim.yaml:5:5: buses[0].devid_max_reply: must be an integer from 16 to 253, got 300`}},
		{"buses not a list", "buses: bus1\n",
			[]string{`sim.yaml:1:8: buses: expected a list, got "bus1"`}},
		{"drive not a mapping", bus + "    drives: [1]\n",
			[]string{`sim.yaml:5:14: buses[0].drives[0]: expected a mapping with keys unit, serial, model, revision, enabled, schedule, repeat, got 1`}},
		{"control listen", "control: {listen: nonsense}\n" + bus,
			[]string{`sim.yaml:1:11: control.listen: must be host:port such as 127.0.0.1:18081, got "nonsense"`}},
		{"no buses", "buses: []\n",
			[]string{`sim.yaml:1:1: buses: at least one bus or tcp listener is required`}},
		{"empty file", "",
			[]string{`sim.yaml: buses: at least one bus or tcp listener is required`}},
		{"not a mapping", "- a\n",
			[]string{`sim.yaml:1:1: expected a mapping with keys control, buses, tcp, got a list`}},
		{"YAML syntax", "buses:\n  - name: [\n",
			[]string{`sim.yaml:2:11: invalid YAML: sequence end token ']' not found`}},
		{"two documents", bus + "---\nbuses: []\n",
			[]string{`sim.yaml:5:1: only one YAML document is allowed`}},
		{"several problems reported together", "buses:\n  - {name: a, link: /x, baud: 0}\n  - {name: a, link: '', baud: 9600}\n",
			[]string{
				`sim.yaml:2:25: buses[0].baud: must be an integer from 300 to 4000000, got 0: at least 300 (no RS-485 line runs slower)`,
				`sim.yaml:3:6: buses[1].name: duplicate name "a" (also at line 2)`,
				`sim.yaml:3:15: buses[1].link: required: the path of the symlink to the bus's pseudo-terminal`,
			}},
		{"tcp listen", bus + "tcp:\n  - {name: t, listen: 15020}\n",
			[]string{
				`sim.yaml:6:5: tcp[0].drives: at least one drive is required`,
				`sim.yaml:6:15: tcp[0].listen: must be host:port such as 127.0.0.1:15020, got "15020"`,
			}},
		{"tcp name clashes with bus", bus + "tcp:\n  - {name: bus1, listen: ':1'}\n",
			[]string{
				`sim.yaml:6:5: tcp[0].drives: at least one drive is required`,
				`sim.yaml:6:6: tcp[0].name: duplicate name "bus1" (also at line 2)`,
			}},
		{"mdns unknown key", bus + "tcp:\n  - name: t\n    listen: ':1'\n    mdns: {hostname: x}\n",
			[]string{
				`sim.yaml:6:5: tcp[0].drives: at least one drive is required`,
				`sim.yaml:8:5: tcp[0].mdns.instance: required: the DNS-SD instance name, e.g. axis-7`,
				`sim.yaml:8:12: tcp[0].mdns.hostname: unknown key "hostname" (expected one of: instance, service, domain, host, interfaces, txt)`,
			}},
		{"tcp without drives", "tcp:\n  - {name: t, listen: ':1'}\n",
			[]string{`sim.yaml:2:5: tcp[0].drives: at least one drive is required`}},
		{"tcp duplicate unit", tcpBase + "      - {unit: 1, serial: B}\n",
			[]string{`sim.yaml:7:10: tcp[0].drives[1].unit: duplicate unit 1 on listener "t" (also at line 5)`}},
		{"tcp serial clashes with bus", bus + "    drives: [{unit: 1, serial: A}]\n" + "tcp:\n  - {name: t, listen: ':1', drives: [{unit: 1, serial: A}]}\n",
			[]string{`sim.yaml:7:48: tcp[0].drives[0].serial: duplicate serial "A" (also at line 5)`}},

		// Schedules (drive keys at 8 spaces after tcpBase; bus drives likewise).
		{"schedule not a list", tcpBase + "        schedule: soon\n",
			[]string{`sim.yaml:7:19: tcp[0].drives[0].schedule: expected a list, got "soon"`}},
		{"schedule unknown key", tcpBase + "        schedule:\n          - {after: 1s, mode: silent, why: test}\n",
			[]string{`sim.yaml:8:39: tcp[0].drives[0].schedule[0].why: unknown key "why" (expected one of: after, mode, delay, code, rate, seed)`}},
		{"schedule after missing", tcpBase + "        schedule:\n          - {mode: silent}\n",
			[]string{`sim.yaml:8:13: tcp[0].drives[0].schedule[0].after: required: the step's offset, e.g. 10s`}},
		{"schedule mode missing", tcpBase + "        schedule:\n          - after: 1s\n",
			[]string{`sim.yaml:8:13: tcp[0].drives[0].schedule[0].mode: required: one of none, silent, slow, exception, garbage, fault, noisy`}},
		{"schedule after not a duration", tcpBase + "        schedule:\n          - {after: later, mode: silent}\n",
			[]string{
				`sim.yaml:8:14: tcp[0].drives[0].schedule[0].after: required: the step's offset, e.g. 10s`,
				`sim.yaml:8:21: tcp[0].drives[0].schedule[0].after: expected a duration such as "250ms" or "30s", got "later"`,
			}},
		{"schedule after negative", tcpBase + "        schedule:\n          - {after: -1s, mode: silent}\n",
			[]string{`sim.yaml:8:14: tcp[0].drives[0].schedule[0].after: must be a non-negative duration, got -1s`}},
		{"schedule bad mode", tcpBase + "        schedule:\n          - {after: 1s, mode: dead}\n",
			[]string{`sim.yaml:8:25: tcp[0].drives[0].schedule[0].mode: must be one of none, silent, slow, exception, garbage, fault, noisy, got "dead"`}},
		{"schedule empty mode", tcpBase + "        schedule:\n          - {after: 1s, mode: ''}\n",
			[]string{`sim.yaml:8:25: tcp[0].drives[0].schedule[0].mode: must be one of none, silent, slow, exception, garbage, fault, noisy, got ""`}},
		{"schedule offsets not increasing", tcpBase + "        schedule:\n          - {after: 10s, mode: silent}\n          - {after: 10s, mode: none}\n",
			[]string{`sim.yaml:9:14: tcp[0].drives[0].schedule[1].after: must be later than the previous step's after (10s), got 10s`}},
		{"schedule slow without delay", tcpBase + "        schedule:\n          - {after: 1s, mode: slow}\n",
			[]string{`sim.yaml:8:13: tcp[0].drives[0].schedule[0].delay: mode slow needs a delay from 1ns to 1m0s, got 0s`}},
		{"schedule slow delay too long", tcpBase + "        schedule:\n          - after: 1s\n            mode: slow\n            delay: 2m\n",
			[]string{`sim.yaml:10:13: tcp[0].drives[0].schedule[0].delay: mode slow needs a delay from 1ns to 1m0s, got 2m0s`}},
		{"schedule delay zero", tcpBase + "        schedule:\n          - {after: 1s, mode: slow, delay: 0s}\n",
			[]string{`sim.yaml:8:37: tcp[0].drives[0].schedule[0].delay: must be a positive duration such as "200ms", got 0s`}},
		{"schedule delay without slow", tcpBase + "        schedule:\n          - after: 1s\n            mode: silent\n            delay: 1s\n",
			[]string{`sim.yaml:10:13: tcp[0].drives[0].schedule[0].delay: only valid with mode slow, not silent`}},
		{"schedule code without exception", bus + "    drives:\n      - unit: 1\n        serial: A\n        schedule:\n          - {after: 1s, mode: none, code: 3}\n",
			[]string{`sim.yaml:9:37: buses[0].drives[0].schedule[0].code: only valid with mode exception, not none`}},
		{"schedule code out of range", tcpBase + "        schedule:\n          - {after: 1s, mode: exception, code: 300}\n",
			[]string{`sim.yaml:8:42: tcp[0].drives[0].schedule[0].code: must be an exception code from 1 to 255, got 300`}},
		{"schedule code zero", tcpBase + "        schedule:\n          - {after: 1s, mode: exception, code: 0}\n",
			[]string{`sim.yaml:8:42: tcp[0].drives[0].schedule[0].code: must be an exception code from 1 to 255, got 0`}},
		{"schedule noisy without rate", tcpBase + "        schedule:\n          - {after: 0s, mode: noisy}\n",
			[]string{`sim.yaml:8:25: tcp[0].drives[0].schedule[0].mode: mode noisy needs a rate: the probability, 0 to 1, that a reply is corrupted and that a noise burst follows it, e.g. rate: 0.05`}},
		{"schedule noisy rate out of range", tcpBase + "        schedule:\n          - {after: 0s, mode: noisy, rate: 1.5}\n",
			[]string{`sim.yaml:8:38: tcp[0].drives[0].schedule[0].rate: must be a probability from 0 to 1, e.g. 0.05, got 1.5`}},
		{"schedule noisy rate negative", tcpBase + "        schedule:\n          - {after: 0s, mode: noisy, rate: -0.1, seed: 3}\n",
			[]string{`sim.yaml:8:38: tcp[0].drives[0].schedule[0].rate: must be a probability from 0 to 1, e.g. 0.05, got -0.1`}},
		{"schedule noisy rate not a number", tcpBase + "        schedule:\n          - {after: 0s, mode: noisy, rate: often}\n",
			[]string{
				`sim.yaml:8:25: tcp[0].drives[0].schedule[0].mode: mode noisy needs a rate: the probability, 0 to 1, that a reply is corrupted and that a noise burst follows it, e.g. rate: 0.05`,
				`sim.yaml:8:44: tcp[0].drives[0].schedule[0].rate: expected a number, got "often"`,
			}},
		{"schedule rate without noisy", tcpBase + "        schedule:\n          - {after: 0s, mode: garbage, rate: 0.5}\n",
			[]string{`sim.yaml:8:40: tcp[0].drives[0].schedule[0].rate: only valid with mode noisy, not garbage`}},
		{"schedule seed without noisy", tcpBase + "        schedule:\n          - {after: 0s, mode: none, seed: 5}\n",
			[]string{`sim.yaml:8:37: tcp[0].drives[0].schedule[0].seed: only valid with mode noisy, not none`}},
		{"schedule seed negative", tcpBase + "        schedule:\n          - {after: 0s, mode: noisy, rate: 0.1, seed: -5}\n",
			[]string{`sim.yaml:8:55: tcp[0].drives[0].schedule[0].seed: expected an integer ≥ 0, got -5`}},
		{"schedule after too late", tcpBase + "        schedule:\n          - {after: 25h, mode: silent}\n",
			[]string{`sim.yaml:8:14: tcp[0].drives[0].schedule[0].after: must be a duration from 0s to 24h0m0s, got 25h0m0s: at most 24h0m0s (a simulator run lasts hours at most)`}},
		{"repeat too long", tcpBase + "        schedule: [{after: 1s, mode: none}]\n        repeat: 100h\n",
			[]string{`sim.yaml:8:9: tcp[0].drives[0].repeat: must be a duration from 0s to 24h0m0s, got 100h0m0s: at most 24h0m0s (a simulator run lasts hours at most)`}},
		{"repeat without schedule", tcpBase + "        repeat: 10s\n",
			[]string{`sim.yaml:7:9: tcp[0].drives[0].repeat: needs a schedule to repeat`}},
		{"repeat not longer than the schedule", tcpBase + "        schedule:\n          - {after: 10s, mode: silent}\n          - {after: 15s, mode: none}\n        repeat: 15s\n",
			[]string{`sim.yaml:10:9: tcp[0].drives[0].repeat: must be longer than the last step's after (15s), got 15s`}},
		{"repeat not a duration", tcpBase + "        schedule: [{after: 1s, mode: none}]\n        repeat: often\n",
			[]string{`sim.yaml:8:17: tcp[0].drives[0].repeat: expected a duration such as "250ms" or "30s", got "often"`}},

		// mDNS (mdns keys at 6 spaces after tcpBase).
		{"mdns instance missing", tcpBase + "    mdns:\n      service: _modbus._tcp\n",
			[]string{`sim.yaml:7:5: tcp[0].mdns.instance: required: the DNS-SD instance name, e.g. axis-7`}},
		{"mdns instance with a dot", tcpBase + "    mdns:\n      instance: axis.7\n",
			[]string{`sim.yaml:8:7: tcp[0].mdns.instance: must be 1–63 bytes of printable ASCII without '.' and '\', got "axis.7"`}},
		{"mdns instance too long", tcpBase + "    mdns:\n      instance: " + strings.Repeat("x", 64) + "\n",
			[]string{`sim.yaml:8:7: tcp[0].mdns.instance: must be 1–63 bytes of printable ASCII without '.' and '\', got "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"`}},
		{"mdns service", tcpBase + "    mdns:\n      instance: a\n      service: modbus.tcp\n",
			[]string{`sim.yaml:9:7: tcp[0].mdns.service: must be a DNS-SD service type such as _modbus._tcp, got "modbus.tcp": no leading underscore`}},
		{"mdns service name too long", tcpBase + "    mdns:\n      instance: a\n      service: _abcdefghijklmnop._tcp\n",
			[]string{`sim.yaml:9:7: tcp[0].mdns.service: must be a DNS-SD service type such as _modbus._tcp, got "_abcdefghijklmnop._tcp": service name must have 1-15 characters, got 16`}},
		{"mdns domain", tcpBase + "    mdns:\n      instance: a\n      domain: bad..domain\n",
			[]string{`sim.yaml:9:7: tcp[0].mdns.domain: must be a domain name such as local., got "bad..domain"`}},
		{"mdns host", tcpBase + "    mdns:\n      instance: a\n      host: axis_7.sim\n",
			[]string{`sim.yaml:9:7: tcp[0].mdns.host: must be a host name label of 1–63 letters, digits and hyphens, not starting or ending with a hyphen, got "axis_7.sim"`}},
		{"mdns interfaces not a list", tcpBase + "    mdns:\n      instance: a\n      interfaces: lo\n",
			[]string{`sim.yaml:9:19: tcp[0].mdns.interfaces: expected a list, got "lo"`}},
		{"mdns interface empty and duplicate", tcpBase + "    mdns:\n      instance: a\n      interfaces: [lo, '', lo]\n",
			[]string{
				`sim.yaml:9:24: tcp[0].mdns.interfaces[1]: must be a network interface name such as lo or eth0`,
				`sim.yaml:9:28: tcp[0].mdns.interfaces[2]: duplicate interface "lo"`,
			}},
		{"mdns interface not a string", tcpBase + "    mdns:\n      instance: a\n      interfaces: [[lo]]\n",
			[]string{`sim.yaml:9:20: tcp[0].mdns.interfaces[0]: expected a string, got a list`}},
		{"mdns reserved TXT key", tcpBase + "    mdns:\n      instance: a\n      txt:\n        cell: \"2\"\n        Serial: X\n",
			[]string{`sim.yaml:11:9: tcp[0].mdns.txt.Serial: reserved: firmware-sim sets vendor, model, serial and unit from the listener's first drive`}},
		{"mdns TXT key with =", tcpBase + "    mdns:\n      instance: a\n      txt: {\"a=b\": c}\n",
			[]string{`sim.yaml:9:13: tcp[0].mdns.txt.a=b: TXT keys must be 1 or more printable ASCII characters without '=' (RFC 6763 §6.4), got "a=b"`}},
		{"mdns TXT key case duplicate", tcpBase + "    mdns:\n      instance: a\n      txt: {Cell: \"1\", cell: \"2\"}\n",
			[]string{`sim.yaml:9:24: tcp[0].mdns.txt.cell: duplicate TXT key "cell" (keys are case-insensitive; also "Cell")`}},
		{"mdns TXT too long", tcpBase + "    mdns:\n      instance: a\n      txt: {note: " + strings.Repeat("n", 251) + "}\n",
			[]string{`sim.yaml:9:13: tcp[0].mdns.txt.note: key=value must be at most 255 bytes (RFC 6763 §6.1), got 256`}},
		{"mdns duplicate instance", tcpBase + "    mdns: {instance: Axis-7}\n  - name: u\n    listen: ':2'\n    drives: [{unit: 1, serial: B}]\n    mdns: {instance: axis-7, host: other}\n",
			[]string{`sim.yaml:11:12: tcp[1].mdns.instance: duplicate instance "axis-7" of _modbus._tcp (also on listener t)`}},
		{"mdns duplicate default host", tcpBase + "    mdns: {instance: Axis 7}\n  - name: u\n    listen: ':2'\n    drives: [{unit: 1, serial: B}]\n    mdns: {instance: axis-7, service: _other._tcp}\n",
			[]string{`sim.yaml:11:5: tcp[1].mdns.host: duplicate host name "axis-7" (also on listener t): every advertised device needs its own`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig("sim.yaml", []byte(tt.doc))
			if err == nil {
				t.Fatal("accepted")
			}
			if got, want := err.Error(), strings.Join(tt.want, "\n"); got != want {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Errorf("error %T is not a *ConfigError", err)
			}
		})
	}
}

// TestBadConfigs checks each testdata/*.bad.yml against the messages it must produce
// (file:line:column, key, what is expected), every problem of a file in one run, in
// order of line.
func TestBadConfigs(t *testing.T) {
	want := map[string][]string{
		"baud-type.bad.yml":        {`testdata/baud-type.bad.yml:1:55: buses[0].baud: expected an integer, got "fast"`},
		"duplicate-key.bad.yml":    {`testdata/duplicate-key.bad.yml:5:5: buses[0].baud: key "baud" appears twice (first at line 4)`},
		"duplicate-name.bad.yml":   {`testdata/duplicate-name.bad.yml:4:6: tcp[0].name: duplicate name "line1" (also at line 2)`},
		"duplicate-serial.bad.yml": {`testdata/duplicate-serial.bad.yml:7:19: buses[0].drives[1].serial: duplicate serial "SIM-0001" (also at line 6)`},
		"empty.bad.yml":            {`testdata/empty.bad.yml: buses: at least one bus or tcp listener is required`},
		"many-mistakes.bad.yml": {
			`testdata/many-mistakes.bad.yml:2:11: control.listen: must be host:port such as 127.0.0.1:18081, got "localhost"`,
			`testdata/many-mistakes.bad.yml:4:5: buses[0].name: must be 1–64 characters of A–Z a–z 0–9 . _ -, got "bus 1"`,
			`testdata/many-mistakes.bad.yml:6:5: buses[0].baud: must be an integer from 300 to 4000000, got 0: at least 300 (no RS-485 line runs slower)`,
			`testdata/many-mistakes.bad.yml:7:5: buses[0].parity: must be none, even or odd, got "mark"`,
			`testdata/many-mistakes.bad.yml:9:46: buses[0].drives[0].enabled: expected true or false, got "yes"`,
			`testdata/many-mistakes.bad.yml:10:10: buses[0].drives[1].unit: duplicate unit 1 on bus "bus 1" (also at line 9)`,
			`testdata/many-mistakes.bad.yml:10:37: buses[0].drives[1].colour: unknown key "colour" (expected one of: unit, serial, model, revision, enabled, schedule, repeat)`,
			`testdata/many-mistakes.bad.yml:11:5: buses[1].link: required: the path of the symlink to the bus's pseudo-terminal`,
			`testdata/many-mistakes.bad.yml:12:11: buses[1].baud: expected an integer, got "fast"`,
			`testdata/many-mistakes.bad.yml:18:9: tcp[0].drives[0].serial: duplicate serial "SIM-0001" (also at line 9)`,
			`testdata/many-mistakes.bad.yml:20:37: tcp[0].drives[0].schedule[0].delay: mode slow needs a delay from 1ns to 1m0s, got 2m0s`,
			`testdata/many-mistakes.bad.yml:21:12: tcp[0].mdns.instance: must be 1–63 bytes of printable ASCII without '.' and '\', got "axis.7"`,
			`testdata/many-mistakes.bad.yml:21:30: tcp[0].mdns.service: must be a DNS-SD service type such as _modbus._tcp, got "_modbus._sctp": protocol must be _tcp or _udp`,
			`testdata/many-mistakes.bad.yml:21:54: tcp[0].mdns.hostname: unknown key "hostname" (expected one of: instance, service, domain, host, interfaces, txt)`,
		},
		"mdns-service.bad.yml": {`testdata/mdns-service.bad.yml:5:30: tcp[0].mdns.service: must be a DNS-SD service type such as _modbus._tcp, got "_--._tcp": hyphen at either end or two in a row`},
		"mdns-txt.bad.yml":     {`testdata/mdns-txt.bad.yml:7:24: tcp[0].mdns.txt.serial: reserved: firmware-sim sets vendor, model, serial and unit from the listener's first drive`},
		"schedule.bad.yml": {
			`testdata/schedule.bad.yml:8:13: tcp[0].drives[0].schedule[0].after: required: the step's offset, e.g. 10s`,
			`testdata/schedule.bad.yml:9:13: tcp[0].drives[0].schedule[1].delay: mode slow needs a delay from 1ns to 1m0s, got 0s`,
			`testdata/schedule.bad.yml:10:14: tcp[0].drives[0].schedule[2].after: must be later than the previous step's after (10s), got 10s`,
			`testdata/schedule.bad.yml:10:43: tcp[0].drives[0].schedule[2].code: must be an exception code from 1 to 255, got 300`,
			`testdata/schedule.bad.yml:11:9: tcp[0].drives[0].repeat: must be longer than the last step's after (10s), got 5s`,
		},
		"syntax.bad.yml":      {`testdata/syntax.bad.yml:3:5: invalid YAML: ',' or ']' must be specified`},
		"tcp-listen.bad.yml":  {`testdata/tcp-listen.bad.yml:3:5: tcp[0].listen: must be host:port such as 127.0.0.1:15020, got "15020"`},
		"two-docs.bad.yml":    {`testdata/two-docs.bad.yml:2:1: only one YAML document is allowed`},
		"unit-range.bad.yml":  {`testdata/unit-range.bad.yml:6:10: buses[0].drives[0].unit: must be an integer from 1 to 247, got 248`},
		"unknown-key.bad.yml": {`testdata/unknown-key.bad.yml:6:37: buses[0].drives[0].colour: unknown key "colour" (expected one of: unit, serial, model, revision, enabled, schedule, repeat)`},
	}
	testutil.BadConfigs(t, want, func(path string) error {
		_, err := LoadConfig(path)
		return err
	})
}

// TestLoadConfigSizeLimit: a config over MaxConfigBytes is refused from its size,
// without being read, naming the file, its size and the limit; one of exactly
// MaxConfigBytes loads.
func TestLoadConfigSizeLimit(t *testing.T) {
	dir := t.TempDir()
	valid := "buses:\n  - {name: bus1, link: /tmp/x, baud: 9600, drives: [{unit: 1, serial: A}]}\n"
	padded := func(size int) []byte {
		line := "# " + strings.Repeat("x", 60) + "\n"
		text := valid + strings.Repeat(line, (size-len(valid))/len(line))
		return []byte(text + strings.Repeat("\n", size-len(text)))
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, padded(5<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	_, err := LoadConfig(big)
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	t.Logf("5 MiB config refused in %v", took)
	want := big + ": the file is 5242880 bytes (5.0 MiB); a firmware-sim config is at most 1048576 bytes (1.0 MiB) (is this the right file?)"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.File != big {
		t.Errorf("%T is not a *ConfigError naming the file", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 256<<10 {
		t.Errorf("refusing a 5 MiB file allocated %d bytes: it was read", n)
	}
	at := filepath.Join(dir, "at.yaml")
	if err := os.WriteFile(at, padded(MaxConfigBytes), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(at); err != nil {
		t.Fatalf("a config of MaxConfigBytes: %v", err)
	}
}

// TestShippedConfig: the sample config of configs/ loads.
func TestShippedConfig(t *testing.T) {
	if _, err := LoadConfig(filepath.Join("..", "..", "configs", "sim.yaml")); err != nil {
		t.Fatal(err)
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
	if err == nil || err.Error() != "buses[0].baud: must be an integer from 300 to 4000000, got 0: at least 300 (no RS-485 line runs slower)" {
		t.Fatalf("err = %v", err)
	}
	cfg.Buses[0].Baud = 9600
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

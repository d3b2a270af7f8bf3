package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/rollcall-edge/rollcall/firmware-sim/sim"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestVersionAndUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "rollcall ") {
		t.Fatalf("version: %d %q", code, out.String())
	}
	if code := run(nil, &out, &errb); code != 2 {
		t.Fatalf("no command: exit %d, want 2", code)
	}
	if code := run([]string{"frobnicate"}, &out, &errb); code != 2 {
		t.Fatalf("unknown command: exit %d, want 2", code)
	}
	if code := run([]string{"scan"}, &out, &errb); code != 2 {
		t.Fatalf("scan without --device: exit %d, want 2", code)
	}
	errb.Reset()
	if code := run([]string{"scan", "--device", "/nonexistent/tty", "--units", "1"}, &out, &errb); code != 2 ||
		!strings.Contains(errb.String(), "/nonexistent/tty") {
		t.Fatalf("scan of a missing port: exit %d, stderr %q", code, errb.String())
	}
	if code := run([]string{"gateway", "--config", "/nonexistent.yaml"}, &out, &errb); code != 1 {
		t.Fatalf("gateway with a missing config: exit %d, want 1", code)
	}
}

// TestScan runs `rollcall scan` against firmware-sim drives on a pty bus.
func TestScan(t *testing.T) {
	link := filepath.Join(t.TempDir(), "bus1")
	cfg, err := sim.ParseConfig("sim.yaml", []byte(`
buses:
  - name: bus1
    link: `+link+`
    baud: 115200
    turnaround: 1ms
    drives: [{unit: 2, serial: SIM-0002}, {unit: 4, serial: SIM-0004}]
`))
	if err != nil {
		t.Fatal(err)
	}
	s, err := sim.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = s.Wait() }()

	var out, errb bytes.Buffer
	code := run([]string{"scan", "--device", link, "--baud", "115200", "--units", "1-6", "--timeout", "20ms", "--json"}, &out, &errb)
	if code != 0 {
		t.Fatalf("scan: exit %d\n%s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("scan found %d devices, want 2:\n%s", len(lines), out.String())
	}
	var r scanResult
	if err := json.Unmarshal([]byte(lines[1]), &r); err != nil {
		t.Fatal(err)
	}
	if r.Unit != 4 || r.Serial != "SIM-0004" || r.Profile != "firmware-sim-drive" || r.State["cia402"] != "operation_enabled" || !r.DeviceID {
		t.Fatalf("unit 4: %+v", r)
	}
	if !strings.Contains(errb.String(), "2 of 6 unit IDs answered") {
		t.Fatalf("summary missing: %q", errb.String())
	}
	out.Reset()
	if code := run([]string{"scan", "--device", link, "--baud", "115200", "--units", "5-6", "--timeout", "20ms"}, &out, &errb); code != 1 {
		t.Fatalf("scan of empty units: exit %d, want 1", code)
	}
}

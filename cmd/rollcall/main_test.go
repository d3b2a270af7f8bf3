package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rollcall-edge/rollcall/firmware-sim/sim"
	"github.com/rollcall-edge/rollcall/gateway"
	"github.com/rollcall-edge/rollcall/gateway/config"
)

// zeroconf v1.0.0's (*Server).probe goroutine (the demo advertises over mDNS) is not
// waited for by Shutdown and ends by itself about 3.5 s after a registration.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/grandcat/zeroconf.(*Server).probe"))
}

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

// syncBuffer is a bytes.Buffer safe for the demo's writer and the test's reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDemo runs `rollcall demo` (what `make run` starts) until its catalog shows the 4
// bus drives and the 2 mDNS-announced TCP drives passing, then interrupts it.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		done <- cmdDemo(ctx, []string{"--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--no-schedule"}, &out, io.Discard)
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for {
		tables := strings.Split(out.String(), "── catalog at")
		if last := tables[len(tables)-1]; strings.Count(last, " passing ") == 6 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("demo ended: %v\n%s", err, out.String())
		case <-deadline:
			t.Fatalf("demo did not show 6 passing drives:\n%s", out.String())
		case <-tick.C:
		}
	}
	t.Logf("demo: 6 drives passing %v after start", time.Since(start))
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("demo: %v", err)
	}
}

// TestFindAndWatch runs `rollcall find` and `rollcall watch --json` against a gateway
// (embedded broker) with firmware-sim drives.
func TestFindAndWatch(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	dir := t.TempDir()
	link := filepath.Join(dir, "bus1")
	simCfg, err := sim.ParseConfig("sim.yaml", []byte(`
buses:
  - {name: bus1, link: `+link+`, baud: 115200, turnaround: 1ms, drives: [{unit: 1, serial: SIM-0001}, {unit: 2, serial: SIM-0002}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := sim.New(simCfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = s.Wait() }()
	cfg, err := config.Parse("gw.yaml", []byte(`
gateway: {id: find-gw, state_dir: `+filepath.Join(dir, "state")+`}
mqtt: {broker: embedded, embedded_listen: "127.0.0.1:0", embedded_auth: {allow_anonymous: true}}
discovery:
  serial:
    - {name: bus1, device: `+link+`, baud: 115200, units: "1-2", timeout: 20ms,
       devices: [{unit: 1, meta: {axis: "1"}}, {unit: 2, meta: {axis: "2"}}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(gateway.Options{Config: cfg, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = g.Run(ctx) }()
	<-g.Started()
	url := g.BrokerURL()

	// find: retried until the gateway has registered both drives.
	var out, errb bytes.Buffer
	deadline := time.Now().Add(15 * time.Second)
	for {
		out.Reset()
		errb.Reset()
		code := run([]string{"find", "servo-drive", "--broker", url, "--meta", "axis=2"}, &out, &errb)
		if code == 0 {
			break
		}
		if code != 1 || time.Now().After(deadline) {
			t.Fatalf("find: exit %d: %s", code, errb.String())
		}
	}
	if got := out.String(); !strings.HasPrefix(got, "modbus-rtu bus1/2 (") || !strings.Contains(got, "rollcall-firmware-sim-sim-0002") {
		t.Fatalf("find printed %q", got)
	}
	if code := run([]string{"find", "servo-drive", "--broker", url, "--meta", "axis=9"}, &out, &errb); code != 1 {
		t.Fatalf("find with no match: exit %d, want 1", code)
	}
	if code := run([]string{"find", "servo-drive", "--broker", "tcp://127.0.0.1:1", "--timeout", "500ms"}, &out, &errb); code != 2 {
		t.Fatalf("find without a broker: exit %d, want 2", code)
	}
	if code := run([]string{"find", "--broker", url}, &out, &errb); code != 2 {
		t.Fatalf("find without a service: exit %d, want 2", code)
	}

	// watch --json prints the catalog as JSON lines.
	wctx, wcancel := context.WithCancel(ctx)
	var wout syncBuffer
	wdone := make(chan error, 1)
	go func() { wdone <- cmdWatch(wctx, []string{"--broker", url, "--json"}, &wout, io.Discard) }()
	for !strings.Contains(wout.String(), "rollcall-firmware-sim-sim-0001") || !strings.Contains(wout.String(), "rollcall-firmware-sim-sim-0002") {
		select {
		case err := <-wdone:
			t.Fatalf("watch ended: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	wcancel()
	if err := <-wdone; err != nil {
		t.Fatalf("watch: %v", err)
	}
	var ev struct {
		Event    string         `json:"event"`
		Instance map[string]any `json:"instance"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(wout.String(), "\n", 2)[0]), &ev); err != nil || ev.Event != "added" || ev.Instance["status"] != "passing" {
		t.Fatalf("watch line %v %+v", err, ev)
	}
}

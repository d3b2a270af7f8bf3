package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRunUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--version"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "firmware-sim ") {
		t.Errorf("--version: %d %q", code, out.String())
	}
	for _, args := range [][]string{{}, {"--nope"}, {"--config", "x", "extra"}, {"--config", "x", "--log-level", "loud"}} {
		if code := run(context.Background(), args, &out, &errOut); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
	errOut.Reset()
	if code := run(context.Background(), []string{"--config", filepath.Join(t.TempDir(), "missing.yaml")}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "missing.yaml") {
		t.Errorf("missing config: %d %s", code, errOut.String())
	}
}

// TestRunStartsAndStops runs with an already-cancelled context: the simulator starts
// (pseudo-terminal, link, TCP listener, log line per bus and listener), then stops at
// once and cleans up.
func TestRunStartsAndStops(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "bus1")
	cfg := filepath.Join(dir, "sim.yaml")
	doc := "buses:\n  - {name: bus1, link: " + link + ", baud: 115200, drives: [{unit: 1, serial: SIM-0001}]}\n" +
		"tcp:\n  - name: tcp1\n    listen: 127.0.0.1:0\n    drives:\n      - unit: 1\n        serial: SIM-0101\n" +
		"        schedule: [{after: 1h, mode: silent}]\n        repeat: 2h\n"
	if err := os.WriteFile(cfg, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"--config", cfg}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(errOut.String(), `msg="bus ready" bus=bus1 link=`+link) {
		t.Errorf("no ready line for bus1 in:\n%s", errOut.String())
	}
	if !strings.Contains(errOut.String(), `msg="listener ready" listener=tcp1 addr=127.0.0.1:`) {
		t.Errorf("no ready line for tcp1 in:\n%s", errOut.String())
	}
	if _, err := os.Lstat(link); !os.IsNotExist(err) {
		t.Errorf("link left behind: %v", err)
	}
}

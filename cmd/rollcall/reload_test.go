package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
)

// TestReloadOnSignal drives reloadOn with signals from a channel (no real signal, which
// would reach every test of the process): without --config a SIGHUP only logs; with
// it, each SIGHUP reloads the file into a running gateway, framed by RELOADING=1 (with
// MONOTONIC_USEC) and READY=1, and a file with errors is rejected with READY=1 and the
// previous config kept.
func TestReloadOnSignal(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	h := rig.New(t)
	h.StartSim(1, 2)
	g := h.StartGateway("embedded", `
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1"}]
health: {poll_interval: 50ms}
`)
	rig.WaitCatalog(t, g, 15*time.Second, "drive 1 passing", rig.Passing(1))

	logs := &testutil.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	notes := make(chan string, 8)
	notify := func(s string) bool { notes <- s; return true }
	next := func(what string) string {
		t.Helper()
		select {
		case s := <-notes:
			return s
		case <-time.After(15 * time.Second):
			t.Fatalf("no %s notification", what)
			return ""
		}
	}
	run := func(path string) (chan<- os.Signal, func()) {
		sig := make(chan os.Signal)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); reloadOn(ctx, sig, g, path, log, notify) }()
		return sig, func() { cancel(); wg.Wait() }
	}

	sig, stop := run("")
	sig <- syscall.SIGHUP
	sig <- syscall.SIGHUP // taken once the first was handled
	stop()
	if len(notes) != 0 || !strings.Contains(logs.String(), "without --config; nothing to reload") {
		t.Fatalf("without --config: notifications %d, log:\n%s", len(notes), logs.String())
	}

	path := filepath.Join(h.Dir, "gateway.yaml")
	write := func(extra string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(h.GatewayConfig("embedded", extra)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sig, stop = run(path)
	defer stop()
	write(`
discovery:
  serial: [{name: bus1, device: $LINK, baud: 115200, units: "1-2"}]
health: {poll_interval: 50ms}
`)
	sig <- syscall.SIGHUP
	if s := next("RELOADING"); !strings.HasPrefix(s, "RELOADING=1\nMONOTONIC_USEC=") || strings.Contains(s, "MONOTONIC_USEC=0\n") {
		t.Errorf("first notification %q", s)
	}
	if s := next("READY"); !strings.HasPrefix(s, "READY=1\n") || !strings.Contains(s, "config reloaded") {
		t.Errorf("second notification %q", s)
	}
	rig.WaitCatalog(t, g, 15*time.Second, "both drives passing after the reload", rig.Passing(2))

	write("discovery: {serial: [{name: bus1, device: $LINK, baud: 115200, units: \"1-2\", parity: maybe}]}\n")
	sig <- syscall.SIGHUP
	next("RELOADING")
	if s := next("READY"); !strings.HasPrefix(s, "READY=1\n") || !strings.Contains(s, "rejected") {
		t.Errorf("notification after a bad file %q", s)
	}
	if snap := g.Registry().Snapshot(); len(snap) != 2 {
		t.Errorf("catalog after the rejected reload: %+v", snap)
	}
}

// fakeReloader is a reloader whose start the test controls; it counts reloads.
type fakeReloader struct {
	started chan struct{}
	reloads chan string
}

func (f *fakeReloader) Started() <-chan struct{} { return f.started }
func (f *fakeReloader) ReloadFile(path string) error {
	f.reloads <- path
	return nil
}

// TestReloadWaitsForStart: a SIGHUP that comes while the gateway is still starting is
// applied once it has started, and nothing (RELOADING=1, READY=1) reaches the service
// manager before that.
func TestReloadWaitsForStart(t *testing.T) {
	f := &fakeReloader{started: make(chan struct{}), reloads: make(chan string, 1)}
	notes := make(chan string, 4)
	sig := make(chan os.Signal)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		reloadOn(ctx, sig, f, "/etc/rollcall/gateway.yaml", slog.New(slog.DiscardHandler),
			func(s string) bool { notes <- s; return true })
	}()
	defer func() { cancel(); <-done }()
	sig <- syscall.SIGHUP // taken: reloadOn now waits for the start
	select {
	case n := <-notes:
		t.Fatalf("notified %q before the gateway started", n)
	case p := <-f.reloads:
		t.Fatalf("reloaded %s before the gateway started", p)
	default:
	}
	close(f.started)
	if p := <-f.reloads; p != "/etc/rollcall/gateway.yaml" {
		t.Fatalf("reloaded %q", p)
	}
	if n := <-notes; !strings.HasPrefix(n, "RELOADING=1\n") {
		t.Fatalf("first notification %q, want RELOADING=1", n)
	}
	if n := <-notes; !strings.HasPrefix(n, "READY=1\n") {
		t.Fatalf("second notification %q, want READY=1", n)
	}
}

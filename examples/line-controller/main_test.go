package main

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rollcall-edge/rollcall/firmware-sim/sim"
	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
	"github.com/rollcall-edge/rollcall/gateway"
	"github.com/rollcall-edge/rollcall/gateway/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestFailover: the controller uses one of two TCP drives of axis group A; when that
// drive goes silent it moves to the other one. The time from the fault to the switch is
// logged (the controller's failover time).
func TestFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	simCfg, err := sim.ParseConfig("sim.yaml", []byte(`
tcp:
  - {name: tcp1, listen: "127.0.0.1:0", drives: [{unit: 1, serial: SIM-0105}]}
  - {name: tcp2, listen: "127.0.0.1:0", drives: [{unit: 1, serial: SIM-0106}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	s, err := sim.New(simCfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = s.Wait() }()
	cfg, err := config.Parse("gw.yaml", []byte(`
gateway: {id: lc-gw, state_dir: `+filepath.Join(t.TempDir(), "state")+`}
mqtt: {broker: embedded, embedded_listen: "127.0.0.1:0", embedded_auth: {allow_anonymous: true}}
discovery:
  tcp:
    - {name: tcp1, address: "`+s.ListenerAddr("tcp1")+`", timeout: 50ms, meta: {axis_group: A, axis: "5"}}
    - {name: tcp2, address: "`+s.ListenerAddr("tcp2")+`", timeout: 50ms, meta: {axis_group: A, axis: "6"}}
health: {poll_interval: 50ms}
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

	drives := make(chan string, 8)
	var out strings.Builder
	var outMu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = run(ctx, Config{Broker: g.BrokerURL(), AxisGroup: "A", Every: 20 * time.Millisecond,
			OnDrive: func(id string) { drives <- id }}, writerFunc(func(p []byte) (int, error) {
			outMu.Lock()
			defer outMu.Unlock()
			return out.Write(p)
		}))
	}()
	var first string
	select {
	case first = <-drives:
	case <-time.After(20 * time.Second):
		t.Fatal("controller picked no drive")
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		outMu.Lock()
		read := strings.Contains(out.String(), first+" position ")
		outMu.Unlock()
		if read {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no position read from the first drive")
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	listener := map[string]string{"rollcall-firmware-sim-sim-0105": "tcp1", "rollcall-firmware-sim-sim-0106": "tcp2"}[first]
	if listener == "" {
		t.Fatalf("picked %q", first)
	}
	killed := time.Now()
	if err := s.SetFault(listener, 1, slave.Fault{Mode: slave.FaultSilent}); err != nil {
		t.Fatal(err)
	}
	select {
	case next := <-drives:
		if next == first {
			t.Fatalf("switched to the dead drive %s", next)
		}
		t.Logf("controller failover %s → %s: %v after the drive went silent", first, next, time.Since(killed))
	case <-time.After(20 * time.Second):
		outMu.Lock()
		defer outMu.Unlock()
		t.Fatalf("no failover; controller output:\n%s", out.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

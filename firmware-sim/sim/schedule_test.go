package sim

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
)

// waitFor polls cond every 2 ms until it holds; it fails the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 10 s waiting for %s", what)
		}
		<-tick.C
	}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestSimSchedule: scripted faults with short offsets, observed through the fault state
// (Go API and GET /v1/devices) and the log; a repeating schedule cycles.
func TestSimSchedule(t *testing.T) {
	const doc = `control: {listen: "127.0.0.1:0"}
tcp:
  - name: sched
    listen: 127.0.0.1:0
    drives:
      - unit: 1
        serial: SIM-0901
        schedule:
          - {after: 50ms, mode: silent}
          - {after: 150ms, mode: none}
      - unit: 2
        serial: SIM-0902
        schedule:
          - {after: 0s, mode: exception, code: 6}
          - {after: 100ms, mode: none}
        repeat: 200ms
      - unit: 3
        serial: SIM-0903
        schedule:
          - {after: 80ms, mode: fault}
`
	var logs syncBuffer
	cfg, err := ParseConfig("test.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		cancel()
		if err := s.Wait(); err != nil {
			t.Errorf("Wait: %v", err)
		}
	}()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	ts := &tcpSim{sim: s, http: newTestHTTPClient(), base: "http://" + s.ControlAddr()}
	mode := func(unit int) slave.FaultMode {
		f, err := s.Fault("sched", unit)
		if err != nil {
			t.Fatal(err)
		}
		return f.Mode
	}

	// Unit 1 dies (silent) and returns (none).
	waitFor(t, "unit 1 silent", func() bool { return mode(1) == slave.FaultSilent })
	c := dialMB(t, s.ListenerAddr("sched"))
	waitFor(t, "unit 1 back to none", func() bool { return mode(1) == slave.FaultNone })
	c.transact(t, readU1, replyU1)

	// Unit 2 cycles exception(6) → none → exception(6) …: see two rising edges.
	for i := 0; i < 2; i++ {
		waitFor(t, "unit 2 exception", func() bool { return mode(2) == slave.FaultException })
		waitFor(t, "unit 2 none", func() bool { return mode(2) == slave.FaultNone })
	}

	// Unit 3 goes into CiA 402 fault: statusword bit 3, seen through the control API.
	waitFor(t, "unit 3 in fault via GET /v1/devices", func() bool {
		for _, d := range ts.devices(t) {
			if d.Unit == 3 && d.Fault.Mode == "fault" && d.Statusword&(1<<3) != 0 && d.CiA402 == "fault" {
				return true
			}
		}
		return false
	})

	for _, want := range []string{
		`msg="fault set" listener=sched unit=1 fault=silent source=schedule step=0 cycle=0`,
		`msg="fault set" listener=sched unit=1 fault=none source=schedule step=1 cycle=0`,
		`msg="fault set" listener=sched unit=2 fault=exception(6) source=schedule step=0 cycle=1`,
		`msg="fault set" listener=sched unit=3 fault=fault source=schedule step=0 cycle=0`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s in:\n%s", want, logs.String())
		}
	}
}

func newTestHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
}

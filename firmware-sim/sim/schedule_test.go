package sim

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
	"github.com/rollcall-edge/rollcall/internal/testutil"
)

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
	var logs testutil.SyncBuffer
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

	// Unit 1 dies (silent) and returns (none). Its silence lasts 100 ms, which a test
	// sampling the fault state on a loaded machine can miss: the log records both steps.
	c := dialMB(t, s.ListenerAddr("sched"))
	testutil.Eventually(t, 10*time.Second, "unit 1 silent, then back to none (logged)", func() bool {
		l := logs.String()
		silent := strings.Index(l, `unit=1 fault=silent source=schedule step=0`)
		return silent >= 0 && strings.Contains(l[silent:], `unit=1 fault=none source=schedule step=1`)
	})
	if m := mode(1); m != slave.FaultNone {
		t.Fatalf("unit 1 after its schedule: %v, want none", m)
	}
	c.transact(t, readU1, replyU1)

	// Unit 2 cycles exception(6) → none → exception(6) …: see two rising edges. (A
	// phase missed by the sampling comes round again in the next cycle.)
	for i := 0; i < 2; i++ {
		testutil.Eventually(t, 10*time.Second, "unit 2 exception", func() bool { return mode(2) == slave.FaultException })
		testutil.Eventually(t, 10*time.Second, "unit 2 none", func() bool { return mode(2) == slave.FaultNone })
	}

	// Unit 3 goes into CiA 402 fault: statusword bit 3, seen through the control API.
	testutil.Eventually(t, 10*time.Second, "unit 3 in fault via GET /v1/devices", func() bool {
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

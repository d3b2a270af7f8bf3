//go:build linux

package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rollcall-edge/rollcall/firmware-sim/drive"
	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
	"github.com/rollcall-edge/rollcall/internal/termios"
	"github.com/rollcall-edge/rollcall/internal/testutil"
)

// testSim is a started simulator with one bus "bus1" at 115200 baud, 1 ms turnaround,
// unit 1 (SIM-0001, enabled) and unit 2 (SIM-0002, enabled: false), 40-byte 0x2B replies.
type testSim struct {
	sim    *Sim
	link   string
	cancel context.CancelFunc
	http   *http.Client
	base   string
}

func startSim(t *testing.T) *testSim {
	t.Helper()
	link := filepath.Join(t.TempDir(), "dev", "bus1") // parent dir created by Start
	doc := `control: {listen: "127.0.0.1:0"}
buses:
  - name: bus1
    link: ` + link + `
    baud: 115200
    turnaround: 1ms
    devid_max_reply: 40
    drives:
      - {unit: 1, serial: SIM-0001}
      - {unit: 2, serial: SIM-0002, model: SIM-402-750W, enabled: false}
`
	cfg, err := ParseConfig("test.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	ts := &testSim{sim: s, link: link, cancel: cancel,
		http: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second},
		base: "http://" + s.ControlAddr()}
	t.Cleanup(func() {
		cancel()
		if err := s.Wait(); err != nil {
			t.Errorf("Wait: %v", err)
		}
		if _, err := os.Lstat(link); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("link %s still there after Wait: %v", link, err)
		}
	})
	return ts
}

// openLink opens the bus link as the gateway would: a raw terminal.
func openLink(t *testing.T, link string) *os.File {
	t.Helper()
	f, err := os.OpenFile(link, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	// The simulator already made the terminal raw: no echo, no canonical mode.
	err = termios.Control(f, func(fd int) error {
		tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			return err
		}
		if tio.Lflag&(unix.ECHO|unix.ICANON) != 0 || tio.Oflag&unix.OPOST != 0 {
			t.Errorf("terminal not raw: lflag %#x oflag %#x", tio.Lflag, tio.Oflag)
		}
		return termios.MakeRaw(fd)
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// transact writes req and reads n reply bytes; n = 0 expects silence for quiet.
func transact(t *testing.T, f *os.File, req []byte, n int, quiet time.Duration) ([]byte, time.Duration) {
	t.Helper()
	start := time.Now()
	if _, err := f.Write(req); err != nil {
		t.Fatalf("write: %v", err)
	}
	if n == 0 {
		_ = f.SetReadDeadline(time.Now().Add(quiet))
		buf := make([]byte, 64)
		if k, err := f.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("expected no reply, got % X (err %v)", buf[:k], err)
		}
		return nil, 0
	}
	_ = f.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, n)
	if _, err := io.ReadFull(f, buf); err != nil {
		t.Fatalf("read %d bytes: %v (got % X)", n, err, buf)
	}
	return buf, time.Since(start)
}

func (ts *testSim) post(t *testing.T, path, body string) (int, string) {
	t.Helper()
	resp, err := ts.http.Post(ts.base+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (ts *testSim) setFault(t *testing.T, unit string, body string) {
	t.Helper()
	if code, resp := ts.post(t, "/v1/devices/bus1/"+unit+"/fault", body); code != http.StatusNoContent {
		t.Fatalf("POST fault %s: %d %s", body, code, resp)
	}
}

func (ts *testSim) devices(t *testing.T) []DeviceInfo {
	t.Helper()
	resp, err := ts.http.Get(ts.base + "/v1/devices")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /v1/devices: %s", resp.Status)
	}
	var out []DeviceInfo
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSimEndToEnd(t *testing.T) {
	ts := startSim(t)
	if target, err := os.Readlink(ts.link); err != nil || !strings.HasPrefix(target, "/dev/pts/") {
		t.Fatalf("link %s → %q, %v", ts.link, target, err)
	}
	if got := ts.sim.Links(); got["bus1"] != ts.link {
		t.Fatalf("Links() = %v", got)
	}
	f := openLink(t, ts.link)

	read1 := testutil.Unhex(t, "01 03 00 00 00 02 C4 0B") // statusword + error code, unit 1
	want1 := testutil.Unhex(t, "01 03 04 02 37 00 00 4A 45")
	read2 := testutil.Unhex(t, "02 03 00 00 00 02 C4 38")
	want2 := testutil.Unhex(t, "02 03 04 02 60 00 00 C8 95")

	t.Run("read and line timing", func(t *testing.T) {
		got, rtt := transact(t, f, read1, len(want1), 0)
		if !bytes.Equal(got, want1) {
			t.Fatalf("reply % X, want % X", got, want1)
		}
		// Floor: (8 + 9 bytes) × 11 bits / 115200 baud + t3.5 (1.75 ms above 19200 baud) + 1 ms turnaround.
		bits, baud := 17.0*11, 115200.0
		floor := time.Duration(bits/baud*float64(time.Second)) + 1750*time.Microsecond + time.Millisecond
		t.Logf("2-register read at 115200 baud: reply after %v, computed floor %v", rtt, floor)
		if rtt < floor {
			t.Errorf("reply after %v, earlier than the line-timing floor %v", rtt, floor)
		}
		if got, _ := transact(t, f, read2, len(want2), 0); !bytes.Equal(got, want2) {
			t.Fatalf("unit 2 reply % X, want % X", got, want2)
		}
	})

	t.Run("write", func(t *testing.T) {
		// FC16 target velocity 1000 to unit 2, FC06 shutdown to unit 2.
		if got, _ := transact(t, f, testutil.Unhex(t, "02 10 00 0E 00 02 04 00 00 03 E8 7D D9"), 8, 0); !bytes.Equal(got, testutil.Unhex(t, "02 10 00 0E 00 02 20 38")) {
			t.Fatalf("FC16 reply % X", got)
		}
		if got, _ := transact(t, f, testutil.Unhex(t, "02 06 00 02 00 06 A8 3B"), 8, 0); !bytes.Equal(got, testutil.Unhex(t, "02 06 00 02 00 06 A8 3B")) {
			t.Fatalf("FC06 reply % X", got)
		}
		if st := ts.sim.Drive("bus1", 2).Status(); st.State != drive.ReadyToSwitchOn || st.TargetVelocity != 1000 {
			t.Fatalf("unit 2 %+v", st)
		}
	})

	t.Run("device identification split", func(t *testing.T) {
		// Basic stream at 40 bytes: VendorName only, more follows, next object 0x01.
		want := append(testutil.Unhex(t, "01 2B 0E 01 83 FF 01 01 00 15"), "rollcall firmware-sim"...)
		want = slave.AppendCRC(want)
		got, _ := transact(t, f, testutil.Unhex(t, "01 2B 0E 01 00 70 77"), len(want), 0)
		if !bytes.Equal(got, want) {
			t.Fatalf("reply\n got % X\nwant % X", got, want)
		}
	})

	t.Run("absent unit and master garbage", func(t *testing.T) {
		transact(t, f, testutil.Unhex(t, "07 03 00 00 00 02 C4 6D"), 0, 200*time.Millisecond)
		transact(t, f, testutil.Unhex(t, "01 03 00 00 00 02 0B C4"), 0, 200*time.Millisecond) // bad CRC
		if got, _ := transact(t, f, read1, len(want1), 0); !bytes.Equal(got, want1) {
			t.Fatalf("after garbage: % X", got)
		}
	})

	t.Run("fault silent", func(t *testing.T) {
		ts.setFault(t, "1", `{"mode":"silent"}`)
		transact(t, f, read1, 0, 200*time.Millisecond)
		want := slave.AppendCRC(testutil.Unhex(t, "02 03 04 02 31 00 00")) // unit 2 is ready to switch on now
		if got, _ := transact(t, f, read2, len(want), 0); !bytes.Equal(got, want) {
			t.Fatalf("unit 2 while unit 1 silent: % X, want % X", got, want)
		}
	})

	t.Run("fault exception", func(t *testing.T) {
		ts.setFault(t, "1", `{"mode":"exception"}`)
		if got, _ := transact(t, f, read1, 5, 0); !bytes.Equal(got, testutil.Unhex(t, "01 83 04 40 F3")) {
			t.Fatalf("reply % X", got)
		}
		ts.setFault(t, "1", `{"mode":"exception","code":6}`)
		if got, _ := transact(t, f, read1, 5, 0); !bytes.Equal(got, testutil.Unhex(t, "01 83 06 C1 32")) {
			t.Fatalf("reply % X", got)
		}
	})

	t.Run("fault garbage", func(t *testing.T) {
		ts.setFault(t, "1", `{"mode":"garbage"}`)
		got, _ := transact(t, f, read1, len(want1), 0)
		if slave.CheckCRC(got) || !bytes.Equal(got[:7], want1[:7]) {
			t.Fatalf("garbage reply % X", got)
		}
		ts.setFault(t, "1", `{"mode":"none"}`)
		if got, _ := transact(t, f, read1, len(want1), 0); !bytes.Equal(got, want1) {
			t.Fatalf("after garbage: % X", got)
		}
	})

	t.Run("fault slow", func(t *testing.T) {
		ts.setFault(t, "1", `{"mode":"slow","delay":"100ms"}`)
		got, rtt := transact(t, f, read1, len(want1), 0)
		if !bytes.Equal(got, want1) || rtt < 100*time.Millisecond {
			t.Fatalf("slow reply % X after %v", got, rtt)
		}
		ts.setFault(t, "1", `{"mode":"none"}`)
	})

	t.Run("fault noisy", func(t *testing.T) {
		ts.setFault(t, "1", `{"mode":"noisy","rate":1,"seed":7}`)
		// Each reply has a bad CRC and is followed by a noise burst of 1–4 bytes, then
		// silence. The simulator drops a burst it would write late (a starved machine),
		// so that it cannot run into the master's next request: a few tries may pass
		// before one is on the line.
		var burst []byte
		buf := make([]byte, 16)
		for try := 0; try < 20 && len(burst) == 0; try++ {
			got, _ := transact(t, f, read1, len(want1), 0)
			if slave.CheckCRC(got) || !bytes.Equal(got[:7], want1[:7]) {
				t.Fatalf("noisy reply % X: want a bad CRC", got)
			}
			for {
				_ = f.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				k, err := f.Read(buf)
				burst = append(burst, buf[:k]...)
				if errors.Is(err, os.ErrDeadlineExceeded) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
		}
		if len(burst) < 1 || len(burst) > 4 {
			t.Fatalf("noise burst % X: want 1–4 bytes", burst)
		}
		devs := ts.devices(t)
		if fj := devs[0].Fault; fj.Mode != "noisy" || fj.Rate == nil || *fj.Rate != 1 || fj.Seed != 7 || fj.Delay != "" || fj.Code != 0 {
			t.Fatalf("devices[0].fault %+v", fj)
		}
		ts.setFault(t, "1", `{"mode":"noisy","rate":0}`)
		if got, _ := transact(t, f, read1, len(want1), 0); !bytes.Equal(got, want1) {
			t.Fatalf("noisy at rate 0: % X", got)
		}
		if fj := ts.devices(t)[0].Fault; fj.Rate == nil || *fj.Rate != 0 || fj.Seed != 0 {
			t.Fatalf("devices[0].fault at rate 0 %+v", fj)
		}
		ts.setFault(t, "1", `{"mode":"none"}`)
		if fj := ts.devices(t)[0].Fault; fj.Rate != nil {
			t.Fatalf("devices[0].fault after none %+v", fj)
		}
	})

	t.Run("fault CiA 402", func(t *testing.T) {
		ts.setFault(t, "1", `{"mode":"fault"}`)
		// statusword 0x0208 (bit 3 fault, remote), error code 0x2310
		want := slave.AppendCRC(testutil.Unhex(t, "01 03 04 02 08 23 10"))
		if got, _ := transact(t, f, read1, len(want), 0); !bytes.Equal(got, want) {
			t.Fatalf("reply % X, want % X", got, want)
		}
		devs := ts.devices(t)
		if len(devs) != 2 || devs[0].Unit != 1 || devs[0].Fault.Mode != "fault" || devs[0].CiA402 != "fault" ||
			devs[0].Statusword != 0x0208 || devs[0].ErrorCode != 0x2310 || devs[0].Serial != "SIM-0001" {
			t.Fatalf("devices %+v", devs)
		}
		if devs[1].Unit != 2 || devs[1].Model != "SIM-402-750W" || devs[1].CiA402 != "ready_to_switch_on" || devs[1].Fault.Mode != "none" {
			t.Fatalf("devices[1] %+v", devs[1])
		}
		ts.setFault(t, "1", `{"mode":"none"}`) // fault reset, re-enabled (configured enabled)
		if got, _ := transact(t, f, read1, len(want1), 0); !bytes.Equal(got, want1) {
			t.Fatalf("after clearing: % X", got)
		}
	})

	t.Run("control API errors", func(t *testing.T) {
		tests := []struct {
			path, body string
			code       int
			errText    string
		}{
			{"/v1/devices/nobus/1/fault", `{"mode":"silent"}`, 404, "nobus"},
			{"/v1/devices/bus1/9/fault", `{"mode":"silent"}`, 404, "unit 9"},
			{"/v1/devices/bus1/x/fault", `{"mode":"silent"}`, 400, "unit must be an integer"},
			{"/v1/devices/bus1/1/fault", `{"mode":"broken"}`, 400, "unknown fault mode"},
			{"/v1/devices/bus1/1/fault", `{"mode":"slow"}`, 400, "needs a delay"},
			{"/v1/devices/bus1/1/fault", `{"mode":"slow","delay":"soon"}`, 400, "positive duration"},
			{"/v1/devices/bus1/1/fault", `{"mode":"silent","delay":"1s"}`, 400, "only valid with mode slow"},
			{"/v1/devices/bus1/1/fault", `{"mode":"exception","code":300}`, 400, "1 to 255"},
			{"/v1/devices/bus1/1/fault", `{"mode":"none","colour":1}`, 400, "unknown field"},
			{"/v1/devices/bus1/1/fault", `{"mode":"noisy"}`, 400, "mode noisy needs a rate"},
			{"/v1/devices/bus1/1/fault", `{"mode":"noisy","rate":1.5}`, 400, "rate must be a probability from 0 to 1"},
			{"/v1/devices/bus1/1/fault", `{"mode":"noisy","rate":-0.01}`, 400, "rate must be a probability from 0 to 1"},
			{"/v1/devices/bus1/1/fault", `{"mode":"noisy","rate":"high"}`, 400, "JSON object"},
			{"/v1/devices/bus1/1/fault", `{"mode":"noisy","rate":0.1,"seed":-1}`, 400, "JSON object"},
			{"/v1/devices/bus1/1/fault", `{"mode":"slow","delay":"1s","rate":0.1}`, 400, "rate is only valid with mode noisy"},
			{"/v1/devices/bus1/1/fault", `{"mode":"none","seed":3}`, 400, "seed is only valid with mode noisy"},
			{"/v1/devices/bus1/1/fault", `{"mode":"loud"}`, 400, "noisy"},
			{"/v1/devices/bus1/1/fault", `{}`, 400, "mode is required"},
			{"/v1/devices/bus1/1/fault", `not json`, 400, "JSON object"},
		}
		for _, tt := range tests {
			code, body := ts.post(t, tt.path, tt.body)
			var e struct{ Error string }
			if code != tt.code || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, tt.errText) {
				t.Errorf("POST %s %s: %d %s; want %d with %q", tt.path, tt.body, code, body, tt.code, tt.errText)
			}
		}
		resp, err := ts.http.Get(ts.base + "/v1/devices/bus1/1/fault")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("GET on fault: %s", resp.Status)
		}
		if err := ts.sim.SetFault("bus1", 3, slave.Fault{}); !errors.Is(err, ErrUnknownDevice) || !strings.Contains(err.Error(), "bus bus1: unit 3") {
			t.Errorf("SetFault unknown unit: %v", err)
		}
		if d := ts.sim.Drive("bus9", 1); d != nil {
			t.Error("Drive on unknown bus")
		}
	})

	if st, err := ts.sim.buses[0].server.Stats(1); err != nil || st.Requests == 0 {
		t.Errorf("stats %+v %v", st, err)
	}
}

// TestSimGatewayCloses: the gateway closing and reopening its side does not disturb
// the simulator (it keeps the slave side open, so it never reads EIO).
func TestSimGatewayCloses(t *testing.T) {
	ts := startSim(t)
	read1 := testutil.Unhex(t, "01 03 00 00 00 02 C4 0B")
	want1 := testutil.Unhex(t, "01 03 04 02 37 00 00 4A 45")
	for i := 0; i < 3; i++ {
		f, err := os.OpenFile(ts.link, os.O_RDWR|unix.O_NOCTTY, 0)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := transact(t, f, read1, len(want1), 0)
		_ = f.Close()
		if !bytes.Equal(got, want1) {
			t.Fatalf("open %d: reply % X", i, got)
		}
	}
}

func TestSimStartErrors(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "bus1")
	if err := os.WriteFile(link, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{Buses: []Bus{{Name: "bus1", Link: link, Baud: 9600, Drives: []Drive{{Unit: 1, Serial: "A"}}}}}
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "bus bus1") || !strings.Contains(err.Error(), "not a symlink") {
		t.Fatalf("Start over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(link); string(b) != "precious" {
		t.Fatal("regular file replaced")
	}
	if werr := s.Wait(); werr == nil {
		t.Error("Wait after failed Start returned nil")
	}
	if err := s.Start(context.Background()); err == nil {
		t.Error("second Start accepted")
	}

	// A stale symlink is replaced; the control address must be free.
	stale := filepath.Join(dir, "bus2")
	if err := os.Symlink("/dev/null", stale); err != nil {
		t.Fatal(err)
	}
	cfg = &Config{Control: Control{Listen: "127.0.0.1:0"},
		Buses: []Bus{{Name: "bus2", Link: stale, Baud: 9600, Drives: []Drive{{Unit: 1, Serial: "A"}}}}}
	s, err = New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if target, _ := os.Readlink(stale); !strings.HasPrefix(target, "/dev/pts/") {
		t.Errorf("stale link → %q", target)
	}
	cfg2 := &Config{Control: Control{Listen: s.ControlAddr()},
		Buses: []Bus{{Name: "bus3", Link: filepath.Join(dir, "bus3"), Baud: 9600, Drives: []Drive{{Unit: 1, Serial: "B"}}}}}
	s2, err := New(cfg2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "control API") {
		t.Errorf("Start on a busy control address: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "bus3")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed Start left its link: %v", err)
	}
	_ = s2.Wait()
	cancel()
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("link not removed: %v", err)
	}
}

func TestSimWaitWithoutStart(t *testing.T) {
	cfg := &Config{Buses: []Bus{{Name: "b", Link: "/nonexistent/x", Baud: 9600}}}
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
	if s.ControlAddr() != "" {
		t.Fatal("ControlAddr before Start")
	}
}

// TestSimScheduleRTU: a fault schedule on a bus drive changes what the bus answers.
func TestSimScheduleRTU(t *testing.T) {
	link := filepath.Join(t.TempDir(), "bus1")
	doc := `buses:
  - name: bus1
    link: ` + link + `
    baud: 115200
    drives:
      - unit: 1
        serial: SIM-0001
        schedule:
          - {after: 30ms, mode: exception}
          - {after: 1h, mode: none}
`
	cfg, err := ParseConfig("test.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	defer func() {
		cancel() // also ends the schedule goroutine waiting for its 1 h step
		if err := s.Wait(); err != nil {
			t.Errorf("Wait: %v", err)
		}
	}()
	testutil.Eventually(t, 10*time.Second, "bus1 unit 1 in exception mode", func() bool {
		f, err := s.Fault("bus1", 1)
		return err == nil && f.Mode == slave.FaultException
	})
	f := openLink(t, link)
	if got, _ := transact(t, f, testutil.Unhex(t, "01 03 00 00 00 02 C4 0B"), 5, 0); !bytes.Equal(got, testutil.Unhex(t, "01 83 04 40 F3")) {
		t.Fatalf("reply % X", got)
	}
}

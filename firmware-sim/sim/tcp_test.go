package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/firmware-sim/drive"
	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
	"github.com/rollcall-edge/rollcall/internal/testutil"
)

// tcpSim is a started simulator built from a YAML document, with an HTTP client for
// its control API.
type tcpSim struct {
	sim  *Sim
	http *http.Client
	base string
}

// startYAML parses doc, starts the simulator and registers its shutdown (cancel, Wait
// without error) as cleanup.
func startYAML(t *testing.T, doc string) *tcpSim {
	t.Helper()
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
	ts := &tcpSim{sim: s, http: newTestHTTPClient()}
	if addr := s.ControlAddr(); addr != "" {
		ts.base = "http://" + addr
	}
	t.Cleanup(func() {
		cancel()
		if err := s.Wait(); err != nil {
			t.Errorf("Wait: %v", err)
		}
		for _, l := range cfg.TCP {
			if a := s.ListenerAddr(l.Name); a != "" {
				t.Errorf("listener %s still at %s after Wait", l.Name, a)
			}
		}
	})
	return ts
}

func (ts *tcpSim) fault(t *testing.T, name string, unit string, body string) {
	t.Helper()
	resp, err := ts.http.Post(ts.base+"/v1/devices/"+name+"/"+unit+"/fault", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST fault %s/%s %s: %s %s", name, unit, body, resp.Status, b)
	}
}

func (ts *tcpSim) devices(t *testing.T) []DeviceInfo {
	t.Helper()
	resp, err := ts.http.Get(ts.base + "/v1/devices")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/devices: %s", resp.Status)
	}
	var out []DeviceInfo
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// mbConn is a raw Modbus TCP client connection for the tests.
type mbConn struct{ net.Conn }

func dialMB(t *testing.T, addr string) *mbConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &mbConn{c}
}

// send writes one request ADU given as hex.
func (c *mbConn) send(t *testing.T, req string) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(testutil.Unhex(t, req)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// expect reads exactly the bytes of want (hex) within 5 s; it returns the time since
// start.
func (c *mbConn) expect(t *testing.T, want string, start time.Time) time.Duration {
	t.Helper()
	w := testutil.Unhex(t, want)
	got := make([]byte, len(w))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read %d bytes: %v (got % X)", len(w), err, got[:n])
	}
	if !bytes.Equal(got, w) {
		t.Fatalf("reply\n got % X\nwant % X", got, w)
	}
	return time.Since(start)
}

// transact sends req and expects want.
func (c *mbConn) transact(t *testing.T, req, want string) time.Duration {
	t.Helper()
	start := time.Now()
	c.send(t, req)
	return c.expect(t, want, start)
}

// silence asserts that nothing arrives within quiet.
func (c *mbConn) silence(t *testing.T, quiet time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(quiet))
	buf := make([]byte, 64)
	if n, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("expected no reply within %v, got % X (err %v)", quiet, buf[:n], err)
	}
}

const tcpDoc = `control: {listen: "127.0.0.1:0"}
tcp:
  - name: gw
    listen: 127.0.0.1:0
    drives:
      - {unit: 1, serial: SIM-0101}
      - {unit: 2, serial: SIM-0102, model: SIM-402-750W}
  - name: solo
    listen: 127.0.0.1:0
    drives:
      - {unit: 7, serial: SIM-0107, enabled: false}
`

// Requests and replies of TestSimTCP (MBAP: transaction id, protocol 0, length, unit).
const (
	readU1  = "00 01 00 00 00 06 01 03 00 00 00 02" // statusword + error code, unit 1
	replyU1 = "00 01 00 00 00 07 01 03 04 02 37 00 00"
	readU2  = "00 02 00 00 00 06 02 03 00 00 00 02"
	replyU2 = "00 02 00 00 00 07 02 03 04 02 37 00 00"
)

func TestSimTCP(t *testing.T) {
	ts := startYAML(t, tcpDoc)
	gwAddr := ts.sim.ListenerAddr("gw")
	if host, port, err := net.SplitHostPort(gwAddr); err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("ListenerAddr(gw) = %q", gwAddr)
	}
	if a := ts.sim.ListenerAddr("nope"); a != "" {
		t.Fatalf("ListenerAddr(nope) = %q", a)
	}
	gw := dialMB(t, gwAddr)

	t.Run("two units on one listener", func(t *testing.T) {
		gw.transact(t, readU1, replyU1)
		gw.transact(t, readU2, replyU2)
		// Serial registers 100–107 of unit 2: "SIM-0102".
		gw.transact(t, "00 03 00 00 00 06 02 03 00 64 00 08",
			"00 03 00 00 00 13 02 03 10 53 49 4D 2D 30 31 30 32 00 00 00 00 00 00 00 00")
		// A unit the gateway does not serve: exception 0x0B.
		gw.transact(t, "00 04 00 00 00 06 09 03 00 00 00 02", "00 04 00 00 00 03 09 83 0B")
		// A second connection at the same time.
		gw2 := dialMB(t, gwAddr)
		gw2.transact(t, readU2, replyU2)
		gw.transact(t, readU1, replyU1)
	})

	t.Run("single-unit listener answers any unit ID", func(t *testing.T) {
		solo := dialMB(t, ts.sim.ListenerAddr("solo"))
		solo.transact(t, "AB CD 00 00 00 06 FF 03 00 00 00 02", "AB CD 00 00 00 07 FF 03 04 02 60 00 00")
		solo.transact(t, "AB CE 00 00 00 06 07 03 00 00 00 02", "AB CE 00 00 00 07 07 03 04 02 60 00 00")
	})

	t.Run("devices", func(t *testing.T) {
		devs := ts.devices(t)
		if len(devs) != 3 {
			t.Fatalf("devices %+v", devs)
		}
		d := devs[1]
		if d.Bus != "gw" || d.Transport != "modbus-tcp" || d.Address != gwAddr || d.Unit != 2 || d.Serial != "SIM-0102" ||
			d.Model != "SIM-402-750W" || d.Fault.Mode != "none" || d.CiA402 != "operation_enabled" || d.Requests == 0 || d.Link != "" {
			t.Fatalf("device %+v", d)
		}
		if d := devs[2]; d.Bus != "solo" || d.Unit != 7 || d.CiA402 != "switch_on_disabled" {
			t.Fatalf("device %+v", d)
		}
	})

	t.Run("fault silent", func(t *testing.T) {
		ts.fault(t, "gw", "1", `{"mode":"silent"}`)
		gw.send(t, readU1)
		gw.silence(t, 300*time.Millisecond)
		// Unit 2 on the same listener, and on the same connection, still answers.
		gw.transact(t, readU2, replyU2)
		if st, _ := ts.sim.Fault("gw", 1); st.Mode != slave.FaultSilent {
			t.Fatalf("Fault(gw, 1) = %v", st)
		}
		ts.fault(t, "gw", "1", `{"mode":"none"}`)
		gw.transact(t, readU1, replyU1)
	})

	t.Run("fault garbage", func(t *testing.T) {
		ts.fault(t, "gw", "1", `{"mode":"garbage"}`)
		gw.transact(t, readU1, "00 01 FF FF 00 07 01 03 04 02 37 00 00") // protocol id 0xFFFF
		ts.fault(t, "gw", "1", `{"mode":"none"}`)
		gw.transact(t, readU1, replyU1)
	})

	t.Run("fault exception", func(t *testing.T) {
		ts.fault(t, "gw", "1", `{"mode":"exception"}`)
		gw.transact(t, readU1, "00 01 00 00 00 03 01 83 04")
		ts.fault(t, "gw", "1", `{"mode":"exception","code":6}`)
		gw.transact(t, readU1, "00 01 00 00 00 03 01 83 06")
		gw.transact(t, readU2, replyU2)
		ts.fault(t, "gw", "1", `{"mode":"none"}`)
	})

	t.Run("fault slow", func(t *testing.T) {
		const delay = 150 * time.Millisecond
		ts.fault(t, "gw", "1", `{"mode":"slow","delay":"150ms"}`)
		if rtt := gw.transact(t, readU1, replyU1); rtt < delay {
			t.Fatalf("slow reply after %v, want ≥ %v", rtt, delay)
		}
		ts.fault(t, "gw", "1", `{"mode":"none"}`)
	})

	t.Run("fault CiA 402", func(t *testing.T) {
		ts.fault(t, "gw", "1", `{"mode":"fault"}`)
		// statusword 0x0208: bit 3 fault (and bit 9 remote); error code 0x2310.
		gw.transact(t, readU1, "00 01 00 00 00 07 01 03 04 02 08 23 10")
		if d := ts.sim.Drive("gw", 1); d.Statusword()&(1<<3) == 0 || d.State() != drive.Fault {
			t.Fatalf("drive state %v statusword %#04x", d.State(), d.Statusword())
		}
		if devs := ts.devices(t); devs[0].Fault.Mode != "fault" || devs[0].Statusword != 0x0208 {
			t.Fatalf("devices[0] %+v", devs[0])
		}
		ts.fault(t, "gw", "1", `{"mode":"none"}`) // fault reset, re-enabled
		gw.transact(t, readU1, replyU1)
	})

	t.Run("control API on listeners", func(t *testing.T) {
		resp, err := ts.http.Post(ts.base+"/v1/devices/gw/9/fault", "application/json", strings.NewReader(`{"mode":"silent"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("fault on unit 9 of gw: %s", resp.Status)
		}
		if err := ts.sim.SetFault("gw", 9, slave.Fault{}); !errors.Is(err, ErrUnknownDevice) || !strings.Contains(err.Error(), "listener gw: unit 9") {
			t.Errorf("SetFault(gw, 9): %v", err)
		}
		if _, err := ts.sim.Fault("nope", 1); !errors.Is(err, ErrUnknownDevice) {
			t.Errorf("Fault(nope, 1): %v", err)
		}
	})

	t.Run("restart listener", func(t *testing.T) {
		ts.fault(t, "gw", "2", `{"mode":"exception","code":6}`) // state that must survive
		old := gwAddr
		addr, err := ts.sim.RestartListener("gw", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if addr == old || addr != ts.sim.ListenerAddr("gw") {
			t.Fatalf("RestartListener → %q (old %q, ListenerAddr %q)", addr, old, ts.sim.ListenerAddr("gw"))
		}
		// The old connection was closed, the old port no longer accepts.
		_ = gw.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := gw.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Fatalf("old connection: %v", err)
		}
		if c, err := net.DialTimeout("tcp", old, time.Second); err == nil {
			_ = c.Close()
			t.Fatalf("old address %s still accepts", old)
		}
		moved := dialMB(t, addr)
		moved.transact(t, "00 03 00 00 00 06 01 03 00 64 00 08",
			"00 03 00 00 00 13 01 03 10 53 49 4D 2D 30 31 30 31 00 00 00 00 00 00 00 00") // same serial
		moved.transact(t, readU2, "00 02 00 00 00 03 02 83 06") // fault kept
		if devs := ts.devices(t); devs[0].Address != addr {
			t.Fatalf("devices[0].Address = %q, want %q", devs[0].Address, addr)
		}
	})

	t.Run("restart errors", func(t *testing.T) {
		if _, err := ts.sim.RestartListener("nope", "127.0.0.1:0"); !errors.Is(err, ErrUnknownListener) {
			t.Errorf("unknown listener: %v", err)
		}
		if _, err := ts.sim.RestartListener("gw", "nonsense"); err == nil || !strings.Contains(err.Error(), "listener gw") {
			t.Errorf("bad address: %v", err)
		}
		// Moving onto the address of another listener fails; the listener stays closed
		// until a later restart succeeds.
		if _, err := ts.sim.RestartListener("gw", ts.sim.ListenerAddr("solo")); err == nil || !strings.Contains(err.Error(), "listener gw") {
			t.Fatalf("restart onto a busy address: %v", err)
		}
		if a := ts.sim.ListenerAddr("gw"); a != "" {
			t.Fatalf("ListenerAddr after a failed restart = %q", a)
		}
		addr, err := ts.sim.RestartListener("gw", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dialMB(t, addr).transact(t, readU1, replyU1)
	})
}

func TestRestartListenerNotRunning(t *testing.T) {
	cfg, err := ParseConfig("test.yaml", []byte(tcpDoc))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RestartListener("gw", "127.0.0.1:0"); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("before Start: %v", err)
	}
	if a := s.ListenerAddr("gw"); a != "" {
		t.Fatalf("ListenerAddr before Start = %q", a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RestartListener("gw", "127.0.0.1:0"); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("after Wait: %v", err)
	}
}

func TestSimTCPStartErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	doc := "tcp:\n  - name: a\n    listen: 127.0.0.1:0\n    drives: [{unit: 1, serial: A}]\n" +
		"  - name: b\n    listen: " + busy.Addr().String() + "\n    drives: [{unit: 1, serial: B}]\n"
	cfg, err := ParseConfig("test.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "listener b") {
		t.Fatalf("Start with a busy address: %v", err)
	}
	if err := s.Wait(); err == nil {
		t.Error("Wait after a failed Start returned nil")
	}
	if a := s.ListenerAddr("a"); a != "" {
		t.Errorf("listener a left at %s", a)
	}

	// An mDNS interface that does not exist fails Start, naming listener and interface.
	doc = "tcp:\n  - name: a\n    listen: 127.0.0.1:0\n    drives: [{unit: 1, serial: A}]\n    mdns: {instance: x, interfaces: [nope-if0]}\n"
	if cfg, err = ParseConfig("test.yaml", []byte(doc)); err != nil {
		t.Fatal(err)
	}
	if s, err = New(cfg, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "listener a: mdns: interface nope-if0") {
		t.Fatalf("Start with an unknown interface: %v", err)
	}
	_ = s.Wait()
}

package gateway_test

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
)

// loopingDevice is a Modbus TCP server whose unit 1 answers every Read Device
// Identification (FC 0x2B/0x0E, Modbus Application Protocol V1.1b3 §6.21) with "more
// follows" and a next object id that never advances: a device stuck in a loop. Every
// other request is left unanswered. It returns the listen address.
func loopingDevice(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				stop := context.AfterFunc(ctx, func() { c.Close() })
				defer stop()
				for {
					var hdr [7]byte // MBAP header: transaction, protocol, length, unit
					if _, err := io.ReadFull(c, hdr[:]); err != nil {
						return
					}
					pdu := make([]byte, int(binary.BigEndian.Uint16(hdr[4:6]))-1)
					if _, err := io.ReadFull(c, pdu); err != nil {
						return
					}
					if hdr[6] != 1 || len(pdu) < 4 || pdu[0] != 0x2B || pdu[1] != 0x0E {
						continue
					}
					obj := pdu[3]
					// code, conformity 0x01, more follows, next object id = the one asked
					// for (no progress), one object.
					reply := []byte{0x2B, 0x0E, pdu[2], 0x01, 0xFF, obj, 1, obj, 4, 'L', 'O', 'O', 'P'}
					out := make([]byte, 7, 7+len(reply))
					copy(out, hdr[:4])
					binary.BigEndian.PutUint16(out[4:6], uint16(1+len(reply)))
					out[6] = hdr[6]
					if _, err := c.Write(append(out, reply...)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestUnregistrableDeviceReported: a device that answers but cannot be registered (its
// identification never ends) is reported once at the default log level with the
// reason, and counted in rollcall_unregistrable_devices_total, however many sweep
// cycles try it again.
func TestUnregistrableDeviceReported(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	addr := loopingDevice(t)
	var logs testutil.SyncBuffer
	h := rig.New(t)
	h.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
	})
	h.MQTTExtra = ", embedded_auth: {allow_anonymous: true}"
	g := h.StartGateway("embedded", `
discovery:
  tcp: [{name: looper, address: "`+addr+`", units: "1", timeout: 200ms}]
http: {listen: "127.0.0.1:0"}
`)
	base := "http://" + g.HTTPAddr()
	// TCP masters are named by their endpoint, host:port.
	series := `rollcall_unregistrable_devices_total{master="` + addr + `",reason="identification_loop"}`
	cycles := `rollcall_sweep_cycles_total{master="` + addr + `"}`
	// Three sweep cycles after the first report: each tried the unit again.
	var first float64
	testutil.Eventually(t, 20*time.Second, "the looping device reported", func() bool {
		m := scrape(t, base+"/metrics")
		first = m[cycles]
		return m[series] == 1
	})
	testutil.Eventually(t, 20*time.Second, "three more sweep cycles", func() bool {
		return scrape(t, base+"/metrics")[cycles] >= first+3
	})
	m := scrape(t, base+"/metrics")
	if m[series] != 1 {
		t.Errorf("%s = %v after more sweeps, want 1 (counted once)", series, m[series])
	}
	lines := 0
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "cannot be registered") {
			lines++
			if !strings.Contains(l, "level=WARN") || !strings.Contains(l, "reason=identification_loop") || !strings.Contains(l, "unit=1") {
				t.Errorf("report line %q lacks the level, reason or unit", l)
			}
		}
	}
	if lines != 1 {
		t.Errorf("%d report lines, want 1:\n%s", lines, logs.String())
	}
	if len(g.Registry().Snapshot()) != 0 {
		t.Errorf("the looping device was registered: %+v", g.Registry().Snapshot())
	}
}

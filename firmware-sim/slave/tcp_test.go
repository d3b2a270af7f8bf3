package slave

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/firmware-sim/drive"
	"github.com/rollcall-edge/rollcall/internal/testutil"
)

// newTestTCP returns a TCP server with units 1 (SIM-0001, enabled) and 2 (SIM-0002,
// switch on disabled) — a gateway — or, with single, unit 1 only.
func newTestTCP(t *testing.T, cfg TCPConfig, single bool) (*TCPServer, *drive.Drive, *drive.Drive) {
	t.Helper()
	if cfg.Listener == "" {
		cfg.Listener = "tcp-test"
	}
	srv, err := NewTCPServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d1, d2 := newTestDrive(t, "SIM-0001", true), newTestDrive(t, "SIM-0002", false)
	if err := srv.AddUnit(1, d1); err != nil {
		t.Fatal(err)
	}
	if !single {
		if err := srv.AddUnit(2, d2); err != nil {
			t.Fatal(err)
		}
	}
	return srv, d1, d2
}

// pipeConn serves srv on one end of a net.Pipe; the test is the client on the other.
type pipeConn struct {
	client net.Conn
	done   chan error // ServeConn's result
	cancel context.CancelFunc
}

func servePipeTCP(t *testing.T, srv *TCPServer) *pipeConn {
	t.Helper()
	serverEnd, clientEnd := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	pc := &pipeConn{client: clientEnd, done: make(chan error, 1), cancel: cancel}
	go func() { pc.done <- srv.ServeConn(ctx, serverEnd) }()
	t.Cleanup(func() {
		cancel()
		_ = clientEnd.Close()
		<-pc.done
	})
	return pc
}

// expectReply reads exactly len(want) bytes within 5 s and compares.
func expectReply(t *testing.T, c net.Conn, want []byte) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(want))
	if n, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read %d reply bytes: %v (got % X)", len(want), err, got[:n])
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("reply\n got % X\nwant % X", got, want)
	}
}

// expectSilence asserts that nothing arrives on c within quiet.
func expectSilence(t *testing.T, c net.Conn, quiet time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(quiet))
	buf := make([]byte, 64)
	if n, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("expected no reply within %v, got % X (err %v)", quiet, buf[:n], err)
	}
}

// devIDBasic is the FC 0x2B/0x0E basic stream reply PDU of a default drive.
func devIDBasic() []byte {
	pdu := []byte{0x2B, 0x0E, 0x01, 0x83, 0x00, 0x00, 0x03}
	for i, v := range []string{"rollcall firmware-sim", "RC-SIM-402", "1.2"} {
		pdu = append(pdu, byte(i), byte(len(v)))
		pdu = append(pdu, v...)
	}
	return pdu
}

// TestTCPFrames: MBAP request bytes in → reply bytes out, or the connection closed.
// Transaction ids, lengths and PDUs were worked out by hand from Implementation Guide
// V1.0b §3.1.3 and the RTU vectors of TestRTUFrames.
func TestTCPFrames(t *testing.T) {
	devIDReq := "00 0B 00 00 00 05 01 2B 0E 01 00"
	devIDReply := AppendMBAP(nil, 0x000B, 1, devIDBasic())
	if !bytes.Equal(devIDReply[:6], testutil.Unhex(t, "00 0B 00 00 00 30")) { // unit + 7-byte header + (2+21) + (2+10) + (2+3) = 48
		t.Fatalf("device ID reply header % X", devIDReply[:6])
	}
	tests := []struct {
		name   string
		single bool // one-unit listener (a drive directly on TCP)
		faults map[byte]Fault
		req    string
		reply  string // "" = no reply (connection stays open) unless closes
		closes string // the connection is closed; ServeConn's error contains this
	}{
		{name: "read statusword+error unit 1", req: "00 01 00 00 00 06 01 03 00 00 00 02", reply: "00 01 00 00 00 07 01 03 04 02 37 00 00"},
		{name: "read unit 2, transaction id echoed", req: "BE EF 00 00 00 06 02 03 00 00 00 02", reply: "BE EF 00 00 00 07 02 03 04 02 60 00 00"},
		{name: "FC04", req: "00 02 00 00 00 06 01 04 00 00 00 02", reply: "00 02 00 00 00 07 01 04 04 02 37 00 00"},
		{name: "serial", req: "00 03 00 00 00 06 01 03 00 64 00 08", reply: "00 03 00 00 00 13 01 03 10 53 49 4D 2D 30 30 30 31 00 00 00 00 00 00 00 00"},
		{name: "FC06 echo", req: "00 04 00 00 00 06 02 06 00 02 00 06", reply: "00 04 00 00 00 06 02 06 00 02 00 06"},
		{name: "FC16", req: "00 05 00 00 00 0B 01 10 00 0E 00 02 04 00 00 03 E8", reply: "00 05 00 00 00 06 01 10 00 0E 00 02"},
		{name: "device ID basic", req: devIDReq, reply: fmt.Sprintf("% X", devIDReply)},
		{name: "exception illegal address", req: "00 06 00 00 00 06 01 03 00 05 00 01", reply: "00 06 00 00 00 03 01 83 02"},
		{name: "exception illegal value", req: "00 09 00 00 00 06 01 03 00 00 00 00", reply: "00 09 00 00 00 03 01 83 03"},
		{name: "exception illegal function", req: "00 07 00 00 00 06 01 01 00 00 00 01", reply: "00 07 00 00 00 03 01 81 01"},
		{name: "unknown function code, any length", req: "00 08 00 00 00 04 01 41 AA BB", reply: "00 08 00 00 00 03 01 C1 01"},
		{name: "FC16 byte count ≠ 2×quantity, length consistent", req: "00 0C 00 00 00 0A 01 10 00 0E 00 02 03 00 00 03", reply: "00 0C 00 00 00 03 01 90 03"},
		{name: "gateway: unit not on the listener", req: "00 0A 00 00 00 06 07 03 00 00 00 02", reply: "00 0A 00 00 00 03 07 83 0B"},
		{name: "gateway: unit 0", req: "00 0A 00 00 00 06 00 03 00 00 00 02", reply: "00 0A 00 00 00 03 00 83 0B"},
		{name: "gateway: unit 0xFF", req: "00 0A 00 00 00 06 FF 03 00 00 00 02", reply: "00 0A 00 00 00 03 FF 83 0B"},
		{name: "single unit answers unit 0xFF", single: true, req: "12 34 00 00 00 06 FF 03 00 00 00 02", reply: "12 34 00 00 00 07 FF 03 04 02 37 00 00"},
		{name: "single unit answers unit 0", single: true, req: "12 34 00 00 00 06 00 03 00 00 00 02", reply: "12 34 00 00 00 07 00 03 04 02 37 00 00"},
		{name: "single unit answers any unit", single: true, req: "12 34 00 00 00 06 09 03 00 00 00 02", reply: "12 34 00 00 00 07 09 03 04 02 37 00 00"},
		{name: "fault exception", faults: map[byte]Fault{1: {Mode: FaultException}}, req: "00 01 00 00 00 06 01 03 00 00 00 02", reply: "00 01 00 00 00 03 01 83 04"},
		{name: "fault exception code 6", faults: map[byte]Fault{1: {Mode: FaultException, Code: 6}}, req: "00 01 00 00 00 06 01 03 00 00 00 02", reply: "00 01 00 00 00 03 01 83 06"},
		{name: "fault garbage: protocol id 0xFFFF", faults: map[byte]Fault{1: {Mode: FaultGarbage}}, req: "00 01 00 00 00 06 01 03 00 00 00 02", reply: "00 01 FF FF 00 07 01 03 04 02 37 00 00"},
		{name: "fault silent", faults: map[byte]Fault{1: {Mode: FaultSilent}}, req: "00 01 00 00 00 06 01 03 00 00 00 02"},
		{name: "fault silent single unit at any id", single: true, faults: map[byte]Fault{1: {Mode: FaultSilent}}, req: "00 01 00 00 00 06 FF 03 00 00 00 02"},
		{name: "fault silent: other unit answers", faults: map[byte]Fault{1: {Mode: FaultSilent}}, req: "00 01 00 00 00 06 02 03 00 00 00 02", reply: "00 01 00 00 00 07 02 03 04 02 60 00 00"},
		{name: "fault device answers normally", faults: map[byte]Fault{1: {Mode: FaultDevice}}, req: "00 01 00 00 00 06 01 03 00 00 00 02", reply: "00 01 00 00 00 07 01 03 04 02 37 00 00"},
		{name: "protocol id 1", req: "00 01 00 01 00 06 01 03 00 00 00 02", closes: "protocol identifier 1"},
		{name: "protocol id 0xFFFF", req: "00 01 FF FF 00 06 01 03 00 00 00 02", closes: "protocol identifier 65535"},
		{name: "length 0", req: "00 01 00 00 00 00 01", closes: "length field 0 outside 2–254"},
		{name: "length 1", req: "00 01 00 00 00 01 01", closes: "length field 1 outside 2–254"},
		{name: "length 255", req: "00 01 00 00 00 FF 01 03", closes: "length field 255 outside 2–254"},
		{name: "length lies short", req: "00 01 00 00 00 05 01 03 00 00 00", closes: "length field 5, but function code 0x03 makes the request 6 bytes"},
		{name: "length lies long", req: "00 01 00 00 00 07 01 03 00 00 00 02 00", closes: "length field 7, but function code 0x03 makes the request 6 bytes"},
		{name: "length disagrees with FC16 byte count", req: "00 01 00 00 00 0A 01 10 00 0E 00 02 04 00 00 03", closes: "length field 10, but function code 0x10 makes the request 11 bytes"},
		{name: "FC 0x2B without MEI type", req: "00 01 00 00 00 02 01 2B", closes: "length field 2 is too short for function code 0x2B"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _, _ := newTestTCP(t, TCPConfig{}, tt.single)
			for id, f := range tt.faults {
				if err := srv.SetFault(id, f); err != nil {
					t.Fatal(err)
				}
			}
			pc := servePipeTCP(t, srv)
			_ = pc.client.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_, werr := pc.client.Write(testutil.Unhex(t, tt.req))
			switch {
			case tt.closes != "":
				// The server stops reading at the bad header: the rest of the write may fail.
				_ = pc.client.SetReadDeadline(time.Now().Add(5 * time.Second))
				if n, err := pc.client.Read(make([]byte, 16)); !errors.Is(err, io.EOF) {
					t.Fatalf("connection not closed: read %d bytes, err %v", n, err)
				}
				err := <-pc.done
				pc.done <- err // for the cleanup
				if !errors.Is(err, ErrBadMBAP) || !strings.Contains(err.Error(), tt.closes) || !strings.Contains(err.Error(), "listener tcp-test") {
					t.Fatalf("ServeConn = %v, want ErrBadMBAP with %q", err, tt.closes)
				}
			case werr != nil:
				t.Fatalf("write: %v", werr)
			case tt.reply == "":
				expectSilence(t, pc.client, 150*time.Millisecond)
			default:
				expectReply(t, pc.client, testutil.Unhex(t, tt.reply))
			}
		})
	}
}

func TestAppendMBAP(t *testing.T) {
	got := AppendMBAP([]byte{0xAA}, 0x1234, 0x11, testutil.Unhex(t, "03 00 6B 00 03"))
	if want := testutil.Unhex(t, "AA 12 34 00 00 00 06 11 03 00 6B 00 03"); !bytes.Equal(got, want) {
		t.Fatalf("AppendMBAP = % X, want % X", got, want)
	}
}

func TestNewTCPServerErrors(t *testing.T) {
	if _, err := NewTCPServer(TCPConfig{Listener: "t", FrameTimeout: -1}); err == nil {
		t.Error("negative frame timeout accepted")
	}
	if _, err := NewTCPServer(TCPConfig{Listener: "t", WriteTimeout: -1}); err == nil {
		t.Error("negative write timeout accepted")
	}
	srv, d1, _ := newTestTCP(t, TCPConfig{}, false)
	for _, id := range []byte{0, 248, 1} {
		if err := srv.AddUnit(id, d1); err == nil {
			t.Errorf("AddUnit(%d) accepted", id)
		}
	}
	if err := srv.SetFault(3, Fault{Mode: FaultSilent}); !errors.Is(err, ErrUnknownUnit) || !strings.Contains(err.Error(), "listener tcp-test: unit 3") {
		t.Errorf("SetFault on unknown unit: %v", err)
	}
	if _, err := srv.Fault(3); !errors.Is(err, ErrUnknownUnit) {
		t.Errorf("Fault on unknown unit: %v", err)
	}
	if _, err := srv.Stats(3); !errors.Is(err, ErrUnknownUnit) {
		t.Errorf("Stats on unknown unit: %v", err)
	}
	if err := srv.SetFault(1, Fault{Mode: FaultSlow}); err == nil {
		t.Error("slow without delay accepted")
	}
}

// TestTCPConnInOrder: pipelined requests are answered in order; a silent unit's request
// is swallowed without blocking the next; a slow reply holds up the ones behind it.
func TestTCPConnInOrder(t *testing.T) {
	srv, _, _ := newTestTCP(t, TCPConfig{}, false)
	pc := servePipeTCP(t, srv)
	// net.Pipe: a write completes as the server reads it, so write while reading.
	send := func(s string) <-chan error {
		b := testutil.Unhex(t, s)
		done := make(chan error, 1)
		go func() { _, err := pc.client.Write(b); done <- err }()
		return done
	}
	wrote := send("00 01 00 00 00 06 01 03 00 00 00 02" + "00 02 00 00 00 06 02 03 00 00 00 02" + "00 03 00 00 00 06 09 03 00 00 00 02")
	expectReply(t, pc.client, testutil.Unhex(t, "00 01 00 00 00 07 01 03 04 02 37 00 00"+"00 02 00 00 00 07 02 03 04 02 60 00 00"+"00 03 00 00 00 03 09 83 0B"))
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}

	if err := srv.SetFault(1, Fault{Mode: FaultSilent}); err != nil {
		t.Fatal(err)
	}
	wrote = send("00 04 00 00 00 06 01 03 00 00 00 02" + "00 05 00 00 00 06 02 03 00 00 00 02")
	expectReply(t, pc.client, testutil.Unhex(t, "00 05 00 00 00 07 02 03 04 02 60 00 00"))
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}

	const delay = 120 * time.Millisecond
	if err := srv.SetFault(1, Fault{Mode: FaultSlow, Delay: delay}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	wrote = send("00 06 00 00 00 06 01 03 00 00 00 02" + "00 07 00 00 00 06 02 03 00 00 00 02")
	expectReply(t, pc.client, testutil.Unhex(t, "00 06 00 00 00 07 01 03 04 02 37 00 00"+"00 07 00 00 00 07 02 03 04 02 60 00 00"))
	if rtt := time.Since(start); rtt < delay {
		t.Fatalf("slow replies after %v, want ≥ %v", rtt, delay)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	st, err := srv.Stats(1)
	if err != nil || st.Requests != 3 || st.Replies != 2 {
		t.Errorf("unit 1 stats %+v %v, want 3 requests 2 replies", st, err)
	}
}

// TestTCPFrameTimeout: a client stalling mid-frame is disconnected after FrameTimeout;
// an idle client between frames is not.
func TestTCPFrameTimeout(t *testing.T) {
	srv, _, _ := newTestTCP(t, TCPConfig{FrameTimeout: 50 * time.Millisecond}, false)
	pc := servePipeTCP(t, srv)
	if _, err := pc.client.Write(testutil.Unhex(t, "00 01 00 00 00 06 01")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-pc.done:
		pc.done <- err
		if !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "request PDU incomplete") {
			t.Fatalf("ServeConn = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stalled client still connected after 10 s")
	}
}

// TestTCPServe: a real listener on 127.0.0.1:0, concurrent clients, cancellation
// closes the listener and every connection, and Serve can run again.
func TestTCPServe(t *testing.T) {
	srv, _, _ := newTestTCP(t, TCPConfig{}, false)
	for round := 0; round < 2; round++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ctx, ln) }()

		const clients = 8
		conns := make([]net.Conn, clients)
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		for i := range conns {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			conns[i] = c
			wg.Add(1)
			read := testutil.Unhex(t, "03 00 00 00 02")
			want := map[byte][]byte{1: testutil.Unhex(t, "03 04 02 37 00 00"), 2: testutil.Unhex(t, "03 04 02 60 00 00")}
			go func() {
				defer wg.Done()
				for j := 0; j < 20; j++ {
					unit := byte(1 + j%2)
					req := AppendMBAP(nil, uint16(i<<8|j), unit, read)
					if _, err := c.Write(req); err != nil {
						errs <- err
						return
					}
					got := make([]byte, 13)
					_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
					if _, err := io.ReadFull(c, got); err != nil {
						errs <- err
						return
					}
					if w := AppendMBAP(nil, uint16(i<<8|j), unit, want[unit]); !bytes.Equal(got, w) {
						errs <- fmt.Errorf("client got % X, want % X", got, w)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Serve: %v", err)
		}
		for _, c := range conns {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
				t.Errorf("connection still open after cancel: %v", err)
			}
		}
		// The listener is closed (a dial to its port proves nothing: another process
		// may have bound the freed port meanwhile).
		if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("listener still open after cancel: Accept returned %v", err)
		}
	}
	if st, _ := srv.Stats(1); st.Requests != 2*8*10 || st.Replies != st.Requests {
		t.Errorf("unit 1 stats %+v, want %d requests and replies", st, 2*8*10)
	}
}

// TestTCPServeClosedListener: a listener closed under Serve is an error.
func TestTCPServeClosedListener(t *testing.T) {
	srv, _, _ := newTestTCP(t, TCPConfig{}, true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_ = ln.Close()
	if err := srv.Serve(context.Background(), ln); err == nil || !strings.Contains(err.Error(), "listener tcp-test: accept") {
		t.Fatalf("Serve on a closed listener: %v", err)
	}
}

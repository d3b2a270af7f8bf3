package slave

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/firmware-sim/drive"
	"github.com/rollcall-edge/rollcall/internal/testutil"
)

// testBus is an RTU server with unit 1 (SIM-0001, enabled) and unit 2 (SIM-0002,
// switch on disabled).
type testBus struct {
	srv    *RTUServer
	d1, d2 *drive.Drive
}

func newTestBus(t testing.TB, baud int, turnaround time.Duration) *testBus {
	t.Helper()
	srv, err := NewRTUServer(RTUConfig{Bus: "test", Baud: baud, Turnaround: turnaround})
	if err != nil {
		t.Fatal(err)
	}
	b := &testBus{srv: srv, d1: newTestDrive(t, "SIM-0001", true), d2: newTestDrive(t, "SIM-0002", false)}
	if err := srv.AddUnit(1, b.d1); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddUnit(2, b.d2); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNewRTUServerErrors(t *testing.T) {
	if _, err := NewRTUServer(RTUConfig{Bus: "b", Baud: 0}); err == nil {
		t.Error("baud 0 accepted")
	}
	if _, err := NewRTUServer(RTUConfig{Bus: "b", Baud: 9600, Turnaround: -1}); err == nil {
		t.Error("negative turnaround accepted")
	}
	b := newTestBus(t, 9600, 0)
	for _, id := range []byte{0, 248, 1} {
		if err := b.srv.AddUnit(id, b.d1); err == nil {
			t.Errorf("AddUnit(%d) accepted", id)
		}
	}
	if err := b.srv.SetFault(3, Fault{Mode: FaultSilent}); !errors.Is(err, ErrUnknownUnit) {
		t.Errorf("SetFault on unknown unit: %v", err)
	}
	if err := b.srv.SetFault(1, Fault{Mode: FaultSlow}); err == nil {
		t.Error("slow without delay accepted")
	}
	if _, err := b.srv.Stats(9); !errors.Is(err, ErrUnknownUnit) {
		t.Errorf("Stats on unknown unit: %v", err)
	}
}

// TestRTUFrames: request bytes in → reply bytes out, CRC included. Expected CRCs were
// computed with an independent implementation.
func TestRTUFrames(t *testing.T) {
	tests := []struct {
		name    string
		faults  map[byte]Fault
		req     string
		reply   string // "" = no reply
		discard bool   // input discarded until silence
		rest    int    // bytes left buffered
	}{
		{name: "read statusword+error unit 1", req: "01 03 00 00 00 02 C4 0B", reply: "01 03 04 02 37 00 00 4A 45"},
		{name: "read statusword+error unit 2", req: "02 03 00 00 00 02 C4 38", reply: "02 03 04 02 60 00 00 C8 95"},
		{name: "FC04", req: "01 04 00 00 00 02 71 CB", reply: "01 04 04 02 37 00 00 4B F2"},
		{name: "serial", req: "01 03 00 64 00 08 05 D3", reply: "01 03 10 53 49 4D 2D 30 30 30 31 00 00 00 00 00 00 00 00 D6 EC"},
		{name: "FC06 echo", req: "02 06 00 02 00 06 A8 3B", reply: "02 06 00 02 00 06 A8 3B"},
		{name: "FC16", req: "01 10 00 0E 00 02 04 00 00 03 E8 72 9D", reply: "01 10 00 0E 00 02 20 0B"},
		{name: "FC16 byte count mismatch", req: "01 10 00 0E 00 02 03 00 00 03 3A 47", reply: "01 90 03 0C 01"},
		{name: "illegal address", req: "01 03 00 05 00 01 94 0B", reply: "01 83 02 C0 F1"},
		{name: "illegal value", req: "01 03 00 00 00 00 45 CA", reply: "01 83 03 01 31"},
		{name: "illegal function", req: "01 01 00 00 00 01 FD CA", reply: "01 81 01 81 90"},
		{name: "device ID extended: every object from 0x00", req: "01 2B 0E 03 00 71 17", reply: "01 2B 0E 03 83 00 00 07" +
			" 00 15" + hex.EncodeToString([]byte("rollcall firmware-sim")) + " 01 0A" + hex.EncodeToString([]byte("RC-SIM-402")) +
			" 02 03" + hex.EncodeToString([]byte("1.2")) + " 03 25" + hex.EncodeToString([]byte("https://rollcall.invalid/firmware-sim")) +
			" 04 15" + hex.EncodeToString([]byte("Simulated servo drive")) + " 05 0C" + hex.EncodeToString([]byte("SIM-402-400W")) +
			" 80 08" + hex.EncodeToString([]byte("SIM-0001")) + " BB DA"},
		{name: "device ID extended from 0x80", req: "01 2B 0E 03 80 70 B7", reply: "01 2B 0E 03 83 00 00 01 80 08 53 49 4D 2D 30 30 30 31 8B FF"},
		{name: "device ID unknown object", req: "01 2B 0E 04 06 F3 25", reply: "01 AB 02 DE F1"},
		{name: "device ID bad code", req: "01 2B 0E 05 00 72 B7", reply: "01 AB 03 1F 31"},
		{name: "unit not on the bus", req: "09 03 00 00 00 02 C5 43"},
		{name: "bad CRC", req: "01 03 00 00 00 02 0B C4", discard: true},
		{name: "incomplete", req: "01 03 00 00", rest: 4},
		{name: "FC16 header incomplete", req: "01 10 00 0E 00", rest: 5},
		{name: "two frames in one burst: the last wins", req: "01 03 00 00 00 02 C4 0B 02 03 00 00 00 02 C4 38", reply: "02 03 04 02 60 00 00 C8 95"},
		{name: "frame then garbage: answered, then discard", req: "01 03 00 00 00 02 C4 0B 02 03 00 00 00 02 00 00", reply: "01 03 04 02 37 00 00 4A 45", discard: true},
		{name: "over-long FC16", req: "01 10 00 00 00 7F FE", discard: true},
		{name: "unknown function code waits for silence", req: "01 41 00 01 90 0C", rest: 6},
		{name: "fault exception", faults: map[byte]Fault{1: {Mode: FaultException}}, req: "01 03 00 00 00 02 C4 0B", reply: "01 83 04 40 F3"},
		{name: "fault exception code 6", faults: map[byte]Fault{1: {Mode: FaultException, Code: 6}}, req: "01 03 00 00 00 02 C4 0B", reply: "01 83 06 C1 32"},
		{name: "fault garbage", faults: map[byte]Fault{1: {Mode: FaultGarbage}}, req: "01 03 00 00 00 02 C4 0B", reply: "01 03 04 02 37 00 00 B5 BA"},
		{name: "fault silent", faults: map[byte]Fault{1: {Mode: FaultSilent}}, req: "01 03 00 00 00 02 C4 0B"},
		{name: "fault silent other unit answers", faults: map[byte]Fault{1: {Mode: FaultSilent}}, req: "02 03 00 00 00 02 C4 38", reply: "02 03 04 02 60 00 00 C8 95"},
		{name: "fault device answers normally", faults: map[byte]Fault{1: {Mode: FaultDevice}}, req: "01 03 00 00 00 02 C4 0B", reply: "01 03 04 02 37 00 00 4A 45"},
	}
	rx := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newTestBus(t, 115200, time.Millisecond)
			for id, f := range tt.faults {
				if err := b.srv.SetFault(id, f); err != nil {
					t.Fatal(err)
				}
			}
			rest, p, discard := b.srv.consume(testutil.Unhex(t, tt.req), rx)
			if discard != tt.discard || len(rest) != tt.rest {
				t.Fatalf("discard %v rest %d, want %v %d", discard, len(rest), tt.discard, tt.rest)
			}
			if tt.reply == "" {
				if p != nil {
					t.Fatalf("unexpected reply % X", p.adu)
				}
				return
			}
			if p == nil {
				t.Fatalf("no reply, want %s", tt.reply)
			}
			if want := testutil.Unhex(t, tt.reply); !bytes.Equal(p.adu, want) {
				t.Fatalf("reply\n got % X\nwant % X", p.adu, want)
			}
			reqLen := len(testutil.Unhex(t, tt.req)) // single-frame cases only use the due time
			if tt.rest == 0 && !tt.discard && reqLen < 16 {
				if want := rx.Add(FirstByteDelay(reqLen, 115200, time.Millisecond)); !p.byteDue(0).Equal(want) {
					t.Errorf("first byte due %v after rx, want %v", p.byteDue(0).Sub(rx), want.Sub(rx))
				}
				if want := rx.Add(ReplyDelay(reqLen, len(p.adu), 115200, time.Millisecond)); !p.byteDue(len(p.adu) - 1).Equal(want) {
					t.Errorf("last byte due %v after rx, want %v", p.byteDue(len(p.adu)-1).Sub(rx), want.Sub(rx))
				}
			}
		})
	}
}

func TestRTUSlowDue(t *testing.T) {
	b := newTestBus(t, 9600, 3*time.Millisecond)
	if err := b.srv.SetFault(1, Fault{Mode: FaultSlow, Delay: 200 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	rx := time.Now()
	_, p, _ := b.srv.consume(testutil.Unhex(t, "01 03 00 00 00 02 C4 0B"), rx)
	// (8 + 9 bytes) × 11 bits / 9600 baud + 38.5 bits / 9600 baud + 3 ms + 200 ms
	want := lineTime(17*11+38.5, 9600) + 203*time.Millisecond
	if got := p.byteDue(len(p.adu) - 1).Sub(rx); got < want-time.Microsecond || got > want+time.Microsecond {
		t.Fatalf("slow reply due after %v, want %v", got, want)
	}
}

func TestRTUBroadcast(t *testing.T) {
	b := newTestBus(t, 115200, 0)
	if err := b.srv.SetFault(2, Fault{Mode: FaultException}); err != nil {
		t.Fatal(err)
	}
	// FC06 controlword = 0 (disable voltage) to all units: no reply; unit 2 in
	// exception mode executes nothing.
	b.d2.Enable()
	rest, p, discard := b.srv.consume(testutil.Unhex(t, "00 06 00 02 00 00 29 DB"), time.Now())
	if p != nil || discard || len(rest) != 0 {
		t.Fatalf("broadcast: reply %v discard %v rest %d", p, discard, len(rest))
	}
	if s := b.d1.State(); s != drive.SwitchOnDisabled {
		t.Errorf("unit 1 state %v after broadcast disable voltage", s)
	}
	if s := b.d2.State(); s != drive.OperationEnabled {
		t.Errorf("unit 2 (exception mode) state %v after broadcast", s)
	}
}

func TestRequestLength(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"", 0}, {"01", 0}, {"01 03", 8}, {"01 04", 8}, {"01 06", 8}, {"01 10 00 00 00", 0},
		{"01 10 00 00 00 01 02", 11}, {"01 2B", 0}, {"01 2B 0E", 7}, {"01 2B 0D", -1},
		{"01 41", -1}, {"01 11", 4}, {"01 17 00 00 00 01 00 00 00 01", 0}, {"01 17 00 00 00 01 00 00 00 01 02", 15},
	}
	for _, tt := range tests {
		if got := requestLength(testutil.Unhex(t, tt.in)); got != tt.want {
			t.Errorf("requestLength(%s) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// pipeBus serves a testBus on one end of a net.Pipe; the test is the master on the other.
type pipeBus struct {
	*testBus
	master net.Conn
	cancel context.CancelFunc
	done   chan error
}

func servePipe(t *testing.T, baud int, turnaround time.Duration) *pipeBus {
	t.Helper()
	b := newTestBus(t, baud, turnaround)
	slaveEnd, masterEnd := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	pb := &pipeBus{testBus: b, master: masterEnd, cancel: cancel, done: make(chan error, 1)}
	go func() { pb.done <- b.srv.Serve(ctx, slaveEnd) }()
	t.Cleanup(func() {
		cancel()
		if err := <-pb.done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		_ = masterEnd.Close()
		_ = slaveEnd.Close()
	})
	return pb
}

// transact writes req and reads n reply bytes (n = 0: expects silence for quiet).
func (pb *pipeBus) transact(t *testing.T, req []byte, n int, quiet time.Duration) ([]byte, time.Duration) {
	t.Helper()
	start := time.Now()
	if err := pb.master.SetWriteDeadline(start.Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := pb.master.Write(req); err != nil {
		t.Fatalf("write: %v", err)
	}
	if n == 0 {
		_ = pb.master.SetReadDeadline(time.Now().Add(quiet))
		var one [1]byte
		if k, err := pb.master.Read(one[:]); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("expected silence, got %d bytes (% X), err %v", k, one[:k], err)
		}
		return nil, 0
	}
	_ = pb.master.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, n)
	if _, err := io.ReadFull(pb.master, buf); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return buf, time.Since(start)
}

func TestRTUServeStream(t *testing.T) {
	const baud = 9600
	pb := servePipe(t, baud, 2*time.Millisecond)
	read2 := testutil.Unhex(t, "01 03 00 00 00 02 C4 0B")
	want2 := testutil.Unhex(t, "01 03 04 02 37 00 00 4A 45")

	got, rtt := pb.transact(t, read2, len(want2), 0)
	if !bytes.Equal(got, want2) {
		t.Fatalf("reply % X", got)
	}
	// Floor computed independently: (8 + 9) × 11 bits at 9600 baud + t3.5 (38.5 bits) + 2 ms.
	floor := lineTime(17*11+38.5, baud) + 2*time.Millisecond
	t.Logf("2-register read at %d baud: reply after %v, line-timing floor %v", baud, rtt, floor)
	if rtt < floor {
		t.Errorf("reply after %v, before the line-timing floor %v", rtt, floor)
	}

	// Garbage from the master: no reply; a request glued to it without silence is
	// part of the garbage; after silence the next request is answered.
	pb.transact(t, testutil.Unhex(t, "01 03 00 00 00 02 0B C4"), 0, 100*time.Millisecond)
	pb.transact(t, append(testutil.Unhex(t, "55 AA 55"), read2...), 0, 100*time.Millisecond)
	if got, _ := pb.transact(t, read2, len(want2), 0); !bytes.Equal(got, want2) {
		t.Fatalf("after garbage: reply % X", got)
	}

	// A unit that is not on the bus: ignored; the stream stays in sync.
	pb.transact(t, testutil.Unhex(t, "09 03 00 00 00 02 C5 43"), 0, 100*time.Millisecond)
	if got, _ := pb.transact(t, read2, len(want2), 0); !bytes.Equal(got, want2) {
		t.Fatalf("after absent unit: reply % X", got)
	}

	// A function code without a known length ends at the t3.5 silence.
	if got, _ := pb.transact(t, testutil.Unhex(t, "01 41 00 01 90 0C"), 5, 0); !bytes.Equal(got, testutil.Unhex(t, "01 C1 01 B0 50")) {
		t.Fatalf("unknown function: reply % X", got)
	}

	// The server counts a reply before it writes the reply's last byte, so a master
	// holding the whole reply sees it counted; this write returns once the server
	// reads again, so the request counter is final too.
	if _, err := pb.master.Write(testutil.Unhex(t, "09 03 00 00 00 02 C5 43")); err != nil {
		t.Fatal(err)
	}
	if st, _ := pb.srv.Stats(1); st.Requests != 4 || st.Replies != 4 {
		t.Errorf("unit 1 stats %+v, want 4 requests, 4 replies", st)
	}
}

func TestRTUServeFaults(t *testing.T) {
	pb := servePipe(t, 115200, 0)
	read1 := testutil.Unhex(t, "01 03 00 00 00 02 C4 0B")
	want1 := testutil.Unhex(t, "01 03 04 02 37 00 00 4A 45")
	read2 := testutil.Unhex(t, "02 03 00 00 00 02 C4 38")
	want2 := testutil.Unhex(t, "02 03 04 02 60 00 00 C8 95")

	set := func(f Fault) {
		t.Helper()
		if err := pb.srv.SetFault(1, f); err != nil {
			t.Fatal(err)
		}
	}
	set(Fault{Mode: FaultSilent})
	pb.transact(t, read1, 0, 200*time.Millisecond)
	if got, _ := pb.transact(t, read2, len(want2), 0); !bytes.Equal(got, want2) {
		t.Fatalf("unit 2 while unit 1 silent: % X", got)
	}

	set(Fault{Mode: FaultException})
	if got, _ := pb.transact(t, read1, 5, 0); !bytes.Equal(got, testutil.Unhex(t, "01 83 04 40 F3")) {
		t.Fatalf("exception mode: % X", got)
	}

	set(Fault{Mode: FaultGarbage})
	got, _ := pb.transact(t, read1, len(want1), 0)
	if CheckCRC(got) || !bytes.Equal(got[:len(got)-2], want1[:len(want1)-2]) {
		t.Fatalf("garbage mode: % X", got)
	}

	set(Fault{Mode: FaultSlow, Delay: 150 * time.Millisecond})
	got, rtt := pb.transact(t, read1, len(want1), 0)
	if !bytes.Equal(got, want1) || rtt < 150*time.Millisecond {
		t.Fatalf("slow mode: % X after %v", got, rtt)
	}

	// A master that gives up on the slow unit and polls another: the held reply is
	// dropped, the other unit answers, the slow reply never comes.
	set(Fault{Mode: FaultSlow, Delay: time.Second})
	if _, err := pb.master.Write(read1); err != nil {
		t.Fatal(err)
	}
	if got, _ := pb.transact(t, read2, len(want2), 0); !bytes.Equal(got, want2) {
		t.Fatalf("unit 2 after abandoning unit 1: % X", got)
	}
	pb.transact(t, nil, 0, 1100*time.Millisecond)

	set(Fault{})
	if got, _ := pb.transact(t, read1, len(want1), 0); !bytes.Equal(got, want1) {
		t.Fatalf("after clearing the fault: % X", got)
	}
}

// TestRTUServeCancel: Serve returns nil promptly on cancellation while idle, while
// holding a reply and while its write is blocked.
func TestRTUServeCancel(t *testing.T) {
	for _, name := range []string{"idle", "holding", "blocked write"} {
		t.Run(name, func(t *testing.T) {
			b := newTestBus(t, 9600, 0)
			slaveEnd, masterEnd := net.Pipe()
			defer masterEnd.Close()
			defer slaveEnd.Close()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- b.srv.Serve(ctx, slaveEnd) }()
			switch name {
			case "holding":
				_ = b.srv.SetFault(1, Fault{Mode: FaultSlow, Delay: time.Minute})
				if _, err := masterEnd.Write(testutil.Unhex(t, "01 03 00 00 00 02 C4 0B")); err != nil {
					t.Fatal(err)
				}
			case "blocked write":
				// Nobody reads the reply: the write blocks until cancellation.
				if _, err := masterEnd.Write(testutil.Unhex(t, "01 03 00 00 00 02 C4 0B")); err != nil {
					t.Fatal(err)
				}
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Serve: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Serve did not return after cancellation")
			}
		})
	}
}

// TestRTUServeWriteTimeout: a reply nobody reads times out, OnWriteTimeout runs, and
// the server keeps serving.
func TestRTUServeWriteTimeout(t *testing.T) {
	timedOut := make(chan struct{}, 1)
	srv, err := NewRTUServer(RTUConfig{Bus: "t", Baud: 115200, WriteTimeout: 50 * time.Millisecond,
		OnWriteTimeout: func() error {
			timedOut <- struct{}{}
			return errors.New("flush failed (logged only)")
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.AddUnit(1, newTestDrive(t, "SIM-0001", true)); err != nil {
		t.Fatal(err)
	}
	slaveEnd, masterEnd := net.Pipe()
	defer masterEnd.Close()
	defer slaveEnd.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, slaveEnd) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	// Nobody reads the reply to this request: its write times out.
	if _, err := masterEnd.Write(testutil.Unhex(t, "01 03 00 00 00 02 C4 0B")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-timedOut:
	case <-time.After(5 * time.Second):
		t.Fatal("OnWriteTimeout not called")
	}
	// The server keeps serving.
	_ = masterEnd.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := masterEnd.Write(testutil.Unhex(t, "01 03 00 00 00 01 84 0A")); err != nil {
		t.Fatal(err)
	}
	_ = masterEnd.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 7)
	if _, err := io.ReadFull(masterEnd, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, testutil.Unhex(t, "01 03 02 02 37 F8 F2")) {
		t.Fatalf("reply % X", got)
	}
}

// lineTime is bits/baud seconds, computed in floating point independently of WireTime.
func lineTime(bits float64, baud int) time.Duration {
	return time.Duration(bits / float64(baud) * float64(time.Second))
}

// stallPort is one end of a pipe whose read deadlines are ignored while stalled: the
// server's reader then wakes only when bytes arrive, as a reader starved of CPU on a
// busy machine does, long after the t3.5 silence it was waiting for.
type stallPort struct {
	net.Conn
	stalled atomic.Bool
}

func (p *stallPort) SetReadDeadline(t time.Time) error {
	if p.stalled.Load() {
		t = time.Time{}
	}
	return p.Conn.SetReadDeadline(t)
}

// TestRTUServeLateReader: after a bad frame the server discards input until a t3.5
// silence; a reader that wakes late, with the next request already there, must still
// see that the silence happened (the request came well after t3.5) and answer it.
func TestRTUServeLateReader(t *testing.T) {
	b := newTestBus(t, 115200, 0)
	slaveEnd, master := net.Pipe()
	port := &stallPort{Conn: slaveEnd}
	port.stalled.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.srv.Serve(ctx, port) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		_ = master.Close()
		_ = slaveEnd.Close()
	}()
	_ = master.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := master.Write(testutil.Unhex(t, "01 03 00 00 00 02 0B C4")); err != nil { // bad CRC
		t.Fatal(err)
	}
	// Line silence far beyond t3.5 (1.75 ms at 115200 baud) before the next request: a
	// property of the simulated line, not a synchronisation.
	time.Sleep(20 * InterFrameDelay(115200))
	port.stalled.Store(false)
	if _, err := master.Write(testutil.Unhex(t, "01 03 00 00 00 02 C4 0B")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 9)
	if _, err := io.ReadFull(master, got); err != nil {
		t.Fatalf("no reply to the request after the silence: %v", err)
	}
	if want := testutil.Unhex(t, "01 03 04 02 37 00 00 4A 45"); !bytes.Equal(got, want) {
		t.Fatalf("reply % X, want % X", got, want)
	}
}

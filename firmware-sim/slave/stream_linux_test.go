//go:build linux

package slave

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/internal/testutil"
)

// earlyTolerance is how much earlier than the line model a byte may be seen: the
// client's clock reading before its write and the server's after its read are of the
// same monotonic clock, so only rounding is allowed for.
const earlyTolerance = 50 * time.Microsecond

// timers are the wake-up timers the pseudo-terminal tests run with: the platform's
// (a timerfd) and the portable one.
var timers = map[string]func() (wakeTimer, error){
	"timerfd": newWakeTimer,
	"spin":    func() (wakeTimer, error) { return newSpinTimer(), nil },
}

// newPTYBus returns a server at baud with unit 1 a flatDevice, unit 2 a drive, served
// on a pseudo-terminal with timer mk, and its raw client.
func newPTYBus(t *testing.T, baud int, turnaround time.Duration, mk func() (wakeTimer, error)) (*RTUServer, *rawClient) {
	t.Helper()
	srv, err := NewRTUServer(RTUConfig{Bus: "pty", Baud: baud, Turnaround: turnaround})
	if err != nil {
		t.Fatal(err)
	}
	srv.newTimer = mk
	if err := srv.AddUnit(1, flatDevice{}); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddUnit(2, newTestDrive(t, "SIM-0002", true)); err != nil {
		t.Fatal(err)
	}
	return srv, ptyServer(t, srv)
}

// readRegs is the FC 03 request for qty registers from 0 of unit, and flatDevice's reply.
func readRegs(unit byte, qty int) (req, reply []byte) {
	req = AppendCRC([]byte{unit, FuncReadHoldingRegisters, 0, 0, 0, byte(qty)})
	reply = []byte{unit, FuncReadHoldingRegisters, byte(2 * qty)}
	for i := range qty {
		reply = append(reply, 0, byte(i))
	}
	return req, AppendCRC(reply)
}

// checkNotEarly fails when a reply byte arrived before the line model allows (times
// from just before the request's write; extra delays the first byte, FaultSlow).
func checkNotEarly(t *testing.T, a arrival, reqLen, baud int, turnaround, extra time.Duration) {
	t.Helper()
	for i, got := range a.times {
		if model := FirstByteDelay(reqLen, baud, turnaround) + extra + WireTime(i, baud); got < model-earlyTolerance {
			t.Fatalf("byte %d of %d arrived %v after the request, before the line model's %v", i, len(a.times), got, model)
		}
	}
}

// TestRTUStreamTiming: on a real pseudo-terminal, with both timers, a long reply
// streams in — every byte no earlier than its line-model instant, the first one well
// before the last is due — and short replies never come early. Upper latency bounds
// are the benchmark's business (BenchmarkRTUReplyTiming), not a busy machine's test.
func TestRTUStreamTiming(t *testing.T) {
	for name, mk := range timers {
		t.Run(name, func(t *testing.T) {
			const baud = 9600 // a 255-byte reply takes 292 ms on the line
			srv, c := newPTYBus(t, baud, time.Millisecond, mk)
			req, want := readRegs(1, 125)
			a, err := c.transact(req, len(want), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a.reply, want) {
				t.Fatalf("reply\n got % X\nwant % X", a.reply, want)
			}
			checkNotEarly(t, a, len(req), baud, time.Millisecond, 0)
			last := ReplyDelay(len(req), len(want), baud, time.Millisecond)
			t.Logf("255-byte reply at %d baud: first byte after %v (model %v), last after %v (model %v)",
				baud, a.first, FirstByteDelay(len(req), baud, time.Millisecond), a.last, last)
			if a.first >= last {
				t.Errorf("first byte after %v, not before the last byte was due (%v): not streamed", a.first, last)
			}

			// Short replies, back to back with the master's t3.5 gap, never early.
			req2, want2 := readRegs(1, 2)
			for range 10 {
				a, err := c.transact(req2, len(want2), 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(a.reply, want2) {
					t.Fatalf("reply % X, want % X", a.reply, want2)
				}
				checkNotEarly(t, a, len(req2), baud, time.Millisecond, 0)
			}

			// FaultSlow delays the first byte.
			if err := srv.SetFault(1, Fault{Mode: FaultSlow, Delay: 30 * time.Millisecond}); err != nil {
				t.Fatal(err)
			}
			a, err = c.transact(req2, len(want2), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a.reply, want2) {
				t.Fatalf("slow reply % X", a.reply)
			}
			checkNotEarly(t, a, len(req2), baud, time.Millisecond, 30*time.Millisecond)
		})
	}
}

// readUntilSuffix reads until what arrived ends with suffix, or fails after timeout.
func (c *rawClient) readUntilSuffix(t *testing.T, suffix []byte, timeout time.Duration) []byte {
	t.Helper()
	var got []byte
	buf := make([]byte, MaxADU)
	deadline := time.Now().Add(timeout)
	for !bytes.HasSuffix(got, suffix) {
		k, err := c.read(buf, deadline)
		if err != nil {
			t.Fatal(err)
		}
		if k == 0 {
			t.Fatalf("after %v: got % X, want it to end with % X", timeout, got, suffix)
		}
		got = append(got, buf[:k]...)
	}
	return got
}

// TestRTUStreamInterrupted: a master that sends another request while a long reply
// streams in gets the part already sent, then the new reply: the rest of the first is
// dropped and never counted.
func TestRTUStreamInterrupted(t *testing.T) {
	for name, mk := range timers {
		t.Run(name, func(t *testing.T) {
			const baud = 1200 // a 255-byte reply takes 2.3 s on the line
			srv, c := newPTYBus(t, baud, 0, mk)
			req1, want1 := readRegs(1, 125)
			req2 := testutil.Unhex(t, "02 03 00 00 00 02 C4 38")
			want2 := testutil.Unhex(t, "02 03 04 02 37 00 00 79 45")
			if err := c.write(req1); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, MaxADU)
			k, err := c.read(buf, time.Now().Add(5*time.Second))
			if err != nil || k == 0 {
				t.Fatalf("first bytes of the long reply: %d, %v", k, err)
			}
			if err := c.write(req2); err != nil {
				t.Fatal(err)
			}
			got := append(buf[:k:k], c.readUntilSuffix(t, want2, 5*time.Second)...)
			prefix := got[:len(got)-len(want2)]
			if len(prefix) >= len(want1) || !bytes.Equal(prefix, want1[:len(prefix)]) {
				t.Fatalf("before unit 2's reply: % X (%d bytes), want a proper prefix of unit 1's %d-byte reply", prefix, len(prefix), len(want1))
			}
			t.Logf("%d of %d bytes of the interrupted reply arrived", len(prefix), len(want1))
			if rest, err := c.silence(200 * time.Millisecond); err != nil || rest != nil {
				t.Fatalf("after unit 2's reply: % X, %v", rest, err)
			}
			if st, _ := srv.Stats(1); st.Requests != 1 || st.Replies != 0 {
				t.Errorf("unit 1 stats %+v, want 1 request, 0 replies", st)
			}
			if st, _ := srv.Stats(2); st.Replies != 1 {
				t.Errorf("unit 2 stats %+v, want 1 reply", st)
			}
		})
	}
}

// noisyBursts returns the bursts of FaultNoisy's first n draws for seed at rate 1:
// every reply is corrupted and followed by a burst.
func noisyBursts(seed uint64, n int) [][]byte {
	rng := rand.New(rand.NewPCG(seed, noisyStream))
	var out [][]byte
	for range n {
		rng.Float64() // corrupt
		rng.Float64() // burst
		b := make([]byte, 1+rng.IntN(4))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		out = append(out, b)
	}
	return out
}

// TestRTUNoisyLine: at rate 1 every reply has a bad CRC and the right length, and a
// burst of 1–4 seeded random bytes follows it on the line no earlier than t1.5 after
// its last byte; a master that sends before the burst is due never sees it. The
// simulator drops a burst it would write late (a starved machine), so that it cannot
// run into the master's next request: of several replies, at least one burst must be
// seen, each one seen must be the seeded one, and nothing else may follow.
func TestRTUNoisyLine(t *testing.T) {
	const baud = 9600
	const tries = 8
	rtu, cl := newPTYBus(t, baud, 0, newWakeTimer)
	if err := rtu.SetFault(2, Fault{Mode: FaultNoisy, Rate: 1, Seed: 7}); err != nil {
		t.Fatal(err)
	}
	bursts := noisyBursts(7, tries)
	req := testutil.Unhex(t, "02 03 00 00 00 02 C4 38")
	good := testutil.Unhex(t, "02 03 04 02 37 00 00 79 45")
	bad := append(bytes.Clone(good[:7]), good[7]^0xFF, good[8]^0xFF)
	seen := 0
	for i := range tries {
		a, err := cl.transact(req, len(bad), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.reply, bad) {
			t.Fatalf("reply %d: % X, want % X (bad CRC)", i, a.reply, bad)
		}
		checkNotEarly(t, a, len(req), baud, 0, 0)
		// The burst is due t1.5 + up to 4 characters (5.9 ms at 9600 baud) after the reply.
		b, err := cl.transact(nil, len(bursts[i]), 200*time.Millisecond)
		if err != nil && b.first == 0 && len(b.times) == 0 {
			continue // dropped: the simulator would have written it late
		}
		if err != nil {
			t.Fatalf("burst %d: %v", i, err)
		}
		if !bytes.Equal(b.reply, bursts[i]) {
			t.Fatalf("burst %d: % X, want % X", i, b.reply, bursts[i])
		}
		seen++
		// The burst's characters start t1.5 after the reply's last byte.
		noiseAt := ReplyDelay(len(req), len(bad), baud, 0) + InterCharDelay(baud) + WireTime(len(bursts[i]), baud)
		if at := b.t0.Add(b.first).Sub(a.t0); at < noiseAt-earlyTolerance {
			t.Fatalf("burst %d %v after the request, before %v", i, at, noiseAt)
		}
		if rest, err := cl.silence(50 * time.Millisecond); err != nil || rest != nil {
			t.Fatalf("after burst %d: % X, %v", i, rest, err)
		}
	}
	if seen == 0 {
		t.Fatalf("no noise burst in %d noisy replies", tries)
	}
}

// TestRTUNoisyBurstDropped: a master that sends its next request as soon as a noisy
// reply is complete (before the burst is due, t1.5 + a character = 92 ms at 300 baud)
// sees the next reply right after the first: the burst went with the first reply.
func TestRTUNoisyBurstDropped(t *testing.T) {
	const baud = 300
	srv, c := newPTYBus(t, baud, 0, newWakeTimer)
	if err := srv.SetFault(2, Fault{Mode: FaultNoisy, Rate: 1, Seed: 7}); err != nil {
		t.Fatal(err)
	}
	req := testutil.Unhex(t, "02 03 00 00 00 01 84 39")
	good := AppendCRC(testutil.Unhex(t, "02 03 02 02 37"))
	bad := append(bytes.Clone(good[:5]), good[5]^0xFF, good[6]^0xFF)
	if _, err := c.transact(req, len(bad), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	a, err := c.transact(req, len(bad), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.reply, bad) {
		t.Fatalf("second reply % X, want % X: the first reply's burst came in between", a.reply, bad)
	}
}

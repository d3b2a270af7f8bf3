package slave

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/internal/testutil"
)

// TestFirstByteDelay: the line model's first and last byte, computed independently
// in floating point.
func TestFirstByteDelay(t *testing.T) {
	// 8-byte request at 115200 baud, 1 ms turnaround: (8 + 1) × 11 bits + t3.5 1.75 ms + 1 ms.
	if got, want := FirstByteDelay(8, 115200, time.Millisecond), lineTime(9*11, 115200)+2750*time.Microsecond; got < want-time.Microsecond || got > want+time.Microsecond {
		t.Errorf("FirstByteDelay(8, 115200, 1ms) = %v, want %v", got, want)
	}
	// At 9600 baud t3.5 is 38.5 bits.
	if got, want := FirstByteDelay(8, 9600, 0), lineTime(9*11+38.5, 9600); got < want-time.Microsecond || got > want+time.Microsecond {
		t.Errorf("FirstByteDelay(8, 9600, 0) = %v, want %v", got, want)
	}
	if d := ReplyDelay(8, 1, 9600, 0) - FirstByteDelay(8, 9600, 0); d != 0 {
		t.Errorf("a 1-byte reply: last byte %v after the first", d)
	}
	for _, tt := range []struct {
		baud int
		want time.Duration
	}{{9600, lineTime(16.5, 9600)}, {19200, lineTime(16.5, 19200)}, {19201, 750 * time.Microsecond}, {115200, 750 * time.Microsecond}} {
		if got := InterCharDelay(tt.baud); got < tt.want-time.Nanosecond || got > tt.want+time.Nanosecond {
			t.Errorf("InterCharDelay(%d) = %v, want %v", tt.baud, got, tt.want)
		}
	}
}

// writtenChunk is one chunk the reply writer produced in TestReplyWriterSchedule.
type writtenChunk struct {
	at    time.Time
	c     chunk
	first int // index of its first reply byte
}

// TestReplyWriterSchedule drives the reply writer's scheduler with a simulated clock:
// no byte before its instant T_i, the first byte alone at T_0, chunks at least a
// period apart holding every byte due, the last at T_last, the noise burst t1.5 after
// it; also with a writer that wakes late.
func TestReplyWriterSchedule(t *testing.T) {
	for _, baud := range []int{300, 9600, 19200, 115200, 1_000_000} {
		for _, late := range []time.Duration{0, 300 * time.Microsecond, 3 * time.Millisecond} {
			b := newTestBus(t, baud, 0)
			u, _ := b.srv.lookup(1)
			w := &replyWriter{s: b.srv, timer: newSpinTimer(), period: max(WireTime(1, baud), chunkPeriod), t15: InterCharDelay(baud)}
			t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			adu := make([]byte, MaxADU)
			for i := range adu {
				adu[i] = byte(i)
			}
			noise := []byte{0xAA, 0x55, 0x0F}
			p := &pendingReply{adu: adu, start: t0, baud: baud, u: u, noise: noise}
			if err := w.submit(p); err != nil {
				t.Fatal(err)
			}
			var out []writtenChunk
			now, wakes := t0.Add(-time.Second), 0
			for {
				w.mu.Lock()
				c, at, precise := w.next(now)
				w.mu.Unlock()
				if c.data != nil {
					out = append(out, writtenChunk{at: now, c: c, first: sentBefore(out)})
					continue
				}
				if at.IsZero() {
					break
				}
				if !at.After(now) {
					t.Fatalf("baud %d: wait for %v at %v: not in the future", baud, at, now)
				}
				if wantPrecise := sentBefore(out) == 0 || at.Equal(p.byteDue(len(adu)-1)); precise != wantPrecise && sentBefore(out) < len(adu) {
					t.Errorf("baud %d: wait for byte %d at %v: precise %v", baud, sentBefore(out), at.Sub(t0), precise)
				}
				now = at
				if wakes++; wakes%2 == 1 {
					now = now.Add(late) // every other wake-up is late
				}
			}
			name := func() string { return fmt.Sprintf("baud %d, late %v", baud, late) }
			// The burst is dropped when the writer woke too late for it (maxNoiseLateness).
			noiseWritten := out[len(out)-1].c.noise
			if !noiseWritten {
				out = append(out, writtenChunk{}) // keep the indexes below: the reply ends at len(out)-2
			}
			if reply := sentBefore(out[:len(out)-1]); reply != len(adu) || late == 0 && !noiseWritten {
				t.Fatalf("%s: %d reply bytes written, noise written %v", name(), reply, noiseWritten)
			}
			if late == 0 && (!out[0].at.Equal(p.byteDue(0)) || len(out[0].c.data) != 1) {
				t.Errorf("%s: first chunk at %v with %d bytes, want byte 0 alone at %v", name(), out[0].at.Sub(t0), len(out[0].c.data), p.byteDue(0).Sub(t0))
			}
			var got []byte
			for i, wc := range out[:len(out)-1] {
				got = append(got, wc.c.data...)
				last := wc.first + len(wc.c.data) - 1
				if wc.at.Before(p.byteDue(last)) {
					t.Fatalf("%s: byte %d written at %v, due %v: early", name(), last, wc.at.Sub(t0), p.byteDue(last).Sub(t0))
				}
				if last+1 < len(adu) && !p.byteDue(last+1).After(wc.at) {
					t.Fatalf("%s: chunk at %v leaves due byte %d behind", name(), wc.at.Sub(t0), last+1)
				}
				if wc.c.final != (last == len(adu)-1) {
					t.Fatalf("%s: chunk %d final %v", name(), i, wc.c.final)
				}
				if late == 0 && i > 0 && i < len(out)-2 && wc.at.Sub(out[i-1].at) < w.period {
					t.Fatalf("%s: chunk %d only %v after the previous one (period %v)", name(), i, wc.at.Sub(out[i-1].at), w.period)
				}
			}
			if !bytes.Equal(got, adu) {
				t.Fatalf("%s: bytes written out of order", name())
			}
			lastReply := out[len(out)-2]
			if late == 0 && !lastReply.at.Equal(p.byteDue(len(adu)-1)) {
				t.Errorf("%s: last byte written at %v, want T_last %v", name(), lastReply.at.Sub(t0), p.byteDue(len(adu)-1).Sub(t0))
			}
			noiseAt := p.byteDue(len(adu) - 1).Add(InterCharDelay(baud) + WireTime(len(noise), baud))
			if nc := out[len(out)-1]; noiseWritten && (nc.at.Before(noiseAt) || nc.at.After(noiseAt.Add(maxNoiseLateness)) || !bytes.Equal(nc.c.data, noise)) {
				t.Errorf("%s: noise % X at %v, want % X at %v (+%v)", name(), nc.c.data, nc.at.Sub(t0), noise, noiseAt.Sub(t0), maxNoiseLateness)
			}
			if st, _ := b.srv.Stats(1); st.Replies != 1 {
				t.Errorf("%s: %d replies counted", name(), st.Replies)
			}
		}
	}
}

// sentBefore counts the bytes of the chunks so far.
func sentBefore(out []writtenChunk) int {
	n := 0
	for _, wc := range out {
		n += len(wc.c.data)
	}
	return n
}

// TestReplyWriterCancel: a cancelled reply is reported while bytes of it are unwritten,
// its noise burst goes with it, and it is not counted.
func TestReplyWriterCancel(t *testing.T) {
	b := newTestBus(t, 9600, 0)
	u, _ := b.srv.lookup(1)
	w := &replyWriter{s: b.srv, timer: newSpinTimer(), period: WireTime(1, 9600), t15: InterCharDelay(9600)}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := &pendingReply{adu: []byte{1, 2, 3, 4, 5}, start: t0, baud: 9600, u: u, noise: []byte{9}}
	if err := w.submit(p); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	c, _, _ := w.next(p.byteDue(1))
	w.mu.Unlock()
	if len(c.data) != 2 {
		t.Fatalf("chunk % X", c.data)
	}
	if got := w.cancel(); got != p {
		t.Fatal("cancel mid-reply did not report the reply")
	}
	w.mu.Lock()
	c, at, _ := w.next(p.byteDue(4).Add(time.Second))
	w.mu.Unlock()
	if c.data != nil || !at.IsZero() {
		t.Fatalf("after cancel: chunk % X, wait until %v", c.data, at)
	}
	// Complete, then cancel before the burst: nothing reported, the burst dropped.
	if err := w.submit(p); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	c, _, _ = w.next(p.byteDue(4))
	w.mu.Unlock()
	if !c.final || len(c.data) != 5 {
		t.Fatalf("whole reply: % X final %v", c.data, c.final)
	}
	if got := w.cancel(); got != nil {
		t.Fatal("cancel after the last byte reported a dropped reply")
	}
	w.mu.Lock()
	c, at, _ = w.next(p.byteDue(4).Add(time.Second))
	w.mu.Unlock()
	if c.data != nil || !at.IsZero() {
		t.Fatalf("burst after cancel: % X", c.data)
	}
	if st, _ := b.srv.Stats(1); st.Replies != 1 {
		t.Errorf("%d replies counted, want 1 (the completed one)", st.Replies)
	}
}

// TestWakeTimers: both wakeTimers wake at or after the instant set, a wake ends a long
// wait, a wake before a set is forgotten, and a zero set waits for a wake.
func TestWakeTimers(t *testing.T) {
	for name, mk := range map[string]func() (wakeTimer, error){
		"platform": newWakeTimer,
		"spin":     func() (wakeTimer, error) { return newSpinTimer(), nil },
	} {
		t.Run(name, func(t *testing.T) {
			tm, err := mk()
			if err != nil {
				t.Fatal(err)
			}
			defer tm.close()
			for _, d := range []time.Duration{-time.Millisecond, 0, 300 * time.Microsecond, 3 * time.Millisecond} {
				at := time.Now().Add(d)
				if err := tm.set(at); err != nil {
					t.Fatal(err)
				}
				if err := tm.wait(); err != nil {
					t.Fatal(err)
				}
				if now := time.Now(); now.Before(at) {
					t.Errorf("set(now%+v): woke %v early", d, at.Sub(now))
				}
			}
			// A wake before the set is forgotten.
			if err := tm.wake(); err != nil {
				t.Fatal(err)
			}
			at := time.Now().Add(2 * time.Millisecond)
			if err := tm.set(at); err != nil {
				t.Fatal(err)
			}
			if err := tm.wait(); err != nil {
				t.Fatal(err)
			}
			if now := time.Now(); now.Before(at) {
				t.Errorf("a wake before set ended the wait %v early", at.Sub(now))
			}
			// A wake ends a wait for an instant an hour away, and one for none.
			for _, at := range []time.Time{time.Now().Add(time.Hour), {}} {
				if err := tm.set(at); err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- tm.wait() }()
				if err := tm.wake(); err != nil {
					t.Fatal(err)
				}
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestFaultNoisyValidate(t *testing.T) {
	for _, f := range []Fault{{Mode: FaultNoisy}, {Mode: FaultNoisy, Rate: 0.05}, {Mode: FaultNoisy, Rate: 1, Seed: 7}} {
		if err := f.Validate(); err != nil {
			t.Errorf("%+v: %v", f, err)
		}
	}
	for _, rate := range []float64{-0.01, 1.5, math.NaN(), math.Inf(1)} {
		err := (Fault{Mode: FaultNoisy, Rate: rate}).Validate()
		if err == nil || !strings.Contains(err.Error(), "rate from 0 to 1") {
			t.Errorf("rate %v: %v", rate, err)
		}
	}
	if m, err := ParseFaultMode("noisy"); err != nil || m != FaultNoisy {
		t.Errorf("ParseFaultMode(noisy) = %q, %v", m, err)
	}
	if _, err := ParseFaultMode("loud"); err == nil || !strings.Contains(err.Error(), "noisy") {
		t.Errorf("ParseFaultMode(loud): %v", err)
	}
	if n := (Fault{Mode: FaultSilent, Rate: 0.5, Seed: 3}).Normalize(); n != (Fault{Mode: FaultSilent}) {
		t.Errorf("Normalize kept rate/seed: %+v", n)
	}
	if n := (Fault{Mode: FaultNoisy, Rate: 0.5, Seed: 3, Delay: time.Second, Code: 2}).Normalize(); n != (Fault{Mode: FaultNoisy, Rate: 0.5, Seed: 3}) {
		t.Errorf("Normalize = %+v", n)
	}
	for f, want := range map[Fault]string{
		{Mode: FaultNoisy, Rate: 0.05}:           "noisy(0.05)",
		{Mode: FaultNoisy, Rate: 1, Seed: 7}:     "noisy(1, seed 7)",
		{Mode: FaultNoisy}:                       "noisy(0)",
		{Mode: FaultSlow, Delay: time.Second}:    "slow(1s)",
		{Mode: FaultException}:                   "exception(4)",
		{Mode: FaultGarbage, Rate: 0.3, Seed: 1}: "garbage",
	} {
		if got := f.String(); got != want {
			t.Errorf("%+v.String() = %q, want %q", f, got, want)
		}
	}
}

// noisyOutcome is what FaultNoisy did to one reply.
type noisyOutcome struct {
	corrupt bool
	noise   string
}

// noisyRun sends n requests to unit 1 of a fresh bus with fault f through consume and
// returns what happened to each reply.
func noisyRun(t *testing.T, f Fault, n int) []noisyOutcome {
	t.Helper()
	b := newTestBus(t, 115200, 0)
	if err := b.srv.SetFault(1, f); err != nil {
		t.Fatal(err)
	}
	req := testutil.Unhex(t, "01 03 00 00 00 02 C4 0B")
	good := testutil.Unhex(t, "01 03 04 02 37 00 00 4A 45")
	out := make([]noisyOutcome, n)
	for i := range out {
		_, p, _ := b.srv.consume(append([]byte(nil), req...), time.Now())
		if p == nil || len(p.adu) != len(good) || !bytes.Equal(p.adu[:7], good[:7]) {
			t.Fatalf("reply %d: %+v", i, p)
		}
		out[i].corrupt = !CheckCRC(p.adu)
		if out[i].corrupt != !bytes.Equal(p.adu, good) {
			t.Fatalf("reply %d: % X", i, p.adu)
		}
		if len(p.noise) > 4 || p.noise != nil && len(p.noise) == 0 {
			t.Fatalf("reply %d: noise burst of %d bytes", i, len(p.noise))
		}
		out[i].noise = string(p.noise)
	}
	return out
}

func TestNoisyDraws(t *testing.T) {
	const n = 4000
	count := func(out []noisyOutcome) (corrupt, bursts int) {
		for _, o := range out {
			if o.corrupt {
				corrupt++
			}
			if o.noise != "" {
				bursts++
			}
		}
		return corrupt, bursts
	}
	// Rate 0.05 of 4000: 200 expected each, standard deviation 13.8; the seed makes it
	// reproducible, the bounds (±5.8σ) hold for any seed.
	a := noisyRun(t, Fault{Mode: FaultNoisy, Rate: 0.05, Seed: 42}, n)
	if c, b := count(a); c < 120 || c > 280 || b < 120 || b > 280 {
		t.Errorf("rate 0.05 of %d replies: %d corrupted, %d bursts; want about 200 each", n, c, b)
	}
	if b := noisyRun(t, Fault{Mode: FaultNoisy, Rate: 0.05, Seed: 42}, n); !slicesEqual(a, b) {
		t.Error("same seed, different outcomes")
	}
	if b := noisyRun(t, Fault{Mode: FaultNoisy, Rate: 0.05, Seed: 43}, n); slicesEqual(a, b) {
		t.Error("different seeds, same outcomes")
	}
	if c, b := count(noisyRun(t, Fault{Mode: FaultNoisy, Rate: 0}, 500)); c != 0 || b != 0 {
		t.Errorf("rate 0: %d corrupted, %d bursts", c, b)
	}
	all := noisyRun(t, Fault{Mode: FaultNoisy, Rate: 1}, 500)
	lengths := map[int]bool{}
	for _, o := range all {
		lengths[len(o.noise)] = true
	}
	if c, b := count(all); c != 500 || b != 500 || len(lengths) != 4 {
		t.Errorf("rate 1: %d corrupted, %d bursts, burst lengths %v", c, b, lengths)
	}
	// The draws are those of the documented generator: PCG(seed, noisyStream).
	rng := rand.New(rand.NewPCG(42, noisyStream))
	for i, o := range a[:50] {
		corrupt := rng.Float64() < 0.05
		var noise []byte
		if rng.Float64() < 0.05 {
			noise = make([]byte, 1+rng.IntN(4))
			for j := range noise {
				noise[j] = byte(rng.Uint32())
			}
		}
		if o.corrupt != corrupt || o.noise != string(noise) {
			t.Fatalf("reply %d: %+v, want corrupt %v noise % X", i, o, corrupt, noise)
		}
	}
}

func slicesEqual(a, b []noisyOutcome) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestTCPNoisy: on TCP, a noisy unit's replies carry GarbageProtocolID with
// probability rate; no bursts.
func TestTCPNoisy(t *testing.T) {
	srv, _, _ := newTestTCP(t, TCPConfig{}, false)
	req := testutil.Unhex(t, "00 07 00 00 00 06 01 03 00 00 00 02")
	good := testutil.Unhex(t, "00 07 00 00 00 07 01 03 04 02 37 00 00")
	bad := testutil.Unhex(t, "00 07 FF FF 00 07 01 03 04 02 37 00 00")
	pc := servePipeTCP(t, srv)
	for _, tt := range []struct {
		rate float64
		want []byte
	}{{1, bad}, {0, good}} {
		if err := srv.SetFault(1, Fault{Mode: FaultNoisy, Rate: tt.rate}); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if _, err := pc.client.Write(req); err != nil {
				t.Fatal(err)
			}
			expectReply(t, pc.client, tt.want)
		}
	}
}

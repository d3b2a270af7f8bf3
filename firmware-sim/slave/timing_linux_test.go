//go:build linux

package slave

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// flatDevice answers every register read with the register address and has no
// identification objects: any quantity up to 125 is readable, so a reply can be as
// long as an RTU frame gets (5 + 250 bytes).
type flatDevice struct{}

func (flatDevice) ReadRegisters(addr, qty uint16) ([]uint16, error) {
	out := make([]uint16, qty)
	for i := range out {
		out[i] = addr + uint16(i)
	}
	return out, nil
}
func (flatDevice) WriteRegisters(uint16, []uint16) error    { return nil }
func (flatDevice) IdentificationObject(byte) ([]byte, bool) { return nil, false }

// ptyServer serves srv on a fresh pseudo-terminal until the test ends and returns a
// raw client on its slave side.
func ptyServer(tb testing.TB, srv *RTUServer) *rawClient {
	tb.Helper()
	server, client := openPTY(tb)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, server) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Serve: %v", err)
		}
	})
	return newRawClient(tb, client)
}

// rawClient is a master on the slave side of a pseudo-terminal that waits for reply
// bytes in poll(2) on its own thread, not in the Go runtime's poller, which wakes a
// reader up to milliseconds late now and then: so what it measures is the server's
// timing, within the kernel's wake-up latency (tens of µs).
type rawClient struct {
	fd int // a blocking descriptor of its own, on the terminal's slave side
}

// newRawClient opens the terminal f (raw already) again as a blocking descriptor,
// closed at the end of the test.
func newRawClient(tb testing.TB, f *os.File) *rawClient {
	tb.Helper()
	fd, err := unix.Open(f.Name(), unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		tb.Fatalf("open %s: %v", f.Name(), err)
	}
	tb.Cleanup(func() { _ = unix.Close(fd) })
	return &rawClient{fd: fd}
}

// arrival is when a transaction's reply bytes arrived, as offsets from just before the
// request's write.
type arrival struct {
	t0          time.Time // just before the request's write
	first, last time.Duration
	reply       []byte
	times       []time.Duration // arrival of each reply byte
}

// write writes b whole.
func (c *rawClient) write(b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(c.fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		b = b[n:]
	}
	return nil
}

// read reads what has arrived, up to len(b) bytes, waiting at most until deadline;
// it returns 0 bytes and no error when the deadline passed.
func (c *rawClient) read(b []byte, deadline time.Time) (int, error) {
	for {
		d := time.Until(deadline)
		if d <= 0 {
			return 0, nil
		}
		ts := unix.NsecToTimespec(int64(d))
		fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}}
		n, err := unix.Ppoll(fds, &ts, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("ppoll: %w", err)
		}
		if n == 0 {
			continue // re-check the deadline
		}
		k, err := unix.Read(c.fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read: %w", err)
		}
		return k, nil
	}
}

// transact writes req and reads n reply bytes within timeout, noting when each
// arrived, from just before the write: the server cannot have read the request
// earlier, so a byte before the model is early for sure, and the write's own time
// counts as lateness.
func (c *rawClient) transact(req []byte, n int, timeout time.Duration) (arrival, error) {
	a := arrival{reply: make([]byte, n), times: make([]time.Duration, 0, n)}
	a.t0 = time.Now()
	deadline := a.t0.Add(timeout)
	if err := c.write(req); err != nil {
		return a, err
	}
	for have := 0; have < n; {
		k, err := c.read(a.reply[have:], deadline)
		now := time.Since(a.t0)
		if err != nil {
			return a, err
		}
		if k == 0 {
			return a, fmt.Errorf("%d of %d reply bytes after %v: % X", have, n, timeout, a.reply[:have])
		}
		for range k {
			a.times = append(a.times, now)
		}
		have += k
	}
	a.first, a.last = a.times[0], a.times[n-1]
	return a, nil
}

// silence reads for quiet and returns what arrived meanwhile (nil: nothing).
func (c *rawClient) silence(quiet time.Duration) ([]byte, error) {
	var got []byte
	buf := make([]byte, 64)
	deadline := time.Now().Add(quiet)
	for {
		k, err := c.read(buf, deadline)
		if err != nil || k == 0 {
			return got, err
		}
		got = append(got, buf[:k]...)
	}
}

// percentile returns the p-th percentile (0–100) of sorted durations.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, len(sorted)*p/100)]
}

// BenchmarkRTUReplyTiming measures how late the RTU server's replies reach a raw
// master (rawClient) on a real pseudo-terminal, against the line model: the first
// reply byte against FirstByteDelay, the last against ReplyDelay, both from just
// before the request's write — so the write, the pseudo-terminal's delivery both ways
// and the server's and the master's wake-ups count as lateness too. The master idles
// 2 ms between transactions, as a poll cycle does. Metrics in µs: late-p50-µs and
// late-p99-µs (first byte), late-min-µs (the smallest; negative would be early),
// last-late-p50-µs and last-late-p99-µs (last byte).
//
//	go test -run '^$' -bench BenchmarkRTUReplyTiming -benchtime 2000x ./firmware-sim/slave/
func BenchmarkRTUReplyTiming(b *testing.B) {
	cases := []struct {
		name       string
		baud       int
		turnaround time.Duration
		qty        int // registers read: reply = 5 + 2·qty bytes
	}{
		{"115200/2regs", 115200, time.Millisecond, 2},
		{"115200/125regs", 115200, time.Millisecond, 125},
		{"9600/2regs", 9600, time.Millisecond, 2},
		{"19200/125regs", 19200, 0, 125},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			srv, err := NewRTUServer(RTUConfig{Bus: "bench", Baud: tc.baud, Turnaround: tc.turnaround})
			if err != nil {
				b.Fatal(err)
			}
			if err := srv.AddUnit(1, flatDevice{}); err != nil {
				b.Fatal(err)
			}
			c := ptyServer(b, srv)
			req := AppendCRC([]byte{1, FuncReadHoldingRegisters, 0, 0, 0, byte(tc.qty)})
			n := 5 + 2*tc.qty
			firstModel := FirstByteDelay(len(req), tc.baud, tc.turnaround)
			lastModel := ReplyDelay(len(req), n, tc.baud, tc.turnaround)
			firsts := make([]time.Duration, 0, b.N)
			lasts := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				a, err := c.transact(req, n, 5*time.Second)
				if err != nil {
					b.Fatal(err)
				}
				if !CheckCRC(a.reply) {
					b.Fatalf("bad reply % X", a.reply)
				}
				firsts = append(firsts, a.first-firstModel)
				lasts = append(lasts, a.last-lastModel)
				time.Sleep(2 * time.Millisecond) // the master's idle time between polls
			}
			b.StopTimer()
			slices.Sort(firsts)
			slices.Sort(lasts)
			us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
			b.ReportMetric(us(percentile(firsts, 50)), "late-p50-µs")
			b.ReportMetric(us(percentile(firsts, 99)), "late-p99-µs")
			b.ReportMetric(us(firsts[0]), "late-min-µs")
			b.ReportMetric(us(percentile(lasts, 50)), "last-late-p50-µs")
			b.ReportMetric(us(percentile(lasts, 99)), "last-late-p99-µs")
		})
	}
}

package gateway

import (
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/protocols/modbus"
)

// TestTurnaroundsWindow: the estimate is the second longest of the latest
// turnaroundWindow samples plus the spread of all but the longest: one outlier changes
// nothing, two widen it, and it falls back once the slow samples have left the window.
func TestTurnaroundsWindow(t *testing.T) {
	const ms = time.Millisecond
	var w turnarounds
	if _, ok := w.estimate(); ok {
		t.Fatal("an empty window has an estimate")
	}
	w.add(3 * ms)
	if d, ok := w.estimate(); !ok || d != 3*ms {
		t.Fatalf("estimate of one sample = %v, %v; want 3ms", d, ok)
	}
	w.add(2 * ms)
	w.add(ms)
	if d, _ := w.estimate(); d != 3*ms {
		t.Fatalf("estimate of 3, 2, 1 ms = %v, want 2ms + 1ms spread", d)
	}
	w.add(40 * ms) // an outlier
	if d, _ := w.estimate(); d != 5*ms {
		t.Fatalf("estimate with one outlier = %v, want 3ms + 2ms spread", d)
	}
	w.add(-ms) // clamped to 0
	if d, _ := w.estimate(); d != 6*ms {
		t.Fatalf("estimate = %v, want 3ms + 3ms spread", d)
	}
	for range turnaroundWindow {
		w.add(ms)
	}
	if d, _ := w.estimate(); d != ms {
		t.Errorf("estimate = %v after the other samples left the window, want 1ms", d)
	}
}

// TestFirstByteTimeout: wire(request) + t3.5 + turnaround + one character + margin,
// capped by the ceiling; and the observed turnaround inverts it.
func TestFirstByteTimeout(t *testing.T) {
	const baud = 115200
	want := modbus.WireTime(8, baud) + modbus.T35(baud) + time.Millisecond + modbus.CharTime(baud) + adaptiveMargin
	if got := firstByteTimeout(time.Millisecond, 8, baud, time.Second); got != want {
		t.Errorf("firstByteTimeout = %v, want %v", got, want)
	}
	if got := firstByteTimeout(time.Second, 8, baud, 50*time.Millisecond); got != 50*time.Millisecond {
		t.Errorf("firstByteTimeout over the ceiling = %v, want 50ms", got)
	}
	latency := want - adaptiveMargin
	if got := observedTurnaround(latency, 8, baud); got != time.Millisecond {
		t.Errorf("observedTurnaround(%v) = %v, want 1ms", latency, got)
	}
	if got := observedTurnaround(time.Microsecond, 8, baud); got != 0 {
		t.Errorf("observedTurnaround of a latency below the wire times = %v, want 0", got)
	}
}

// TestLinkStatsHysteresis: degraded from linkWarnErrors garbled replies among the
// latest linkWindow, until linkWindow intact replies in a row; quality is the intact
// share.
func TestLinkStatsHysteresis(t *testing.T) {
	var l linkStats
	if l.quality() != 1 || l.degraded {
		t.Fatalf("fresh link: quality %v, degraded %v", l.quality(), l.degraded)
	}
	l.add(true)
	for range 9 {
		l.add(false)
	}
	if l.degraded || l.quality() != 0.9 {
		t.Fatalf("one garbled of 10: degraded %v, quality %v; want not degraded, 0.9", l.degraded, l.quality())
	}
	l.add(true)
	if !l.degraded {
		t.Fatal("two garbled replies in the window: not degraded")
	}
	for i := range linkWindow - 1 {
		l.add(false)
		if !l.degraded {
			t.Fatalf("degraded cleared after %d intact replies, before the window was clean", i+1)
		}
	}
	l.add(false)
	if l.degraded || l.quality() != 1 {
		t.Errorf("after %d intact replies: degraded %v, quality %v", linkWindow, l.degraded, l.quality())
	}
}

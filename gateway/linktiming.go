package gateway

import (
	"math/bits"
	"time"

	"github.com/rollcall-edge/rollcall/protocols/modbus"
)

// Adaptive reply timeouts on an RTU bus (bus key adaptive_timeout): each request waits
// for the first byte of its reply no longer than the device needs, so a dead device costs
// a few milliseconds per failed poll instead of the bus's whole timeout.
const (
	// turnaroundWindow is how many of a device's latest replies its turnaround estimate
	// covers: the estimate is the second longest of them (about the 97th percentile)
	// plus their spread without the longest, so it follows a device (or a host) that got slower after two
	// slow replies and one that got faster within this many polls, one outlier does not
	// stretch every timeout for the next 32 polls, and a device whose reply times vary
	// widely (or a loaded host running a simulated device) gets room in proportion.
	turnaroundWindow = 32
	// adaptiveMargin is added to the adaptive timeout beyond the device's estimated
	// turnaround: scheduling jitter of the gateway's host and of the device.
	adaptiveMargin = 2 * time.Millisecond
)

// turnarounds is the ring of a device's latest observed turnarounds (≥ 0): first reply
// byte latency minus the request's wire time, t3.5 and one character time. The ring
// (256 bytes) is allocated by the first add: only RTU devices and masters record
// turnarounds, and a Modbus TCP device, of which a gateway may poll thousands, carries
// two empty ones.
type turnarounds struct {
	ring *[turnaroundWindow]time.Duration
	n    int // samples held (≤ turnaroundWindow)
	pos  int // next slot
}

// add records one turnaround.
func (t *turnarounds) add(d time.Duration) {
	if t.ring == nil {
		t.ring = new([turnaroundWindow]time.Duration)
	}
	t.ring[t.pos] = max(d, 0)
	t.pos = (t.pos + 1) % turnaroundWindow
	t.n = min(t.n+1, turnaroundWindow)
}

// estimate is the second longest turnaround held (the only one, with one sample) plus
// the spread of those held but the longest (second longest − shortest): a device, or a
// host, whose reply times vary widely gets a wider allowance than a steady one, and one
// outlier changes nothing. ok is false before the first sample.
func (t *turnarounds) estimate() (d time.Duration, ok bool) {
	if t.n == 0 {
		return 0, false
	}
	first, second, least := t.ring[0], time.Duration(0), t.ring[0]
	for _, v := range t.ring[1:t.n] {
		switch {
		case v > first:
			first, second = v, first
		case v > second:
			second = v
		}
		least = min(least, v)
	}
	if t.n == 1 {
		second = first
	}
	return 2*second - least, true
}

// observedTurnaround is the turnaround of a device whose first reply byte came latency
// after the request of reqLen bytes was sent at baud: latency − wire(request) − t3.5 −
// one character (Modbus over Serial Line V1.02 §2.5.1.1), at least 0. The request's wire
// time is subtracted because a pseudo-terminal drains at once while its simulated line
// does not; on a physical line the request has left when the latency starts, and the
// estimate is low by that much, which the timeout adds back.
func observedTurnaround(latency time.Duration, reqLen, baud int) time.Duration {
	return max(latency-modbus.WireTime(reqLen, baud)-modbus.T35(baud)-modbus.CharTime(baud), 0)
}

// firstByteTimeout is the adaptive reply timeout of a request of reqLen bytes at baud to a
// device with turnaround ta: wire(request) + t3.5 + ta + one character + adaptiveMargin,
// the time by which the reply's first byte is due (Modbus over Serial Line V1.02
// §2.5.1.1 for t3.5), at most ceiling. The rest of the reply is then bounded by its own
// wire time and the frame gap (modbus.RTU).
func firstByteTimeout(ta time.Duration, reqLen, baud int, ceiling time.Duration) time.Duration {
	t := modbus.WireTime(reqLen, baud) + modbus.T35(baud) + ta + modbus.CharTime(baud) + adaptiveMargin
	return min(t, ceiling)
}

// Link quality of an RTU device: the share of its latest replies that arrived intact.
// A garbled reply (bad CRC, wrong length, another unit) that arrives on time is evidence
// of a live device on a noisy line, not of a dead one: the poll is retried at once, and
// only a failed retry counts as a missed poll. The device is degraded (warning) while
// linkWarnErrors or more of its latest linkWindow replies were garbled, until
// linkWindow replies in a row arrive intact.
const (
	linkWindow     = 64
	linkWarnErrors = 2
)

// linkStats is a device's record of its latest linkWindow replies: bit i of garbled is
// set when the i-th latest reply was garbled.
type linkStats struct {
	garbled  uint64
	n        int  // replies recorded (≤ linkWindow)
	degraded bool // warning for link quality (with hysteresis)
}

// add records one reply (garbled or intact) and updates degraded.
func (l *linkStats) add(garbled bool) {
	l.garbled <<= 1
	if garbled {
		l.garbled |= 1
	}
	l.n = min(l.n+1, linkWindow)
	switch errs := bits.OnesCount64(l.garbled); {
	case errs >= linkWarnErrors:
		l.degraded = true
	case errs == 0:
		l.degraded = false
	}
}

// quality is the share of intact replies among the latest recorded (0–1); 1 before any.
func (l *linkStats) quality() float64 {
	if l.n == 0 {
		return 1
	}
	return 1 - float64(bits.OnesCount64(l.garbled))/float64(l.n)
}

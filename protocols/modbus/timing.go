package modbus

import "time"

// Line timing of Modbus RTU (Modbus over Serial Line Specification and Implementation
// Guide V1.02 §2.5.1.1). An RTU character is 11 bits on the wire: 1 start bit, 8 data
// bits, 1 parity bit and 1 stop bit (or no parity and 2 stop bits). The spec fixes the
// inter-character (t1.5) and inter-frame (t3.5) timeouts for baud rates above 19200.

// fastBaud is the baud rate above which t1.5 and t3.5 are fixed (§2.5.1.1).
const fastBaud = 19200

// Fixed timer values above 19200 baud (§2.5.1.1).
const (
	fixedT15 = 750 * time.Microsecond
	fixedT35 = 1750 * time.Microsecond
)

// bitsPerChar is the length of one RTU character in bits (§2.5.1: 1 start, 8 data,
// 1 parity or second stop, 1 stop).
const bitsPerChar = 11

// CharTime is the time one 11-bit RTU character takes on the wire at baud bits/s
// (Modbus over Serial Line V1.02 §2.5.1). It returns 0 for baud <= 0 (unknown rate).
func CharTime(baud int) time.Duration {
	if baud <= 0 {
		return 0
	}
	return time.Duration(bitsPerChar * int64(time.Second) / int64(baud))
}

// T35 is the RTU inter-frame silence t3.5 at baud bits/s: 3.5 character times, fixed at
// 1750 µs above 19200 baud (Modbus over Serial Line V1.02 §2.5.1.1). A frame ends after
// t3.5 of silence, and a master must leave at least t3.5 between frames. baud <= 0 is
// treated as a fast (fixed-timer) line.
func T35(baud int) time.Duration {
	if baud <= 0 || baud > fastBaud {
		return fixedT35
	}
	return time.Duration(7 * bitsPerChar * int64(time.Second) / (2 * int64(baud)))
}

// T15 is the RTU inter-character timeout t1.5 at baud bits/s: 1.5 character times, fixed
// at 750 µs above 19200 baud (Modbus over Serial Line V1.02 §2.5.1.1). A gap longer than
// t1.5 inside a frame makes the frame incomplete. baud <= 0 is treated as a fast line.
func T15(baud int) time.Duration {
	if baud <= 0 || baud > fastBaud {
		return fixedT15
	}
	return time.Duration(3 * bitsPerChar * int64(time.Second) / (2 * int64(baud)))
}

// WireTime is how long nbytes RTU characters take on the wire at baud bits/s
// (nbytes × CharTime(baud)); 0 for nbytes <= 0 or baud <= 0.
func WireTime(nbytes, baud int) time.Duration {
	if nbytes <= 0 || baud <= 0 {
		return 0
	}
	return time.Duration(int64(nbytes) * bitsPerChar * int64(time.Second) / int64(baud))
}

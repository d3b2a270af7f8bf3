package slave

import "time"

// CRC16 returns the Modbus RTU CRC-16 of data: polynomial 0xA001 (reflected 0x8005),
// initial value 0xFFFF, no final XOR (Modbus over Serial Line V1.02 §6.2.2). On the
// wire the low byte goes first.
func CRC16(data []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, b := range data {
		crc ^= uint16(b)
		for i := 0; i < 8; i++ {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

// AppendCRC appends the CRC-16 of frame to frame, low byte first, and returns the
// extended slice: an RTU ADU from address + PDU.
func AppendCRC(frame []byte) []byte {
	c := CRC16(frame)
	return append(frame, byte(c), byte(c>>8))
}

// CheckCRC reports whether adu (address, PDU, CRC) is at least 4 bytes long and ends
// with the correct CRC-16, low byte first.
func CheckCRC(adu []byte) bool {
	if len(adu) < 4 {
		return false
	}
	n := len(adu) - 2
	c := CRC16(adu[:n])
	return adu[n] == byte(c) && adu[n+1] == byte(c>>8)
}

// BitsPerChar is the length of one RTU character on the line: start bit, 8 data bits,
// parity or a second stop bit, stop bit (Modbus over Serial Line V1.02 §2.5.1).
const BitsPerChar = 11

// MaxADU is the largest RTU frame in bytes: address + 253-byte PDU + CRC (V1.02 §2.5.1).
const MaxADU = 256

// WireTime returns how long n characters take on the line at baud bits/s
// (n × 11 bits / baud). baud must be > 0.
func WireTime(n, baud int) time.Duration {
	return time.Duration(int64(n) * BitsPerChar * int64(time.Second) / int64(baud))
}

// InterFrameDelay returns t3.5, the silent interval that delimits RTU frames: 3.5
// character times, fixed at 1.75 ms above 19200 baud (Modbus over Serial Line V1.02
// §2.5.1.1). baud must be > 0.
func InterFrameDelay(baud int) time.Duration {
	if baud > 19200 {
		return 1750 * time.Microsecond
	}
	return time.Duration(int64(7*BitsPerChar) * int64(time.Second) / int64(2*baud))
}

// InterCharDelay returns t1.5, the longest silence allowed between two characters of
// one RTU frame: 1.5 character times, fixed at 750 µs above 19200 baud (Modbus over
// Serial Line V1.02 §2.5.1.1). baud must be > 0.
func InterCharDelay(baud int) time.Duration {
	if baud > 19200 {
		return 750 * time.Microsecond
	}
	return time.Duration(int64(3*BitsPerChar) * int64(time.Second) / int64(2*baud))
}

// Line model of the RTU server (RTUServer.Serve). A request completely received at rx
// (when its last bytes were read from the port) is taken to have been on the line for
// its wire time after rx; the slave detects its end after t3.5 of silence, processes it
// for the turnaround, and then sends the reply character by character. Byte i
// (0-based) of the reply is complete at the master at
//
//	T_i = rx + WireTime(reqLen) + InterFrameDelay + turnaround + WireTime(i+1)
//
// (Modbus over Serial Line V1.02 §2.5.1: 11-bit characters; §2.5.1.1: t3.5). The
// server delivers each byte no earlier than T_i.

// FirstByteDelay returns how long after a request was completely received the first
// byte of the reply reaches the master on a physical line (T_0 − rx of the line model):
// request wire time + t3.5 (the slave detects the end of the request) + turnaround
// (processing) + one character time. reqLen is the request ADU length in bytes; baud in
// bits/s, > 0. A master whose reply timeout ends at the first reply character (as most
// do) can use a timeout just above this, whatever the reply's length.
func FirstByteDelay(reqLen, baud int, turnaround time.Duration) time.Duration {
	return WireTime(reqLen, baud) + InterFrameDelay(baud) + turnaround + WireTime(1, baud)
}

// ReplyDelay returns how long after a request was completely received the LAST byte of
// the reply reaches the master on a physical line (T_last − rx of the line model):
// request wire time + t3.5 (the slave detects the end of the request) + turnaround
// (processing) + reply wire time. reqLen and replyLen are ADU lengths in bytes; baud in
// bits/s, > 0. The first byte arrives FirstByteDelay after rx; the reply then streams
// in at one character time per byte.
func ReplyDelay(reqLen, replyLen, baud int, turnaround time.Duration) time.Duration {
	return WireTime(reqLen, baud) + InterFrameDelay(baud) + turnaround + WireTime(replyLen, baud)
}

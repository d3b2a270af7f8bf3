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

// ReplyDelay returns how long after a request was completely received the last byte
// of the reply reaches the master on a physical line: request wire time + t3.5 (the
// slave detects the end of the request) + turnaround (processing) + reply wire time.
// reqLen and replyLen are ADU lengths in bytes; baud in bits/s, > 0.
func ReplyDelay(reqLen, replyLen, baud int, turnaround time.Duration) time.Duration {
	return WireTime(reqLen, baud) + InterFrameDelay(baud) + turnaround + WireTime(replyLen, baud)
}

package modbus

import (
	"testing"
	"time"
)

func TestLineTiming(t *testing.T) {
	tests := []struct {
		name string
		got  time.Duration
		want time.Duration
	}{
		{"CharTime 9600", CharTime(9600), 1145833 * time.Nanosecond}, // 11/9600 s
		{"CharTime 115200", CharTime(115200), 95486 * time.Nanosecond},
		{"CharTime 0", CharTime(0), 0},
		{"T35 9600", T35(9600), 4010416 * time.Nanosecond}, // 38.5/9600 s
		{"T35 19200", T35(19200), 2005208 * time.Nanosecond},
		{"T35 19201 fixed", T35(19201), 1750 * time.Microsecond},
		{"T35 115200 fixed", T35(115200), 1750 * time.Microsecond},
		{"T35 unknown baud", T35(0), 1750 * time.Microsecond},
		{"T15 9600", T15(9600), 1718750 * time.Nanosecond}, // 16.5/9600 s
		{"T15 19200", T15(19200), 859375 * time.Nanosecond},
		{"T15 38400 fixed", T15(38400), 750 * time.Microsecond},
		{"WireTime 8 @ 9600", WireTime(8, 9600), 9166666 * time.Nanosecond},
		{"WireTime 256 @ 115200", WireTime(256, 115200), 24444444 * time.Nanosecond},
		{"WireTime 0 bytes", WireTime(0, 9600), 0},
		{"WireTime no baud", WireTime(8, 0), 0},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %v (%d ns), want %v", tt.name, tt.got, int64(tt.got), tt.want)
		}
	}
}

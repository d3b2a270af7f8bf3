package modbus

import "testing"

// TestFrameGapMargin: USB adapters get the burst margin, pseudo-terminals the shortest,
// and a path that cannot be told apart the safe (USB) one.
func TestFrameGapMargin(t *testing.T) {
	for _, c := range []struct {
		path string
		want string
	}{
		{"/dev/ttyUSB0", "usb"},
		{"/dev/ttyACM3", "usb"},
		{"/dev/pts/7", "pty"},
		{"/tmp/not-a-tty", "usb"},
		{"/dev/ttyNOSUCH9", "usb"},
	} {
		got := "local"
		switch frameGapMargin(c.path) {
		case DefaultFrameGapMargin:
			got = "usb"
		case PTYFrameGapMargin:
			got = "pty"
		}
		if got != c.want {
			t.Errorf("frameGapMargin(%s): %s margin, want %s", c.path, got, c.want)
		}
	}
}

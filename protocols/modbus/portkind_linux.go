package modbus

import (
	"os"
	"path/filepath"
	"strings"
	"time"
)

// frameGapMargin is the margin over t3.5 of the default frame gap of the serial port at
// path (symlinks already resolved): PTYFrameGapMargin for a pseudo-terminal (/dev/pts/N),
// DefaultFrameGapMargin for a USB serial adapter, LocalFrameGapMargin for an on-board
// UART. A tty is a USB adapter when its name says so (ttyUSB*, ttyACM*) or when
// /sys/class/tty/<name>/device is a device on the USB bus (its subsystem, or that of a
// parent, is usb or usb-serial); a tty sysfs knows that is not on USB (ttyS*, ttyAMA*,
// ttymxc*) is on-board. A path outside /dev, or a name sysfs does not know, gets the USB
// margin: the safe assumption when nothing can be told.
func frameGapMargin(path string) time.Duration {
	name := filepath.Base(path)
	switch {
	case strings.HasPrefix(name, "ttyUSB"), strings.HasPrefix(name, "ttyACM"):
		return DefaultFrameGapMargin
	case strings.HasPrefix(path, "/dev/pts/"):
		return PTYFrameGapMargin
	case !strings.HasPrefix(path, "/dev/"):
		return DefaultFrameGapMargin
	}
	dev, err := filepath.EvalSymlinks(filepath.Join("/sys/class/tty", name, "device"))
	if err != nil {
		return DefaultFrameGapMargin
	}
	// Walk up the device path: a USB adapter's tty device sits below a usb interface.
	for d := dev; strings.HasPrefix(d, "/sys/devices/") && len(d) > len("/sys/devices/"); d = filepath.Dir(d) {
		sub, err := os.Readlink(filepath.Join(d, "subsystem"))
		if err != nil {
			continue
		}
		switch filepath.Base(sub) {
		case "usb", "usb-serial":
			return DefaultFrameGapMargin
		}
	}
	return LocalFrameGapMargin
}

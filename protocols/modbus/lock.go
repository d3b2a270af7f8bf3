package modbus

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// ErrBusInUse: OpenRTU refused the serial device because another master holds it: a
// process (this one included) holds the exclusive lock OpenRTU takes on the device, or
// the device is open with exclusive access (TIOCEXCL, as go.bug.st/serial sets it), so
// that opening it fails with EBUSY. An RS-485 bus has one master at a time (Modbus over
// Serial Line V1.02 §2.2, the master/slaves principle); two masters on one line corrupt
// each other's transactions. The error returned is a *BusInUseError, which
// names the holder.
var ErrBusInUse = errors.New("modbus: serial device in use by another master (one master per bus)")

// BusHolder is a process found holding a serial device.
type BusHolder struct {
	PID int // process id, in the pid namespace of this process's /proc
	// Command is the holder's command line (arguments separated by spaces, arguments
	// with spaces or quotes quoted, cut at 256 bytes), "[comm]" for a process without
	// one, or "" when it could not be read (the process is gone, or /proc hides it).
	Command string
}

// BusInUseError is the error of OpenRTU when another master holds the device. It
// matches ErrBusInUse (errors.Is) and unwraps to the system error seen (EWOULDBLOCK from
// flock, EBUSY from open, or go.bug.st/serial's PortBusy).
type BusInUseError struct {
	Device string // the device as configured (SerialConfig.Device)
	Path   string // the device with symlinks resolved: what was locked
	// Holders are the processes found holding the device: the holders of a flock(2) on
	// it from /proc/locks, or else (no lock listed) the processes that have it open,
	// from /proc/*/fd. Empty when none was found (holder unknown), and always on
	// systems other than Linux.
	Holders []BusHolder
	Err     error // the system error seen
}

// Error names the device, the holders (or "holder unknown") and the rule, e.g.
// "modbus: open /dev/ttyUSB0: serial device in use by pid 4242 (rollcall gateway
// --config /etc/rollcall/gateway.yaml): one master per bus".
func (e *BusInUseError) Error() string {
	var b strings.Builder
	b.WriteString("modbus: open ")
	b.WriteString(deviceName(e.Device, e.Path))
	b.WriteString(": serial device in use")
	if len(e.Holders) == 0 {
		b.WriteString(", holder unknown")
	}
	self := os.Getpid()
	for i, h := range e.Holders {
		if i == 0 {
			b.WriteString(" by ")
		} else {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "pid %d", h.PID)
		cmd := h.Command
		if cmd == "" {
			cmd = "command unknown"
		}
		if h.PID == self {
			cmd = "this process: " + cmd
		}
		fmt.Fprintf(&b, " (%s)", cmd)
	}
	b.WriteString(": one master per bus")
	return b.String()
}

// Is reports whether target is ErrBusInUse.
func (e *BusInUseError) Is(target error) bool { return target == ErrBusInUse }

// Unwrap returns the system error seen.
func (e *BusInUseError) Unwrap() error { return e.Err }

// busInUse is the error for device (resolved to path) held by another master; cause is
// the system error seen. It looks up the holders (a few ms: see busHolders).
func busInUse(device, path string, cause error) error {
	return &BusInUseError{Device: device, Path: path, Holders: busHolders(path), Err: cause}
}

// deviceName is device as configured, followed by the device it resolves to when that
// differs (a symlink such as /dev/serial/by-id/... or firmware-sim's link).
func deviceName(device, path string) string {
	if path == "" || path == device {
		return device
	}
	return device + " (" + path + ")"
}

// maxCommand bounds BusHolder.Command in bytes.
const maxCommand = 256

// formatCommand joins the NUL-separated arguments of a /proc/<pid>/cmdline into one
// line: arguments containing spaces or quotes (and empty ones) are quoted; the result is
// cut at maxCommand bytes.
func formatCommand(cmdline []byte) string {
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\") {
			args[i] = fmt.Sprintf("%q", a)
		}
	}
	s := strings.Join(args, " ")
	if len(s) > maxCommand {
		s = strings.ToValidUTF8(s[:maxCommand], "") + "…"
	}
	return s
}

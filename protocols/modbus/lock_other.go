//go:build !linux

package modbus

// busLock is a no-op outside Linux: OpenRTU takes no lock of its own there. On the BSDs
// and macOS go.bug.st/serial still opens the port with exclusive access (TIOCEXCL), so a
// second open by an unprivileged process fails with EBUSY, which OpenRTU reports as
// ErrBusInUse with the holder unknown.
type busLock struct{}

// lockBus takes no lock outside Linux.
func lockBus(device, path string) (*busLock, error) { return &busLock{}, nil }

// release does nothing outside Linux.
func (l *busLock) release() error { return nil }

// busHolders cannot look up holders outside Linux (no /proc/locks).
func busHolders(path string) []BusHolder { return nil }

//go:build linux

package slave

import (
	"os"
	"testing"

	"github.com/rollcall-edge/rollcall/internal/termios"
)

// openPTY opens a raw pseudo-terminal as firmware-sim's sim package does: server is a
// pollable (non-blocking) duplicate of the master side, for RTUServer.Serve; client is
// the slave side (/dev/pts/N), raw, pollable, as a master program opens a serial port.
// Both are closed at the end of the test.
func openPTY(tb testing.TB) (server, client *os.File) {
	tb.Helper()
	server, client, err := termios.OpenPTY()
	if err != nil {
		tb.Skipf("no pseudo-terminal: %v", err)
	}
	tb.Cleanup(func() {
		_ = server.Close()
		_ = client.Close()
	})
	return server, client
}

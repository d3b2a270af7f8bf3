//go:build linux

package slave

import (
	"os"
	"testing"

	"github.com/creack/pty"
	"github.com/rollcall-edge/rollcall/internal/termios"
	"golang.org/x/sys/unix"
)

// openPTY opens a raw pseudo-terminal as firmware-sim's sim package does: server is a
// pollable (non-blocking) duplicate of the master side, for RTUServer.Serve; client is
// the slave side (/dev/pts/N), raw, pollable, as a master program opens a serial port.
// Both are closed at the end of the test.
func openPTY(tb testing.TB) (server, client *os.File) {
	tb.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		tb.Skipf("no pseudo-terminal: %v", err)
	}
	tb.Cleanup(func() { _ = tty.Close() })
	// pty.Open called Fd() on the master, which left it blocking: deadlines could not
	// interrupt its reads. A non-blocking duplicate is registered with the poller.
	var nfd int
	err = fdControl(ptmx, func(fd int) (err error) {
		nfd, err = unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		return err
	})
	_ = ptmx.Close()
	if err != nil {
		tb.Fatalf("dup pseudo-terminal master: %v", err)
	}
	if err := unix.SetNonblock(nfd, true); err != nil {
		_ = unix.Close(nfd)
		tb.Fatal(err)
	}
	server = os.NewFile(uintptr(nfd), "ptmx")
	tb.Cleanup(func() { _ = server.Close() })
	err = fdControl(tty, termios.MakeRaw)
	if err != nil {
		tb.Fatalf("raw mode: %v", err)
	}
	return server, tty
}

// fdControl runs fn on f's descriptor without changing its blocking mode.
func fdControl(f *os.File, fn func(fd int) error) error {
	sc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := sc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

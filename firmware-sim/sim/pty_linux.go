//go:build linux

package sim

import (
	"fmt"
	"os"

	"github.com/creack/pty"
	"github.com/rollcall-edge/rollcall/internal/termios"
	"golang.org/x/sys/unix"
)

// terminal is one bus's pseudo-terminal.
type terminal struct {
	master *os.File // pollable master side: the simulator reads requests, writes replies
	tty    *os.File // slave side, kept open so the master never reads EIO when the gateway closes
	name   string   // slave path, /dev/pts/N
}

// openTerminal opens a pseudo-terminal with creack/pty and sets its slave side raw
// (cfmakeraw: no echo, no line editing, no CR/NL translation, 8 data bits).
func openTerminal() (t *terminal, err error) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("open pseudo-terminal: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tty.Close()
		}
	}()
	// pty.Open leaves the master in blocking mode (it called Fd()), where deadlines and
	// Close cannot interrupt a Read. Duplicate it into a non-blocking descriptor, which
	// os.NewFile registers with the runtime poller.
	master, err := pollable(ptmx)
	_ = ptmx.Close()
	if err != nil {
		return nil, fmt.Errorf("pseudo-terminal %s: %w", tty.Name(), err)
	}
	if err := control(tty, termios.MakeRaw); err != nil {
		_ = master.Close()
		return nil, fmt.Errorf("pseudo-terminal %s: set raw mode: %w", tty.Name(), err)
	}
	return &terminal{master: master, tty: tty, name: tty.Name()}, nil
}

// pollable returns a non-blocking, close-on-exec duplicate of f as a pollable *os.File.
func pollable(f *os.File) (*os.File, error) {
	var nfd int
	err := control(f, func(fd int) (err error) {
		nfd, err = unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dup: %w", err)
	}
	if err := unix.SetNonblock(nfd, true); err != nil {
		_ = unix.Close(nfd)
		return nil, fmt.Errorf("set non-blocking: %w", err)
	}
	return os.NewFile(uintptr(nfd), f.Name()), nil
}

// control runs fn on f's descriptor without changing its blocking mode.
func control(f *os.File, fn func(fd int) error) error {
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

// flushInput discards what the slave side has not read (replies nobody collected).
func (t *terminal) flushInput() error {
	return control(t.tty, func(fd int) error { return unix.IoctlSetInt(fd, unix.TCFLSH, unix.TCIFLUSH) })
}

// close closes both sides.
func (t *terminal) close() error {
	err1 := t.master.Close()
	err2 := t.tty.Close()
	if err1 != nil {
		return err1
	}
	return err2
}

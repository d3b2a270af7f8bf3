package termios

import (
	"fmt"
	"os"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// OpenPTY opens a pseudo-terminal pair with creack/pty for a Modbus RTU responder:
// master is a pollable duplicate of the master side (non-blocking, close-on-exec,
// registered with the runtime poller, so read deadlines and Close interrupt its
// reads — pty.Open called Fd() on its own master, which left that one blocking); tty
// is the slave side (/dev/pts/N) in raw mode (MakeRaw). The caller closes both and
// should keep tty open while master is in use, so master never reads EIO when the
// program at the other end closes the port. Errors name the step and, once known, the
// slave path; on error nothing stays open.
func OpenPTY() (master, tty *os.File, err error) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		return nil, nil, fmt.Errorf("open pseudo-terminal: %w", err)
	}
	var nfd int
	err = Control(ptmx, func(fd int) (err error) {
		nfd, err = unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		return err
	})
	_ = ptmx.Close()
	if err == nil {
		if err = unix.SetNonblock(nfd, true); err != nil {
			_ = unix.Close(nfd)
		}
	}
	if err != nil {
		_ = tty.Close()
		return nil, nil, fmt.Errorf("pseudo-terminal %s: non-blocking master: %w", tty.Name(), err)
	}
	master = os.NewFile(uintptr(nfd), "ptmx")
	if err := Control(tty, MakeRaw); err != nil {
		_ = master.Close()
		_ = tty.Close()
		return nil, nil, fmt.Errorf("pseudo-terminal %s: set raw mode: %w", tty.Name(), err)
	}
	return master, tty, nil
}

// Control runs fn on f's descriptor through f.SyscallConn, without changing its
// blocking mode as f.Fd() would. It returns SyscallConn's error or fn's.
func Control(f *os.File, fn func(fd int) error) error {
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

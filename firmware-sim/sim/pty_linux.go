//go:build linux

package sim

import (
	"os"

	"github.com/rollcall-edge/rollcall/internal/termios"
	"golang.org/x/sys/unix"
)

// terminal is one bus's pseudo-terminal.
type terminal struct {
	master *os.File // pollable master side: the simulator reads requests, writes replies
	tty    *os.File // slave side, kept open so the master never reads EIO when the gateway closes
	name   string   // slave path, /dev/pts/N
}

// openTerminal opens a raw pseudo-terminal (termios.OpenPTY).
func openTerminal() (*terminal, error) {
	master, tty, err := termios.OpenPTY()
	if err != nil {
		return nil, err
	}
	return &terminal{master: master, tty: tty, name: tty.Name()}, nil
}

// flushInput discards what the slave side has not read (replies nobody collected).
func (t *terminal) flushInput() error {
	return termios.Control(t.tty, func(fd int) error { return unix.IoctlSetInt(fd, unix.TCFLSH, unix.TCIFLUSH) })
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

// Package termios holds the terminal settings and the raw pseudo-terminal that
// rollcall's simulator, tests and bench use, in one place.
package termios

import "golang.org/x/sys/unix"

// MakeRaw puts the terminal open as fd in raw mode, as cfmakeraw(3) does: no echo (a
// responder must not hear its own replies), no line editing, no CR/LF translation,
// 8 data bits, no parity; reads return as soon as one byte is there (VMIN 1, VTIME 0).
// It returns the error of the TCGETS or TCSETS ioctl (e.g. ENOTTY for a non-terminal).
func MakeRaw(fd int) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
	return unix.IoctlSetTermios(fd, unix.TCSETS, t)
}

//go:build linux

package modbus

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// peerClosed reports whether the peer of the idle connection c has closed or reset it:
// a non-blocking MSG_PEEK receive sees end of stream (0 bytes) or an error other than
// EAGAIN. Pending bytes (a late reply) mean the connection is alive. It consumes
// nothing, leaves c's deadlines alone (the receive runs under RawConn.Control, which
// ignores them) and does not allocate beyond c's RawConn: it runs before every request.
func peerClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	err = rc.Control(func(fd uintptr) {
		var b [1]byte
		for {
			// recvfrom(fd, b, 1, MSG_PEEK|MSG_DONTWAIT, NULL, NULL), which never blocks (a
			// raw system call: no scheduler hand-off); unix.Recvfrom would allocate the
			// source address.
			n, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
				unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
			if errno == unix.EINTR {
				continue
			}
			closed = (errno == 0 && n == 0) || (errno != 0 && errno != unix.EAGAIN)
			return
		}
	})
	return closed || err != nil
}

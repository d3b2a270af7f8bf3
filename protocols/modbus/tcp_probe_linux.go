//go:build linux

package modbus

import (
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// peerClosed reports whether the peer of the idle connection c has closed or reset it:
// a non-blocking MSG_PEEK receive sees end of stream (0 bytes) or an error other than
// EAGAIN. Pending bytes (a late reply) mean the connection is alive. It clears c's read
// deadline (a past deadline would refuse the probe) and consumes nothing.
func peerClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		return true
	}
	closed := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		for {
			n, _, rerr := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			if rerr == unix.EINTR {
				continue
			}
			closed = (rerr == nil && n == 0) || (rerr != nil && rerr != unix.EAGAIN)
			return true
		}
	})
	return closed || err != nil
}

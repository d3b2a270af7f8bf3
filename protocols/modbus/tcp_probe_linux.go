//go:build linux

package modbus

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// peerProbe asks whether the peer of an idle connection has closed or reset it: a
// non-blocking MSG_PEEK receive sees end of stream (0 bytes) or an error other than
// EAGAIN. Pending bytes (a late reply) mean the connection is alive. It consumes
// nothing and leaves the connection's deadlines alone (the receive runs under
// RawConn.Control, which ignores them). Made once per connection (newPeerProbe), so the
// check before every request (closed) allocates nothing.
type peerProbe struct {
	rc     syscall.RawConn  // nil: the connection has no descriptor (closed says no)
	peekFn func(fd uintptr) // p.peek, bound once
	gone   bool             // set by peek
}

// newPeerProbe makes the probe of c (nil when c cannot be probed: closed then says no,
// and a connection the peer closed fails its next request, which redials).
func newPeerProbe(c net.Conn) *peerProbe {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	p := &peerProbe{rc: rc}
	p.peekFn = p.peek
	return p
}

// closed reports whether the peer has closed or reset the connection (or its descriptor
// is gone).
func (p *peerProbe) closed() bool {
	if p == nil {
		return false
	}
	p.gone = false
	err := p.rc.Control(p.peekFn)
	return p.gone || err != nil
}

// peek is the receive of closed, on the connection's descriptor.
func (p *peerProbe) peek(fd uintptr) {
	var b [1]byte
	for {
		// recvfrom(fd, b, 1, MSG_PEEK|MSG_DONTWAIT, NULL, NULL), which never blocks (a raw
		// system call: no scheduler hand-off); unix.Recvfrom would allocate the source
		// address.
		n, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		p.gone = (errno == 0 && n == 0) || (errno != 0 && errno != unix.EAGAIN)
		return
	}
}

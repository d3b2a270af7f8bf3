//go:build linux

package mdns

import (
	"net"

	"golang.org/x/sys/unix"
)

// restrictMulticast sets IP_MULTICAST_ALL (IPV6_MULTICAST_ALL for IPv6) to 0 on c, so
// that the kernel delivers to c only the multicast groups c joined itself, on the
// interfaces it joined them on (ip(7), ipv6(7)); by default Linux delivers a group that
// any socket of the host joined on any interface. It is defence in depth: the Browser
// checks every datagram's arrival interface anyway, and unicast is not affected. Errors
// are ignored (IPV6_MULTICAST_ALL needs Linux 4.20).
func restrictMulticast(c *net.UDPConn, v6 bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		if v6 {
			_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_ALL, 0)
		} else {
			_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0)
		}
	})
}

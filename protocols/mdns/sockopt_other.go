//go:build !linux

package mdns

import "net"

// restrictMulticast does nothing outside Linux, which alone has IP_MULTICAST_ALL; the
// Browser checks every datagram's arrival interface anyway.
func restrictMulticast(*net.UDPConn, bool) {}

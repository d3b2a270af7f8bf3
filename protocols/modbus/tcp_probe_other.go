//go:build !linux

package modbus

import "net"

// peerClosed reports whether the peer of the idle connection c has closed it. Without
// a portable non-blocking peek it always says no: a connection closed while idle then
// fails its next request (a connection error) and the request after that redials.
func peerClosed(net.Conn) bool { return false }

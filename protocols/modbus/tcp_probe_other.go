//go:build !linux

package modbus

import "net"

// peerProbe would ask whether the peer of an idle connection has closed it. Without a
// portable non-blocking peek it always says no: a connection closed while idle then
// fails its next request (a connection error) and the request after that redials.
type peerProbe struct{}

// newPeerProbe returns nil: there is nothing to probe with.
func newPeerProbe(net.Conn) *peerProbe { return nil }

// closed always says no.
func (*peerProbe) closed() bool { return false }

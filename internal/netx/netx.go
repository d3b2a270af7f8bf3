// Package netx holds what rollcall's TCP servers (the routing Modbus TCP server, the
// simulator's Modbus TCP listeners) share about accepting connections.
package netx

import (
	"errors"
	"syscall"
)

// TemporaryAcceptError reports whether an Accept error is worth retrying after a pause:
// the process or system is out of file descriptors (EMFILE, ENFILE), buffers or memory
// (ENOBUFS, ENOMEM), or a connection was aborted before it was accepted (ECONNABORTED);
// accept(2). Anything else (a closed listener) ends the accept loop.
func TemporaryAcceptError(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNABORTED)
}

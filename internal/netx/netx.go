// Package netx holds what rollcall's TCP servers (the routing Modbus TCP server, the
// simulator's Modbus TCP listeners) share about accepting connections: which Accept
// errors are worth retrying, and the accept loop's back-off (Acceptor).
package netx

import (
	"context"
	"errors"
	"net"
	"syscall"
	"time"
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

// Acceptor accepts connections on a listener the way rollcall's TCP servers do: a
// temporary error (TemporaryAcceptError) is retried after a back-off that starts at
// 5 ms and doubles to 1 s, so a server out of file descriptors neither spins nor
// stops; the end of the server's context ends the wait.
type Acceptor struct {
	Listener net.Listener
	// OnRetry, when set, is told of each temporary error and the back-off before the
	// next attempt (for a log line).
	OnRetry func(err error, backoff time.Duration)

	backoff time.Duration
}

// Accept returns the next connection. It returns nil, nil once ctx has ended (the
// caller closes the listener when ctx ends, which ends a blocked Accept), and nil and
// the error when Accept fails with a lasting error (a listener closed otherwise).
func (a *Acceptor) Accept(ctx context.Context) (net.Conn, error) {
	for {
		conn, err := a.Listener.Accept()
		if err == nil {
			a.backoff = 0
			return conn, nil
		}
		if ctx.Err() != nil {
			return nil, nil
		}
		if !TemporaryAcceptError(err) {
			return nil, err
		}
		a.backoff = min(max(2*a.backoff, 5*time.Millisecond), time.Second)
		if a.OnRetry != nil {
			a.OnRetry(err, a.backoff)
		}
		t := time.NewTimer(a.backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil
		case <-t.C:
		}
	}
}

package netx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"syscall"
	"testing"
	"time"
)

func TestTemporaryAcceptError(t *testing.T) {
	for _, err := range []error{syscall.EMFILE, fmt.Errorf("accept: %w", syscall.ENFILE), syscall.ECONNABORTED} {
		if !TemporaryAcceptError(err) {
			t.Errorf("%v: not temporary", err)
		}
	}
	if TemporaryAcceptError(net.ErrClosed) {
		t.Error("a closed listener is temporary")
	}
}

// scriptedListener returns the errors of errs in turn from Accept, then conn.
type scriptedListener struct {
	net.Listener
	errs []error
	conn net.Conn
}

func (l *scriptedListener) Accept() (net.Conn, error) {
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		return nil, err
	}
	return l.conn, nil
}

// TestAcceptor: temporary errors are retried with a back-off of 5 ms doubling, a lasting
// error is returned, and the end of ctx ends a back-off wait with nil, nil.
func TestAcceptor(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	var waits []time.Duration
	a := Acceptor{Listener: &scriptedListener{errs: []error{syscall.EMFILE, syscall.ENFILE}, conn: c1},
		OnRetry: func(_ error, b time.Duration) { waits = append(waits, b) }}
	conn, err := a.Accept(context.Background())
	if conn != c1 || err != nil || !slices.Equal(waits, []time.Duration{5 * time.Millisecond, 10 * time.Millisecond}) {
		t.Fatalf("after two temporary errors: %v %v, back-offs %v", conn, err, waits)
	}
	a = Acceptor{Listener: &scriptedListener{errs: []error{net.ErrClosed}}}
	if conn, err := a.Accept(context.Background()); conn != nil || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("a closed listener: %v %v", conn, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a = Acceptor{Listener: &scriptedListener{errs: []error{syscall.EMFILE}},
		OnRetry: func(error, time.Duration) { cancel() }}
	if conn, err := a.Accept(ctx); conn != nil || err != nil {
		t.Fatalf("ctx ended during the back-off: %v %v", conn, err)
	}
}

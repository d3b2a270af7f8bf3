package netx

import (
	"fmt"
	"net"
	"syscall"
	"testing"
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

package main

import (
	"os"
	"testing"

	"github.com/rollcall-edge/rollcall/internal/termios"
)

// TestIsTerminal: a terminal is a character device that has a line discipline:
// /dev/null (a character device too) is not one, so `rollcall demo >/dev/null 2>log`
// keeps its logs on stderr instead of drawing a screen into /dev/null.
func TestIsTerminal(t *testing.T) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if isTerminal(null) {
		t.Error("isTerminal(/dev/null) = true")
	}
	master, tty, err := termios.OpenPTY()
	if err != nil {
		t.Skip("no pseudo-terminal:", err)
	}
	defer master.Close()
	defer tty.Close()
	if !isTerminal(tty) {
		t.Error("isTerminal(pty) = false")
	}
}

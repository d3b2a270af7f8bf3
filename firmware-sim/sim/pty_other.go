//go:build !linux

package sim

import (
	"errors"
	"os"
)

// terminal is one bus's pseudo-terminal (Linux only).
type terminal struct {
	master *os.File
	tty    *os.File
	name   string
}

func openTerminal() (*terminal, error) {
	return nil, errors.New("simulated serial buses need Linux pseudo-terminals")
}

func (t *terminal) flushInput() error { return nil }

func (t *terminal) close() error { return nil }

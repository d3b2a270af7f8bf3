//go:build !linux

package modbus

import "time"

// frameGapMargin is DefaultFrameGapMargin outside Linux, where the kind of port is not
// looked up: the safe assumption for a USB serial adapter.
func frameGapMargin(string) time.Duration { return DefaultFrameGapMargin }

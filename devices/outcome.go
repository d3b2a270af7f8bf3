package devices

import (
	"context"
	"errors"
	"net"

	"github.com/rollcall-edge/rollcall/protocols/modbus"
	"github.com/rollcall-edge/rollcall/registry"
)

// Classify is the one classification of a poll's result: err is what the poll
// returned (nil for a valid reply). Poll sets registry.Observation.Outcome with it (and
// derives Answered and Degraded from it); other pollers, such as the gateway's checks of
// non-Modbus modules, use it for their own errors; metrics only read the result.
//
//   - nil: registry.OutcomeOK;
//   - a Modbus exception reply (*modbus.ExceptionError, Modbus Application Protocol
//     V1.1b3 §7): registry.OutcomeException;
//   - modbus.ErrTimeout, context.DeadlineExceeded, or a net.Error whose Timeout() is
//     true: registry.OutcomeTimeout;
//   - modbus.ErrCRC, modbus.ErrShortFrame, modbus.ErrBadFrame, *modbus.WrongUnitError:
//     registry.OutcomeBadFrame;
//   - anything else (a serial port or connection error, modbus.ErrUnreachable, a
//     cancelled ctx, an HTTP status): registry.OutcomeOther.
//
// It does not allocate for nil or the Modbus sentinel errors (ErrTimeout, ErrCRC, ...).
func Classify(err error) registry.Outcome {
	switch {
	case err == nil:
		return registry.OutcomeOK
	// Sentinels first: errors.Is does not allocate, errors.As (below) does.
	case errors.Is(err, modbus.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return registry.OutcomeTimeout
	case errors.Is(err, modbus.ErrCRC), errors.Is(err, modbus.ErrShortFrame), errors.Is(err, modbus.ErrBadFrame):
		return registry.OutcomeBadFrame
	case modbus.IsAnswer(err):
		return registry.OutcomeException
	}
	var wu *modbus.WrongUnitError
	if errors.As(err, &wu) {
		return registry.OutcomeBadFrame
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return registry.OutcomeTimeout
	}
	return registry.OutcomeOther
}

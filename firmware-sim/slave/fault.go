package slave

import (
	"fmt"
	"time"
)

// FaultMode is an injected misbehaviour of one unit.
type FaultMode string

// Fault modes (docs/design.md, "Commands": the firmware-sim control API).
const (
	FaultNone      FaultMode = "none"      // answer normally
	FaultSilent    FaultMode = "silent"    // neither execute nor answer, as if disconnected (broadcasts too); TCP keeps the connection open
	FaultSlow      FaultMode = "slow"      // answer Fault.Delay later than the line timing says
	FaultException FaultMode = "exception" // answer every request with exception Fault.Code, execute nothing
	FaultGarbage   FaultMode = "garbage"   // execute, answer a frame of the right length that is invalid: RTU a wrong CRC, TCP a wrong MBAP protocol identifier
	// FaultDevice is the CiA 402 fault: the device owner (firmware-sim's sim package)
	// puts the drive in fault; the transport answers normally.
	FaultDevice FaultMode = "fault"
)

// MaxFaultDelay is the longest accepted FaultSlow delay.
const MaxFaultDelay = time.Minute

// Fault is the fault injected into one unit. The zero value is FaultNone.
type Fault struct {
	Mode  FaultMode     // "" means FaultNone
	Delay time.Duration // FaultSlow only: extra reply delay, > 0 and ≤ MaxFaultDelay
	Code  byte          // FaultException only: exception code to answer; 0 means 0x04 server device failure
}

// ParseFaultMode returns the FaultMode named s, or an error naming the valid modes.
func ParseFaultMode(s string) (FaultMode, error) {
	switch m := FaultMode(s); m {
	case FaultNone, FaultSilent, FaultSlow, FaultException, FaultGarbage, FaultDevice:
		return m, nil
	}
	return "", fmt.Errorf("unknown fault mode %q (expected none, silent, slow, exception, garbage or fault)", s)
}

// Normalize returns f with defaults applied: Mode "" → FaultNone, Code 0 → 0x04 for
// FaultException; Delay and Code cleared for the modes that do not use them.
func (f Fault) Normalize() Fault {
	if f.Mode == "" {
		f.Mode = FaultNone
	}
	if f.Mode != FaultSlow {
		f.Delay = 0
	}
	if f.Mode != FaultException {
		f.Code = 0
	} else if f.Code == 0 {
		f.Code = byte(ServerDeviceFailure)
	}
	return f
}

// Validate returns an error when the mode is unknown or the slow delay is not in
// (0, MaxFaultDelay].
func (f Fault) Validate() error {
	mode := f.Mode
	if mode == "" {
		mode = FaultNone
	}
	if _, err := ParseFaultMode(string(mode)); err != nil {
		return err
	}
	if mode == FaultSlow && (f.Delay <= 0 || f.Delay > MaxFaultDelay) {
		return fmt.Errorf("fault mode slow needs a delay from 1ns to %v, got %v", MaxFaultDelay, f.Delay)
	}
	return nil
}

// String returns e.g. "none", "slow(200ms)", "exception(4)".
func (f Fault) String() string {
	f = f.Normalize()
	switch f.Mode {
	case FaultSlow:
		return fmt.Sprintf("slow(%v)", f.Delay)
	case FaultException:
		return fmt.Sprintf("exception(%d)", f.Code)
	}
	return string(f.Mode)
}

package slave

import (
	"fmt"
	"math"
	"strconv"
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
	// FaultNoisy is a noisy line: the unit executes every request, and each reply is,
	// with probability Fault.Rate, invalid as with FaultGarbage (RTU: a wrong CRC, the
	// right length; TCP: a wrong MBAP protocol identifier). On RTU, with probability
	// Fault.Rate independently, a burst of 1–4 random bytes follows the reply on the
	// line, starting t1.5 after its last byte (Modbus over Serial Line V1.02 §2.5.1.1);
	// it is dropped, like the rest of the reply, when the master sends first, and when
	// the simulator could not write it on time (a stalled process), so it never
	// overlaps a reply. TCP has no line noise: no bursts there.
	FaultNoisy FaultMode = "noisy"
)

// MaxFaultDelay is the longest accepted FaultSlow delay.
const MaxFaultDelay = time.Minute

// Fault is the fault injected into one unit. The zero value is FaultNone.
type Fault struct {
	Mode  FaultMode     // "" means FaultNone
	Delay time.Duration // FaultSlow only: extra reply delay, > 0 and ≤ MaxFaultDelay
	Code  byte          // FaultException only: exception code to answer; 0 means 0x04 server device failure
	// Rate is FaultNoisy's probability, 0–1, that a reply is corrupted, and
	// (independently) that a noise burst follows it. FaultNoisy only.
	Rate float64
	// Seed seeds FaultNoisy's pseudo-random draws (PCG), for a reproducible sequence of
	// corrupted replies and bursts from each SetFault on; 0 picks a random seed.
	// FaultNoisy only.
	Seed uint64
}

// ParseFaultMode returns the FaultMode named s, or an error naming the valid modes.
func ParseFaultMode(s string) (FaultMode, error) {
	switch m := FaultMode(s); m {
	case FaultNone, FaultSilent, FaultSlow, FaultException, FaultGarbage, FaultDevice, FaultNoisy:
		return m, nil
	}
	return "", fmt.Errorf("unknown fault mode %q (expected %s)", s, FaultModeNames)
}

// FaultModeNames lists the fault modes for messages: "none, silent, slow, exception,
// garbage, fault or noisy".
const FaultModeNames = "none, silent, slow, exception, garbage, fault or noisy"

// CheckRate returns an error unless rate is a probability from 0 to 1 (NaN is not).
func CheckRate(rate float64) error {
	if math.IsNaN(rate) || rate < 0 || rate > 1 {
		return fmt.Errorf("fault mode noisy needs a rate from 0 to 1 (a probability, e.g. 0.05), got %v", rate)
	}
	return nil
}

// Normalize returns f with defaults applied: Mode "" → FaultNone, Code 0 → 0x04 for
// FaultException; Delay, Code, Rate and Seed cleared for the modes that do not use
// them.
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
	if f.Mode != FaultNoisy {
		f.Rate, f.Seed = 0, 0
	}
	return f
}

// Validate returns an error when the mode is unknown, the slow delay is not in
// (0, MaxFaultDelay], or the noisy rate is not in [0, 1] (CheckRate).
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
	if mode == FaultNoisy {
		return CheckRate(f.Rate)
	}
	return nil
}

// String returns e.g. "none", "slow(200ms)", "exception(4)", "noisy(0.05)",
// "noisy(0.05, seed 7)".
func (f Fault) String() string {
	f = f.Normalize()
	switch f.Mode {
	case FaultSlow:
		return fmt.Sprintf("slow(%v)", f.Delay)
	case FaultException:
		return fmt.Sprintf("exception(%d)", f.Code)
	case FaultNoisy:
		rate := strconv.FormatFloat(f.Rate, 'g', -1, 64)
		if f.Seed != 0 {
			return fmt.Sprintf("noisy(%s, seed %d)", rate, f.Seed)
		}
		return "noisy(" + rate + ")"
	}
	return string(f.Mode)
}

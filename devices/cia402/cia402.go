// Package cia402 decodes the CiA 402 drive profile statusword (object 0x6041) into the
// device state machine's state, per CiA 402-2 / IEC 61800-7-201 ("Statusword", table of
// state coding). docs/registers.md reproduces the masks.
package cia402

// Statusword bits (CiA 402-2, object 0x6041).
const (
	BitReadyToSwitchOn   = 1 << 0
	BitSwitchedOn        = 1 << 1
	BitOperationEnabled  = 1 << 2
	BitFault             = 1 << 3
	BitVoltageEnabled    = 1 << 4
	BitQuickStop         = 1 << 5 // active low: 0 = quick stop active
	BitSwitchOnDisabled  = 1 << 6
	BitWarning           = 1 << 7
	BitRemote            = 1 << 9
	BitTargetReached     = 1 << 10
	BitInternalLimitActv = 1 << 11
)

// State is a state of the CiA 402 power drive state machine.
type State string

// States, named as in CiA 402-2 (snake case, as published in instance records).
const (
	NotReadyToSwitchOn  State = "not_ready_to_switch_on"
	SwitchOnDisabled    State = "switch_on_disabled"
	ReadyToSwitchOn     State = "ready_to_switch_on"
	SwitchedOn          State = "switched_on"
	OperationEnabled    State = "operation_enabled"
	QuickStopActive     State = "quick_stop_active"
	FaultReactionActive State = "fault_reaction_active"
	Fault               State = "fault"
	Unknown             State = "unknown"
)

// Decode returns the state coded in a statusword. Codings that match no state (reserved
// combinations) return Unknown.
func Decode(sw uint16) State {
	switch {
	case sw&0x4F == 0x00:
		return NotReadyToSwitchOn
	case sw&0x4F == 0x40:
		return SwitchOnDisabled
	case sw&0x6F == 0x21:
		return ReadyToSwitchOn
	case sw&0x6F == 0x23:
		return SwitchedOn
	case sw&0x6F == 0x27:
		return OperationEnabled
	case sw&0x6F == 0x07:
		return QuickStopActive
	case sw&0x4F == 0x0F:
		return FaultReactionActive
	case sw&0x4F == 0x08:
		return Fault
	}
	return Unknown
}

// Status is the decoded health-relevant content of a statusword and error code.
type Status struct {
	State     State
	Fault     bool   // statusword bit 3, or state fault / fault reaction active
	Warning   bool   // statusword bit 7
	ErrorCode uint16 // object 0x603F, 0 when not read
}

// DecodeStatus decodes a statusword and an error code (0x603F; pass 0 when the profile
// does not read it).
func DecodeStatus(sw, errorCode uint16) Status {
	st := Decode(sw)
	return Status{
		State:     st,
		Fault:     sw&BitFault != 0 || st == Fault || st == FaultReactionActive,
		Warning:   sw&BitWarning != 0,
		ErrorCode: errorCode,
	}
}

// Degraded reports whether the drive reports a fault or a warning: the instance is then
// `warning` (docs/contract.md, "Health semantics").
func (s Status) Degraded() bool { return s.Fault || s.Warning }

// Map is the record's "state" object: {"cia402": state, "fault": bool, "warning": bool,
// "error_code": int}.
func (s Status) Map() map[string]any {
	return s.MapReusing(nil)
}

// MapReusing is Map, but returns last itself when it already says what Map would: a
// drive polled many times a second in the same state then costs no allocation. last is
// not modified (it may be shared, e.g. with the registry's copy of the record); nil
// always gives a new map.
func (s Status) MapReusing(last map[string]any) map[string]any {
	if len(last) == 4 && last["cia402"] == any(string(s.State)) && last["fault"] == any(s.Fault) &&
		last["warning"] == any(s.Warning) && last["error_code"] == any(int(s.ErrorCode)) {
		return last
	}
	return map[string]any{
		"cia402":     string(s.State),
		"fault":      s.Fault,
		"warning":    s.Warning,
		"error_code": int(s.ErrorCode),
	}
}

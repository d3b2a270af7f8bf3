package drive

// CiA 402 power state machine (CiA 402-2 / IEC 61800-7-201 §"Device control",
// objects 0x6040 controlword and 0x6041 statusword), as documented in docs/registers.md.

// State is a CiA 402 power drive system state.
type State int

// CiA 402 states. The zero value is NotReadyToSwitchOn.
const (
	NotReadyToSwitchOn  State = iota // initialising; left automatically at power-on (transition 1)
	SwitchOnDisabled                 // power section off, fault-free
	ReadyToSwitchOn                  // after "shutdown"
	SwitchedOn                       // after "switch on"
	OperationEnabled                 // after "enable operation": the motor follows the target velocity
	QuickStopActive                  // after "quick stop" from operation enabled; the motor is stopped
	FaultReactionActive              // transient: fault detected, reaction running (left automatically)
	Fault                            // fault latched; left by a fault reset (rising edge of controlword bit 7)
)

// String returns the state's snake_case name as used in instance records'
// "cia402" field, e.g. "operation_enabled"; "unknown" for an invalid State.
func (s State) String() string {
	switch s {
	case NotReadyToSwitchOn:
		return "not_ready_to_switch_on"
	case SwitchOnDisabled:
		return "switch_on_disabled"
	case ReadyToSwitchOn:
		return "ready_to_switch_on"
	case SwitchedOn:
		return "switched_on"
	case OperationEnabled:
		return "operation_enabled"
	case QuickStopActive:
		return "quick_stop_active"
	case FaultReactionActive:
		return "fault_reaction_active"
	case Fault:
		return "fault"
	}
	return "unknown"
}

// Statusword (0x6041) bits, CiA 402-2. Bits 8 and 10–15 are always 0 in the simulator.
const (
	SWReadyToSwitchOn  uint16 = 1 << 0 // ready to switch on
	SWSwitchedOn       uint16 = 1 << 1 // switched on
	SWOperationEnabled uint16 = 1 << 2 // operation enabled
	SWFault            uint16 = 1 << 3 // fault
	SWVoltageEnabled   uint16 = 1 << 4 // voltage enabled (power section energised)
	SWQuickStop        uint16 = 1 << 5 // quick stop, active low: 0 = quick stop active
	SWSwitchOnDisabled uint16 = 1 << 6 // switch on disabled
	SWWarning          uint16 = 1 << 7 // warning
	SWRemote           uint16 = 1 << 9 // remote: the controlword is processed
)

// Controlword (0x6040) bits, CiA 402-2.
const (
	CWSwitchOn        uint16 = 1 << 0 // switch on
	CWEnableVoltage   uint16 = 1 << 1 // enable voltage
	CWQuickStop       uint16 = 1 << 2 // quick stop, active low: 0 = quick stop
	CWEnableOperation uint16 = 1 << 3 // enable operation
	CWFaultReset      uint16 = 1 << 7 // fault reset, acts on the rising edge
)

// Canonical controlword command values (docs/registers.md, "Controlword commands").
const (
	CmdShutdown         uint16 = 0x0006 // 0xxx x110 → ready to switch on
	CmdSwitchOn         uint16 = 0x0007 // 0xxx 0111 → switched on
	CmdEnableOperation  uint16 = 0x000F // 0xxx 1111 → operation enabled
	CmdDisableOperation uint16 = 0x0007 // 0xxx 0111 from operation enabled → switched on
	CmdDisableVoltage   uint16 = 0x0000 // 0xxx xx0x → switch on disabled
	CmdQuickStop        uint16 = 0x0002 // 0xxx x01x → quick stop active / switch on disabled
	CmdFaultReset       uint16 = 0x0080 // rising edge of bit 7: fault → switch on disabled
)

// stateBits is the part of the statusword that encodes the state (before the remote and
// warning bits are added). Every value satisfies the mask/value table of docs/registers.md.
// Voltage enabled (bit 4) is set in the states reached with controlword "enable voltage"
// (ready to switch on, switched on, operation enabled, quick stop active); quick stop
// (bit 5, active low) is set in every state without a quick stop or fault.
func stateBits(s State) uint16 {
	switch s {
	case SwitchOnDisabled:
		return SWSwitchOnDisabled | SWQuickStop // 0x0060
	case ReadyToSwitchOn:
		return SWReadyToSwitchOn | SWVoltageEnabled | SWQuickStop // 0x0031
	case SwitchedOn:
		return SWReadyToSwitchOn | SWSwitchedOn | SWVoltageEnabled | SWQuickStop // 0x0033
	case OperationEnabled:
		return SWReadyToSwitchOn | SWSwitchedOn | SWOperationEnabled | SWVoltageEnabled | SWQuickStop // 0x0037
	case QuickStopActive:
		return SWReadyToSwitchOn | SWSwitchedOn | SWOperationEnabled | SWVoltageEnabled // 0x0017
	case FaultReactionActive:
		return SWReadyToSwitchOn | SWSwitchedOn | SWOperationEnabled | SWFault // 0x000F
	case Fault:
		return SWFault // 0x0008
	}
	return 0 // not ready to switch on
}

// DecodeStatusword returns the CiA 402 state encoded in a statusword, using the
// mask/value table of docs/registers.md (CiA 402-2). ok is false when the statusword
// matches no state.
func DecodeStatusword(sw uint16) (s State, ok bool) {
	switch {
	case sw&0x004F == 0x0000:
		return NotReadyToSwitchOn, true
	case sw&0x004F == 0x0040:
		return SwitchOnDisabled, true
	case sw&0x006F == 0x0021:
		return ReadyToSwitchOn, true
	case sw&0x006F == 0x0023:
		return SwitchedOn, true
	case sw&0x006F == 0x0027:
		return OperationEnabled, true
	case sw&0x006F == 0x0007:
		return QuickStopActive, true
	case sw&0x004F == 0x000F:
		return FaultReactionActive, true
	case sw&0x004F == 0x0008:
		return Fault, true
	}
	return 0, false
}

// command is a decoded controlword device-control command.
type command int

const (
	cmdNone command = iota
	cmdShutdown
	cmdSwitchOn // also "disable operation" (same bit pattern)
	cmdEnableOperation
	cmdDisableVoltage
	cmdQuickStop
)

// decodeCommand decodes controlword bits 0–3 and 7 (CiA 402-2 device control commands;
// docs/registers.md). Every command needs bit 7 = 0; with bit 7 set the controlword
// carries no command (it may carry a fault reset edge, handled separately).
func decodeCommand(cw uint16) command {
	switch {
	case cw&CWFaultReset != 0:
		return cmdNone
	case cw&CWEnableVoltage == 0: // 0xxx xx0x
		return cmdDisableVoltage
	case cw&(CWQuickStop|CWEnableVoltage) == CWEnableVoltage: // 0xxx x01x
		return cmdQuickStop
	case cw&0x0007 == 0x0006: // 0xxx x110
		return cmdShutdown
	case cw&0x000F == 0x0007: // 0xxx 0111
		return cmdSwitchOn
	case cw&0x000F == 0x000F: // 0xxx 1111
		return cmdEnableOperation
	}
	return cmdNone
}

// transition returns the state after command c in state s (CiA 402-2 transitions 2–12
// and 16; 3+4 for "switch on + enable operation" from ready to switch on). Commands
// that are not allowed in s leave it unchanged.
func transition(s State, c command) State {
	switch s {
	case SwitchOnDisabled:
		if c == cmdShutdown { // 2
			return ReadyToSwitchOn
		}
	case ReadyToSwitchOn:
		switch c {
		case cmdSwitchOn: // 3
			return SwitchedOn
		case cmdEnableOperation: // 3 + 4
			return OperationEnabled
		case cmdDisableVoltage, cmdQuickStop: // 7
			return SwitchOnDisabled
		}
	case SwitchedOn:
		switch c {
		case cmdEnableOperation: // 4
			return OperationEnabled
		case cmdShutdown: // 6
			return ReadyToSwitchOn
		case cmdDisableVoltage, cmdQuickStop: // 10
			return SwitchOnDisabled
		}
	case OperationEnabled:
		switch c {
		case cmdSwitchOn: // 5: disable operation
			return SwitchedOn
		case cmdShutdown: // 8
			return ReadyToSwitchOn
		case cmdDisableVoltage: // 9
			return SwitchOnDisabled
		case cmdQuickStop: // 11
			return QuickStopActive
		}
	case QuickStopActive:
		switch c {
		case cmdDisableVoltage: // 12
			return SwitchOnDisabled
		case cmdEnableOperation: // 16
			return OperationEnabled
		}
	}
	return s
}

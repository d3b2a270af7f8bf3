// Package drive simulates a CiA 402 servo drive behind a Modbus register map.
//
// The register map and the identification objects are the contract in docs/registers.md
// (shared with the gateway's profile configs/profiles/firmware-sim-drive.yaml). The power
// state machine follows CiA 402-2 / IEC 61800-7-201: the statusword (0x6041) reflects
// the state, the controlword (0x6040) commands transitions, a fault latches until a
// fault reset (rising edge of controlword bit 7).
//
// Statusword values served (bit 9 "remote" is set in every state but not ready to switch
// on; bit 7 "warning" is added by SetWarning):
//
//	switch on disabled     0x0260
//	ready to switch on     0x0231
//	switched on            0x0233
//	operation enabled      0x0237
//	quick stop active      0x0217
//	fault                  0x0208
//
// In operation enabled the position actual value integrates the target velocity over
// time (increments/s × s); the velocity actual value equals the target velocity. In every
// other state the motor stands still. Modes of operation are stored and displayed but
// do not change the motion model.
//
// A Drive is safe for concurrent use.
package drive

import (
	"fmt"
	"sync"
	"time"
)

// Identification object values that are the same for every simulated drive
// (docs/registers.md, "Read Device Identification").
const (
	Vendor          = "rollcall firmware-sim"                 // object 0x00 VendorName
	ProductCode     = "RC-SIM-402"                            // object 0x01 ProductCode
	DefaultRevision = "1.2"                                   // object 0x02 MajorMinorRevision unless configured
	VendorURL       = "https://rollcall.invalid/firmware-sim" // object 0x03 VendorUrl
	ProductName     = "Simulated servo drive"                 // object 0x04 ProductName
	DefaultModel    = "SIM-402-400W"                          // object 0x05 ModelName unless configured
)

// Identification object IDs served (Modbus Application Protocol V1.1b3 §6.21, table
// of object IDs; 0x80 is a private object of the extended category).
const (
	ObjVendorName   byte = 0x00
	ObjProductCode  byte = 0x01
	ObjRevision     byte = 0x02
	ObjVendorURL    byte = 0x03
	ObjProductName  byte = 0x04
	ObjModelName    byte = 0x05
	ObjSerialNumber byte = 0x80 // private: the drive's serial number
)

// Register addresses (0-based PDU addresses, one 16-bit register each unless noted;
// 32-bit values are two registers, high word first). docs/registers.md.
const (
	RegStatusword     uint16 = 0   // 0x6041 statusword, read-only
	RegErrorCode      uint16 = 1   // 0x603F error code, read-only
	RegControlword    uint16 = 2   // 0x6040 controlword, read/write
	RegModeDisplay    uint16 = 3   // 0x6061 modes of operation display, int16, read-only
	RegMode           uint16 = 4   // 0x6060 modes of operation, int16 (−128…127), read/write
	RegPosition       uint16 = 10  // 0x6064 position actual value, int32 increments, 2 registers, read-only
	RegVelocity       uint16 = 12  // 0x606C velocity actual value, int32 increments/s, 2 registers, read-only
	RegTargetVelocity uint16 = 14  // 0x60FF target velocity, int32 increments/s, 2 registers, read/write
	RegSerial         uint16 = 100 // serial number, ASCII, 8 registers, read-only
)

const (
	// SerialRegisters is the number of registers holding the serial number.
	SerialRegisters = 8
	// MaxSerialLen is the longest serial number in bytes (2 ASCII characters per register).
	MaxSerialLen = 2 * SerialRegisters
	// MaxTextLen is the longest model or revision string in bytes.
	MaxTextLen = 64
	// MaxReadQuantity is the largest register count of one read (FC 03/04;
	// Modbus Application Protocol V1.1b3 §6.3, §6.4).
	MaxReadQuantity = 125
	// MaxWriteQuantity is the largest register count of one write (FC 16; §6.12).
	MaxWriteQuantity = 123
	// DefaultFaultCode is the CiA 402 error code (0x603F) reported after SetFault(true):
	// 0x2310, continuous over-current (CiA 402-2 / EN 50325-4 error code table).
	DefaultFaultCode uint16 = 0x2310
	// DefaultMode is the initial modes of operation value: 3, profile velocity mode.
	DefaultMode int8 = 3
)

// Exception is a Modbus exception code returned as an error by register accesses
// (Modbus Application Protocol V1.1b3 §7). Transports answer it as an exception reply.
type Exception byte

// Exceptions returned by ReadRegisters and WriteRegisters.
const (
	ErrIllegalDataAddress Exception = 0x02 // address unmapped, or write to a read-only register
	ErrIllegalDataValue   Exception = 0x03 // quantity out of range or value not accepted
)

// Error implements error.
func (e Exception) Error() string {
	switch e {
	case ErrIllegalDataAddress:
		return "drive: illegal data address (exception 2)"
	case ErrIllegalDataValue:
		return "drive: illegal data value (exception 3)"
	}
	return fmt.Sprintf("drive: exception %d", byte(e))
}

// ExceptionCode returns the Modbus exception code (§7).
func (e Exception) ExceptionCode() byte { return byte(e) }

// Options configure a new Drive.
type Options struct {
	// Serial is the serial number: 1–16 printable ASCII characters (registers 100–107,
	// object 0x80).
	Serial string
	// Model is object 0x05 ModelName; "" means DefaultModel. At most MaxTextLen
	// printable ASCII bytes.
	Model string
	// Revision is object 0x02 MajorMinorRevision; "" means DefaultRevision. At most
	// MaxTextLen printable ASCII bytes.
	Revision string
	// Enabled runs shutdown, switch on and enable operation at creation, so the drive
	// starts in operation enabled (statusword 0x0237). Otherwise it starts in switch on
	// disabled (0x0260).
	Enabled bool
	// Now is the clock used to integrate the position; nil means time.Now.
	Now func() time.Time
}

// Drive is one simulated servo drive. Create it with New.
type Drive struct {
	serial   string
	model    string
	revision string
	now      func() time.Time

	mu          sync.Mutex
	state       State
	controlword uint16
	errorCode   uint16
	warning     bool
	mode        int8
	target      int32     // target velocity, increments/s
	posBase     int64     // position at posSince, increments
	posSince    time.Time // when posBase was taken
}

// New returns a drive in switch on disabled (CiA 402 transition 1 runs automatically),
// or in operation enabled when opts.Enabled is set. It returns an error when the serial,
// model or revision is empty (serial only), too long or not printable ASCII.
func New(opts Options) (*Drive, error) {
	if err := checkText("serial", opts.Serial, MaxSerialLen); err != nil {
		return nil, err
	}
	if opts.Serial == "" {
		return nil, fmt.Errorf("drive: serial must not be empty")
	}
	model, revision := opts.Model, opts.Revision
	if model == "" {
		model = DefaultModel
	}
	if revision == "" {
		revision = DefaultRevision
	}
	if err := checkText("model", model, MaxTextLen); err != nil {
		return nil, err
	}
	if err := checkText("revision", revision, MaxTextLen); err != nil {
		return nil, err
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	d := &Drive{
		serial:   opts.Serial,
		model:    model,
		revision: revision,
		now:      now,
		state:    SwitchOnDisabled, // transitions 0 and 1 are automatic
		mode:     DefaultMode,
		posSince: now(),
	}
	if opts.Enabled {
		d.Enable()
	}
	return d, nil
}

// CheckText reports whether s is acceptable as a serial (max MaxSerialLen bytes) or
// model/revision (max MaxTextLen bytes): printable ASCII (0x20–0x7E) only. what names
// the field in the error.
func CheckText(what, s string, max int) error { return checkText(what, s, max) }

func checkText(what, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("drive: %s %q is %d bytes, at most %d allowed", what, s, len(s), max)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7E {
			return fmt.Errorf("drive: %s %q: only printable ASCII is allowed", what, s)
		}
	}
	return nil
}

// Serial returns the drive's serial number.
func (d *Drive) Serial() string { return d.serial }

// Model returns the drive's model name (object 0x05).
func (d *Drive) Model() string { return d.model }

// Revision returns the drive's revision (object 0x02).
func (d *Drive) Revision() string { return d.revision }

// Status is a consistent snapshot of a drive's process data.
type Status struct {
	State          State  // CiA 402 state
	Statusword     uint16 // 0x6041
	Controlword    uint16 // 0x6040, as last written
	ErrorCode      uint16 // 0x603F, 0 when no fault
	Mode           int8   // 0x6060 modes of operation
	Position       int32  // 0x6064 position actual value, increments (wraps at 32 bits)
	Velocity       int32  // 0x606C velocity actual value, increments/s
	TargetVelocity int32  // 0x60FF target velocity, increments/s
}

// Status returns a snapshot of the drive's process data.
func (d *Drive) Status() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.statusLocked(d.now())
}

func (d *Drive) statusLocked(now time.Time) Status {
	return Status{
		State:          d.state,
		Statusword:     d.statuswordLocked(),
		Controlword:    d.controlword,
		ErrorCode:      d.errorCode,
		Mode:           d.mode,
		Position:       int32(d.positionLocked(now)),
		Velocity:       d.velocityLocked(),
		TargetVelocity: d.target,
	}
}

// State returns the CiA 402 state.
func (d *Drive) State() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state
}

// Statusword returns the statusword (0x6041, register 0).
func (d *Drive) Statusword() uint16 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.statuswordLocked()
}

func (d *Drive) statuswordLocked() uint16 {
	sw := stateBits(d.state)
	if d.state != NotReadyToSwitchOn {
		sw |= SWRemote
	}
	if d.warning {
		sw |= SWWarning
	}
	return sw
}

// velocityLocked is the velocity actual value: the target velocity in operation
// enabled, 0 otherwise.
func (d *Drive) velocityLocked() int32 {
	if d.state == OperationEnabled {
		return d.target
	}
	return 0
}

// positionLocked is the position actual value at now, in increments (not wrapped).
func (d *Drive) positionLocked(now time.Time) int64 {
	v := int64(d.velocityLocked())
	dt := now.Sub(d.posSince)
	if v == 0 || dt <= 0 {
		return d.posBase
	}
	whole, frac := int64(dt/time.Second), int64(dt%time.Second)
	return d.posBase + v*whole + v*frac/int64(time.Second)
}

// foldLocked re-bases the position integral at now; call before the velocity actual
// value changes (state or target velocity change).
func (d *Drive) foldLocked(now time.Time) {
	d.posBase = d.positionLocked(now)
	d.posSince = now
}

// WriteControlword applies a controlword (0x6040): a device-control command
// (docs/registers.md) or, in fault, a fault reset on the rising edge of bit 7.
func (d *Drive) WriteControlword(cw uint16) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.writeControlwordLocked(cw, d.now())
}

func (d *Drive) writeControlwordLocked(cw uint16, now time.Time) {
	prev := d.controlword
	d.controlword = cw
	d.foldLocked(now)
	switch d.state {
	case Fault:
		if cw&CWFaultReset != 0 && prev&CWFaultReset == 0 { // transition 15
			d.state = SwitchOnDisabled
			d.errorCode = 0
		}
		return
	case NotReadyToSwitchOn, FaultReactionActive:
		return // automatic states: no command accepted
	}
	d.state = transition(d.state, decodeCommand(cw))
}

// Enable runs shutdown, switch on and enable operation, as a master commissioning the
// drive would. From switch on disabled (or any later non-fault state) the drive ends in
// operation enabled; in fault it has no effect (a fault reset is needed first).
func (d *Drive) Enable() {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	for _, cw := range []uint16{CmdShutdown, CmdSwitchOn, CmdEnableOperation} {
		d.writeControlwordLocked(cw, now)
	}
}

// SetFault injects (true) or clears (false) a CiA 402 fault. true passes through fault
// reaction active (transition 13, 14) to fault: statusword bit 3 set, error code
// DefaultFaultCode, motor stopped. The fault stays latched until a fault reset: a
// rising edge of controlword bit 7 from the master, or SetFault(false), which performs
// the fault reset (transition 15 → switch on disabled, error code 0). SetFault(false)
// outside fault has no effect.
func (d *Drive) SetFault(on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.foldLocked(d.now())
	if on {
		if d.state != Fault {
			// Transition 13 to fault reaction active, then 14 to fault: the simulated
			// reaction (stop the motor) completes at once.
			d.state = Fault
			d.errorCode = DefaultFaultCode
		}
		return
	}
	if d.state == Fault {
		d.state = SwitchOnDisabled
		d.errorCode = 0
	}
}

// SetWarning sets or clears statusword bit 7 (warning) without changing the state.
func (d *Drive) SetWarning(on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.warning = on
}

// SetTargetVelocity sets the target velocity (0x60FF) in increments/s.
func (d *Drive) SetTargetVelocity(v int32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.foldLocked(d.now())
	d.target = v
}

// regInfo describes one mapped register.
type regInfo struct{ writable bool }

// register returns whether addr is mapped (docs/registers.md) and its access.
func register(addr uint32) (regInfo, bool) {
	switch {
	case addr == uint32(RegStatusword), addr == uint32(RegErrorCode), addr == uint32(RegModeDisplay):
		return regInfo{}, true
	case addr == uint32(RegControlword), addr == uint32(RegMode):
		return regInfo{writable: true}, true
	case addr >= uint32(RegPosition) && addr < uint32(RegTargetVelocity):
		return regInfo{}, true
	case addr == uint32(RegTargetVelocity), addr == uint32(RegTargetVelocity)+1:
		return regInfo{writable: true}, true
	case addr >= uint32(RegSerial) && addr < uint32(RegSerial)+SerialRegisters:
		return regInfo{}, true
	}
	return regInfo{}, false
}

// ReadRegisters returns qty registers starting at PDU address addr (FC 03 and FC 04
// share one address space). Errors: ErrIllegalDataValue when qty is outside
// 1–MaxReadQuantity, ErrIllegalDataAddress when any address in the range is unmapped
// (docs/registers.md). All values come from one consistent snapshot.
func (d *Drive) ReadRegisters(addr, qty uint16) ([]uint16, error) {
	if qty < 1 || qty > MaxReadQuantity {
		return nil, ErrIllegalDataValue
	}
	end := uint32(addr) + uint32(qty)
	for a := uint32(addr); a < end; a++ {
		if _, ok := register(a); !ok {
			return nil, ErrIllegalDataAddress
		}
	}
	d.mu.Lock()
	st := d.statusLocked(d.now())
	d.mu.Unlock()
	out := make([]uint16, 0, qty)
	for a := uint32(addr); a < end; a++ {
		out = append(out, d.registerValue(uint16(a), &st))
	}
	return out, nil
}

// registerValue returns the value of a mapped register from a snapshot.
func (d *Drive) registerValue(a uint16, st *Status) uint16 {
	switch {
	case a == RegStatusword:
		return st.Statusword
	case a == RegErrorCode:
		return st.ErrorCode
	case a == RegControlword:
		return st.Controlword
	case a == RegModeDisplay, a == RegMode:
		return uint16(int16(st.Mode))
	case a == RegPosition, a == RegPosition+1:
		return word(uint32(st.Position), a-RegPosition)
	case a == RegVelocity, a == RegVelocity+1:
		return word(uint32(st.Velocity), a-RegVelocity)
	case a == RegTargetVelocity, a == RegTargetVelocity+1:
		return word(uint32(st.TargetVelocity), a-RegTargetVelocity)
	case a >= RegSerial && a < RegSerial+SerialRegisters:
		i := int(a-RegSerial) * 2
		return uint16(serialByte(d.serial, i))<<8 | uint16(serialByte(d.serial, i+1))
	}
	return 0
}

// word returns the high (i = 0) or low (i = 1) word of a 32-bit value.
func word(v uint32, i uint16) uint16 {
	if i == 0 {
		return uint16(v >> 16)
	}
	return uint16(v)
}

func serialByte(s string, i int) byte {
	if i < len(s) {
		return s[i]
	}
	return 0
}

// WriteRegisters writes values to consecutive registers from PDU address addr (FC 06
// writes one, FC 16 several). The write is all-or-nothing. Errors: ErrIllegalDataValue
// when len(values) is outside 1–MaxWriteQuantity or a value is not accepted (modes of
// operation outside −128…127); ErrIllegalDataAddress when any address is unmapped or
// read-only (docs/registers.md). A write to one half of the 32-bit target velocity
// replaces that half and keeps the other.
func (d *Drive) WriteRegisters(addr uint16, values []uint16) error {
	if len(values) < 1 || len(values) > MaxWriteQuantity {
		return ErrIllegalDataValue
	}
	end := uint32(addr) + uint32(len(values))
	for a := uint32(addr); a < end; a++ {
		info, ok := register(a)
		if !ok || !info.writable {
			return ErrIllegalDataAddress
		}
	}
	for i, v := range values {
		if uint32(addr)+uint32(i) == uint32(RegMode) {
			if m := int16(v); m < -128 || m > 127 {
				return ErrIllegalDataValue
			}
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	target := uint32(d.target)
	targetWritten := false
	cw, cwWritten := uint16(0), false
	for i, v := range values {
		switch uint16(uint32(addr) + uint32(i)) {
		case RegControlword:
			cw, cwWritten = v, true
		case RegMode:
			d.mode = int8(int16(v))
		case RegTargetVelocity:
			target = target&0x0000FFFF | uint32(v)<<16
			targetWritten = true
		case RegTargetVelocity + 1:
			target = target&0xFFFF0000 | uint32(v)
			targetWritten = true
		}
	}
	if targetWritten {
		d.foldLocked(now)
		d.target = int32(target)
	}
	if cwWritten {
		d.writeControlwordLocked(cw, now)
	}
	return nil
}

// IdentificationObject returns the value of a Read Device Identification object
// (Modbus Application Protocol V1.1b3 §6.21; docs/registers.md): 0x00–0x05 and the
// private 0x80 (serial number). ok is false for any other object ID.
func (d *Drive) IdentificationObject(id byte) (value []byte, ok bool) {
	switch id {
	case ObjVendorName:
		return []byte(Vendor), true
	case ObjProductCode:
		return []byte(ProductCode), true
	case ObjRevision:
		return []byte(d.revision), true
	case ObjVendorURL:
		return []byte(VendorURL), true
	case ObjProductName:
		return []byte(ProductName), true
	case ObjModelName:
		return []byte(d.model), true
	case ObjSerialNumber:
		return []byte(d.serial), true
	}
	return nil, false
}

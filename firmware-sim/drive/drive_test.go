package drive

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeClock is an injectable clock advanced by the test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newDrive(t *testing.T, enabled bool, clk *fakeClock) *Drive {
	t.Helper()
	opts := Options{Serial: "SIM-0001", Enabled: enabled}
	if clk != nil {
		opts.Now = clk.Now
	}
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestNewStatusword(t *testing.T) {
	d := newDrive(t, true, nil)
	// operation enabled 0x0027 | voltage enabled 0x0010 | quick stop 0x0020 | remote 0x0200
	if got, want := d.Statusword(), uint16(0x0237); got != want {
		t.Errorf("enabled drive statusword = %#04x, want %#04x", got, want)
	}
	if got := d.State(); got != OperationEnabled {
		t.Errorf("enabled drive state = %v", got)
	}
	if st := d.Status(); st.Controlword != CmdEnableOperation || st.ErrorCode != 0 || st.Mode != DefaultMode {
		t.Errorf("enabled drive status = %+v", st)
	}

	d = newDrive(t, false, nil)
	if got, want := d.Statusword(), uint16(0x0260); got != want {
		t.Errorf("disabled drive statusword = %#04x, want %#04x", got, want)
	}
	if got := d.State(); got != SwitchOnDisabled {
		t.Errorf("disabled drive state = %v", got)
	}
}

// TestStatuswordTable checks each state's statusword against the mask/value table of
// docs/registers.md, and the decoder.
func TestStatuswordTable(t *testing.T) {
	tests := []struct {
		state       State
		mask, value uint16
		want        uint16 // full statusword served (remote bit included)
	}{
		{NotReadyToSwitchOn, 0x004F, 0x0000, 0x0000},
		{SwitchOnDisabled, 0x004F, 0x0040, 0x0260},
		{ReadyToSwitchOn, 0x006F, 0x0021, 0x0231},
		{SwitchedOn, 0x006F, 0x0023, 0x0233},
		{OperationEnabled, 0x006F, 0x0027, 0x0237},
		{QuickStopActive, 0x006F, 0x0007, 0x0217},
		{FaultReactionActive, 0x004F, 0x000F, 0x020F},
		{Fault, 0x004F, 0x0008, 0x0208},
	}
	for _, tt := range tests {
		t.Run(tt.state.String(), func(t *testing.T) {
			d := &Drive{state: tt.state}
			sw := d.statuswordLocked()
			if sw != tt.want {
				t.Errorf("statusword = %#04x, want %#04x", sw, tt.want)
			}
			if sw&tt.mask != tt.value {
				t.Errorf("statusword %#04x & %#04x = %#04x, want %#04x", sw, tt.mask, sw&tt.mask, tt.value)
			}
			if got, ok := DecodeStatusword(sw); !ok || got != tt.state {
				t.Errorf("DecodeStatusword(%#04x) = %v, %v", sw, got, ok)
			}
			d.warning = true
			if got, ok := DecodeStatusword(d.statuswordLocked()); !ok || got != tt.state || d.statuswordLocked()&SWWarning == 0 {
				t.Errorf("with warning: DecodeStatusword(%#04x) = %v, %v", d.statuswordLocked(), got, ok)
			}
		})
	}
}

// reach drives a fresh (switch on disabled) drive into state s with controlwords.
func reach(t *testing.T, d *Drive, s State) {
	t.Helper()
	paths := map[State][]uint16{
		SwitchOnDisabled: nil,
		ReadyToSwitchOn:  {CmdShutdown},
		SwitchedOn:       {CmdShutdown, CmdSwitchOn},
		OperationEnabled: {CmdShutdown, CmdSwitchOn, CmdEnableOperation},
		QuickStopActive:  {CmdShutdown, CmdSwitchOn, CmdEnableOperation, CmdQuickStop},
	}
	if s == Fault {
		d.SetFault(true)
	} else {
		for _, cw := range paths[s] {
			d.WriteControlword(cw)
		}
	}
	if got := d.State(); got != s {
		t.Fatalf("setup: state = %v, want %v", got, s)
	}
}

// TestTransitions covers every controlword transition of docs/registers.md
// (CiA 402-2 transitions 2–12, 16, and 3+4), and ignored commands.
func TestTransitions(t *testing.T) {
	tests := []struct {
		name string
		from State
		cw   uint16
		want State
	}{
		{"2 shutdown", SwitchOnDisabled, CmdShutdown, ReadyToSwitchOn},
		{"3 switch on", ReadyToSwitchOn, CmdSwitchOn, SwitchedOn},
		{"3+4 switch on and enable operation", ReadyToSwitchOn, CmdEnableOperation, OperationEnabled},
		{"4 enable operation", SwitchedOn, CmdEnableOperation, OperationEnabled},
		{"5 disable operation", OperationEnabled, CmdDisableOperation, SwitchedOn},
		{"6 shutdown", SwitchedOn, CmdShutdown, ReadyToSwitchOn},
		{"7 disable voltage", ReadyToSwitchOn, CmdDisableVoltage, SwitchOnDisabled},
		{"7 quick stop", ReadyToSwitchOn, CmdQuickStop, SwitchOnDisabled},
		{"8 shutdown", OperationEnabled, CmdShutdown, ReadyToSwitchOn},
		{"9 disable voltage", OperationEnabled, CmdDisableVoltage, SwitchOnDisabled},
		{"9 disable voltage xx0x", OperationEnabled, 0x000D, SwitchOnDisabled},
		{"10 disable voltage", SwitchedOn, CmdDisableVoltage, SwitchOnDisabled},
		{"10 quick stop", SwitchedOn, CmdQuickStop, SwitchOnDisabled},
		{"11 quick stop", OperationEnabled, CmdQuickStop, QuickStopActive},
		{"11 quick stop x01x", OperationEnabled, 0x000B, QuickStopActive},
		{"12 disable voltage", QuickStopActive, CmdDisableVoltage, SwitchOnDisabled},
		{"16 enable operation", QuickStopActive, CmdEnableOperation, OperationEnabled},
		{"shutdown with halt bit 8", OperationEnabled, 0x0106, ReadyToSwitchOn},
		{"enable operation with mode bits 4-6", SwitchedOn, 0x007F, OperationEnabled},
		{"switch on from switch on disabled ignored", SwitchOnDisabled, CmdSwitchOn, SwitchOnDisabled},
		{"enable operation from switch on disabled ignored", SwitchOnDisabled, CmdEnableOperation, SwitchOnDisabled},
		{"shutdown in quick stop active ignored", QuickStopActive, CmdShutdown, QuickStopActive},
		{"bit 7 set: no command", OperationEnabled, 0x0086, OperationEnabled},
		{"fault reset outside fault ignored", OperationEnabled, CmdFaultReset, OperationEnabled},
		{"enable operation in fault ignored", Fault, CmdEnableOperation, Fault},
		{"shutdown in fault ignored", Fault, CmdShutdown, Fault},
		{"disable voltage in fault ignored", Fault, CmdDisableVoltage, Fault},
		{"15 fault reset", Fault, CmdFaultReset, SwitchOnDisabled},
		{"15 fault reset with other bits", Fault, 0x008F, SwitchOnDisabled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDrive(t, false, nil)
			reach(t, d, tt.from)
			d.WriteControlword(tt.cw)
			if got := d.State(); got != tt.want {
				t.Errorf("%v + controlword %#04x → %v, want %v", tt.from, tt.cw, got, tt.want)
			}
			if got := d.Status().Controlword; got != tt.cw {
				t.Errorf("controlword reads %#04x, want %#04x", got, tt.cw)
			}
			if s, ok := DecodeStatusword(d.Statusword()); !ok || s != tt.want {
				t.Errorf("statusword %#04x decodes to %v", d.Statusword(), s)
			}
		})
	}
}

func TestFaultAndFaultReset(t *testing.T) {
	clk := newClock()
	d := newDrive(t, true, clk)
	d.SetTargetVelocity(100)

	d.SetFault(true) // transitions 13, 14
	st := d.Status()
	if st.State != Fault || st.Statusword != 0x0208 || st.ErrorCode != DefaultFaultCode || st.Velocity != 0 {
		t.Fatalf("after SetFault(true): %+v", st)
	}
	if st.Statusword&SWFault == 0 {
		t.Fatal("fault bit 3 not set")
	}
	d.SetFault(true) // idempotent
	d.Enable()       // no effect in fault
	if d.State() != Fault {
		t.Fatalf("Enable in fault: state %v", d.State())
	}

	// Bit 7 already set before → writing it again is no rising edge.
	d.WriteControlword(CmdFaultReset)
	if d.State() != SwitchOnDisabled {
		t.Fatalf("fault reset: state %v", d.State())
	}
	d.SetFault(true)
	d.WriteControlword(CmdFaultReset) // still high: no edge
	if d.State() != Fault {
		t.Fatalf("held bit 7 reset the fault: state %v", d.State())
	}
	d.WriteControlword(0x0000)
	if d.State() != Fault {
		t.Fatalf("falling edge changed state: %v", d.State())
	}
	d.WriteControlword(CmdFaultReset) // rising edge
	if st := d.Status(); st.State != SwitchOnDisabled || st.ErrorCode != 0 || st.Statusword != 0x0260 {
		t.Fatalf("after fault reset: %+v", st)
	}

	// SetFault(false) performs the fault reset; outside fault it does nothing.
	d.Enable()
	d.SetFault(true)
	d.SetFault(false)
	if st := d.Status(); st.State != SwitchOnDisabled || st.ErrorCode != 0 {
		t.Fatalf("after SetFault(false): %+v", st)
	}
	d.Enable()
	d.SetFault(false)
	if d.State() != OperationEnabled {
		t.Fatalf("SetFault(false) outside fault: %v", d.State())
	}
}

func TestWarning(t *testing.T) {
	d := newDrive(t, true, nil)
	d.SetWarning(true)
	if got := d.Statusword(); got != 0x02B7 {
		t.Errorf("statusword with warning = %#04x, want 0x02b7", got)
	}
	d.SetWarning(false)
	if got := d.Statusword(); got != 0x0237 {
		t.Errorf("statusword = %#04x", got)
	}
}

func TestMotion(t *testing.T) {
	clk := newClock()
	d := newDrive(t, true, clk)
	d.SetTargetVelocity(1000)
	clk.Advance(2500 * time.Millisecond)
	if st := d.Status(); st.Position != 2500 || st.Velocity != 1000 || st.TargetVelocity != 1000 {
		t.Fatalf("after 2.5 s at 1000/s: %+v", st)
	}
	d.WriteControlword(CmdDisableOperation)
	clk.Advance(time.Second)
	if st := d.Status(); st.Position != 2500 || st.Velocity != 0 || st.TargetVelocity != 1000 {
		t.Fatalf("switched on: %+v", st)
	}
	// Target velocity −500 via registers 14–15 (FC 16), enable operation via register 2.
	if err := d.WriteRegisters(RegTargetVelocity, []uint16{0xFFFF, 0xFE0C}); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteRegisters(RegControlword, []uint16{CmdEnableOperation}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(3 * time.Second)
	regs, err := d.ReadRegisters(RegPosition, 6)
	if err != nil {
		t.Fatal(err)
	}
	// position 2500 − 1500 = 1000; velocity −500; target −500
	want := []uint16{0x0000, 0x03E8, 0xFFFF, 0xFE0C, 0xFFFF, 0xFE0C}
	if !slices.Equal(regs, want) {
		t.Fatalf("registers 10–15 = %04x, want %04x", regs, want)
	}
	clk.Advance(2*time.Second + 500*time.Millisecond) // 1000 − 1250 = −250
	if st := d.Status(); st.Position != -250 {
		t.Fatalf("position = %d, want -250", st.Position)
	}
	d.SetFault(true)
	clk.Advance(time.Hour)
	if st := d.Status(); st.Position != -250 || st.Velocity != 0 {
		t.Fatalf("in fault: %+v", st)
	}
}

func TestPositionWraps(t *testing.T) {
	clk := newClock()
	d := newDrive(t, true, clk)
	d.SetTargetVelocity(1 << 30)
	clk.Advance(2 * time.Second) // 2^31 increments: wraps to −2^31
	regs, err := d.ReadRegisters(RegPosition, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(regs, []uint16{0x8000, 0x0000}) {
		t.Fatalf("position registers = %04x", regs)
	}
}

func TestReadRegisters(t *testing.T) {
	tests := []struct {
		addr, qty uint16
		want      []uint16
		err       error
	}{
		{0, 2, []uint16{0x0237, 0x0000}, nil},
		{0, 1, []uint16{0x0237}, nil},
		{1, 1, []uint16{0x0000}, nil},
		{0, 5, []uint16{0x0237, 0x0000, 0x000F, 0x0003, 0x0003}, nil},
		{10, 6, []uint16{0, 0, 0, 0, 0, 0}, nil},
		{100, 8, []uint16{0x5349, 0x4D2D, 0x3030, 0x3031, 0, 0, 0, 0}, nil},
		{103, 1, []uint16{0x3031}, nil},
		{0, 6, nil, ErrIllegalDataAddress},
		{5, 1, nil, ErrIllegalDataAddress},
		{9, 2, nil, ErrIllegalDataAddress},
		{14, 3, nil, ErrIllegalDataAddress},
		{99, 2, nil, ErrIllegalDataAddress},
		{107, 2, nil, ErrIllegalDataAddress},
		{65535, 1, nil, ErrIllegalDataAddress},
		{0, 125, nil, ErrIllegalDataAddress},
		{0, 0, nil, ErrIllegalDataValue},
		{0, 126, nil, ErrIllegalDataValue},
		{65535, 126, nil, ErrIllegalDataValue},
	}
	d := newDrive(t, true, newClock())
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d+%d", tt.addr, tt.qty), func(t *testing.T) {
			got, err := d.ReadRegisters(tt.addr, tt.qty)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %04x, want %04x", got, tt.want)
			}
		})
	}
}

func TestWriteRegisters(t *testing.T) {
	tests := []struct {
		name   string
		addr   uint16
		values []uint16
		err    error
		check  func(t *testing.T, st Status)
	}{
		{"controlword shutdown", RegControlword, []uint16{CmdShutdown}, nil, func(t *testing.T, st Status) {
			if st.State != ReadyToSwitchOn || st.Controlword != CmdShutdown {
				t.Errorf("%+v", st)
			}
		}},
		{"mode 6", RegMode, []uint16{6}, nil, func(t *testing.T, st Status) {
			if st.Mode != 6 {
				t.Errorf("mode = %d", st.Mode)
			}
		}},
		{"mode -128", RegMode, []uint16{0xFF80}, nil, func(t *testing.T, st Status) {
			if st.Mode != -128 {
				t.Errorf("mode = %d", st.Mode)
			}
		}},
		{"mode 128 rejected", RegMode, []uint16{128}, ErrIllegalDataValue, nil},
		{"mode -129 rejected", RegMode, []uint16{0xFF7F}, ErrIllegalDataValue, nil},
		{"target velocity both words", RegTargetVelocity, []uint16{0x0001, 0x0002}, nil, func(t *testing.T, st Status) {
			if st.TargetVelocity != 0x00010002 {
				t.Errorf("target = %#x", st.TargetVelocity)
			}
		}},
		{"target velocity low word", RegTargetVelocity + 1, []uint16{0x0005}, nil, func(t *testing.T, st Status) {
			if st.TargetVelocity != 5 {
				t.Errorf("target = %#x", st.TargetVelocity)
			}
		}},
		{"target velocity high word", RegTargetVelocity, []uint16{0x0005}, nil, func(t *testing.T, st Status) {
			if st.TargetVelocity != 0x00050000 {
				t.Errorf("target = %#x", st.TargetVelocity)
			}
		}},
		{"statusword read-only", RegStatusword, []uint16{1}, ErrIllegalDataAddress, nil},
		{"error code read-only", RegErrorCode, []uint16{1}, ErrIllegalDataAddress, nil},
		{"mode display read-only", RegModeDisplay, []uint16{1}, ErrIllegalDataAddress, nil},
		{"position read-only", RegPosition, []uint16{1, 2}, ErrIllegalDataAddress, nil},
		{"velocity read-only", RegVelocity + 1, []uint16{1}, ErrIllegalDataAddress, nil},
		{"serial read-only", RegSerial, []uint16{1}, ErrIllegalDataAddress, nil},
		{"unmapped", 5, []uint16{1}, ErrIllegalDataAddress, nil},
		{"past target velocity", RegTargetVelocity + 1, []uint16{1, 2}, ErrIllegalDataAddress, nil},
		{"range over read-only is all or nothing", RegControlword, []uint16{CmdShutdown, 0, 6}, ErrIllegalDataAddress, nil},
		{"no values", RegControlword, nil, ErrIllegalDataValue, nil},
		{"124 values", RegControlword, make([]uint16, 124), ErrIllegalDataValue, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDrive(t, true, newClock())
			before := d.Status()
			err := d.WriteRegisters(tt.addr, tt.values)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err != nil {
				if after := d.Status(); after != before {
					t.Fatalf("failed write changed the drive: %+v → %+v", before, after)
				}
				var ec interface{ ExceptionCode() byte }
				if !errors.As(err, &ec) || ec.ExceptionCode() != byte(tt.err.(Exception)) {
					t.Fatalf("error %v has no exception code", err)
				}
				return
			}
			tt.check(t, d.Status())
		})
	}
}

func TestIdentificationObjects(t *testing.T) {
	d, err := New(Options{Serial: "SN-42", Model: "SIM-402-750W", Revision: "2.0"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[byte]string{
		0x00: "rollcall firmware-sim",
		0x01: "RC-SIM-402",
		0x02: "2.0",
		0x03: "https://rollcall.invalid/firmware-sim",
		0x04: "Simulated servo drive",
		0x05: "SIM-402-750W",
		0x80: "SN-42",
	}
	for id := 0; id < 256; id++ {
		v, ok := d.IdentificationObject(byte(id))
		w, present := want[byte(id)]
		if ok != present || string(v) != w {
			t.Errorf("object %#02x = %q, %v; want %q, %v", id, v, ok, w, present)
		}
	}
	d = newDrive(t, false, nil)
	if v, _ := d.IdentificationObject(ObjModelName); string(v) != DefaultModel {
		t.Errorf("default model = %q", v)
	}
	if v, _ := d.IdentificationObject(ObjRevision); string(v) != DefaultRevision {
		t.Errorf("default revision = %q", v)
	}
}

func TestNewErrors(t *testing.T) {
	for _, o := range []Options{
		{},
		{Serial: "12345678901234567"},
		{Serial: "SIM\x00"},
		{Serial: "SIM-1", Model: "Modèle"},
		{Serial: "SIM-1", Revision: string(make([]byte, 65))},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
	if _, err := New(Options{Serial: "1234567890123456"}); err != nil {
		t.Errorf("16-character serial: %v", err)
	}
}

// TestConcurrentUse is for the race detector.
func TestConcurrentUse(t *testing.T) {
	d := newDrive(t, true, nil)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				switch j % 5 {
				case 0:
					_, _ = d.ReadRegisters(0, 5)
				case 1:
					_ = d.WriteRegisters(RegTargetVelocity, []uint16{0, uint16(j)})
				case 2:
					d.SetFault(j%2 == 0)
				case 3:
					d.Enable()
				default:
					_ = d.Status()
				}
			}
		}()
	}
	wg.Wait()
}

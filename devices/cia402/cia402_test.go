package cia402

import "testing"

func TestDecode(t *testing.T) {
	tests := []struct {
		sw   uint16
		want State
	}{
		{0x0000, NotReadyToSwitchOn},
		{0x0040, SwitchOnDisabled},
		{0x0250, SwitchOnDisabled}, // + voltage enabled, remote
		{0x0221, ReadyToSwitchOn},
		{0x0231, ReadyToSwitchOn},
		{0x0233, SwitchedOn},
		{0x0237, OperationEnabled},
		{0x0637, OperationEnabled}, // + target reached
		{0x0217, QuickStopActive},
		{0x021F, FaultReactionActive},
		{0x0208, Fault},
		{0x0218, Fault},
		{0x0029, Unknown}, // fault bit with ready bits: reserved coding
	}
	for _, tc := range tests {
		if got := Decode(tc.sw); got != tc.want {
			t.Errorf("Decode(0x%04X) = %s, want %s", tc.sw, got, tc.want)
		}
	}
}

func TestDecodeStatus(t *testing.T) {
	s := DecodeStatus(0x0218, 0x2310)
	if !s.Fault || !s.Degraded() || s.ErrorCode != 0x2310 || s.State != Fault {
		t.Fatalf("fault statusword: %+v", s)
	}
	if s := DecodeStatus(0x0237, 0); s.Degraded() {
		t.Fatalf("operation enabled is degraded: %+v", s)
	}
	if s := DecodeStatus(0x02B7, 0); !s.Warning || !s.Degraded() || s.State != OperationEnabled {
		t.Fatalf("warning bit: %+v", s)
	}
	m := DecodeStatus(0x0237, 0).Map()
	if m["cia402"] != "operation_enabled" || m["fault"] != false || m["error_code"] != 0 {
		t.Fatalf("map %v", m)
	}
}

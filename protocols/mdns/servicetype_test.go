package mdns

import (
	"errors"
	"testing"
)

func TestValidServiceType(t *testing.T) {
	tests := []struct {
		in     string
		reason string // "" = valid
	}{
		{"_modbus._tcp", ""},
		{"_opc-ua2._udp", ""},
		{"_Modbus._TCP", ""},          // DNS names compare case-insensitively
		{"_abcdefghijklmno._tcp", ""}, // 15 characters
		{"_a._tcp", ""},               // 1 character
		{"_x-1-y._tcp", ""},           // single hyphens inside
		{"modbus._tcp", "no leading underscore"},
		{"_modbus", "no leading underscore"}, // no protocol label at all
		{"", "no leading underscore"},
		{"_modbus._sctp", "protocol must be _tcp or _udp"},
		{"_modbus._tcp.local.", "protocol must be _tcp or _udp"},
		{"_abcdefghijklmnop._tcp", "service name must have 1-15 characters, got 16"},
		{"_._tcp", "service name must have 1-15 characters, got 0"},
		{"_-modbus._tcp", "hyphen at either end or two in a row"},
		{"_modbus-._tcp", "hyphen at either end or two in a row"},
		{"_mod--bus._tcp", "hyphen at either end or two in a row"},
		{"_--._tcp", "hyphen at either end or two in a row"},
		{"_-._tcp", "hyphen at either end or two in a row"},
		{"_502._tcp", "service name needs a letter"},
		{"_mod/+#._tcp", "invalid character '/'"},
		{"_mod_bus._tcp", "invalid character '_'"},
		{"_modbüs._tcp", "non-ASCII character"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			err := ValidServiceType(tc.in)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ste *ServiceTypeError
			if !errors.As(err, &ste) || ste.Reason != tc.reason || ste.Type != tc.in {
				t.Fatalf("error %v, want reason %q", err, tc.reason)
			}
			if want := `service type "` + tc.in + `": ` + tc.reason; err.Error() != want {
				t.Errorf("Error() = %q, want %q", err.Error(), want)
			}
		})
	}
}

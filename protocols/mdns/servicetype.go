package mdns

import (
	"fmt"
	"strings"
)

// ServiceTypeError says why a string is not a DNS-SD service type.
type ServiceTypeError struct {
	Type   string // the string checked
	Reason string // what is wrong, e.g. "service name needs a letter"
}

// Error returns e.g. `service type "_502._tcp": service name needs a letter`.
func (e *ServiceTypeError) Error() string {
	return fmt.Sprintf("service type %q: %s", e.Type, e.Reason)
}

// ValidServiceType checks a DNS-SD service type "_name._tcp" or "_name._udp" (RFC 6763
// §7): an underscore, the service name, a dot and the protocol label, _tcp or _udp, in
// any letter case (DNS names compare case-insensitively, RFC 4343). The service name
// follows RFC 6335 §5.1: 1–15 characters, only letters, digits and hyphens, at least one
// letter, no hyphen at either end and no two hyphens in a row. No domain follows
// ("_modbus._tcp.local." is refused). It returns nil, or a *ServiceTypeError saying
// what is wrong.
func ValidServiceType(s string) error {
	bad := func(format string, args ...any) error {
		return &ServiceTypeError{Type: s, Reason: fmt.Sprintf(format, args...)}
	}
	name, proto, ok := strings.Cut(s, ".")
	if !ok || !strings.HasPrefix(name, "_") {
		return bad("no leading underscore")
	}
	if p := strings.ToLower(proto); p != "_tcp" && p != "_udp" {
		return bad("protocol must be _tcp or _udp")
	}
	name = name[1:]
	if len(name) < 1 || len(name) > 15 {
		return bad("service name must have 1-15 characters, got %d", len(name))
	}
	letter := false
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			letter = true
		case c >= '0' && c <= '9':
		case c == '-':
			if i == 0 || i == len(name)-1 || name[i-1] == '-' {
				return bad("hyphen at either end or two in a row")
			}
		case c >= 0x80:
			return bad("non-ASCII character")
		default:
			return bad("invalid character %q", c)
		}
	}
	if !letter {
		return bad("service name needs a letter")
	}
	return nil
}

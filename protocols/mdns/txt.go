package mdns

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Bounds applied to everything a Candidate takes from the network. A DNS-SD responder
// is any host on the link, so nothing it sends is trusted.
const (
	// MaxInstanceLen is the maximum length of Candidate.Instance in bytes: a DNS label
	// (RFC 6763 §4.1.1, "Instance Names" of up to 63 octets).
	MaxInstanceLen = 63
	// MaxHostLen is the maximum length of Candidate.Host in bytes (a DNS name,
	// RFC 1035 §2.3.4).
	MaxHostLen = 253
	// MaxTXTKeys is the maximum number of TXT keys kept per instance; later keys are
	// ignored.
	MaxTXTKeys = 32
	// MaxTXTKeyLen is the maximum length of a TXT key in bytes. RFC 6763 §6.4
	// recommends at most 9 characters; longer keys up to this bound are accepted, keys
	// beyond it are ignored (not truncated, which could merge distinct keys).
	MaxTXTKeyLen = 64
	// MaxTXTValueLen is the maximum length of a cleaned TXT value in bytes; longer
	// values are truncated at a character boundary.
	MaxTXTValueLen = 255
	// MaxAddrs is the maximum number of addresses kept per instance.
	MaxAddrs = 16
)

// ParseTXT turns the character-strings of a DNS-SD TXT record (RFC 6763 §6), as raw
// bytes without DNS presentation escapes, into a key → value map. It never returns nil.
//
//   - Each string is key=value, split at the first '=' (§6.3). A string without '=' is
//     a boolean attribute: its value is "true" (§6.4). "key=" has the empty value.
//   - Empty strings are ignored (§6.1), and so are strings that begin with '=' (a
//     missing key, §6.4).
//   - Keys are case-insensitive and returned lower-cased (§6.4). A key must be
//     printable US-ASCII 0x20–0x7E (§6.4) and at most MaxTXTKeyLen bytes; otherwise the
//     string is ignored.
//   - When a key occurs more than once, the first occurrence wins (§6.4), also when
//     the occurrences differ only in case.
//   - Values are opaque bytes on the wire (§6.5); here they are cleaned: invalid UTF-8
//     becomes U+FFFD, control characters (C0, DEL, C1, bidirectional controls, line
//     and paragraph separators, BOM) are removed, and the result is truncated to
//     MaxTXTValueLen bytes at a character boundary.
//   - At most MaxTXTKeys keys are kept; further strings are ignored.
func ParseTXT(records []string) map[string]string {
	m := make(map[string]string)
	for _, rec := range records {
		if len(m) >= MaxTXTKeys {
			break
		}
		if rec == "" {
			continue
		}
		key, value, hasValue := strings.Cut(rec, "=")
		if key == "" || len(key) > MaxTXTKeyLen || !printableASCII(key) {
			continue
		}
		key = strings.ToLower(key)
		if _, dup := m[key]; dup {
			continue
		}
		if !hasValue {
			m[key] = "true"
			continue
		}
		m[key] = cleanText(value, MaxTXTValueLen)
	}
	return m
}

// printableASCII reports whether s has only bytes 0x20–0x7E.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// cleanText returns s as valid UTF-8 of at most max bytes: invalid bytes become U+FFFD,
// control characters (see isControl) are dropped, and it is cut at the last character
// that fits. It reads no more of s than it needs.
func cleanText(s string, max int) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if r != utf8.RuneError && isControl(r) {
			continue
		}
		if b.Len()+utf8.RuneLen(r) > max {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// isControl reports whether r is a character that must not reach a log line, a
// terminal or a JSON consumer from the network: Unicode category Cc (C0, DEL, C1),
// bidirectional formatting controls, line and paragraph separators, and the BOM.
func isControl(r rune) bool {
	switch {
	case unicode.IsControl(r):
		return true
	case r == '\u061c', r == '\u200e', r == '\u200f', // ALM, LRM, RLM
		r >= '\u202a' && r <= '\u202e', // LRE … RLO
		r >= '\u2066' && r <= '\u2069', // LRI … PDI
		r == '\u2028', r == '\u2029',   // line, paragraph separator
		r == '\ufeff': // BOM / zero width no-break space
		return true
	}
	return false
}

// unescapeDNS turns a name or character-string in DNS presentation format, as
// github.com/miekg/dns produces it (RFC 1035 §5.1: "\DDD" is the byte with decimal
// value DDD, "\X" is X), back into its raw bytes. A lone trailing backslash is kept.
func unescapeDNS(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b = append(b, c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			if v := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0'); v <= 0xff {
				b = append(b, byte(v))
				i += 3
				continue
			}
		}
		i++
		b = append(b, s[i])
	}
	return string(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// instanceFromZeroconf recovers the escaped instance label from the name zeroconf
// reports. zeroconf derives it by cutting the service name off the escaped instance
// name and trimming dots at both ends, which also removes the dot of a trailing "\."
// escape; an odd number of trailing backslashes means that happened.
func instanceFromZeroconf(s string) string {
	n := 0
	for n < len(s) && s[len(s)-1-n] == '\\' {
		n++
	}
	if n%2 == 1 {
		return s + "."
	}
	return s
}

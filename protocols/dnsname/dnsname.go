// Package dnsname holds the one rule rollcall's DNS code (the mDNS browser and the DNS
// interface) shares about names: how they compare.
package dnsname

// Fold returns s with the ASCII letters A–Z lower-cased and every other byte unchanged,
// so that its length is that of s: DNS names compare case-insensitively in ASCII only
// (RFC 4343 §3; RFC 6762 §16 for mDNS). Two names are the same name when their Folds
// are equal. s is returned as is when it has no upper-case letter (no allocation).
func Fold(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

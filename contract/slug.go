package contract

import (
	"fmt"
	"hash/fnv"
	"strings"
)

// DefaultPrefix is the topic prefix used when Topics.Prefix is empty
// (docs/contract.md, "Topics and payloads").
const DefaultPrefix = "rollcall/v1"

// MaxSlugLen is the maximum length of a slug in bytes (= characters: slugs are ASCII).
const MaxSlugLen = 64

// slugHashPrefix is how many characters of a too-long slug are kept before the
// "-" and the 8 hex digits of the hash: 55 + 1 + 8 = MaxSlugLen.
const slugHashPrefix = MaxSlugLen - 1 - 8

// EmptySlug is what Slug returns for the empty string: a topic level may not be empty.
const EmptySlug = "-"

// Slug turns any string from a device, a config file or an mDNS packet into one safe
// MQTT topic level (docs/contract.md, "Topics and payloads"):
//
//   - ASCII letters are lower-cased; a-z, 0-9, '.', '_' and '-' are kept;
//   - every other character becomes '-': each rune counts once, so "ä" gives one '-',
//     and each byte of invalid UTF-8 gives one '-'. This covers '/', '+', '#', '$',
//     NUL, spaces and control characters. Runs of '-' are not collapsed;
//   - the empty string gives EmptySlug ("-");
//   - a result longer than MaxSlugLen (64) characters is cut to its first 55
//     characters, then "-" and the 8 lower-case hex digits of the 32-bit FNV-1a hash
//     of the ORIGINAL string s, so that long names sharing a prefix stay distinct.
//
// The result is 1–64 characters of [a-z0-9._-]. Slug is idempotent
// (Slug(Slug(s)) == Slug(s)). Different inputs may give the same slug ("A/b" and
// "a-b"); keeping ids unique after slugging is the caller's business.
func Slug(s string) string {
	if s == "" {
		return EmptySlug
	}
	var b strings.Builder
	b.Grow(min(len(s), MaxSlugLen))
	n := 0
	for _, r := range s { // invalid UTF-8 yields utf8.RuneError once per bad byte
		if n == MaxSlugLen+1 {
			break // long enough to know it must be hashed
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		case r >= 'A' && r <= 'Z':
			b.WriteRune(r + ('a' - 'A'))
		default:
			b.WriteByte('-')
		}
		n++
	}
	out := b.String()
	if len(out) <= MaxSlugLen {
		return out
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(s))
	return fmt.Sprintf("%s-%08x", out[:slugHashPrefix], h.Sum32())
}

// IsSlug reports whether s is already a valid slug: 1–64 characters of [a-z0-9._-].
// Every slug produced by Slug satisfies it.
func IsSlug(s string) bool {
	if len(s) == 0 || len(s) > MaxSlugLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Package mqtt is rollcall's side of the MQTT contract v1 (DESIGN.md, "MQTT contract
// (v1)"): topic and slug rules, the JSON codec of instance and gateway records, the
// gateway's Publisher (retained records, gateway status with a will, resync on
// reconnect) and Watch, a small consumer of the same topics.
//
// The MQTT client is github.com/eclipse/paho.mqtt.golang v1.5.1 (MQTT 3.1.1); the
// embedded broker lives in the sub-package embedded.
package mqtt

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"unicode/utf8"
)

// DefaultPrefix is the topic prefix used when Topics.Prefix is empty
// (DESIGN.md, "MQTT contract (v1)").
const DefaultPrefix = "rollcall/v1"

// MaxSlugLen is the maximum length of a slug in bytes (= characters: slugs are ASCII).
const MaxSlugLen = 64

// slugHashPrefix is how many characters of a too-long slug are kept before the
// "-" and the 8 hex digits of the hash: 55 + 1 + 8 = MaxSlugLen.
const slugHashPrefix = MaxSlugLen - 1 - 8

// EmptySlug is what Slug returns for the empty string: a topic level may not be empty.
const EmptySlug = "-"

// Slug turns any string from a device, a config file or an mDNS packet into one safe
// MQTT topic level (DESIGN.md, "MQTT contract (v1)"):
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

// Topics builds and parses the topics of the MQTT contract v1 (DESIGN.md, "MQTT
// contract (v1)"). The zero value uses DefaultPrefix. Every level taken from a
// caller's argument is passed through Slug, so no device or network data can put a
// wildcard, a '$', NUL or an empty level into a topic.
type Topics struct {
	// Prefix is the trusted, configured topic prefix, e.g. "rollcall/v1" or
	// "plant7/rollcall/v1"; "" means DefaultPrefix. See Validate for what it may hold.
	Prefix string
}

// prefix returns the effective prefix.
func (t Topics) prefix() string {
	if t.Prefix == "" {
		return DefaultPrefix
	}
	return t.Prefix
}

// ErrInvalidPrefix is wrapped by Topics.Validate.
var ErrInvalidPrefix = errors.New("invalid MQTT topic prefix")

// Validate checks the prefix (configuration, not device data, so it is checked rather
// than slugged): it must be valid UTF-8 of at most 1024 bytes, contain no '+', '#' or
// NUL, have no empty level (no leading, trailing or doubled '/'), and not start with
// '$' (brokers hide '$' topics from '#' and '+' subscriptions). The error wraps
// ErrInvalidPrefix.
func (t Topics) Validate() error {
	p := t.prefix()
	switch {
	case !utf8.ValidString(p):
		return fmt.Errorf("%w %q: not valid UTF-8", ErrInvalidPrefix, p)
	case len(p) > 1024:
		return fmt.Errorf("%w: longer than 1024 bytes", ErrInvalidPrefix)
	case strings.ContainsAny(p, "+#\x00"):
		return fmt.Errorf("%w %q: contains '+', '#' or NUL", ErrInvalidPrefix, p)
	case strings.HasPrefix(p, "$"):
		return fmt.Errorf("%w %q: starts with '$'", ErrInvalidPrefix, p)
	}
	for _, level := range strings.Split(p, "/") {
		if level == "" {
			return fmt.Errorf("%w %q: empty topic level", ErrInvalidPrefix, p)
		}
	}
	return nil
}

// Instance returns the topic of one instance record:
// <prefix>/catalog/<slug(service)>/<slug(gateway)>/<slug(id)>.
func (t Topics) Instance(service, gateway, id string) string {
	return t.prefix() + "/catalog/" + Slug(service) + "/" + Slug(gateway) + "/" + Slug(id)
}

// GatewayStatus returns the topic of a gateway's status record (and will):
// <prefix>/gateways/<slug(gateway)>/status.
func (t Topics) GatewayStatus(gateway string) string {
	return t.prefix() + "/gateways/" + Slug(gateway) + "/status"
}

// CatalogFilter returns the subscription filter for the instance records of one
// service, <prefix>/catalog/<slug(service)>/+/+, or of every service when service is
// "": <prefix>/catalog/+/+/+.
//
// DESIGN.md describes consumers subscribing to <prefix>/catalog/<service>/#; the
// filter here matches exactly the instance topics of v1 (three levels under catalog)
// and nothing else, so a consumer receives only what ParseInstanceTopic accepts.
func (t Topics) CatalogFilter(service string) string {
	if service == "" {
		return t.prefix() + "/catalog/+/+/+"
	}
	return t.prefix() + "/catalog/" + Slug(service) + "/+/+"
}

// GatewayStatusFilter returns the subscription filter for the status record of every
// gateway: <prefix>/gateways/+/status.
func (t Topics) GatewayStatusFilter() string {
	return t.prefix() + "/gateways/+/status"
}

// ParseInstanceTopic splits an instance topic built by Instance into its three slug
// levels. ok is false when topic is not <prefix>/catalog/<a>/<b>/<c> with each of a, b,
// c a valid slug (IsSlug).
func (t Topics) ParseInstanceTopic(topic string) (service, gateway, instance string, ok bool) {
	rest, found := strings.CutPrefix(topic, t.prefix()+"/catalog/")
	if !found {
		return "", "", "", false
	}
	levels := strings.Split(rest, "/")
	if len(levels) != 3 || !IsSlug(levels[0]) || !IsSlug(levels[1]) || !IsSlug(levels[2]) {
		return "", "", "", false
	}
	return levels[0], levels[1], levels[2], true
}

// ParseGatewayStatusTopic returns the gateway slug of a topic built by GatewayStatus.
// ok is false when topic is not <prefix>/gateways/<g>/status with g a valid slug.
func (t Topics) ParseGatewayStatusTopic(topic string) (gateway string, ok bool) {
	rest, found := strings.CutPrefix(topic, t.prefix()+"/gateways/")
	if !found {
		return "", false
	}
	g, found := strings.CutSuffix(rest, "/status")
	if !found || !IsSlug(g) {
		return "", false
	}
	return g, true
}

package contract

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Topics builds and parses the topics of the MQTT contract v1 (docs/contract.md, "Topics
// and payloads"). The zero value uses DefaultPrefix. Every level taken from a
// caller's argument is passed through Slug, so no device or network data can put a
// wildcard, a '$', NUL or an empty level into a topic.
type Topics struct {
	// Prefix is the trusted, configured topic prefix, e.g. "rollcall/v1" or
	// "plant7/rollcall/v1"; "" means DefaultPrefix. See Validate for what it may hold.
	Prefix string
}

// Root returns the effective prefix: Prefix, or DefaultPrefix when Prefix is "".
func (t Topics) Root() string {
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
	p := t.Root()
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
	return t.Root() + "/catalog/" + Slug(service) + "/" + Slug(gateway) + "/" + Slug(id)
}

// GatewayStatus returns the topic of a gateway's status record (and will):
// <prefix>/gateways/<slug(gateway)>/status.
func (t Topics) GatewayStatus(gateway string) string {
	return t.Root() + "/gateways/" + Slug(gateway) + "/status"
}

// CatalogFilter returns the subscription filter for the instance records of one
// service, <prefix>/catalog/<slug(service)>/+/+, or of every service when service is
// "": <prefix>/catalog/+/+/+. It matches exactly the instance topics of v1 (three levels
// under catalog) and nothing else, so a consumer receives only what ParseInstanceTopic
// accepts.
func (t Topics) CatalogFilter(service string) string {
	if service == "" {
		return t.Root() + "/catalog/+/+/+"
	}
	return t.Root() + "/catalog/" + Slug(service) + "/+/+"
}

// GatewayStatusFilter returns the subscription filter for the status record of every
// gateway: <prefix>/gateways/+/status.
func (t Topics) GatewayStatusFilter() string {
	return t.Root() + "/gateways/+/status"
}

// GatewayCatalogFilter returns the filter of every instance record one gateway
// publishes, whatever the service: <prefix>/catalog/+/<slug(gateway)>/#. The gateway's
// read-back at start subscribes to it.
func (t Topics) GatewayCatalogFilter(gateway string) string {
	return t.Root() + "/catalog/+/" + Slug(gateway) + "/#"
}

// ReadBackMarker returns the topic of the gateway's read-back marker,
// <prefix>/gateways/<slug(gateway)>/readback: a non-retained message the gateway sends
// to itself after subscribing to GatewayCatalogFilter; the broker delivers the retained
// records first, so the marker's arrival ends the read (docs/contract.md, "Gateway
// start").
func (t Topics) ReadBackMarker(gateway string) string {
	return t.Root() + "/gateways/" + Slug(gateway) + "/readback"
}

// GatewayACL returns the filters a broker ACL grants a gateway for writing (and
// reading): its own catalog subtree and its own gateway subtree,
// [<prefix>/catalog/+/<slug(gateway)>/#, <prefix>/gateways/<slug(gateway)>/#]. Each
// gateway writes only there, so one gateway can never overwrite another's records.
func (t Topics) GatewayACL(gateway string) []string {
	return []string{t.GatewayCatalogFilter(gateway), t.Root() + "/gateways/" + Slug(gateway) + "/#"}
}

// ReadAllFilter returns <prefix>/#: everything under the prefix, what a read-only
// consumer is granted.
func (t Topics) ReadAllFilter() string {
	return t.Root() + "/#"
}

// ConsumersFilter returns <prefix>/consumers/#: the subtree consumers may write to (their
// sync markers, ConsumerSyncTopic), and nothing else.
func (t Topics) ConsumersFilter() string {
	return t.Root() + "/consumers/#"
}

// ConsumerSyncTopic returns <prefix>/consumers/<slug(clientID)>/sync: the topic on
// which a consumer sends itself a non-retained marker after subscribing, to learn that
// every retained record the broker had was delivered before it.
func (t Topics) ConsumerSyncTopic(clientID string) string {
	return t.Root() + "/consumers/" + Slug(clientID) + "/sync"
}

// ParseInstanceTopic splits an instance topic built by Instance into its three slug
// levels. ok is false when topic is not <prefix>/catalog/<a>/<b>/<c> with each of a, b,
// c a valid slug (IsSlug).
func (t Topics) ParseInstanceTopic(topic string) (service, gateway, instance string, ok bool) {
	rest, found := strings.CutPrefix(topic, t.Root()+"/catalog/")
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
	rest, found := strings.CutPrefix(topic, t.Root()+"/gateways/")
	if !found {
		return "", false
	}
	g, found := strings.CutSuffix(rest, "/status")
	if !found || !IsSlug(g) {
		return "", false
	}
	return g, true
}

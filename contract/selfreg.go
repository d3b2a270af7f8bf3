package contract

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Maintenance is the status of an instance an operator took out of service
// (docs/contract.md, "Maintenance"): still listed, with Record.Maintenance saying why
// and until when, never to be picked. A consumer that knows only the three health
// statuses treats it as not live, as it must any status it does not know.
const Maintenance Status = "maintenance"

// CheckState is one check of an instance in its record's "checks" (docs/contract.md,
// "Several checks"): a gateway lists them when an instance has more than its heartbeat
// poll, or a heartbeat that carries a note (a TTL renewal). The instance's status is the
// worst of them (critical, then warning, then passing).
type CheckState struct {
	// Name is "poll" (the gateway's own heartbeat poll), "ttl" (a self-registered
	// instance's renewals) or the name of a configured check.
	Name string `json:"name"`
	// Kind is poll, ttl, script, http or tcp.
	Kind string `json:"kind"`
	// Status is passing, warning or critical.
	Status Status `json:"status"`
	// Note is the last renewal's note, or a script's output (at most MaxNoteBytes).
	Note string `json:"note,omitempty"`
	// Since is when Status last changed.
	Since Time `json:"since"`
}

// MaintenanceInfo is Record.Maintenance: why and until when an operator took the
// instance out of service.
type MaintenanceInfo struct {
	Reason string `json:"reason"`
	Since  Time   `json:"since"`
	// Until is when maintenance ends by itself; null: when an operator ends it.
	Until Time `json:"until,omitzero"`
}

// MaxNoteBytes bounds a check's note (a renewal's note, a script's output) and a
// maintenance reason, in bytes; longer text is cut at a character boundary.
const MaxNoteBytes = 512

// CleanNote makes s fit a note: invalid UTF-8 and control characters other than
// newline and tab become U+FFFD, and the result is cut to MaxNoteBytes at a character
// boundary, surrounding space trimmed.
func CleanNote(s string) string {
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if r < 0x20 && r != '\n' && r != '\t' || r == 0x7F {
			r = '\uFFFD'
		}
		if b.Len()+utf8.RuneLen(r) > MaxNoteBytes {
			break
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}

// Self-registration operations (SelfRegistration.Op).
const (
	OpRegister   = "register"
	OpRenew      = "renew"
	OpDeregister = "deregister"
)

// TTL statuses of a renewal (SelfRegistration.Status), with Consul's TTL check names.
const (
	TTLPass = "pass"
	TTLWarn = "warn"
	TTLFail = "fail"
)

// Limits of a self-registration's TTL.
const (
	MinTTL = time.Second
	MaxTTL = time.Hour
)

// SelfRegistration is what a module that registers itself sends (docs/contract.md,
// "Self-registration"): as JSON on the MQTT topic Topics.Register (QoS 1, not retained)
// or to the gateway's HTTP API.
type SelfRegistration struct {
	// Op is register, renew or deregister.
	Op string `json:"op"`
	// Name names the instance within its client (1–64 characters [a-z0-9._-]); the
	// instance id is SelfInstanceID(identity, gateway, client, name).
	Name string `json:"name"`
	// Service, Endpoint, Meta, Identity and TTLMS describe the instance (register).
	Service  string            `json:"service,omitempty"`
	Endpoint Endpoint          `json:"endpoint,omitzero"`
	Meta     map[string]string `json:"meta,omitempty"`
	Identity Identity          `json:"identity,omitzero"`
	// TTLMS is the time within which the next renewal must come, in ms (MinTTL–MaxTTL);
	// without one the instance is critical.
	TTLMS int64 `json:"ttl_ms,omitempty"`
	// Status is the renewal's status (register and renew): pass (default), warn or
	// fail; Note says why (at most MaxNoteBytes).
	Status string `json:"status,omitempty"`
	Note   string `json:"note,omitempty"`
}

// ErrBadRegistration is wrapped by SelfRegistration.Check.
var ErrBadRegistration = errors.New("invalid self-registration")

// Check validates a self-registration and returns what is wrong (wrapping
// ErrBadRegistration): an unknown op, a name or service that is not a slug, a TTL
// outside MinTTL–MaxTTL, an unknown status.
func (s *SelfRegistration) Check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadRegistration, fmt.Sprintf(format, args...))
	}
	switch {
	case s.Op != OpRegister && s.Op != OpRenew && s.Op != OpDeregister:
		return bad("op %q: expected register, renew or deregister", s.Op)
	case !IsSlug(s.Name):
		return bad("name %q: expected 1–64 characters [a-z0-9._-]", s.Name)
	case s.Status != "" && s.Status != TTLPass && s.Status != TTLWarn && s.Status != TTLFail:
		return bad("status %q: expected pass, warn or fail", s.Status)
	}
	if s.Op != OpRegister {
		return nil
	}
	switch ttl := time.Duration(s.TTLMS) * time.Millisecond; {
	case !IsSlug(s.Service):
		return bad("service %q: expected 1–64 characters [a-z0-9._-]", s.Service)
	case ttl < MinTTL || ttl > MaxTTL:
		return bad("ttl_ms %d: expected %d–%d", s.TTLMS, MinTTL.Milliseconds(), MaxTTL.Milliseconds())
	case s.Endpoint.Transport == "":
		return bad("endpoint: no transport")
	}
	return nil
}

// SelfInstanceID is the id of a self-registered instance: InstanceID with the local
// part "<client>-<name>", so the same module keeps its id when it reports a serial, and
// two clients' instances of the same name never collide otherwise.
func SelfInstanceID(id Identity, gateway, client, name string) string {
	return InstanceID(id, gateway, client+"-"+name)
}

// Register returns the topic on which client sends its self-registrations to gateway:
// <prefix>/register/<slug(gateway)>/<slug(client)>. A broker ACL confines a client to
// its own (e.g. Mosquitto "pattern write rollcall/v1/register/+/%u").
func (t Topics) Register(gateway, client string) string {
	return t.Root() + "/register/" + Slug(gateway) + "/" + Slug(client)
}

// RegisterFilter returns <prefix>/register/<slug(gateway)>/+: the self-registrations
// sent to gateway.
func (t Topics) RegisterFilter(gateway string) string {
	return t.Root() + "/register/" + Slug(gateway) + "/+"
}

// ParseRegisterTopic returns the client level of a topic built by Register for
// gateway; ok is false for anything else.
func (t Topics) ParseRegisterTopic(gateway, topic string) (client string, ok bool) {
	c, found := strings.CutPrefix(topic, t.Root()+"/register/"+Slug(gateway)+"/")
	if !found || !IsSlug(c) {
		return "", false
	}
	return c, true
}

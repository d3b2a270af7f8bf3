package testutil

import (
	"crypto/rand"
	"encoding/hex"
	"testing"
)

// Unique returns prefix followed by "-" and 8 random lower-case hex digits, e.g.
// "axis-7-3f9c01ab": a name no other test, test run or process on this machine uses,
// for what is shared between processes, such as mDNS instance names and service types
// on the loopback interface. It fails the test if the system has no randomness.
func Unique(t testing.TB, prefix string) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("random name: %v", err)
	}
	return prefix + "-" + hex.EncodeToString(b[:])
}

// MDNSNames names what one test announces over mDNS on an interface other processes
// share (the loopback interface): instance names and service types carry a suffix
// unique to the test, and InstancePattern is the gateway allowlist
// (discovery.mdns.instance_patterns) that admits only those instances. So no other
// test, test run or process on the machine ever counts in the test's results, and the
// test's announcements count in nobody else's.
type MDNSNames struct {
	// Suffix is 8 random lower-case hex digits, shared by every name of the test.
	Suffix string

	t testing.TB
}

// NewMDNSNames returns names with a new random suffix.
func NewMDNSNames(t testing.TB) MDNSNames {
	t.Helper()
	u := Unique(t, "x")
	return MDNSNames{Suffix: u[len("x-"):], t: t}
}

// Instance returns the instance name name-<suffix>, e.g. "axis-7-3f9c01ab".
func (n MDNSNames) Instance(name string) string { return name + "-" + n.Suffix }

// InstancePattern is a regular expression (RE2) matching exactly the instance names
// Instance returns, for discovery.mdns.instance_patterns.
func (n MDNSNames) InstancePattern() string { return "-" + n.Suffix + "$" }

// ServiceType returns the DNS-SD service type "_<name>-<suffix>._tcp" (RFC 6763 §7: the
// name part is at most 15 characters, so name may have at most 6). It fails the test
// for a longer name.
func (n MDNSNames) ServiceType(name string) string {
	n.t.Helper()
	if len(name) == 0 || len(name) > 6 {
		n.t.Fatalf("mDNS service type name %q: want 1–6 characters (with the suffix, at most 15)", name)
	}
	return "_" + name + "-" + n.Suffix + "._tcp"
}

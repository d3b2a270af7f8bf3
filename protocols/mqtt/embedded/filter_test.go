package embedded

import (
	"testing"

	"github.com/mochi-mqtt/server/v2/hooks/auth"
)

// TestFilterMatches: filterMatches agrees with mochi's auth.MatchTopic (what the ACL
// used before) on every pair of a set of filters and topics, quirks included, and does
// not allocate.
func TestFilterMatches(t *testing.T) {
	filters := []string{"", "#", "+", "a", "a/b", "a/+", "a/#", "a/b/#", "+/b", "+/+", "a/+/c", "a/b/c", "/a", "a/",
		"rollcall/v1/catalog/+/gw1/#", "rollcall/v1/#", "$SYS/#", "a//b", "+/#"}
	topics := []string{"", "a", "b", "a/b", "a/c", "a/b/c", "a/b/c/d", "/a", "a/", "a//b", "b/b",
		"rollcall/v1/catalog/servo-drive/gw1/x", "rollcall/v1/catalog/servo-drive/gw2/x", "rollcall/v1", "$SYS/broker"}
	for _, f := range filters {
		for _, topic := range topics {
			_, want := auth.MatchTopic(f, topic)
			if got := filterMatches(f, topic); got != want {
				t.Errorf("filterMatches(%q, %q) = %v, mochi says %v", f, topic, got, want)
			}
		}
	}
	if n := testing.AllocsPerRun(100, func() { filterMatches("rollcall/v1/catalog/+/gw1/#", "rollcall/v1/catalog/servo-drive/gw1/x") }); n != 0 {
		t.Errorf("%v allocations per match", n)
	}
}

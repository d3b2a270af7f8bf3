package gateway_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/grandcat/zeroconf"
	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
)

// TestRogueMDNS: hostile mDNS announcements (names and TXT with / + # $, control
// characters, invalid UTF-8, long values) pointing at a real Modbus device become
// bounded slugs and bounded meta, never a wildcard or an extra topic level; names
// outside discovery.mdns.instance_patterns are ignored; and a flood of announcements
// with random names is capped by limits.max_endpoints (nothing registered, the number
// of polled endpoints bounded). Every name carries the test's own suffix and the
// patterns require it, so other processes' announcements on the loopback never count.
func TestRogueMDNS(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	lo := loopback(t)
	names := testutil.NewMDNSNames(t)
	h := rig.New(t)
	h.StartSimYAML(`
tcp:
  - {name: dev, listen: "127.0.0.1:0", drives: [{unit: 1, serial: "SIM-0777"}]}
`)
	_, portStr, _ := net.SplitHostPort(h.Sim.ListenerAddr("dev"))
	var port int
	fmt.Sscan(portStr, &port)
	advertise := func(instance string, port int, txt []string) {
		t.Helper()
		s, err := zeroconf.RegisterProxy(instance, "_modbus._tcp", "local.", port, fmt.Sprintf("h%d", port), []string{"127.0.0.1"}, txt, []net.Interface{lo})
		if err != nil {
			t.Fatalf("advertise %q: %v", instance, err)
		}
		t.Cleanup(s.Shutdown)
	}
	long := strings.Repeat("\xff", 200)
	advertise(names.Instance("rogue/+#$\x07 drive"), port, []string{"cell=2/+#$", "axis=\x00\x01\x1b[31m" + long, "unit=1", "serial=x/y"})
	advertise(names.Instance("ignored-name"), port+1, []string{"unit=1"})

	g := h.StartGateway("embedded", `
discovery:
  mdns:
    enabled: true
    interfaces: [`+lo.Name+`]
    window: 300ms
    every: 100ms
    instance_patterns: ['^rogue.*`+names.InstancePattern()+`', '^flood-.*`+names.InstancePattern()+`']
health: {poll_interval: 100ms}
limits: {max_endpoints: 5}
`)
	snap := rig.WaitCatalog(t, g, 15*time.Second, "the rogue-announced drive", func(r []contract.Record) bool { return len(r) == 1 })
	rec := snap[0]
	topic := contract.Topics{}.Instance(rec.Service, rec.Gateway, rec.ID)
	if levels := strings.Split(topic, "/"); len(levels) != 6 || strings.ContainsAny(topic, "+#$\x00") {
		t.Fatalf("topic %q", topic)
	}
	for k, v := range rec.Meta {
		if !utf8.ValidString(v) || len(v) > 255 || strings.ContainsAny(v, "\x00\x01\x07\x1b") {
			t.Errorf("meta %s=%q not cleaned", k, v)
		}
	}
	if rec.Meta["cell"] != "2/+#$" { // kept as data (JSON-escaped in the payload), never a topic level
		t.Errorf("meta cell %q", rec.Meta["cell"])
	}

	// A flood of announcements with random names at ports where nothing answers: the
	// test's own listeners, which never accept (a fixed port could be anyone's).
	for i := 0; i < 20; i++ {
		mute, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { mute.Close() })
		advertise(names.Instance(fmt.Sprintf("flood-%03d-%x", i, time.Now().UnixNano())), mute.Addr().(*net.TCPAddr).Port, []string{"unit=1"})
	}
	maxSeen := 0
	testutil.Eventually(t, 10*time.Second, "the polled endpoints to reach the cap", func() bool {
		maxSeen = max(maxSeen, g.Endpoints())
		return maxSeen >= 5
	})
	// Watch the bound while a few more browse windows (100 ms each) pass: the scenario
	// lasts a second, it is not waiting for anything.
	tick := time.NewTicker(testutil.PollInterval)
	defer tick.Stop()
	for end := time.Now().Add(time.Second); time.Now().Before(end); <-tick.C {
		maxSeen = max(maxSeen, g.Endpoints())
	}
	if maxSeen != 5 {
		t.Fatalf("endpoints reached %d under the flood, want exactly the cap 5", maxSeen)
	}
	if n := len(g.Registry().Snapshot()); n != 1 {
		t.Fatalf("%d instances after the flood, want 1 (announcements alone never register)", n)
	}
}

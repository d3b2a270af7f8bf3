package gateway_test

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
	"github.com/rollcall-edge/rollcall/internal/testutil/netns"
	"github.com/rollcall-edge/rollcall/internal/testutil/rig"
)

const helperEnv = "ROLLCALL_GATEWAY_NETNS_HELPER"

// TestHelperSimInNamespace is not a test of its own: TestMDNSAcrossNamespaces runs it
// inside namespace A. It serves a Modbus TCP drive on 192.0.2.1 advertised over mDNS on
// the veth, prints "ADVERTISED <unix ns>", and takes commands on stdin ("silent").
func TestHelperSimInNamespace(t *testing.T) {
	if os.Getenv(helperEnv) != "sim" {
		t.Skip("helper process for TestMDNSAcrossNamespaces")
	}
	h := rig.New(t)
	s := h.StartSimYAML(`
tcp:
  - name: axis9
    listen: 192.0.2.1:1502
    drives: [{unit: 1, serial: SIM-0901}]
    mdns: {instance: axis-9, host: axis-9-sim, interfaces: [` + netns.LinkA + `], txt: {cell: "3", axis: "9"}}
`)
	fmt.Printf("ADVERTISED %d\n", time.Now().UnixNano())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "silent" {
			if err := s.SetFault("axis9", 1, slave.Fault{Mode: slave.FaultSilent}); err != nil {
				t.Fatal(err)
			}
			fmt.Printf("SILENT %d\n", time.Now().UnixNano())
		}
	}
}

// TestHelperGatewayInNamespace runs a gateway with mDNS browsing on the veth inside
// namespace B and prints "STATUS <id> <status> <host:port> <unix ns>" for every status
// change it registers, until stdin closes.
func TestHelperGatewayInNamespace(t *testing.T) {
	if os.Getenv(helperEnv) != "gateway" {
		t.Skip("helper process for TestMDNSAcrossNamespaces")
	}
	h := rig.New(t)
	g := h.StartGateway("embedded", `
discovery:
  mdns: {enabled: true, interfaces: [`+netns.LinkB+`], window: 400ms, every: 200ms}
health: {poll_interval: 50ms, deregister_critical_after: 1m}
`)
	fmt.Println("READY")
	done := make(chan struct{})
	go func() { defer close(done); _, _ = bufio.NewReader(os.Stdin).ReadString(0) }()
	last := map[string]contract.Status{}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, r := range g.Registry().Snapshot() {
			if last[r.ID] != r.Status {
				last[r.ID] = r.Status
				fmt.Printf("STATUS %s %s %s:%d %d\n", r.ID, r.Status, r.Endpoint.Host, r.Endpoint.Port, time.Now().UnixNano())
			}
		}
		select {
		case <-done:
			return
		case <-tick.C:
		}
	}
}

// TestMDNSAcrossNamespaces: mDNS over real multicast between two network namespaces
// joined by a veth pair. The drive in A is found by the gateway in B only through its
// announcement, identified and polled over Modbus TCP across the veth, and registered
// passing; made silent, it goes critical.
func TestMDNSAcrossNamespaces(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	p := netns.NewPair(t)
	gw := netns.Start(t, p.RunTest(t, "b", "TestHelperGatewayInNamespace", helperEnv+"=gateway"))
	gw.WaitLine(t, "READY", 20*time.Second)
	sim := netns.Start(t, p.RunTest(t, "a", "TestHelperSimInNamespace", helperEnv+"=sim"))
	adv := stamp(t, sim.WaitLine(t, "ADVERTISED", 20*time.Second).Text, 1)

	line := gw.WaitLine(t, "STATUS rollcall-firmware-sim-sim-0901 passing", 20*time.Second).Text
	if f := strings.Fields(line); f[3] != "192.0.2.1:1502" {
		t.Fatalf("endpoint %s, want 192.0.2.1:1502", f[3])
	}
	t.Logf("mDNS announcement (namespace A) → passing in the gateway (namespace B): %v", time.Unix(0, stamp(t, line, 4)).Sub(time.Unix(0, adv)))

	if _, err := fmt.Fprintln(sim.Stdin(), "silent"); err != nil {
		t.Fatal(err)
	}
	silent := stamp(t, sim.WaitLine(t, "SILENT", 10*time.Second).Text, 1)
	line = gw.WaitLine(t, "STATUS rollcall-firmware-sim-sim-0901 critical", 10*time.Second).Text
	t.Logf("TCP drive silent → critical (poll 50ms, default timeout, failures 3): %v", time.Unix(0, stamp(t, line, 4)).Sub(time.Unix(0, silent)))

	for _, proc := range []*netns.Proc{sim, gw} {
		if err := proc.Wait(); err != nil {
			t.Fatalf("helper: %v\n%s", err, proc.Stderr())
		}
	}
}

func stamp(t *testing.T, line string, field int) int64 {
	t.Helper()
	f := strings.Fields(line)
	if len(f) <= field {
		t.Fatalf("line %q has no field %d", line, field)
	}
	v, err := strconv.ParseInt(f[field], 10, 64)
	if err != nil {
		t.Fatalf("line %q: %v", line, err)
	}
	return v
}

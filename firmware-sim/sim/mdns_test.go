package sim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/grandcat/zeroconf"
)

// loopback returns the loopback interface (lo on Linux).
func loopback(t *testing.T) net.Interface {
	t.Helper()
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagLoopback != 0 && ifc.Flags&net.FlagUp != 0 {
			return ifc
		}
	}
	t.Skip("no loopback interface is up: mDNS tests need one")
	return net.Interface{}
}

// browse browses service on ifc (IPv4 only) with a new zeroconf Resolver until every
// instance in want was seen or 15 s passed, drains the entries channel until the
// resolver closes it, and returns the entries seen by instance name. A resolver that
// cannot join the mDNS group on ifc skips the test: multicast on it is unavailable.
func browse(t *testing.T, ifc net.Interface, service string, want ...string) map[string]*zeroconf.ServiceEntry {
	t.Helper()
	r, err := zeroconf.NewResolver(zeroconf.SelectIfaces([]net.Interface{ifc}), zeroconf.SelectIPTraffic(zeroconf.IPv4))
	if err != nil {
		t.Skipf("mDNS on %s unavailable here: a zeroconf resolver cannot join 224.0.0.251:5353 on it: %v", ifc.Name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	entries := make(chan *zeroconf.ServiceEntry)
	if err := r.Browse(ctx, service, "local.", entries); err != nil {
		t.Fatalf("browse %s on %s: %v", service, ifc.Name, err)
	}
	seen := make(map[string]*zeroconf.ServiceEntry)
	for e := range entries { // closed by the resolver when ctx ends
		seen[e.Instance] = e
		done := true
		for _, w := range want {
			if seen[w] == nil {
				done = false
			}
		}
		if done {
			cancel() // keep draining until the channel closes
		}
	}
	for _, w := range want {
		if seen[w] == nil {
			var got []string
			for k := range seen {
				got = append(got, k)
			}
			t.Fatalf("no mDNS answer for %q on %s within 15 s (seen %q)", w, ifc.Name, got)
		}
	}
	return seen
}

// TestSimMDNS browses the advertisements on the loopback interface: instance, host
// name, port, address and TXT of two listeners, then the new port after
// RestartListener.
func TestSimMDNS(t *testing.T) {
	lo := loopback(t)
	// A random suffix keeps concurrent test runs on this machine apart.
	suffix := strconv.FormatUint(rand.Uint64()%1e8, 36)
	axis, gw := "axis-7-"+suffix, "Cell2-GW-"+suffix
	doc := fmt.Sprintf(`tcp:
  - name: axis
    listen: 127.0.0.1:0
    drives:
      - {unit: 3, serial: SIM-0703, model: SIM-402-750W}
      - {unit: 4, serial: SIM-0704}
    mdns:
      instance: %[1]s
      service: _modbus._tcp
      domain: local.
      host: axis-7-sim-%[3]s
      interfaces: [%[4]s]
      txt: {cell: "2", axis: "7"}
  - name: gw
    listen: 127.0.0.1:0
    drives: [{unit: 1, serial: SIM-0801}]
    mdns: {instance: %[2]s, interfaces: [%[4]s]}
`, axis, gw, suffix, lo.Name)
	ts := startYAML(t, doc)

	port := func(name string) int {
		_, p, err := net.SplitHostPort(ts.sim.ListenerAddr(name))
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(p)
		return n
	}
	check := func(e *zeroconf.ServiceEntry, instance, host string, port int, txt []string) {
		t.Helper()
		if e.Instance != instance || e.Service != "_modbus._tcp" || e.HostName != host || e.Port != port {
			t.Errorf("entry %q: service %q host %q port %d; want %q %q %q %d",
				e.Instance, e.Service, e.HostName, e.Port, instance, "_modbus._tcp", host, port)
		}
		if !slices.ContainsFunc(e.AddrIPv4, func(ip net.IP) bool { return ip.Equal(net.IPv4(127, 0, 0, 1)) }) {
			t.Errorf("entry %q: addresses %v, want 127.0.0.1", e.Instance, e.AddrIPv4)
		}
		if !slices.Equal(e.Text, txt) {
			t.Errorf("entry %q: TXT %q, want %q", e.Instance, e.Text, txt)
		}
	}
	axisTXT := []string{"vendor=rollcall firmware-sim", "model=SIM-402-750W", "serial=SIM-0703", "unit=3", "axis=7", "cell=2"}

	seen := browse(t, lo, "_modbus._tcp", axis, gw)
	check(seen[axis], axis, "axis-7-sim-"+suffix+".local.", port("axis"), axisTXT)
	// Default host: the instance name slugged; each device its own host name.
	check(seen[gw], gw, "cell2-gw-"+suffix+".local.", port("gw"),
		[]string{"vendor=rollcall firmware-sim", "model=SIM-402-400W", "serial=SIM-0801", "unit=1"})
	if devs := ts.devices0(); devs[0].MDNS != axis {
		t.Errorf("DeviceInfo.MDNS = %q", devs[0].MDNS)
	}

	old := port("axis")
	addr, err := ts.sim.RestartListener("axis", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if port("axis") == old {
		t.Fatalf("restart kept port %d (%s)", old, addr)
	}
	seen = browse(t, lo, "_modbus._tcp", axis)
	check(seen[axis], axis, "axis-7-sim-"+suffix+".local.", port("axis"), axisTXT) // new port, same serial
}

// devices0 is Devices through the Go API (the mDNS test has no control API).
func (ts *tcpSim) devices0() []DeviceInfo { return ts.sim.Devices() }

// TestAdvertisedIPs: a specific bound IP is advertised as is; 0.0.0.0 advertises the
// interfaces' IPv4 addresses, :: their IPv4 and IPv6 ones.
func TestAdvertisedIPs(t *testing.T) {
	lo := loopback(t)
	var v4, v6 []string
	addrs, err := lo.Addrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLinkLocalUnicast() {
			if ipn.IP.To4() != nil {
				v4 = append(v4, ipn.IP.String())
			} else {
				v6 = append(v6, ipn.IP.String())
			}
		}
	}
	if len(v4) == 0 {
		t.Skipf("%s has no IPv4 address", lo.Name)
	}
	tests := []struct {
		bound net.IP
		want  []string
	}{
		{net.IPv4(127, 0, 0, 1), []string{"127.0.0.1"}},
		{net.IPv4zero, v4},
		{net.IPv6unspecified, append(slices.Clone(v4), v6...)},
	}
	for _, tt := range tests {
		got, err := advertisedIPs(tt.bound, []net.Interface{lo})
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("advertisedIPs(%v, [%s]) = %v, %v; want %v", tt.bound, lo.Name, got, err, tt.want)
		}
	}
	if _, err := advertisedIPs(net.IPv4zero, nil); err == nil {
		t.Error("no interfaces: no error")
	}
	if _, err := interfaces([]string{"nope-if0"}); err == nil {
		t.Error("unknown interface accepted")
	}
}

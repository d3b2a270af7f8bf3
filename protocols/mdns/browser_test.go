package mdns

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/grandcat/zeroconf"
	"github.com/rollcall-edge/rollcall/internal/testutil"
)

func TestNewBrowserValidation(t *testing.T) {
	tests := []struct {
		name    string
		o       BrowserOptions
		wantErr string // substring; "" = no error
	}{
		{"ok", BrowserOptions{ServiceTypes: []string{"_modbus._tcp"}}, ""},
		{"udp and digits", BrowserOptions{ServiceTypes: []string{"_opc-ua2._udp", "_http._tcp"}}, ""},
		{"15 characters", BrowserOptions{ServiceTypes: []string{"_abcdefghijklmno._tcp"}}, ""},
		{"no service types", BrowserOptions{}, "no service types"},
		{"no underscore", BrowserOptions{ServiceTypes: []string{"modbus._tcp"}}, `service type "modbus._tcp": no leading underscore`},
		{"no protocol", BrowserOptions{ServiceTypes: []string{"_modbus"}}, `service type "_modbus"`},
		{"bad protocol", BrowserOptions{ServiceTypes: []string{"_modbus._sctp"}}, `"_modbus._sctp": protocol must be _tcp or _udp`},
		{"domain appended", BrowserOptions{ServiceTypes: []string{"_modbus._tcp.local."}}, `protocol must be`},
		{"16 characters", BrowserOptions{ServiceTypes: []string{"_abcdefghijklmnop._tcp"}}, "1-15 characters"},
		{"empty name", BrowserOptions{ServiceTypes: []string{"_._tcp"}}, "1-15 characters"},
		{"leading hyphen", BrowserOptions{ServiceTypes: []string{"_-modbus._tcp"}}, "hyphen"},
		{"double hyphen", BrowserOptions{ServiceTypes: []string{"_mod--bus._tcp"}}, "hyphen"},
		{"digits only", BrowserOptions{ServiceTypes: []string{"_502._tcp"}}, "needs a letter"},
		{"topic characters", BrowserOptions{ServiceTypes: []string{"_mod/+#._tcp"}}, "invalid character '/'"},
		{"duplicate across case", BrowserOptions{ServiceTypes: []string{"_modbus._tcp", "_Modbus._TCP"}}, `"_modbus._tcp" listed twice`},
		{"bad domain", BrowserOptions{ServiceTypes: []string{"_modbus._tcp"}, Domain: "lo cal."}, `domain "lo cal"`},
		{"empty label", BrowserOptions{ServiceTypes: []string{"_modbus._tcp"}, Domain: "a..local"}, "empty label"},
		{"unknown interface", BrowserOptions{ServiceTypes: []string{"_modbus._tcp"}, Interfaces: []string{"lo", "nosuch0"}}, `interface "nosuch0"`},
		{"negative window", BrowserOptions{ServiceTypes: []string{"_modbus._tcp"}, Window: -time.Second}, "window -1s is negative"},
		{"negative every", BrowserOptions{ServiceTypes: []string{"_modbus._tcp"}, Every: -1}, "every -1ns is negative"},
		{"negative drop", BrowserOptions{ServiceTypes: []string{"_modbus._tcp"}, DropAfter: -2}, "drop after -2 windows"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := NewBrowser(tt.o)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("no error, want %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error %q, want it to contain %q", err, tt.wantErr)
			case tt.wantErr == "" && b == nil:
				t.Fatal("nil Browser")
			}
		})
	}
}

func TestNewBrowserDefaults(t *testing.T) {
	b, err := NewBrowser(BrowserOptions{ServiceTypes: []string{"_Modbus._TCP"}, Domain: "example.org", Interfaces: []string{"lo", "lo"}})
	if err != nil {
		t.Fatal(err)
	}
	if b.window != DefaultWindow || b.every != DefaultEvery || b.dropAfter != DefaultDropAfter {
		t.Errorf("defaults: window %v every %v dropAfter %d", b.window, b.every, b.dropAfter)
	}
	if got := b.Services(); !slices.Equal(got, []string{"_modbus._tcp"}) {
		t.Errorf("services %q", got)
	}
	if b.domain != "example.org." || !slices.Equal(b.ifaceNames, []string{"lo"}) {
		t.Errorf("domain %q ifaces %q", b.domain, b.ifaceNames)
	}
	b, _ = NewBrowser(BrowserOptions{ServiceTypes: []string{"_modbus._tcp"}})
	if b.domain != DefaultDomain {
		t.Errorf("default domain %q", b.domain)
	}
}

// TestAge checks the drop-after-K rule without a network: an instance missing from K
// consecutive windows is dropped, one seen again before that is kept.
func TestAge(t *testing.T) {
	b, err := NewBrowser(BrowserOptions{ServiceTypes: []string{"_modbus._tcp"}, DropAfter: 3})
	if err != nil {
		t.Fatal(err)
	}
	c := func(name string) Candidate {
		return Candidate{Instance: name, Service: "_modbus._tcp", Port: 502, Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.9")}, TXT: map[string]string{}}
	}
	known := map[string]*tracked{}
	names := func() []string {
		var out []string
		for _, c := range snapshot("_modbus._tcp", known).Candidates {
			out = append(out, c.Instance)
		}
		return out
	}
	windows := []struct {
		found []string
		want  []string
	}{
		{[]string{"b", "a"}, []string{"a", "b"}},
		{[]string{"a"}, []string{"a", "b"}},     // b missed 1
		{nil, []string{"a", "b"}},               // a missed 1, b missed 2
		{[]string{"b"}, []string{"a", "b"}},     // b back: missed 0; a missed 2
		{nil, []string{"b"}},                    // a missed 3: dropped; b missed 1
		{[]string{"c"}, []string{"b", "c"}},     // b missed 2
		{nil, []string{"c"}},                    // b missed 3: dropped
		{nil, []string{"c"}}, {nil, []string{}}, // c dropped
		{[]string{"a"}, []string{"a"}}, // a comes back
	}
	for i, w := range windows {
		found := map[string]Candidate{}
		for _, n := range w.found {
			found[n] = c(n)
		}
		b.age("_modbus._tcp", known, found)
		if got := names(); !slices.Equal(got, w.want) && !(len(got) == 0 && len(w.want) == 0) {
			t.Fatalf("window %d: %q, want %q", i, got, w.want)
		}
	}
	s := snapshot("_modbus._tcp", map[string]*tracked{})
	if s.Candidates == nil || s.Source() != "mdns:_modbus._tcp" {
		t.Errorf("empty snapshot %#v source %q", s, s.Source())
	}
}

// TestAgeBound checks that at most MaxInstances instances are kept per service type.
func TestAgeBound(t *testing.T) {
	b, _ := NewBrowser(BrowserOptions{ServiceTypes: []string{"_modbus._tcp"}})
	known := map[string]*tracked{}
	found := map[string]Candidate{}
	for i := range MaxInstances + 50 {
		n := fmt.Sprintf("i%04d", i)
		found[n] = Candidate{Instance: n}
	}
	b.age("_modbus._tcp", known, found)
	if len(known) != MaxInstances {
		t.Errorf("%d instances kept, want %d", len(known), MaxInstances)
	}
}

// TestSnapshotIsACopy checks that a receiver cannot change the Browser's state.
func TestSnapshotIsACopy(t *testing.T) {
	known := map[string]*tracked{"x": {c: Candidate{Instance: "x", Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}, TXT: map[string]string{"a": "1"}}}}
	s := snapshot("_modbus._tcp", known)
	s.Candidates[0].TXT["a"] = "changed"
	s.Candidates[0].Addrs[0] = netip.MustParseAddr("192.0.2.99")
	if known["x"].c.TXT["a"] != "1" || known["x"].c.Addrs[0] != netip.MustParseAddr("192.0.2.1") {
		t.Error("snapshot shares memory with the Browser")
	}
}

// TestCandidateFromEntry checks the conversion of zeroconf entries (escaped names as
// github.com/miekg/dns presents them) into cleaned candidates.
func TestCandidateFromEntry(t *testing.T) {
	b, _ := NewBrowser(BrowserOptions{ServiceTypes: []string{"_modbus._tcp"}})
	b6, _ := NewBrowser(BrowserOptions{ServiceTypes: []string{"_modbus._tcp"}, IPv6: true})
	entry := func(instance, host string, port int, ips []string, txt ...string) *zeroconf.ServiceEntry {
		e := zeroconf.NewServiceEntry(instance, "_modbus._tcp", "local.")
		e.HostName, e.Port, e.Text = host, port, txt
		for _, s := range ips {
			ip := net.ParseIP(s)
			if ip.To4() != nil {
				e.AddrIPv4 = append(e.AddrIPv4, ip)
			} else {
				e.AddrIPv6 = append(e.AddrIPv6, ip)
			}
		}
		return e
	}
	t.Run("escaped names and TXT", func(t *testing.T) {
		e := entry(`Axis\ 7\046`, `axis-7-sim.local.`, 15020, []string{"192.0.2.7", "192.0.2.7", "10.0.0.1", "fd00::7"},
			`vendor=M\195\188ller`, `cell=2\000`, `q=\"x\"`)
		key, c, why := b.candidate("_modbus._tcp", e)
		if why != "" {
			t.Fatal(why)
		}
		want := Candidate{Instance: "Axis 7.", Service: "_modbus._tcp", Domain: "local.", Host: "axis-7-sim.local", Port: 15020,
			Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("192.0.2.7")},
			TXT:   map[string]string{"vendor": "Müller", "cell": "2", "q": `"x"`}}
		if key != `Axis\ 7\046` || !equalCandidate(c, want) {
			t.Errorf("key %q\n got %+v\nwant %+v", key, c, want)
		}
		_, c6, _ := b6.candidate("_modbus._tcp", e)
		if len(c6.Addrs) != 3 || c6.Addrs[2] != netip.MustParseAddr("fd00::7") {
			t.Errorf("IPv6 addrs %v", c6.Addrs)
		}
	})
	t.Run("hostile instance", func(t *testing.T) {
		e := entry(`evil/+#$\000\007`+strings.Repeat(`\255`, 30), `h\001ost.local.`, 1, []string{"192.0.2.1"})
		_, c, why := b.candidate("_modbus._tcp", e)
		if why != "" {
			t.Fatal(why)
		}
		if want := "evil/+#$" + strings.Repeat("\ufffd", 18); c.Instance != want {
			t.Errorf("instance %q (%d bytes), want %q", c.Instance, len(c.Instance), want)
		}
		if c.Host != "host.local" {
			t.Errorf("host %q", c.Host)
		}
	})
	for _, tt := range []struct {
		name string
		e    *zeroconf.ServiceEntry
		why  string
	}{
		{"control-only instance", entry(`\000\001`, "h.local.", 502, []string{"192.0.2.1"}), "empty instance name"},
		{"port 0", entry("x", "h.local.", 0, []string{"192.0.2.1"}), "no port"},
		{"only unusable addresses", entry("x", "h.local.", 502, []string{"0.0.0.0", "224.0.0.251", "255.255.255.255", "fd00::1"}), "no usable address"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, why := b.candidate("_modbus._tcp", tt.e); why != tt.why {
				t.Errorf("reason %q, want %q", why, tt.why)
			}
		})
	}
}

func equalCandidate(a, b Candidate) bool {
	return a.Instance == b.Instance && a.Service == b.Service && a.Domain == b.Domain && a.Host == b.Host &&
		a.Port == b.Port && slices.Equal(a.Addrs, b.Addrs) && maps.Equal(a.TXT, b.TXT)
}

func loopback(t *testing.T) net.Interface {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 && i.Flags&net.FlagUp != 0 {
			return i
		}
	}
	t.Skip("no loopback interface that is up")
	return net.Interface{}
}

// find returns the candidate with the given instance name.
func find(s Snapshot, instance string) (Candidate, bool) {
	for _, c := range s.Candidates {
		if c.Instance == instance {
			return c, true
		}
	}
	return Candidate{}, false
}

// TestBrowseLoopback advertises an instance on the loopback interface only (zeroconf
// RegisterProxy with SelectIfaces-style interface list [lo]), browses lo in short
// windows, expects the candidate with its TXT, then shuts the advertiser down and
// expects the instance to leave the snapshots after DropAfter windows, not before.
func TestBrowseLoopback(t *testing.T) {
	lo := loopback(t)
	instance := fmt.Sprintf("lo-test-%d", os.Getpid())
	host := fmt.Sprintf("lo-test-%d-host", os.Getpid())
	txt := []string{"vendor=rollcall", "model=loop", "serial=LO-1", "cell=2", "axis=7"}
	srv, err := zeroconf.RegisterProxy(instance, "_modbus._tcp", "local.", 15020, host, []string{"127.0.0.1"}, txt, []net.Interface{lo})
	if err != nil {
		t.Fatalf("RegisterProxy on %s: %v", lo.Name, err)
	}
	advertised := time.Now()
	srvUp := true
	defer func() {
		if srvUp {
			srv.Shutdown()
		}
	}()

	const dropAfter = 2
	b, err := NewBrowser(BrowserOptions{
		ServiceTypes: []string{"_modbus._tcp"},
		Interfaces:   []string{lo.Name},
		Window:       300 * time.Millisecond,
		Every:        100 * time.Millisecond,
		DropAfter:    dropAfter,
		Logger:       testutil.Logger(t, slog.LevelDebug),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	up := make(chan Snapshot)
	runErr := make(chan error, 1)
	go func() { runErr <- b.Run(ctx, up) }()
	defer func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	next := func(what string) Snapshot {
		t.Helper()
		select {
		case s := <-up:
			if s.Service != "_modbus._tcp" {
				t.Fatalf("snapshot of %q", s.Service)
			}
			return s
		case <-time.After(10 * time.Second):
			t.Fatalf("no snapshot within 10 s while waiting for %s", what)
			return Snapshot{}
		}
	}

	var got Candidate
	for found := false; !found; {
		s := next("the instance")
		got, found = find(s, instance)
		if !found && time.Since(advertised) > 5*time.Second {
			t.Fatalf("instance %q not seen on %s within 5 s (multicast on loopback not working?); last snapshot: %+v", instance, lo.Name, s)
		}
	}
	t.Logf("instance seen %v after RegisterProxy", time.Since(advertised).Round(time.Millisecond))
	want := Candidate{Instance: instance, Service: "_modbus._tcp", Domain: "local.", Host: host + ".local", Port: 15020,
		Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		TXT:   map[string]string{"vendor": "rollcall", "model": "loop", "serial": "LO-1", "cell": "2", "axis": "7"}}
	if !equalCandidate(got, want) {
		t.Errorf("candidate\n got %+v\nwant %+v", got, want)
	}

	srv.Shutdown()
	srvUp = false
	// The window running at shutdown may still have seen the instance, and the next
	// one is the first that surely starts after it (Run only starts a window after the
	// receiver took the previous snapshot). So: still present in the first snapshot
	// (missed at most one window < K), gone after at most K+1, and gone for good.
	if _, ok := find(next("the first snapshot after shutdown"), instance); !ok {
		t.Fatalf("instance dropped after one window; want it kept for %d windows", dropAfter)
	}
	gone := 0
	for i := 2; i <= dropAfter+1; i++ {
		if _, ok := find(next("the instance to drop out"), instance); !ok {
			gone = i
			break
		}
	}
	if gone == 0 {
		t.Fatalf("instance still present %d snapshots after shutdown", dropAfter+1)
	}
	t.Logf("instance gone in snapshot %d after shutdown", gone)
	if _, ok := find(next("a later snapshot"), instance); ok {
		t.Error("instance came back after it was dropped")
	}
}

// TestRunInterfaceGone checks a window that cannot browse (its interface vanished):
// Run still sends a snapshot per service type after each window, logs the error once,
// and returns nil promptly when ctx ends, without closing up.
func TestRunInterfaceGone(t *testing.T) {
	var logs testutil.SyncBuffer
	b, err := NewBrowser(BrowserOptions{
		ServiceTypes: []string{"_modbus._tcp", "_http._tcp"},
		Interfaces:   []string{"lo"},
		Window:       10 * time.Millisecond,
		Every:        10 * time.Millisecond,
		Logger:       slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	b.ifaceNames = []string{"nosuch0"} // as if lo disappeared after NewBrowser
	ctx, cancel := context.WithCancel(t.Context())
	up := make(chan Snapshot)
	runErr := make(chan error, 1)
	go func() { runErr <- b.Run(ctx, up) }()
	for i := range 6 {
		s := <-up
		if want := b.services[i%2]; s.Service != want || s.Candidates == nil || len(s.Candidates) != 0 {
			t.Fatalf("snapshot %d: %+v, want an empty one of %s", i, s, want)
		}
	}
	cancel()
	if err := <-runErr; err != nil {
		t.Errorf("Run returned %v, want nil", err)
	}
	select {
	case s, ok := <-up:
		t.Errorf("up received %+v (open %v) after Run returned", s, ok)
	default:
	}
	if n := strings.Count(logs.String(), "browse failed"); n != 2 {
		t.Errorf("%d warnings, want one per service type:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), `err="none of the interfaces [\"nosuch0\"] is available"`) {
		t.Errorf("log does not name the interface:\n%s", logs.String())
	}
}

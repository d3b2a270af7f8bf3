package mdns

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/grandcat/zeroconf"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/netns"
)

// helperEnv tells a re-executed test binary which helper role to play in a namespace.
const helperEnv = "RC_MDNS_NETNS_HELPER"

// helperTimeout bounds how long a helper waits for its parent to close its stdin.
const helperTimeout = 90 * time.Second

// advertisement is what an advertiser helper registers with zeroconf.RegisterProxy.
type advertisement struct {
	instance, host string
	port           int
	txt            []string
}

// advertisementFor returns the advertisement of an advertiser helper's role ("axis-7"
// or "rogue"; all in namespace A, 192.0.2.1).
func advertisementFor(role string) (advertisement, bool) {
	switch role {
	case "axis-7":
		return advertisement{
			instance: "axis-7", host: "axis-7-sim", port: 15020,
			txt: []string{"vendor=rollcall-sim", "model=FS-100", "serial=SIM-0101", "unit=1", "cell=2", "axis=7"},
		}, true
	case "rogue":
		return advertisement{
			// Topic characters, a space, NUL, BEL and 30 invalid UTF-8 bytes: 42 bytes on
			// the wire (a DNS label holds 63), 10+30×3 bytes once the invalid bytes
			// become U+FFFD, so the cleaned name must be cut to MaxInstanceLen.
			instance: "rogue/+#$ \x00\x07" + strings.Repeat("\xff", 30),
			host:     "rogue\x01host",
			port:     502,
			txt:      rogueTXT(),
		}, true
	}
	return advertisement{}, false
}

// rogueTXT is a hostile TXT record. A DNS character-string is at most 255 bytes
// (RFC 1035 §3.3, RFC 6763 §6.1), so no value can be 1 KB on the wire: the longest
// possible string, "serial=" and 248 invalid bytes, is used instead; cleaned it would
// grow to 744 bytes and must be cut to MaxTXTValueLen. 40 more keys exceed MaxTXTKeys.
func rogueTXT() []string {
	txt := []string{
		"Vendor=ACME\x00Corp/+#$",
		"vendor=second",
		"=orphan",
		"model=\xc3(bad",
		"flag",
		"bad\x01key=1",
		"serial=" + strings.Repeat("\xfe", 248),
		"note=\u202ex\u0085",
	}
	for i := range 40 {
		txt = append(txt, fmt.Sprintf("k%02d=v", i))
	}
	return txt
}

// wantRogue is the cleaned candidate expected for the rogue advertisement.
func wantRogue() Candidate {
	txt := map[string]string{
		"vendor": "ACMECorp/+#$",
		"model":  "\ufffd(bad",
		"flag":   "true",
		"serial": strings.Repeat("\ufffd", 85),
		"note":   "x",
	}
	for i := range MaxTXTKeys - len(txt) {
		txt[fmt.Sprintf("k%02d", i)] = "v"
	}
	return Candidate{
		Instance: "rogue/+#$ " + strings.Repeat("\ufffd", 17),
		Service:  "_modbus._tcp", Domain: "local.", Host: "roguehost.local", Port: 502,
		Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")},
		TXT:   txt,
	}
}

// snapLine is one snapshot as the browser helper prints it: "SNAPSHOT <json>".
type snapLine struct {
	Service    string
	Candidates []Candidate
	// Clean reports whether every string of every candidate was valid UTF-8 without
	// control characters before JSON encoding (which would hide invalid UTF-8).
	Clean bool
	at    time.Time
}

// TestNamespaceBrowse browses over real multicast between two network namespaces: a
// browser in namespace B and two advertisers in namespace A (axis-7 and a rogue).
func TestNamespaceBrowse(t *testing.T) {
	p := netns.NewPair(t)
	br := netns.Start(t, p.RunTest(t, "b", "TestHelperBrowse", helperEnv+"=browse"))
	// The browser is running once it printed its first (empty) snapshot.
	br.WaitLine(t, "SNAPSHOT ", 30*time.Second)

	axis := netns.Start(t, p.RunTest(t, "a", "TestHelperAdvertise", helperEnv+"=axis-7"))
	rogue := netns.Start(t, p.RunTest(t, "a", "TestHelperAdvertise", helperEnv+"=rogue"))
	axisReady := axis.WaitLine(t, "READY", 30*time.Second)
	want := map[string]Candidate{
		"axis-7": {
			Instance: "axis-7", Service: "_modbus._tcp", Domain: "local.", Host: "axis-7-sim.local", Port: 15020,
			Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")},
			TXT:   map[string]string{"vendor": "rollcall-sim", "model": "FS-100", "serial": "SIM-0101", "unit": "1", "cell": "2", "axis": "7"},
		},
		"rogue": wantRogue(),
	}

	// Wait for a snapshot with both, noting when each first appeared.
	firstSeen := map[string]time.Time{}
	var last snapLine
	nextSnapshot := func(timeout time.Duration) snapLine {
		t.Helper()
		s, line := nextJSON[snapLine](t, br, "SNAPSHOT ", timeout, fmt.Sprintf("last snapshot: %+v", last))
		s.at = line.At
		if !s.Clean {
			t.Errorf("browser reported unclean strings in %s", line.Text)
		}
		return s
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(firstSeen) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("candidates seen: %v; last snapshot: %+v", firstSeen, last)
		}
		last = nextSnapshot(20 * time.Second)
		for name, w := range want {
			if _, done := firstSeen[name]; done {
				continue
			}
			if c, ok := find(Snapshot{Candidates: last.Candidates}, w.Instance); ok {
				firstSeen[name] = last.at
				if !equalCandidate(c, w) {
					t.Errorf("%s candidate\n got %+v\nwant %+v", name, c, w)
				}
			}
		}
	}
	t.Logf("axis-7: first snapshot containing it %v after the advertiser process started, %v after its RegisterProxy returned",
		firstSeen["axis-7"].Sub(axis.Started).Round(time.Millisecond), firstSeen["axis-7"].Sub(axisReady.At).Round(time.Millisecond))
	t.Logf("rogue: first snapshot containing it %v after the advertiser process started",
		firstSeen["rogue"].Sub(rogue.Started).Round(time.Millisecond))
	if t.Failed() {
		return
	}
	for _, c := range last.Candidates {
		if len(c.Instance) > MaxInstanceLen || !utf8.ValidString(c.Instance) {
			t.Errorf("instance %q: %d bytes", c.Instance, len(c.Instance))
		}
		if len(c.TXT) > MaxTXTKeys {
			t.Errorf("%s: %d TXT keys", c.Instance, len(c.TXT))
		}
		for k, v := range c.TXT {
			if len(v) > MaxTXTValueLen {
				t.Errorf("%s: TXT %s has %d bytes", c.Instance, k, len(v))
			}
		}
	}

	// The rogue leaves (Shutdown sends a goodbye, which zeroconf ignores): it must drop
	// out within DropAfter+1 snapshots after it exited, axis-7 staying.
	if err := rogue.Wait(); err != nil {
		t.Fatalf("rogue advertiser: %v\n%s", err, rogue.Stderr())
	}
	for i := 1; ; i++ {
		s := nextSnapshot(10 * time.Second)
		if _, ok := find(Snapshot{Candidates: s.Candidates}, "axis-7"); !ok {
			t.Fatalf("axis-7 vanished while the rogue left: %+v", s)
		}
		if _, ok := find(Snapshot{Candidates: s.Candidates}, want["rogue"].Instance); !ok {
			t.Logf("rogue gone in snapshot %d after its advertiser exited", i)
			break
		}
		if i > DefaultDropAfter+1 {
			t.Fatalf("rogue still present %d snapshots after its advertiser exited", i)
		}
	}
	for _, c := range []*netns.Proc{axis, br} {
		if err := c.Wait(); err != nil {
			t.Errorf("helper %s: %v\n%s", c.Cmd, err, c.Stderr())
		}
	}
}

// waitStdin returns when stdin reaches EOF (the parent closed it or died), or fails
// the test after helperTimeout.
func waitStdin(t *testing.T) {
	done := make(chan struct{})
	go func() { // ends at EOF; on timeout the process exits with the failure
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(done)
	}()
	timer := time.NewTimer(helperTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		t.Errorf("stdin still open after %v", helperTimeout)
	}
}

// TestHelperAdvertise is not a test of its own: TestNamespaceBrowse runs it in
// namespace A to advertise one of advertisements on the veth end there until its stdin
// closes.
func TestHelperAdvertise(t *testing.T) {
	ad, ok := advertisementFor(os.Getenv(helperEnv))
	if !ok {
		t.Skip("helper process for TestNamespaceBrowse")
	}
	advertiseUntilStdin(t, "_modbus._tcp", ad)
}

// advertiseUntilStdin advertises ad as an instance of service on netns.LinkA with the
// address of netns.PrefixA (zeroconf.RegisterProxy), prints "READY" and waits until
// stdin closes (see waitStdin).
func advertiseUntilStdin(t *testing.T, service string, ad advertisement) {
	ifi, err := net.InterfaceByName(netns.LinkA)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := zeroconf.RegisterProxy(ad.instance, service, "local.", ad.port, ad.host,
		[]string{netip.MustParsePrefix(netns.PrefixA).Addr().String()}, ad.txt, []net.Interface{*ifi})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	fmt.Println("READY")
	waitStdin(t)
}

// TestHelperBrowse is not a test of its own: TestNamespaceBrowse runs it in namespace
// B to browse _modbus._tcp on the veth end there and print every snapshot as a line
// "SNAPSHOT <json>" until its stdin closes.
func TestHelperBrowse(t *testing.T) {
	if os.Getenv(helperEnv) != "browse" {
		t.Skip("helper process for TestNamespaceBrowse")
	}
	b, err := NewBrowser(BrowserOptions{
		ServiceTypes: []string{"_modbus._tcp"},
		Interfaces:   []string{netns.LinkB},
		Window:       500 * time.Millisecond,
		Every:        100 * time.Millisecond,
		Logger:       testutil.Logger(t, slog.LevelDebug),
	})
	if err != nil {
		t.Fatal(err)
	}
	runUntilStdin(t, b, "SNAPSHOT ", func(s Snapshot) any {
		return snapLine{Service: s.Service, Candidates: s.Candidates, Clean: clean(s)}
	})
}

// runUntilStdin runs b until stdin closes (see waitStdin), printing for every snapshot
// a line of prefix and line(snapshot) in JSON, then stops b and waits for Run to return.
func runUntilStdin(t *testing.T, b *Browser, prefix string, line func(Snapshot) any) {
	ctx, cancel := context.WithCancel(context.Background())
	up := make(chan Snapshot)
	runErr := make(chan error, 1)
	go func() { runErr <- b.Run(ctx, up) }()
	printed := make(chan struct{})
	go func() { // ends when ctx is cancelled
		defer close(printed)
		enc := json.NewEncoder(os.Stdout)
		for {
			select {
			case s := <-up:
				fmt.Print(prefix)
				if err := enc.Encode(line(s)); err != nil {
					t.Errorf("encode: %v", err)
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	waitStdin(t)
	cancel()
	if err := <-runErr; err != nil {
		t.Errorf("Run: %v", err)
	}
	<-printed
}

// clean reports whether every string in s is valid UTF-8 without control characters.
func clean(s Snapshot) bool {
	ok := func(v string) bool {
		return utf8.ValidString(v) && !strings.ContainsFunc(v, isControl)
	}
	for _, c := range s.Candidates {
		if !ok(c.Instance) || !ok(c.Host) || !ok(c.Service) || !ok(c.Domain) {
			return false
		}
		for k, v := range maps.All(c.TXT) {
			if !ok(k) || !ok(v) {
				return false
			}
		}
	}
	return true
}

package mdns

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/netns"
)

// Environment of the helpers of TestBrowseOnlyBrowsedInterfaces.
const (
	// ifaceHelperEnv selects the helper role: "browse", "advertise" or "intrude".
	ifaceHelperEnv = "RC_MDNS_IFACE_HELPER"
	// ifaceServiceEnv is the test's unique service type.
	ifaceServiceEnv = "RC_MDNS_IFACE_SERVICE"
	// ifaceSuffixEnv is the test's unique name suffix (testutil.MDNSNames.Suffix).
	ifaceSuffixEnv = "RC_MDNS_IFACE_SUFFIX"
)

// Addresses the interface test adds to netns.Pair's namespaces, from documentation
// prefixes that exist only there (TEST-NET-2, RFC 5737; 2001:db8::/32, RFC 3849): IPv6
// on the pair's link, and a second veth pair, linkA2–linkB2, with both families.
const (
	linkA2    = "rc-a2"
	linkB2    = "rc-b2"
	prefixA2  = "198.51.100.1/24"
	prefixB2  = "198.51.100.2/24"
	prefix6A  = "2001:db8:2::1/64" // on netns.LinkA
	prefix6B  = "2001:db8:2::2/64" // on netns.LinkB
	prefix6A2 = "2001:db8:3::1/64"
	prefix6B2 = "2001:db8:3::2/64"
)

// intrudeEvery paces the intruder helper: one round of its four responses per period.
const intrudeEvery = 50 * time.Millisecond

// addr returns the address of a prefix constant.
func addr(prefix string) netip.Addr { return netip.MustParsePrefix(prefix).Addr() }

// setupLinks adds IPv6 addresses to the pair's link and a second veth pair between the
// namespaces, created inside namespace A with its peer end moved straight into B (the
// host's namespace never sees either end; deleting the namespaces deletes it), and
// waits until both new ends have carrier. Addresses are added without duplicate address
// detection (nodad), so that they can be used at once.
func setupLinks(t *testing.T, p *netns.Pair) {
	t.Helper()
	ip := func(side string, args ...string) {
		t.Helper()
		if out, err := p.Exec(t, side, "ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s (namespace %s): %v: %s", strings.Join(args, " "), side, err, out)
		}
	}
	ip("a", "link", "add", linkA2, "type", "veth", "peer", "name", linkB2, "netns", p.B.NS)
	for _, l := range []struct{ side, link, v4, v6 string }{
		{"a", linkA2, prefixA2, prefix6A2},
		{"b", linkB2, prefixB2, prefix6B2},
	} {
		ip(l.side, "link", "set", "dev", l.link, "addrgenmode", "none")
		ip(l.side, "addr", "add", l.v4, "dev", l.link)
		ip(l.side, "-6", "addr", "add", l.v6, "dev", l.link, "nodad")
		ip(l.side, "link", "set", "dev", l.link, "up")
	}
	ip("a", "-6", "addr", "add", prefix6A, "dev", netns.LinkA, "nodad")
	ip("b", "-6", "addr", "add", prefix6B, "dev", netns.LinkB, "nodad")
	testutil.EventuallyNil(t, netns.LinkUpTimeout, "carrier on the second veth pair", func() error {
		for _, s := range []struct{ side, link string }{{"a", linkA2}, {"b", linkB2}} {
			out, err := p.Exec(t, s.side, "ip", "-o", "link", "show", "dev", s.link).CombinedOutput()
			if err != nil || !strings.Contains(string(out), ",LOWER_UP") || strings.Contains(string(out), "NO-CARRIER") {
				return fmt.Errorf("%s: %v %s", s.link, err, out)
			}
		}
		return nil
	})
}

// windowLine is what the browse helper prints after each snapshot: "WINDOW <json>".
type windowLine struct {
	Candidates []Candidate
	Stats      Stats
	at         time.Time
}

// TestBrowseOnlyBrowsedInterfaces checks that the Browser uses only datagrams that
// arrive on a browsed interface, judged by their arrival interface, whatever their
// source and whether they are multicast or unicast to port 5353, over IPv4 and IPv6.
//
// Namespace B runs a Browser restricted to netns.LinkB, with IPv6. Namespace A runs a
// zeroconf responder on netns.LinkA (its multicast answers arrive on LinkB: found) and an
// intruder that sends, every intrudeEvery, crafted mDNS responses from port 5353,
// unicast to the Browser's port: "control4"/"control6" to B's addresses on LinkB, which
// must be found (unicast answers on a browsed interface count), and
// "intruder4"/"intruder6" to B's addresses on the second link, linkB2, which must never
// appear. The datagrams dropped must be counted in Stats.WrongInterface (at least 4, at
// most what the intruder sent, since nothing else reaches linkB2) and each intruder
// source logged exactly once at Warn, naming linkB2.
func TestBrowseOnlyBrowsedInterfaces(t *testing.T) {
	p := netns.NewPair(t)
	setupLinks(t, p)
	names := testutil.NewMDNSNames(t)
	svc := names.ServiceType("iface")
	env := func(role string) []string {
		return []string{ifaceHelperEnv + "=" + role, ifaceServiceEnv + "=" + svc, ifaceSuffixEnv + "=" + names.Suffix}
	}
	br := netns.Start(t, p.RunTest(t, "b", "TestHelperIfaceBrowse", env("browse")...))
	nextWindow := func(timeout time.Duration) windowLine {
		t.Helper()
		w, line := nextJSON[windowLine](t, br, "WINDOW ", timeout, "")
		w.at = line.At
		for _, c := range w.Candidates {
			if strings.HasPrefix(c.Instance, "intruder") {
				t.Fatalf("the browser reported %+v, announced only on %s; stats %+v", c, linkB2, w.Stats)
			}
		}
		return w
	}
	nextWindow(30 * time.Second) // the browser runs

	adv := netns.Start(t, p.RunTest(t, "a", "TestHelperIfaceAdvertise", env("advertise")...))
	advReady := adv.WaitLine(t, "READY", 30*time.Second)
	intr := netns.Start(t, p.RunTest(t, "a", "TestHelperIfaceIntrude", env("intrude")...))
	intr.WaitLine(t, "READY", 30*time.Second)

	good, goodHost := names.Instance("good"), names.Instance("good-host")
	want := map[string]Candidate{
		good: {Instance: good, Service: svc, Domain: "local.", Host: goodHost + ".local", Port: 15020,
			Addrs: []netip.Addr{addr(netns.PrefixA)}, TXT: map[string]string{"vendor": "rollcall", "via": "rc-a"}},
		names.Instance("control4"): forged(names, svc, "control4", addr(netns.PrefixA)),
		names.Instance("control6"): forged(names, svc, "control6", addr(prefix6A)),
	}
	intruders := []netip.Addr{addr(prefixA2), addr(prefix6A2)}
	// warnings returns the browser's Warn lines about src so far.
	warnings := func(src netip.Addr) []string {
		var lines []string
		for _, l := range strings.Split(br.Stderr(), "\n") {
			if strings.Contains(l, "level=WARN") && strings.Contains(l, " src="+src.String()+" ") {
				lines = append(lines, l)
			}
		}
		return lines
	}
	// Wait for every instance that must be found, several dropped datagrams and a
	// warning about each intruder source. The budget is TestNamespaceBrowse's: windows
	// are 0.6 s apart, zeroconf answers a query at once and the intruder repeats every
	// intrudeEvery, so each condition holds after a window or two.
	firstSeen := map[string]time.Time{}
	var last windowLine
	deadline := time.Now().Add(20 * time.Second)
	for len(firstSeen) < len(want) || last.Stats.WrongInterface < 4 || len(warnings(intruders[0])) == 0 || len(warnings(intruders[1])) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("within 20 s: seen %v of %d instances, stats %+v; last window %+v; stderr:\n%s",
				firstSeen, len(want), last.Stats, last.Candidates, br.Stderr())
		}
		last = nextWindow(10 * time.Second)
		for name, w := range want {
			if _, done := firstSeen[name]; done {
				continue
			}
			if c, ok := find(Snapshot{Candidates: last.Candidates}, name); ok {
				firstSeen[name] = last.at
				if !equalCandidate(c, w) {
					t.Errorf("%s\n got %+v\nwant %+v", name, c, w)
				}
			}
		}
	}
	t.Logf("good: first window containing it %v after its RegisterProxy returned",
		firstSeen[good].Sub(advReady.At).Round(time.Millisecond))

	// Stop the intruder and take its count, then a later window's stats.
	if _, err := io.WriteString(intr.Stdin(), "stop\n"); err != nil {
		t.Fatal(err)
	}
	var sent4, sent6 uint64
	if l := intr.WaitLine(t, "SENT ", 10*time.Second); !scanned(l.Text, "SENT %d %d", &sent4, &sent6) {
		t.Fatalf("intruder line %q", l.Text)
	}
	final := nextWindow(10 * time.Second)
	st := final.Stats
	t.Logf("dropped %d datagrams that arrived on %s (the intruder sent %d over IPv4 and %d over IPv6 there); received %d, malformed %d",
		st.WrongInterface, linkB2, sent4, sent6, st.Received, st.Malformed)
	if st.WrongInterface < 4 || st.WrongInterface > sent4+sent6 {
		t.Errorf("WrongInterface %d, want 4 ≤ it ≤ %d (what the intruder sent)", st.WrongInterface, sent4+sent6)
	}
	if st.Malformed != 0 || st.Received <= st.WrongInterface {
		t.Errorf("stats %+v: want no malformed datagram, and more received than dropped", st)
	}

	for _, c := range []*netns.Proc{intr, adv, br} {
		if err := c.Wait(); err != nil {
			t.Errorf("helper %s: %v\n%s", c.Cmd, err, c.Stderr())
		}
	}
	// Every intruder source is logged once, however often it was dropped, with the
	// interface it arrived on.
	logs := br.Stderr()
	for _, src := range intruders {
		lines := warnings(src)
		if len(lines) != 1 || !strings.Contains(lines[0], "dropping packets that arrive on an interface not browsed") ||
			!strings.Contains(lines[0], " iface="+linkB2) {
			t.Errorf("warnings for %s: %q, want one naming iface=%s", src, lines, linkB2)
		}
	}
	if n := strings.Count(logs, "level=WARN"); n != 2 {
		t.Errorf("%d warnings, want 2 (one per intruder source):\n%s", n, logs)
	}
}

// nextJSON returns the next line of the helper p that starts with prefix, with the rest
// of the line decoded from JSON; the lines before it are skipped. It fails the test,
// with context and p's stderr, if p exits first, if the JSON is invalid, or if no such
// line comes within timeout. about adds context to those failures.
func nextJSON[T any](t *testing.T, p *netns.Proc, prefix string, timeout time.Duration, about string) (T, netns.Line) {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case l, ok := <-p.Lines():
			if !ok {
				t.Fatalf("helper exited (%v); %s; stderr:\n%s", p.Wait(), about, p.Stderr())
			}
			js, found := strings.CutPrefix(l.Text, prefix)
			if !found {
				continue
			}
			var v T
			if err := json.Unmarshal([]byte(js), &v); err != nil {
				t.Fatalf("helper line %q: %v", l.Text, err)
			}
			return v, l
		case <-timer.C:
			t.Fatalf("no line %q from the helper within %v; %s; stderr:\n%s", prefix, timeout, about, p.Stderr())
		}
	}
}

// scanned reports whether fmt.Sscanf parsed all of args from s.
func scanned(s, format string, args ...any) bool {
	n, err := fmt.Sscanf(s, format, args...)
	return err == nil && n == len(args)
}

// forged is the candidate the intruder helper's response for role announces: host
// <role>-host-<suffix>.local, port 502, address a.
func forged(names testutil.MDNSNames, svc, role string, a netip.Addr) Candidate {
	return Candidate{Instance: names.Instance(role), Service: svc, Domain: "local.",
		Host: names.Instance(role+"-host") + ".local", Port: 502,
		Addrs: []netip.Addr{a}, TXT: map[string]string{"role": role}}
}

// response packs an mDNS response (RFC 6762 §6) announcing c as a responder would: the
// PTR record in the answer section, SRV, TXT and A/AAAA records as additional records
// (RFC 6763 §12.1), TTL 120 s.
func response(t testing.TB, c Candidate) []byte {
	t.Helper()
	return announce(t, c, strings.NewReplacer(`\`, `\\`, `.`, `\.`).Replace(c.Instance)+"."+c.Service+"."+c.Domain)
}

// announce is response with the service instance name given in DNS presentation format
// (RFC 1035 §5.1), e.g. `Axis\. 7._modbus._tcp.local.`.
func announce(t testing.TB, c Candidate, name string) []byte {
	t.Helper()
	svcName := c.Service + "." + c.Domain
	host := c.Host + "."
	hdr := func(name string, rrtype uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: rrtype, Class: dns.ClassINET, Ttl: 120}
	}
	m := dns.Msg{MsgHdr: dns.MsgHdr{Response: true, Authoritative: true}}
	m.Answer = []dns.RR{&dns.PTR{Hdr: hdr(svcName, dns.TypePTR), Ptr: name}}
	var txt []string
	for k, v := range c.TXT {
		txt = append(txt, k+"="+v)
	}
	m.Extra = []dns.RR{
		&dns.SRV{Hdr: hdr(name, dns.TypeSRV), Port: uint16(c.Port), Target: host},
		&dns.TXT{Hdr: hdr(name, dns.TypeTXT), Txt: txt},
	}
	for _, a := range c.Addrs {
		if a.Is4() {
			m.Extra = append(m.Extra, &dns.A{Hdr: hdr(host, dns.TypeA), A: a.AsSlice()})
		} else {
			m.Extra = append(m.Extra, &dns.AAAA{Hdr: hdr(host, dns.TypeAAAA), AAAA: a.AsSlice()})
		}
	}
	buf, err := m.Pack()
	if err != nil {
		t.Fatalf("pack response for %s: %v", c.Instance, err)
	}
	return buf
}

// TestHelperIfaceBrowse is not a test of its own: TestBrowseOnlyBrowsedInterfaces runs
// it in namespace B to browse its service type on netns.LinkB only, IPv4 and IPv6,
// printing "WINDOW <json>" (windowLine) after every snapshot and logging to stderr,
// until its stdin closes.
func TestHelperIfaceBrowse(t *testing.T) {
	if os.Getenv(ifaceHelperEnv) != "browse" {
		t.Skip("helper process for TestBrowseOnlyBrowsedInterfaces")
	}
	b, err := NewBrowser(BrowserOptions{
		ServiceTypes: []string{os.Getenv(ifaceServiceEnv)},
		Interfaces:   []string{netns.LinkB},
		Window:       500 * time.Millisecond,
		Every:        100 * time.Millisecond,
		IPv6:         true,
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	runUntilStdin(t, b, "WINDOW ", func(s Snapshot) any {
		return windowLine{Candidates: s.Candidates, Stats: b.Stats()}
	})
}

// TestHelperIfaceAdvertise is not a test of its own: TestBrowseOnlyBrowsedInterfaces
// runs it in namespace A to advertise the instance "good" with zeroconf on netns.LinkA
// until its stdin closes.
func TestHelperIfaceAdvertise(t *testing.T) {
	if os.Getenv(ifaceHelperEnv) != "advertise" {
		t.Skip("helper process for TestBrowseOnlyBrowsedInterfaces")
	}
	names := testutil.MDNSNames{Suffix: os.Getenv(ifaceSuffixEnv)}
	advertiseUntilStdin(t, os.Getenv(ifaceServiceEnv), advertisement{
		instance: names.Instance("good"), host: names.Instance("good-host"), port: 15020,
		txt: []string{"vendor=rollcall", "via=rc-a"},
	})
}

// TestHelperIfaceIntrude is not a test of its own: TestBrowseOnlyBrowsedInterfaces runs
// it in namespace A. From port 5353 (shared with the advertiser, as responders do) it
// sends every intrudeEvery four responses unicast to the Browser's port 5353 in B:
// control4 and control6 to B's addresses on netns.LinkB, intruder4 and intruder6 to B's
// addresses on linkB2. At the first line on stdin (or EOF) it stops and prints
// "SENT <intruder datagrams over IPv4> <over IPv6>", then waits for stdin to close.
func TestHelperIfaceIntrude(t *testing.T) {
	if os.Getenv(ifaceHelperEnv) != "intrude" {
		t.Skip("helper process for TestBrowseOnlyBrowsedInterfaces")
	}
	names := testutil.MDNSNames{Suffix: os.Getenv(ifaceSuffixEnv)}
	svc := os.Getenv(ifaceServiceEnv)
	var conns [2]*net.UDPConn // IPv4, IPv6
	for i, v6 := range []bool{false, true} {
		network := map[bool]string{false: "udp4", true: "udp6"}[v6]
		// A multicast address makes ListenUDP bind the wildcard with SO_REUSEADDR.
		c, err := net.ListenUDP(network, &net.UDPAddr{IP: mdnsGroup(v6).AsSlice(), Port: mdnsPort})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	type shot struct {
		conn     *net.UDPConn
		to       netip.Addr
		msg      []byte
		intruder *uint64 // counter of an intruder datagram; nil for a control
	}
	var sent4, sent6 uint64
	shots := []shot{
		{conns[0], addr(netns.PrefixB), response(t, forged(names, svc, "control4", addr(netns.PrefixA))), nil},
		{conns[1], addr(prefix6B), response(t, forged(names, svc, "control6", addr(prefix6A))), nil},
		{conns[0], addr(prefixB2), response(t, forged(names, svc, "intruder4", addr(prefixA2))), &sent4},
		{conns[1], addr(prefix6B2), response(t, forged(names, svc, "intruder6", addr(prefix6A2))), &sent6},
	}
	stop := make(chan struct{})
	go func() { // ends at the first line or EOF
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		close(stop)
	}()
	fmt.Println("READY")
	tick := time.NewTicker(intrudeEvery)
	defer tick.Stop()
	for running := true; running; {
		for _, s := range shots {
			_, err := s.conn.WriteToUDPAddrPort(s.msg, netip.AddrPortFrom(s.to, mdnsPort))
			switch {
			case err != nil:
				t.Errorf("send to %v: %v", s.to, err)
			case s.intruder != nil:
				*s.intruder++
			}
		}
		select {
		case <-stop:
			running = false
		case <-tick.C:
		}
	}
	fmt.Printf("SENT %d %d\n", sent4, sent6)
	waitStdin(t)
}

// Package mdns finds candidate devices by DNS-SD browsing over multicast DNS
// (RFC 6763 over RFC 6762): for each configured service type, such as "_modbus._tcp",
// it reports the instances that answer, with their host, addresses, port and TXT hints
// (docs/design.md, "Data flow" and "mDNS candidates").
//
// A candidate is only a hint. Whether a device is alive is decided by polling it, never
// by mDNS; so the Browser keeps no timers per record and does not follow TTLs or
// goodbye packets (RFC 6762 §10.1). It browses in windows instead, each with fresh
// sockets, and reports after every window, per service type, a complete snapshot of
// the instances seen recently.
//
// The Browser is its own small mDNS querier (RFC 6762 §5, RFC 6763 §4): it sends PTR
// queries to 224.0.0.251 (and ff02::fb) port 5353 out of each browsed interface and
// parses the responses with github.com/miekg/dns. It accepts a response only if the
// datagram arrived on a browsed interface, judged by the arrival interface the kernel
// reports (IP_PKTINFO / IPV6_PKTINFO), whatever its source address or port and whether
// it was multicast or unicast to port 5353; other datagrams are dropped, counted
// (Stats) and logged (MaxDropWarnings). github.com/grandcat/zeroconf's client could not
// be used for this: it discards the arrival interface.
//
// Everything in a Candidate comes from the network and is cleaned and bounded (valid
// UTF-8, no control characters, limited lengths and counts; see ParseTXT and the Max
// constants). It may still contain '/', '+', '#', '$' or spaces: consumers that put a
// value into an MQTT topic must slug it (contract.Slug; docs/contract.md, "Topics and payloads").
package mdns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grandcat/zeroconf"
)

// Defaults for BrowserOptions.
const (
	// DefaultDomain is the domain browsed when BrowserOptions.Domain is empty
	// (RFC 6762 §3: "local." is link-local multicast DNS).
	DefaultDomain = "local."
	// DefaultWindow is the length of one browse window.
	DefaultWindow = 3 * time.Second
	// DefaultEvery is the gap between the end of a window and the start of the next.
	DefaultEvery = 10 * time.Second
	// DefaultDropAfter is the number of consecutive windows an instance may be missing
	// from before it is dropped from the snapshot.
	DefaultDropAfter = 2
	// MaxInstances is the maximum number of instances kept per service type; further
	// instances are ignored (and logged) until others are dropped.
	MaxInstances = 256
)

// Candidate is one DNS-SD service instance as seen on the network (RFC 6763 §4: an
// instance name, resolved by its SRV record to host and port, its TXT record, and the
// host's A/AAAA records). All strings are cleaned: valid UTF-8, no control characters.
type Candidate struct {
	// Instance is the instance name as announced (the first label of the service
	// instance name, RFC 6763 §4.1.1), without DNS escapes, cleaned and at most
	// MaxInstanceLen bytes. Never empty.
	Instance string
	// Service is the service type browsed, e.g. "_modbus._tcp" (RFC 6763 §7).
	Service string
	// Domain is the domain browsed, e.g. "local.".
	Domain string
	// Host is the target host name of the SRV record (RFC 2782) without the final dot,
	// e.g. "axis-7-sim.local", cleaned and at most MaxHostLen bytes.
	Host string
	// Addrs are the host's addresses from A records (and AAAA records when
	// BrowserOptions.IPv6 is set), IPv4 first, each family sorted, without duplicates,
	// unspecified, multicast or broadcast addresses; at most MaxAddrs. Never empty.
	Addrs []netip.Addr
	// Port is the SRV record's port, 1–65535.
	Port int
	// TXT holds the TXT record's key/value pairs as ParseTXT returns them; never nil.
	TXT map[string]string
}

// clone returns a deep copy of c, so that a Snapshot shares nothing with the Browser.
func (c Candidate) clone() Candidate {
	c.Addrs = slices.Clone(c.Addrs)
	c.TXT = maps.Clone(c.TXT)
	return c
}

// Snapshot is the complete current set of candidates of one service type, sent after
// each browse window. An empty Candidates slice means that no instance of the service
// type is known any more (every earlier one is gone).
type Snapshot struct {
	// Service is the service type, e.g. "_modbus._tcp".
	Service string
	// Candidates are sorted by Instance (then Host, then Port); never nil.
	Candidates []Candidate
}

// Source returns the snapshot's source key for a discovery manager, "mdns:<service>",
// e.g. "mdns:_modbus._tcp": every update is a full snapshot of one source, so an
// empty snapshot means that source now sees nothing.
func (s Snapshot) Source() string { return "mdns:" + s.Service }

// BrowserOptions configures a Browser. Zero values take the documented defaults.
type BrowserOptions struct {
	// ServiceTypes to browse, each "_name._tcp" or "_name._udp" where name is an
	// RFC 6335 §5.1 service name: 1–15 letters, digits and hyphens, at least one
	// letter, no hyphen at either end and no two in a row. Case-insensitive; reported
	// lower-cased. At least one is required; duplicates are an error.
	ServiceTypes []string
	// Domain to browse. Default DefaultDomain ("local.").
	Domain string
	// Interfaces to browse on, by name. Empty: every interface that is up and has the
	// MULTICAST flag (which excludes "lo" on Linux), as listed at each window. "lo" may
	// be named explicitly. The names are resolved again at every window, so an
	// interface that disappears is skipped (and logged) until it is back. Queries go out
	// only on these interfaces, and only datagrams that arrive on one of them are used:
	// a response that arrives on another interface, even unicast to port 5353, is
	// dropped and counted in Stats.WrongInterface. A process on this host that sends to
	// one of the host's own addresses reaches it through "lo".
	Interfaces []string
	// Window is the length of one browse window. Default DefaultWindow (3 s). Responders
	// delay answers to a query by 20–120 ms (RFC 6762 §6) and repeat announcements 1 s
	// apart (§8.3): windows much shorter than a second suit only tests.
	Window time.Duration
	// Every is the gap between one window's end and the next one's start. Default
	// DefaultEvery (10 s).
	Every time.Duration
	// DropAfter is K: an instance missing from K consecutive windows is dropped from the
	// snapshot. Default DefaultDropAfter (2). A window in which browsing failed does
	// not count.
	DropAfter int
	// IPv6 adds an IPv6 browse (ff02::fb) in every window and keeps AAAA addresses.
	// Default false: IPv4 only.
	IPv6 bool
	// Logger receives the Browser's logs, with keys service, instance, iface, family,
	// src, srcport, dst and err. Default: discard.
	Logger *slog.Logger
}

// Browser browses DNS-SD service types in windows; see Run. Create it with NewBrowser.
type Browser struct {
	services   []string
	domain     string
	ifaceNames []string
	window     time.Duration
	every      time.Duration
	dropAfter  int
	ipv6       bool
	log        *slog.Logger

	received, wrongIface, malformed atomic.Uint64 // see Stats

	dropMu   sync.Mutex
	dropSeen map[netip.Addr]struct{} // sources of dropped datagrams logged; ≤ MaxDropWarnings
	dropFull bool                    // the Warn that further sources go unlogged was given
}

// Stats are a Browser's datagram counters since NewBrowser; see Browser.Stats.
type Stats struct {
	// Received is the number of UDP datagrams read from the Browser's mDNS sockets, on
	// any interface: responses, queries (the Browser's own come back by multicast
	// loopback) and anything else sent to port 5353 while a window is open.
	Received uint64
	// WrongInterface is the number of datagrams dropped unread because they arrived on
	// an interface that is not browsed (BrowserOptions.Interfaces), judged by the
	// arrival interface the kernel reports (IP_PKTINFO / IPV6_PKTINFO), whatever their
	// source address or port, multicast or unicast. Their sources are logged at Warn,
	// once each, for up to MaxDropWarnings addresses.
	WrongInterface uint64
	// Malformed is the number of datagrams from a browsed interface that were not
	// well-formed DNS messages: an unreadable header or question section (the datagram
	// is dropped), or a record that could not be unpacked (that record is skipped, the
	// others are used).
	Malformed uint64
}

// Stats returns the Browser's counters. It may be called at any time, also while Run
// is running.
func (b *Browser) Stats() Stats {
	return Stats{Received: b.received.Load(), WrongInterface: b.wrongIface.Load(), Malformed: b.malformed.Load()}
}

// NewBrowser validates o, applies the defaults and returns a Browser. It returns an
// error, naming the offending value, when ServiceTypes is empty or has an invalid or
// duplicate entry, when Domain is not a valid domain name, when an interface name does
// not exist, or when Window, Every or DropAfter is negative.
func NewBrowser(o BrowserOptions) (*Browser, error) {
	if len(o.ServiceTypes) == 0 {
		return nil, errors.New("mdns: no service types to browse")
	}
	b := &Browser{
		domain:    DefaultDomain,
		window:    DefaultWindow,
		every:     DefaultEvery,
		dropAfter: DefaultDropAfter,
		ipv6:      o.IPv6,
		log:       o.Logger,
		dropSeen:  map[netip.Addr]struct{}{},
	}
	seen := map[string]bool{}
	for _, st := range o.ServiceTypes {
		if err := validateServiceType(st); err != nil {
			return nil, err
		}
		st = strings.ToLower(st)
		if seen[st] {
			return nil, fmt.Errorf("mdns: service type %q listed twice", st)
		}
		seen[st] = true
		b.services = append(b.services, st)
	}
	if o.Domain != "" {
		d, err := validateDomain(o.Domain)
		if err != nil {
			return nil, err
		}
		b.domain = d
	}
	for _, name := range o.Interfaces {
		if _, err := net.InterfaceByName(name); err != nil {
			return nil, fmt.Errorf("mdns: interface %q: %w", name, err)
		}
		if !slices.Contains(b.ifaceNames, name) {
			b.ifaceNames = append(b.ifaceNames, name)
		}
	}
	switch {
	case o.Window < 0:
		return nil, fmt.Errorf("mdns: window %v is negative", o.Window)
	case o.Every < 0:
		return nil, fmt.Errorf("mdns: every %v is negative", o.Every)
	case o.DropAfter < 0:
		return nil, fmt.Errorf("mdns: drop after %d windows is negative", o.DropAfter)
	}
	if o.Window > 0 {
		b.window = o.Window
	}
	if o.Every > 0 {
		b.every = o.Every
	}
	if o.DropAfter > 0 {
		b.dropAfter = o.DropAfter
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	return b, nil
}

// validateServiceType checks a service type with ValidServiceType, in the Browser's
// error style.
func validateServiceType(st string) error {
	if err := ValidServiceType(st); err != nil {
		return fmt.Errorf(`mdns: %w (expected "_name._tcp" or "_name._udp", e.g. "_modbus._tcp")`, err)
	}
	return nil
}

// validateDomain checks a domain name of LDH-style labels (underscores allowed) and
// returns it with a final dot.
func validateDomain(d string) (string, error) {
	d = strings.TrimSuffix(d, ".")
	if d == "" || len(d) > 253 {
		return "", fmt.Errorf("mdns: domain %q: expected a domain name such as \"local.\"", d)
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 {
			return "", fmt.Errorf("mdns: domain %q: empty label or label over 63 bytes", d)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("mdns: domain %q: invalid character %q", d, c)
			}
		}
	}
	return d + ".", nil
}

// Services returns the validated, lower-cased service types, in the order given.
func (b *Browser) Services() []string { return slices.Clone(b.services) }

// tracked is what the Browser remembers of one instance between windows.
type tracked struct {
	c      Candidate
	missed int // consecutive windows without it
}

// Run browses until ctx ends. Every window (BrowserOptions.Window long, the first
// starting at once, each later one BrowserOptions.Every after the receiver took the
// previous window's last snapshot) browses every service type at once: it opens a
// socket per address family (IPv4, and IPv6 when enabled) on port 5353, joined to the
// mDNS group on each browsed interface, sends a PTR query per service type out of each
// of them at the window's start and again after 1 s, 3 s, 7 s … (RFC 6762 §5.2), and
// collects the responses, solicited or not, that arrive on a browsed interface, until
// the window ends and the sockets are closed. An instance is reported when the window
// saw its SRV record and an address record of the SRV target, in the same response or
// an earlier one (RFC 6763 §12). After each window Run sends one Snapshot per service
// type, in the order of ServiceTypes, to up: every instance seen in this window or
// missing from fewer than DropAfter consecutive windows. A window in which browsing
// failed (no socket could be opened or joined, or no query sent; logged with service
// and err) does not age the instances.
//
// Run blocks on up until the receiver takes each snapshot or ctx ends. It never closes
// up. It returns nil once ctx is done, after the goroutines it started have ended and
// its sockets are closed.
func (b *Browser) Run(ctx context.Context, up chan<- Snapshot) error {
	known := make(map[string]map[string]*tracked, len(b.services))
	failing := make(map[string]string, len(b.services)) // service → last error logged
	for _, s := range b.services {
		known[s] = map[string]*tracked{}
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		results := b.browseWindow(ctx)
		if ctx.Err() != nil {
			return nil // a window cut short says nothing about absence
		}
		for _, svc := range b.services {
			r := results[svc]
			if r.err != nil {
				if failing[svc] != r.err.Error() {
					b.log.Warn("mdns: browse failed; keeping the previous candidates", "service", svc, "err", r.err)
					failing[svc] = r.err.Error()
				}
			} else {
				if failing[svc] != "" {
					b.log.Info("mdns: browsing works again", "service", svc)
					delete(failing, svc)
				}
				b.age(svc, known[svc], r.found)
			}
			select {
			case up <- snapshot(svc, known[svc]):
			case <-ctx.Done():
				return nil
			}
		}
		timer.Reset(b.every)
	}
}

// age merges the instances found in one successful window into known: found ones are
// (re)set to missed 0, the others count one more missed window and are dropped at
// dropAfter. New instances beyond MaxInstances are ignored.
func (b *Browser) age(svc string, known map[string]*tracked, found map[string]Candidate) {
	for key, tr := range known {
		if c, ok := found[key]; ok {
			tr.c, tr.missed = c, 0
			continue
		}
		tr.missed++
		if tr.missed >= b.dropAfter {
			delete(known, key)
			b.log.Debug("mdns: instance dropped", "service", svc, "instance", tr.c.Instance, "windows", tr.missed)
		}
	}
	var overflow int
	for key, c := range found {
		if _, ok := known[key]; ok {
			continue
		}
		if len(known) >= MaxInstances {
			overflow++
			continue
		}
		known[key] = &tracked{c: c}
		b.log.Debug("mdns: instance found", "service", svc, "instance", c.Instance, "host", c.Host, "port", c.Port)
	}
	if overflow > 0 {
		b.log.Warn("mdns: too many instances; ignoring some", "service", svc, "max", MaxInstances, "ignored", overflow)
	}
}

// snapshot returns the sorted, deep-copied candidates of known.
func snapshot(svc string, known map[string]*tracked) Snapshot {
	s := Snapshot{Service: svc, Candidates: make([]Candidate, 0, len(known))}
	for _, tr := range known {
		s.Candidates = append(s.Candidates, tr.c.clone())
	}
	slices.SortFunc(s.Candidates, func(a, b Candidate) int {
		if c := strings.Compare(a.Instance, b.Instance); c != 0 {
			return c
		}
		if c := strings.Compare(a.Host, b.Host); c != 0 {
			return c
		}
		return a.Port - b.Port
	})
	return s
}

// windowResult is one service type's outcome of a window: the instances found, keyed
// by their escaped instance name, or the error that kept it from browsing at all.
type windowResult struct {
	found map[string]Candidate
	err   error
}

// candidate converts an instance as a window assembled it (collector.entries), in the
// shape of a zeroconf.ServiceEntry: the escaped instance label, the SRV target and
// port, the escaped TXT strings and the addresses. It returns the instance's key (its
// escaped name, unique per instance) and the cleaned candidate, or a reason to ignore
// it. (instanceFromZeroconf leaves the collector's labels as they are: they never end
// in an escaping backslash.)
func (b *Browser) candidate(svc string, e *zeroconf.ServiceEntry) (string, Candidate, string) {
	key := instanceFromZeroconf(e.Instance)
	c := Candidate{
		Instance: strings.TrimSpace(cleanText(unescapeDNS(key), MaxInstanceLen)),
		Service:  svc,
		Domain:   b.domain,
		Host:     strings.TrimSpace(cleanText(unescapeDNS(strings.TrimSuffix(e.HostName, ".")), MaxHostLen)),
		Port:     e.Port,
	}
	switch {
	case c.Instance == "":
		return key, c, "empty instance name"
	case c.Port < 1 || c.Port > 65535:
		return key, c, "no port"
	}
	c.Addrs = b.addrs(e)
	if len(c.Addrs) == 0 {
		return key, c, "no usable address"
	}
	txt := make([]string, len(e.Text))
	for i, s := range e.Text {
		txt[i] = unescapeDNS(s)
	}
	c.TXT = ParseTXT(txt)
	return key, c, ""
}

// addrs returns the usable addresses of e: IPv4, then IPv6 if enabled.
func (b *Browser) addrs(e *zeroconf.ServiceEntry) []netip.Addr {
	var v4, v6 []netip.Addr
	add := func(ip net.IP) {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return
		}
		a = a.Unmap()
		if a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			return
		}
		if a.Is4() {
			v4 = append(v4, a)
		} else if b.ipv6 {
			v6 = append(v6, a)
		}
	}
	for _, ip := range e.AddrIPv4 {
		add(ip)
	}
	for _, ip := range e.AddrIPv6 {
		add(ip)
	}
	return mergeAddrs(v4, v6)
}

// mergeAddrs returns the IPv4 addresses of all lists, then the IPv6 ones, each family
// sorted and without duplicates, at most MaxAddrs.
func mergeAddrs(lists ...[]netip.Addr) []netip.Addr {
	var v4, v6 []netip.Addr
	for _, l := range lists {
		for _, a := range l {
			if a.Is4() {
				v4 = append(v4, a)
			} else {
				v6 = append(v6, a)
			}
		}
	}
	slices.SortFunc(v4, netip.Addr.Compare)
	slices.SortFunc(v6, netip.Addr.Compare)
	out := append(slices.Compact(v4), slices.Compact(v6)...)
	if len(out) > MaxAddrs {
		out = out[:MaxAddrs]
	}
	return out
}

// merge combines two reports of the same instance in one window: the first one's
// fields win, addresses are united, and a missing TXT is taken from the second.
func merge(a, b Candidate) Candidate {
	a.Addrs = mergeAddrs(a.Addrs, b.Addrs)
	if len(a.TXT) == 0 {
		a.TXT = b.TXT
	}
	return a
}

package mdns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/rollcall-edge/rollcall/protocols/dnsname"

	"github.com/miekg/dns"
	"github.com/rollcall-edge/rollcall/internal/testutil"
)

// axis is a well-formed announcement used by the parser and collector tests.
func axis() Candidate {
	return Candidate{Instance: "axis-7", Service: "_modbus._tcp", Domain: "local.", Host: "axis-7-sim.local", Port: 15020,
		Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.7")}, TXT: map[string]string{"unit": "1"}}
}

// wireName encodes a domain name (dot-separated labels, no escapes) uncompressed
// (RFC 1035 §3.1).
func wireName(name string) []byte {
	var b []byte
	for _, l := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		b = append(append(b, byte(len(l))), l...)
	}
	return append(b, 0)
}

// appendAdditional appends a raw resource record (owner, type, class IN, TTL 120,
// rdata) to the additional section of the packed message msg.
func appendAdditional(msg []byte, owner string, rrtype uint16, rdata []byte) []byte {
	out := append(slices.Clone(msg), wireName(owner)...)
	out = binary.BigEndian.AppendUint16(out, rrtype)
	out = binary.BigEndian.AppendUint16(out, dns.ClassINET)
	out = binary.BigEndian.AppendUint32(out, 120)
	out = binary.BigEndian.AppendUint16(out, uint16(len(rdata)))
	out = append(out, rdata...)
	binary.BigEndian.PutUint16(out[10:], binary.BigEndian.Uint16(out[10:])+1) // ARCOUNT
	return out
}

// TestParseResponse checks which datagrams are responses and that one bad record costs
// only itself.
func TestParseResponse(t *testing.T) {
	resp := response(t, axis())
	rrs, skipped, err := parseResponse(resp)
	if err != nil || skipped != 0 || len(rrs) != 4 {
		t.Fatalf("well-formed response: %d records, %d skipped, err %v; want 4, 0, nil", len(rrs), skipped, err)
	}

	// An NSEC record whose type bitmap has an empty block (refused by miekg/dns v1.1.27,
	// so Msg.Unpack loses the whole packet), then an A record after it.
	nsec := append(wireName("axis-7-sim.local."), 0, 0) // next name, window 0, length 0
	bad := appendAdditional(resp, "axis-7-sim.local.", dns.TypeNSEC, nsec)
	bad = appendAdditional(bad, "axis-7-sim.local.", dns.TypeA, []byte{192, 0, 2, 8})
	if err := new(dns.Msg).Unpack(bad); err == nil {
		t.Fatal("miekg/dns accepts the empty NSEC block now: the test no longer shows anything")
	}
	rrs, skipped, err = parseResponse(bad)
	if err != nil || skipped != 1 || len(rrs) != 5 {
		t.Fatalf("response with a bad NSEC: %d records, %d skipped, err %v; want 5, 1, nil", len(rrs), skipped, err)
	}
	if a, ok := rrs[4].(*dns.A); !ok || !a.A.Equal([]byte{192, 0, 2, 8}) {
		t.Errorf("record after the bad one: %v", rrs[4])
	}

	flags := func(f uint16) []byte {
		b := slices.Clone(resp)
		binary.BigEndian.PutUint16(b[2:], f)
		return b
	}
	for _, tt := range []struct {
		name string
		msg  []byte
		want error
	}{
		{"query", flags(0), errNotResponse},
		{"opcode 4", flags(1<<15 | 4<<11), errNotResponse},
		{"rcode 3", flags(1<<15 | 3), errNotResponse},
		{"short header", resp[:11], errMalformed},
		{"question cut off", func() []byte {
			b := slices.Clone(resp[:14])
			binary.BigEndian.PutUint16(b[4:], 1) // QDCOUNT 1, then a label that runs out
			return b
		}(), errMalformed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := parseResponse(tt.msg); !errors.Is(err, tt.want) {
				t.Errorf("err %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("truncated record", func(t *testing.T) {
		rrs, skipped, err := parseResponse(resp[:len(resp)-2]) // the last A record is cut
		if err != nil || skipped != 1 || len(rrs) != 3 {
			t.Errorf("%d records, %d skipped, err %v; want 3, 1, nil", len(rrs), skipped, err)
		}
	})
}

// collect runs packed responses through a collector for services and returns the
// candidates the Browser b makes of them, by instance name, with the reasons for the
// entries it ignored.
func collect(t *testing.T, b *Browser, msgs ...[]byte) (map[string]Candidate, []string) {
	t.Helper()
	col := newCollector(b.services, b.domain)
	for _, m := range msgs {
		rrs, _, err := parseResponse(m)
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		col.add(rrs)
	}
	entries, _ := col.entries(b.services)
	found := map[string]Candidate{}
	var ignored []string
	for i, svc := range b.services {
		for _, e := range entries[i] {
			_, c, why := b.candidate(svc, e)
			if why != "" {
				ignored = append(ignored, c.Instance+": "+why)
				continue
			}
			found[c.Instance] = c
		}
	}
	slices.Sort(ignored)
	return found, ignored
}

// split packs c's announcement into one response per record.
func split(t *testing.T, c Candidate) [][]byte {
	t.Helper()
	var m dns.Msg
	if err := m.Unpack(response(t, c)); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, rr := range append(m.Answer, m.Extra...) {
		buf, err := (&dns.Msg{MsgHdr: dns.MsgHdr{Response: true}, Answer: []dns.RR{rr}}).Pack()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, buf)
	}
	return out // PTR, SRV, TXT, A
}

// TestCollector checks how a window's records become candidates.
func TestCollector(t *testing.T) {
	b, err := NewBrowser(BrowserOptions{ServiceTypes: []string{"_modbus._tcp", "_http._tcp"}})
	if err != nil {
		t.Fatal(err)
	}
	want := axis()
	check := func(t *testing.T, found map[string]Candidate, ignored []string, want ...Candidate) {
		t.Helper()
		if len(found) != len(want) || len(ignored) != 0 {
			t.Fatalf("found %+v, ignored %q; want %d candidates", found, ignored, len(want))
		}
		for _, w := range want {
			if !equalCandidate(found[w.Instance], w) {
				t.Errorf("\n got %+v\nwant %+v", found[w.Instance], w)
			}
		}
	}
	t.Run("one response", func(t *testing.T) {
		found, ignored := collect(t, b, response(t, want))
		check(t, found, ignored, want)
	})
	t.Run("records in separate responses", func(t *testing.T) {
		p := split(t, want) // PTR, SRV, TXT, A
		found, ignored := collect(t, b, p[2], p[1], p[3], p[0])
		check(t, found, ignored, want)
	})
	t.Run("address before its SRV record", func(t *testing.T) {
		p := split(t, want)
		_, ignored := collect(t, b, p[3], p[0], p[1], p[2])
		if !slices.Equal(ignored, []string{"axis-7: no usable address"}) {
			t.Errorf("ignored %q", ignored)
		}
	})
	t.Run("goodbyes are ignored", func(t *testing.T) {
		var m dns.Msg
		if err := m.Unpack(response(t, want)); err != nil {
			t.Fatal(err)
		}
		for _, rr := range append(m.Answer, m.Extra...) {
			rr.Header().Ttl = 0
		}
		bye, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		if found, ignored := collect(t, b, bye); len(found)+len(ignored) != 0 {
			t.Errorf("goodbye alone: found %v, ignored %q", found, ignored)
		}
		found, ignored := collect(t, b, response(t, want), bye)
		check(t, found, ignored, want)
	})
	t.Run("case-insensitive names", func(t *testing.T) {
		upper := want
		upper.Service, upper.Domain, upper.Host = "_MODBUS._TCP", "LOCAL.", "AXIS-7-SIM.local"
		lower := want
		lower.Instance = "AXIS-7"
		lower.TXT = map[string]string{"unit": "2"}
		found, ignored := collect(t, b, response(t, upper), response(t, lower))
		got := want // first spelling of the instance; the later TXT record replaces the earlier
		got.TXT = lower.TXT
		check(t, found, ignored, got)
	})
	t.Run("names that are not an instance of a browsed type", func(t *testing.T) {
		var msgs [][]byte
		for _, name := range []string{
			`two.labels._modbus._tcp.local.`,
			`escaped\._modbus._tcp.local.`, // one label "escaped._modbus", then "_tcp.local."
			`_modbus._tcp.local.`,          // the service name itself
		} {
			msgs = append(msgs, announce(t, want, name))
		}
		other := want
		other.Service = "_ipp._tcp"
		chaos := response(t, want)
		var m dns.Msg
		_ = m.Unpack(chaos)
		for _, rr := range append(m.Answer, m.Extra...) {
			rr.Header().Class = dns.ClassCHAOS
		}
		chaos, _ = m.Pack()
		found, ignored := collect(t, b, append(msgs, response(t, other), chaos)...)
		if len(found)+len(ignored) != 0 {
			t.Errorf("found %v, ignored %q", found, ignored)
		}
		dotted := want
		dotted.Instance = "Axis 7. Cell 2" // one label with dots and spaces (RFC 6763 §4.3)
		found, ignored = collect(t, b, response(t, dotted))
		check(t, found, ignored, dotted)
	})
	t.Run("cache-flush bit and two service types", func(t *testing.T) {
		web := want
		web.Service, web.Instance, web.Port = "_http._tcp", "axis-7-web", 80
		var m dns.Msg
		_ = m.Unpack(response(t, web))
		for _, rr := range m.Extra {
			rr.Header().Class |= dnsCacheFlush
		}
		flushed, _ := m.Pack()
		found, ignored := collect(t, b, response(t, want), flushed)
		check(t, found, ignored, want, web)
	})
	t.Run("bounds", func(t *testing.T) {
		col := newCollector(b.services, b.domain)
		for i := range maxWindowInstances + 10 {
			c := want
			c.Instance = fmt.Sprintf("i%04d", i)
			c.Addrs = nil
			for j := range 3 {
				c.Addrs = append(c.Addrs, netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), byte(j)}))
			}
			if i == 0 {
				for j := range maxHostAddrs + 10 {
					c.Addrs = append(c.Addrs, netip.AddrFrom4([4]byte{172, 16, 0, byte(j)}))
				}
			}
			rrs, _, err := parseResponse(response(t, c))
			if err != nil {
				t.Fatal(err)
			}
			col.add(rrs)
		}
		entries, overflow := col.entries(b.services)
		// 10 names too many, each with a PTR, an SRV and a TXT record.
		if len(entries[0]) != maxWindowInstances || overflow[0] != 30 || len(entries[1]) != 0 || overflow[1] != 0 {
			t.Errorf("%d instances, overflow %v; want %d and [30 0]", len(entries[0]), overflow, maxWindowInstances)
		}
		if n := len(col.hosts[dnsname.Fold(want.Host+".")]); n != maxHostAddrs {
			t.Errorf("%d addresses kept for the shared host, want %d", n, maxHostAddrs)
		}
	})
}

// TestDropWarningsBounded checks that datagrams from other interfaces are all counted
// but logged once per source, for at most MaxDropWarnings sources, and that the memory
// of logged sources stays within that bound.
func TestDropWarningsBounded(t *testing.T) {
	var logs testutil.SyncBuffer
	b, err := NewBrowser(BrowserOptions{ServiceTypes: []string{"_modbus._tcp"}, Interfaces: []string{"lo"},
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	const sources = MaxDropWarnings + 20
	for i := range sources {
		for range 3 { // each source again at once, then after the bound is reached
			b.dropWrongInterface(packet{src: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), srcPort: 5353, ifIndex: 1})
		}
	}
	for i := range sources {
		b.dropWrongInterface(packet{src: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), srcPort: 5353, ifIndex: 1})
	}
	if st := b.Stats(); st.WrongInterface != 4*sources || st.Received != 0 || st.Malformed != 0 {
		t.Errorf("stats %+v, want WrongInterface %d", st, 4*sources)
	}
	if n := strings.Count(logs.String(), "dropping packets that arrive on an interface not browsed"); n != MaxDropWarnings {
		t.Errorf("%d per-source warnings, want %d", n, MaxDropWarnings)
	}
	if n := strings.Count(logs.String(), "counting them without logging each"); n != 1 {
		t.Errorf("%d warnings about further sources, want 1", n)
	}
	if !strings.Contains(logs.String(), "src=192.0.2.0 srcport=5353") || strings.Count(logs.String(), "src=192.0.2.5 ") != 1 {
		t.Errorf("log lines do not name each source once:\n%s", logs.String())
	}
	if len(b.dropSeen) != MaxDropWarnings {
		t.Errorf("%d sources remembered, want %d", len(b.dropSeen), MaxDropWarnings)
	}
}

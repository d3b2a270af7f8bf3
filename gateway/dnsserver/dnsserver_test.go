package dnsserver

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestNewValidation(t *testing.T) {
	src := func() []Instance { return nil }
	bad := []struct {
		name string
		o    Options
		want string
	}{
		{"no instances", Options{Domain: "rollcall"}, "Options.Instances"},
		{"empty domain", Options{Domain: "", Instances: src}, "Options.Domain"},
		{"root domain", Options{Domain: ".", Instances: src}, "Options.Domain"},
		{"underscore", Options{Domain: "roll_call", Instances: src}, "Options.Domain"},
		{"empty label", Options{Domain: "plant..example", Instances: src}, "Options.Domain"},
		{"long label", Options{Domain: strings.Repeat("a", 64) + ".example", Instances: src}, "Options.Domain"},
		{"long name", Options{Domain: strings.Repeat(strings.Repeat("a", 62)+".", 4) + "ab", Instances: src}, "Options.Domain"},
		{"negative ttl", Options{Domain: "rollcall", TTL: -time.Second, Instances: src}, "Options.TTL"},
		{"ttl over 1s", Options{Domain: "rollcall", TTL: 1001 * time.Millisecond, Instances: src}, "Options.TTL"},
	}
	for _, c := range bad {
		if _, err := New(c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: New error %v, want one naming %s", c.name, err, c.want)
		}
	}
	good := []struct {
		o      Options
		domain string
		ttl    uint32
	}{
		{Options{Domain: "rollcall", TTL: time.Second, Instances: src}, "rollcall.", 1},
		{Options{Domain: "Plant.Example.", TTL: 1999 * time.Millisecond / 2, Instances: src}, "plant.example.", 0},
		{Options{Domain: "a-1.b", Instances: src}, "a-1.b.", 0},
	}
	for _, c := range good {
		s, err := New(c.o)
		if err != nil {
			t.Fatalf("New(%+v): %v", c.o, err)
		}
		if s.Domain() != c.domain || s.ttl != c.ttl {
			t.Errorf("New(%q, %v): domain %q ttl %d, want %q %d", c.o.Domain, c.o.TTL, s.Domain(), s.ttl, c.domain, c.ttl)
		}
	}
}

func TestA(t *testing.T) {
	addr := serve(t, newServer(t, catalog(), time.Second))
	r := query(t, addr, "servo-drive.service.rollcall.", dns.TypeA)
	wantRcode(t, r, dns.RcodeSuccess)
	if !r.Authoritative || r.RecursionAvailable {
		t.Errorf("AA %v RA %v, want AA and no RA", r.Authoritative, r.RecursionAvailable)
	}
	if got := addrs(r.Answer); !slices.Equal(got, []string{"127.0.0.11", "127.0.0.12"}) {
		t.Fatalf("A %v, want the two passing IPv4 instances", got)
	}
	for _, rr := range r.Answer {
		if rr.Header().Name != "servo-drive.service.rollcall." || rr.Header().Ttl != 1 {
			t.Errorf("record %v: want owner as asked and TTL 1", rr)
		}
	}
	// Duplicate hosts are answered once.
	dup := append(catalog(), Instance{ID: "sd-1b", Service: "servo-drive", Passing: true, Host: "127.0.0.11", Port: 503})
	addr2 := serve(t, newServer(t, dup, time.Second))
	if got := addrs(query(t, addr2, "servo-drive.service.rollcall.", dns.TypeA).Answer); len(got) != 2 {
		t.Fatalf("A with a duplicate host: %v, want 2 addresses", got)
	}
}

func TestAAAA(t *testing.T) {
	addr := serve(t, newServer(t, catalog(), time.Second))
	r := query(t, addr, "servo-drive.service.rollcall.", dns.TypeAAAA)
	wantRcode(t, r, dns.RcodeSuccess)
	if got := addrs(r.Answer); !slices.Equal(got, []string{"fd00::12"}) {
		t.Fatalf("AAAA %v, want [fd00::12]", got)
	}
	// vision has only a host name: no address records at all.
	wantNegative(t, query(t, addr, "vision.service.rollcall.", dns.TypeAAAA), dns.RcodeSuccess, 1)
	wantNegative(t, query(t, addr, "vision.service.rollcall.", dns.TypeA), dns.RcodeSuccess, 1)
}

func TestSRV(t *testing.T) {
	addr := serve(t, newServer(t, catalog(), time.Second))
	r := query(t, addr, "servo-drive.service.rollcall.", dns.TypeSRV)
	wantRcode(t, r, dns.RcodeSuccess)
	want := []string{
		"1 1 1502 fd000000000000000000000000000012.addr.rollcall.",
		"1 1 502 7f00000b.addr.rollcall.",
		"1 1 502 7f00000c.addr.rollcall.",
	}
	if got := srvs(r.Answer); !slices.Equal(got, want) {
		t.Fatalf("SRV %v, want %v", got, want)
	}
	extra := map[string]string{}
	for _, rr := range r.Extra {
		if a := addrs([]dns.RR{rr}); len(a) == 1 {
			extra[rr.Header().Name] = a[0]
		}
	}
	wantExtra := map[string]string{
		"7f00000b.addr.rollcall.":                         "127.0.0.11",
		"7f00000c.addr.rollcall.":                         "127.0.0.12",
		"fd000000000000000000000000000012.addr.rollcall.": "fd00::12",
	}
	if len(extra) != len(wantExtra) {
		t.Fatalf("additional %v, want %v", r.Extra, wantExtra)
	}
	for k, v := range wantExtra {
		if extra[k] != v {
			t.Errorf("additional %s = %q, want %q", k, extra[k], v)
		}
	}
	// A host name is the target itself, with no additional record; an invalid
	// host is left out.
	r = query(t, addr, "vision.service.rollcall.", dns.TypeSRV)
	if got := srvs(r.Answer); !slices.Equal(got, []string{"1 1 8080 cam-1.plant.example."}) {
		t.Fatalf("vision SRV %v", got)
	}
	if len(r.Extra) != 0 {
		t.Fatalf("vision additional %v, want none", r.Extra)
	}
}

func TestTXT(t *testing.T) {
	addr := serve(t, newServer(t, catalog(), time.Second))
	r := query(t, addr, "servo-drive.service.rollcall.", dns.TypeTXT)
	wantRcode(t, r, dns.RcodeSuccess)
	var got []string
	for _, rr := range r.Answer {
		got = append(got, strings.Join(rr.(*dns.TXT).Txt, "|"))
	}
	slices.Sort(got)
	want := []string{
		"id=sd-1|endpoint=modbus-tcp 127.0.0.11:502 unit 1|unit=1",
		"id=sd-2|endpoint=modbus-tcp 127.0.0.12:502 unit 1|unit=1",
		"id=sd-6|endpoint=modbus-tcp [fd00::12]:1502 unit 2|unit=2",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("TXT %q, want %q", got, want)
	}
	// A long endpoint is cut to 255 octets; a backslash survives the wire.
	r = query(t, addr, "vision.service.rollcall.", dns.TypeTXT)
	if len(r.Answer) != 2 {
		t.Fatalf("vision TXT %v, want 2", r.Answer)
	}
	for _, rr := range r.Answer {
		txt := rr.(*dns.TXT).Txt
		if txt[0] != "id=cam-2" {
			continue
		}
		raw := ("endpoint=" + longEndpoint)[:255]
		if want := strings.ReplaceAll(raw, `\`, `\\`); txt[1] != want {
			t.Fatalf("long endpoint %q, want %q", txt[1], want)
		}
		return
	}
	t.Fatal("no TXT for cam-2")
}

func TestTagFilter(t *testing.T) {
	addr := serve(t, newServer(t, catalog(), time.Second))
	for _, c := range []struct {
		name string
		want []string
	}{
		{"axis-1.servo-drive.service.rollcall.", []string{"127.0.0.11"}},
		{"axis-2.servo-drive.service.rollcall.", []string{"127.0.0.12"}},
		{"zone-name-north.servo-drive.service.rollcall.", []string{"127.0.0.12"}}, // key with '-'
		{"axis-2.zone-name-north.servo-drive.service.rollcall.", []string{"127.0.0.12"}},
		{"fw-rev-1.2.servo-drive.service.rollcall.", []string{"127.0.0.11"}}, // tag with '.'
		{"AXIS-1.servo-drive.service.rollcall.", []string{"127.0.0.11"}},
	} {
		r := query(t, addr, c.name, dns.TypeA)
		wantRcode(t, r, dns.RcodeSuccess)
		if got := addrs(r.Answer); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	r := query(t, addr, "axis-1.servo-drive.service.rollcall.", dns.TypeSRV)
	if got := srvs(r.Answer); !slices.Equal(got, []string{"1 1 502 7f00000b.addr.rollcall."}) {
		t.Errorf("tag SRV %v", got)
	}
	// axis-3 exists but does not pass: NODATA. No instance has axis 9, or both
	// axis 1 and 2: NXDOMAIN.
	wantNegative(t, query(t, addr, "axis-3.servo-drive.service.rollcall.", dns.TypeA), dns.RcodeSuccess, 1)
	wantNegative(t, query(t, addr, "axis-9.servo-drive.service.rollcall.", dns.TypeA), dns.RcodeNameError, 1)
	wantNegative(t, query(t, addr, "axis-1.axis-2.servo-drive.service.rollcall.", dns.TypeA), dns.RcodeNameError, 1)
	wantNegative(t, query(t, addr, "fw-rev-1.servo-drive.service.rollcall.", dns.TypeA), dns.RcodeNameError, 1)
}

func TestRFC2782Name(t *testing.T) {
	addr := serve(t, newServer(t, catalog(), time.Second))
	r := query(t, addr, "_servo-drive._tcp.service.rollcall.", dns.TypeSRV)
	wantRcode(t, r, dns.RcodeSuccess)
	if got := srvs(r.Answer); len(got) != 3 || len(r.Extra) != 3 {
		t.Fatalf("RFC 2782 SRV %v additional %v, want 3 and 3", got, r.Extra)
	}
	for _, rr := range r.Answer {
		if rr.Header().Name != "_servo-drive._tcp.service.rollcall." {
			t.Errorf("owner %q", rr.Header().Name)
		}
	}
	r = query(t, addr, "_vision._TCP.service.rollcall.", dns.TypeSRV)
	if got := srvs(r.Answer); !slices.Equal(got, []string{"1 1 8080 cam-1.plant.example."}) {
		t.Fatalf("_vision._tcp SRV %v", got)
	}
	if got := addrs(query(t, addr, "_servo-drive._tcp.service.rollcall.", dns.TypeA).Answer); len(got) != 2 {
		t.Fatalf("RFC 2782 A %v", got)
	}
	wantNegative(t, query(t, addr, "_servo-drive._udp.service.rollcall.", dns.TypeSRV), dns.RcodeNameError, 1)
	wantNegative(t, query(t, addr, "_nothing._tcp.service.rollcall.", dns.TypeSRV), dns.RcodeNameError, 1)
}

func TestAddrNames(t *testing.T) {
	addr := serve(t, newServer(t, catalog(), time.Second))
	for _, c := range []struct {
		name  string
		qtype uint16
		want  string
	}{
		{"7f00000b.addr.rollcall.", dns.TypeA, "127.0.0.11"},
		{"7F00000C.addr.rollcall.", dns.TypeA, "127.0.0.12"},
		{"fd000000000000000000000000000012.addr.rollcall.", dns.TypeAAAA, "fd00::12"},
	} {
		r := query(t, addr, c.name, c.qtype)
		wantRcode(t, r, dns.RcodeSuccess)
		if got := addrs(r.Answer); !slices.Equal(got, []string{c.want}) || r.Answer[0].Header().Name != c.name {
			t.Errorf("%s: %v, want %s owned by the name asked", c.name, r.Answer, c.want)
		}
	}
	wantNegative(t, query(t, addr, "7f00000b.addr.rollcall.", dns.TypeAAAA), dns.RcodeSuccess, 1)
	wantNegative(t, query(t, addr, "fd000000000000000000000000000012.addr.rollcall.", dns.TypeA), dns.RcodeSuccess, 1)
	wantNegative(t, query(t, addr, "addr.rollcall.", dns.TypeA), dns.RcodeSuccess, 1)
	for _, bad := range []string{"zz00000b", "7f0000", "7f00000b00", "x.7f00000b"} {
		wantNegative(t, query(t, addr, bad+".addr.rollcall.", dns.TypeA), dns.RcodeNameError, 1)
	}
}

func TestNXDomain(t *testing.T) {
	addr := serve(t, newServer(t, catalog(), time.Second))
	for _, name := range []string{"unknown.service.rollcall.", "foo.rollcall.", "a.b.rollcall."} {
		wantNegative(t, query(t, addr, name, dns.TypeA), dns.RcodeNameError, 1)
	}
}

func TestNoData(t *testing.T) {
	addr := serve(t, newServer(t, catalog(), time.Second))
	for _, c := range []struct {
		name  string
		qtype uint16
	}{
		{"idle.service.rollcall.", dns.TypeA},   // no instance passing
		{"idle.service.rollcall.", dns.TypeSRV}, // same
		{"servo-drive.service.rollcall.", dns.TypeMX},
		{"service.rollcall.", dns.TypeA}, // empty non-terminal
		{"rollcall.", dns.TypeA},
	} {
		wantNegative(t, query(t, addr, c.name, c.qtype), dns.RcodeSuccess, 1)
	}
}

func TestApexAndANY(t *testing.T) {
	addr := serve(t, newServer(t, catalog(), time.Second))
	r := query(t, addr, "rollcall.", dns.TypeSOA)
	wantRcode(t, r, dns.RcodeSuccess)
	if len(r.Answer) != 1 {
		t.Fatalf("SOA answer %v", r.Answer)
	}
	soa, ok := r.Answer[0].(*dns.SOA)
	if !ok || soa.Ns != "ns.rollcall." || soa.Mbox != "hostmaster.rollcall." || soa.Minttl != 1 {
		t.Fatalf("SOA %v", r.Answer[0])
	}
	for _, name := range []string{"servo-drive.service.rollcall.", "rollcall.", "7f00000b.addr.rollcall."} {
		r := query(t, addr, name, dns.TypeANY)
		wantRcode(t, r, dns.RcodeSuccess)
		h, ok := r.Answer[0].(*dns.HINFO)
		if len(r.Answer) != 1 || !ok || h.Cpu != "RFC8482" || h.Os != "" {
			t.Fatalf("ANY %s: %v, want one HINFO RFC8482", name, r.Answer)
		}
	}
	wantNegative(t, query(t, addr, "nope.service.rollcall.", dns.TypeANY), dns.RcodeNameError, 1)
	wantNegative(t, query(t, addr, "idle.service.rollcall.", dns.TypeANY), dns.RcodeSuccess, 1)
}

func TestRefused(t *testing.T) {
	addr := serve(t, newServer(t, catalog(), time.Second))
	for _, name := range []string{"example.com.", "servo-drive.service.rollcall.example.", "xrollcall.", "."} {
		r := query(t, addr, name, dns.TypeA)
		wantRcode(t, r, dns.RcodeRefused)
		if r.Authoritative || len(r.Answer) != 0 || len(r.Ns) != 0 {
			t.Errorf("%s: refused reply %v has AA or records", name, r)
		}
	}
	m := new(dns.Msg)
	m.SetQuestion("servo-drive.service.rollcall.", dns.TypeA)
	m.Question[0].Qclass = dns.ClassCHAOS
	wantRcode(t, exchange(t, addr, "udp", m), dns.RcodeRefused)
	m.Question[0].Qclass = dns.ClassANY
	wantRcode(t, exchange(t, addr, "udp", m), dns.RcodeSuccess)
	m = new(dns.Msg)
	m.SetAxfr("rollcall.")
	wantRcode(t, exchange(t, addr, "tcp", m), dns.RcodeRefused)
}

func TestFormErrAndNotImp(t *testing.T) {
	s := newServer(t, catalog(), time.Second)
	addr := serve(t, s)
	none := new(dns.Msg)
	none.Id = 7
	r, _ := rawExchange(t, addr, "udp", none)
	wantRcode(t, r, dns.RcodeFormatError)
	two := new(dns.Msg)
	two.SetQuestion("servo-drive.service.rollcall.", dns.TypeA)
	two.Question = append(two.Question, dns.Question{Name: "vision.service.rollcall.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
	r, _ = rawExchange(t, addr, "tcp", two)
	wantRcode(t, r, dns.RcodeFormatError)
	if len(r.Answer) != 0 {
		t.Fatalf("FORMERR with answers: %v", r.Answer)
	}
	bad := new(dns.Msg)
	bad.SetQuestion("servo-drive.service.rollcall.", dns.TypeA)
	bad.SetEdns0(1232, false)
	bad.IsEdns0().SetVersion(1)
	r, _ = rawExchange(t, addr, "udp", bad)
	if r.Rcode != dns.RcodeBadVers || r.IsEdns0() == nil || r.IsEdns0().Version() != 0 {
		t.Fatalf("EDNS version 1: rcode %s opt %v, want BADVERS with a version 0 OPT", dns.RcodeToString[r.Rcode], r.IsEdns0())
	}
	for _, op := range []int{dns.OpcodeNotify, dns.OpcodeUpdate, dns.OpcodeStatus} {
		m := new(dns.Msg)
		m.SetQuestion("rollcall.", dns.TypeSOA)
		m.Opcode = op
		r, _ := rawExchange(t, addr, "udp", m)
		wantRcode(t, r, dns.RcodeNotImplemented)
		if r.Opcode != op {
			t.Errorf("opcode %d echoed as %d", op, r.Opcode)
		}
	}
	if st := s.Stats(); st.FormErr != 3 || st.NotImp != 3 {
		t.Fatalf("stats %+v, want FormErr 3 and NotImp 3", st)
	}
}

func TestCaseInsensitive(t *testing.T) {
	addr := serve(t, newServer(t, catalog(), time.Second))
	name := "SeRvO-dRiVe.SeRvIcE.RoLlCaLl."
	r := query(t, addr, name, dns.TypeA)
	wantRcode(t, r, dns.RcodeSuccess)
	if r.Question[0].Name != name {
		t.Fatalf("question echoed as %q, want %q", r.Question[0].Name, name)
	}
	if got := addrs(r.Answer); len(got) != 2 {
		t.Fatalf("A %v", got)
	}
	for _, rr := range r.Answer {
		if rr.Header().Name != name {
			t.Errorf("owner %q, want %q", rr.Header().Name, name)
		}
	}
	r = query(t, addr, "NoSuch.Service.ROLLCALL.", dns.TypeA)
	wantNegative(t, r, dns.RcodeNameError, 1)
	if r.Ns[0].Header().Name != "ROLLCALL." {
		t.Errorf("SOA owner %q, want the apex as asked", r.Ns[0].Header().Name)
	}
}

func TestTTL(t *testing.T) {
	for _, c := range []struct {
		ttl  time.Duration
		want uint32
	}{{0, 0}, {999 * time.Millisecond, 0}, {time.Second, 1}} {
		addr := serve(t, newServer(t, catalog(), c.ttl))
		var rrs []dns.RR
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeTXT} {
			r := query(t, addr, "servo-drive.service.rollcall.", qt)
			rrs = append(append(rrs, r.Answer...), r.Extra...)
		}
		if len(rrs) < 10 {
			t.Fatalf("TTL %v: only %d records", c.ttl, len(rrs))
		}
		for _, rr := range rrs {
			if rr.Header().Ttl != c.want {
				t.Errorf("TTL %v: record %v, want TTL %d", c.ttl, rr, c.want)
			}
		}
		wantNegative(t, query(t, addr, "idle.service.rollcall.", dns.TypeA), dns.RcodeSuccess, c.want)
	}
}

func TestTruncationUDPAndFullTCP(t *testing.T) {
	s := newServer(t, many(300), time.Second)
	addr := serve(t, s)
	m := new(dns.Msg)
	m.SetQuestion("servo-drive.service.rollcall.", dns.TypeA)
	r, n := rawExchange(t, addr, "udp", m)
	if n > 512 || !r.Truncated || len(r.Answer) == 0 || len(r.Answer) >= 300 {
		t.Fatalf("UDP: %d octets, TC %v, %d answers; want ≤ 512, TC, some answers", n, r.Truncated, len(r.Answer))
	}
	if r.IsEdns0() != nil {
		t.Fatal("OPT in the reply to a query without one")
	}
	r, n = rawExchange(t, addr, "tcp", m)
	if r.Truncated || len(r.Answer) != 300 || n > dns.MaxMsgSize {
		t.Fatalf("TCP: %d octets, TC %v, %d answers; want all 300", n, r.Truncated, len(r.Answer))
	}
	r = exchange(t, addr, "tcp", func() *dns.Msg {
		q := new(dns.Msg)
		q.SetQuestion("servo-drive.service.rollcall.", dns.TypeSRV)
		return q
	}())
	if r.Truncated || len(r.Answer) != 300 || len(r.Extra) != 300 {
		t.Fatalf("TCP SRV: TC %v, %d answers, %d additional; want 300 and 300", r.Truncated, len(r.Answer), len(r.Extra))
	}
	if st := s.Stats(); st.Truncated != 1 || st.Answered != 3 {
		t.Fatalf("stats %+v, want Truncated 1 Answered 3", st)
	}
}

func TestEDNS0Size(t *testing.T) {
	addr := serve(t, newServer(t, many(300), time.Second))
	for _, c := range []struct {
		bufsize  uint16
		min, max int
	}{
		{100, 400, 512}, // below 512 counts as 512
		{1232, 1100, 1232},
		{8192, 3900, 4096}, // at most 4096 over UDP
	} {
		m := new(dns.Msg)
		m.SetQuestion("servo-drive.service.rollcall.", dns.TypeA)
		m.SetEdns0(c.bufsize, false)
		r, n := rawExchange(t, addr, "udp", m)
		if n > c.max || n < c.min || !r.Truncated {
			t.Errorf("EDNS %d: %d octets TC %v, want %d–%d with TC", c.bufsize, n, r.Truncated, c.min, c.max)
		}
		opt := r.IsEdns0()
		if opt == nil || opt.UDPSize() != MaxUDPSize || opt.Version() != 0 {
			t.Errorf("EDNS %d: reply OPT %v, want version 0 payload %d", c.bufsize, opt, MaxUDPSize)
		}
	}
	// A small answer is not truncated and still echoes OPT.
	addr2 := serve(t, newServer(t, catalog(), time.Second))
	m := new(dns.Msg)
	m.SetQuestion("servo-drive.service.rollcall.", dns.TypeTXT)
	m.SetEdns0(1232, false)
	r, _ := rawExchange(t, addr2, "udp", m)
	if r.Truncated || len(r.Answer) != 3 || r.IsEdns0() == nil {
		t.Fatalf("small EDNS answer: TC %v, %d answers, OPT %v", r.Truncated, len(r.Answer), r.IsEdns0())
	}
}

func TestAdditionalOnlyDroppedKeepsTCClear(t *testing.T) {
	// Each SRV takes 42 octets (targets are not compressed, RFC 2782): 9 fit
	// in 512 with the question, their 9 A records do not.
	s := newServer(t, many(9), time.Second)
	req := new(dns.Msg)
	req.SetQuestion("servo-drive.service.rollcall.", dns.TypeSRV)
	r := s.Answer(req, 512)
	out, err := r.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if len(out) > 512 || len(r.Answer) != 9 || len(r.Extra) >= 9 || r.Truncated {
		t.Fatalf("%d octets, %d answers, %d additional, TC %v: want all 9 answers, fewer additional, no TC (RFC 2181 §9)",
			len(out), len(r.Answer), len(r.Extra), r.Truncated)
	}
}

func TestHugeCatalog(t *testing.T) {
	s := newServer(t, many(10000), time.Second)
	addr := serve(t, s)
	for _, qt := range []uint16{dns.TypeA, dns.TypeSRV, dns.TypeTXT} {
		m := new(dns.Msg)
		m.SetQuestion("servo-drive.service.rollcall.", qt)
		m.SetEdns0(4096, false)
		r, n := rawExchange(t, addr, "udp", m)
		if !r.Truncated || n > 4096 || len(r.Answer) == 0 {
			t.Errorf("UDP %s: TC %v, %d octets, %d answers", dns.TypeToString[qt], r.Truncated, n, len(r.Answer))
		}
		r, n = rawExchange(t, addr, "tcp", m)
		if !r.Truncated || n > dns.MaxMsgSize || len(r.Answer) < 500 {
			t.Errorf("TCP %s: TC %v, %d octets, %d answers", dns.TypeToString[qt], r.Truncated, n, len(r.Answer))
		}
	}
}

func TestShuffle(t *testing.T) {
	s := newServer(t, many(8), time.Second)
	req := new(dns.Msg)
	req.SetQuestion("servo-drive.service.rollcall.", dns.TypeA)
	first := map[string]bool{}
	for range 64 {
		r := s.Answer(req, dns.MaxMsgSize)
		if len(r.Answer) != 8 {
			t.Fatalf("%d answers", len(r.Answer))
		}
		first[r.Answer[0].(*dns.A).A.String()] = true
	}
	if len(first) < 2 {
		t.Fatalf("64 replies all start with %v: answers are not shuffled", first)
	}
}

func TestStats(t *testing.T) {
	s := newServer(t, catalog(), time.Second)
	addr := serve(t, s)
	query(t, addr, "servo-drive.service.rollcall.", dns.TypeA)
	query(t, addr, "idle.service.rollcall.", dns.TypeA)
	query(t, addr, "nope.service.rollcall.", dns.TypeA)
	query(t, addr, "example.org.", dns.TypeA)
	// A header announcing a question that is not there: the library answers
	// FORMERR, the packet is counted.
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{0, 9, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'a'}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no reply to a malformed packet: %v", err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(buf[:n]); err != nil || r.Rcode != dns.RcodeFormatError {
		t.Fatalf("malformed packet reply %v (%v), want FORMERR", r, err)
	}
	want := Stats{Queries: 5, Answered: 1, NoData: 1, NXDomain: 1, Refused: 1, FormErr: 1}
	if got := s.Stats(); got != want {
		t.Fatalf("stats %+v, want %+v", got, want)
	}
}

func TestListen(t *testing.T) {
	pc, ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := pc.LocalAddr().(*net.UDPAddr).Port
	tp := ln.Addr().(*net.TCPAddr).Port
	if up == 0 || up != tp {
		t.Fatalf("UDP port %d, TCP port %d: want the same", up, tp)
	}
	// The same port again: TCP is taken, the error says so and no UDP socket
	// is left behind.
	pc.Close()
	_, _, err = Listen(ln.Addr().String())
	if err == nil || !strings.Contains(err.Error(), "tcp") {
		t.Fatalf("Listen on a taken TCP port: %v", err)
	}
	pc2, err := net.ListenPacket("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatalf("UDP port still held after a failed Listen: %v", err)
	}
	pc2.Close()
	ln.Close()
	if _, _, err := Listen("no-port"); err == nil {
		t.Fatal("Listen without a port succeeded")
	}
}

func TestServeLifecycle(t *testing.T) {
	s := newServer(t, catalog(), time.Second)
	if err := s.Serve(context.Background(), nil, nil); err == nil {
		t.Fatal("Serve(nil, nil) succeeded")
	}
	// Cancel: Serve returns nil and releases both sockets.
	pc, ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx, pc, ln) }()
	// An idle TCP connection must not hold the shutdown up.
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	wantRcode(t, query(t, addr, "servo-drive.service.rollcall.", dns.TypeA), dns.RcodeSuccess)
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Serve after cancel: %v", err)
	}
	pc2, ln2, err := Listen(addr)
	if err != nil {
		t.Fatalf("sockets not released: %v", err)
	}
	pc2.Close()
	// A listener failing before ctx ends: Serve stops the UDP side and
	// returns the error.
	ln2.Close()
	pc3, ln3, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln3.Close()
	err = s.Serve(context.Background(), pc3, ln3)
	if err == nil || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve with a closed listener: %v, want net.ErrClosed", err)
	}
}

// lockedBuffer is a log sink safe to read while the server writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestDebugLog(t *testing.T) {
	var buf lockedBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New(Options{Domain: "rollcall", TTL: time.Second, Logger: log, Instances: catalog})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, s)
	query(t, addr, "servo-drive.service.rollcall.", dns.TypeA)
	query(t, addr, "nope.service.rollcall.", dns.TypeA)
	if got := buf.String(); got != "" {
		t.Fatalf("answered and NXDOMAIN queries logged: %q", got)
	}
	query(t, addr, "example.com.", dns.TypeA)
	if got := buf.String(); !strings.Contains(got, "dns: query refused") || !strings.Contains(got, "example.com.") {
		t.Fatalf("refused query log %q", got)
	}
	m := new(dns.Msg)
	m.Id = 3
	rawExchange(t, addr, "udp", m)
	if got := buf.String(); !strings.Contains(got, "dns: query malformed") {
		t.Fatalf("malformed query log %q", got)
	}
}

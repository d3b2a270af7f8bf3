package dnsserver

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// longEndpoint has a backslash and is longer than a TXT string may be.
var longEndpoint = `C:\cam ` + strings.Repeat("x", 300)

// catalog is the static source of most tests.
func catalog() []Instance {
	return []Instance{
		{ID: "sd-1", Service: "servo-drive", Passing: true, Meta: map[string]string{"axis": "1", "fw-rev": "1.2"},
			Host: "127.0.0.11", Port: 502, Unit: 1, Endpoint: "modbus-tcp 127.0.0.11:502 unit 1"},
		{ID: "sd-2", Service: "Servo-Drive", Passing: true, Meta: map[string]string{"axis": "2", "Zone-Name": "North"},
			Host: "127.0.0.12", Port: 502, Unit: 1, Endpoint: "modbus-tcp 127.0.0.12:502 unit 1"},
		{ID: "sd-3", Service: "servo-drive", Passing: false, Meta: map[string]string{"axis": "3"},
			Host: "127.0.0.13", Port: 502, Unit: 3, Endpoint: "modbus-tcp 127.0.0.13:502 unit 3"},
		{ID: "sd-6", Service: "servo-drive", Passing: true, Meta: map[string]string{"axis": "6"},
			Host: "fd00::12", Port: 1502, Unit: 2, Endpoint: "modbus-tcp [fd00::12]:1502 unit 2"},
		{ID: "cam-1", Service: "vision", Passing: true,
			Host: "cam-1.plant.example", Port: 8080, Unit: 0, Endpoint: "http cam-1.plant.example:8080"},
		{ID: "cam-2", Service: "vision", Passing: true, Host: "not a host!", Port: 8080, Unit: 0, Endpoint: longEndpoint},
		{ID: "idle-1", Service: "idle", Passing: false, Host: "127.0.0.21", Port: 502, Unit: 1},
	}
}

// many returns n passing servo-drive instances on distinct IPv4 addresses.
func many(n int) []Instance {
	out := make([]Instance, n)
	for i := range out {
		ip := fmt.Sprintf("10.%d.%d.%d", i>>16&0xff, i>>8&0xff, i&0xff)
		out[i] = Instance{ID: fmt.Sprintf("sd-%d", i), Service: "servo-drive", Passing: true,
			Host: ip, Port: 502, Unit: 1, Endpoint: "modbus-tcp " + ip + ":502 unit 1"}
	}
	return out
}

func newServer(t testing.TB, insts []Instance, ttl time.Duration) *Server {
	t.Helper()
	s, err := New(Options{Domain: "rollcall", TTL: ttl, Instances: func() []Instance { return insts }})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// serve runs s on fresh 127.0.0.1 sockets until the test ends and returns the
// address (same port for UDP and TCP). The cleanup checks Serve returned nil.
func serve(t *testing.T, s *Server) string {
	t.Helper()
	pc, ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx, pc, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return pc.LocalAddr().String()
}

// exchange sends m with the miekg client over proto ("udp" or "tcp").
func exchange(t *testing.T, addr, proto string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: proto, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("exchange %s %v: %v", proto, m.Question, err)
	}
	return r
}

// query asks name/qtype over UDP without EDNS0.
func query(t *testing.T, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return exchange(t, addr, "udp", m)
}

// rawExchange sends m and returns the reply and its size on the wire.
func rawExchange(t *testing.T, addr, proto string, m *dns.Msg) (*dns.Msg, int) {
	t.Helper()
	out, err := m.Pack()
	if err != nil {
		t.Fatalf("pack: %v", err)
	}
	c, err := net.Dial(proto, addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var buf []byte
	if proto == "tcp" {
		if _, err := c.Write(binary.BigEndian.AppendUint16(nil, uint16(len(out)))); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(out); err != nil {
			t.Fatal(err)
		}
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			t.Fatalf("read length: %v", err)
		}
		buf = make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("read reply: %v", err)
		}
	} else {
		if _, err := c.Write(out); err != nil {
			t.Fatal(err)
		}
		buf = make([]byte, 65536)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("read reply: %v", err)
		}
		buf = buf[:n]
	}
	r := new(dns.Msg)
	if err := r.Unpack(buf); err != nil {
		t.Fatalf("unpack reply: %v", err)
	}
	return r, len(buf)
}

func wantRcode(t *testing.T, r *dns.Msg, rcode int) {
	t.Helper()
	if r.Rcode != rcode {
		t.Fatalf("%v: rcode %s, want %s\n%v", r.Question, dns.RcodeToString[r.Rcode], dns.RcodeToString[rcode], r)
	}
}

// wantNegative checks a NXDOMAIN or NODATA reply: no answers, authoritative, the
// zone's SOA in the authority section with MINIMUM = TTL = ttl.
func wantNegative(t *testing.T, r *dns.Msg, rcode int, ttl uint32) {
	t.Helper()
	wantRcode(t, r, rcode)
	if len(r.Answer) != 0 {
		t.Fatalf("answers in a negative reply: %v", r.Answer)
	}
	if !r.Authoritative {
		t.Fatal("AA not set")
	}
	if len(r.Ns) != 1 {
		t.Fatalf("authority %v, want one SOA", r.Ns)
	}
	soa, ok := r.Ns[0].(*dns.SOA)
	if !ok {
		t.Fatalf("authority %v, want SOA", r.Ns[0])
	}
	if !strings.EqualFold(soa.Hdr.Name, "rollcall.") || soa.Minttl != ttl || soa.Hdr.Ttl != ttl {
		t.Fatalf("SOA %v: want owner rollcall., TTL and MINIMUM %d", soa, ttl)
	}
}

// addrs returns the sorted A/AAAA values of rrs.
func addrs(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		}
	}
	slices.Sort(out)
	return out
}

// srvs returns the sorted "prio weight port target" of the SRV records in rrs.
func srvs(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if s, ok := rr.(*dns.SRV); ok {
			out = append(out, fmt.Sprintf("%d %d %d %s", s.Priority, s.Weight, s.Port, s.Target))
		}
	}
	slices.Sort(out)
	return out
}

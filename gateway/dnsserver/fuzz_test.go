package dnsserver

import (
	"testing"
	"time"

	"github.com/miekg/dns"
)

// FuzzAnswer feeds arbitrary packets to Answer: it must not panic, and every
// reply must pack within the size asked for.
func FuzzAnswer(f *testing.F) {
	seed := func(name string, qtype uint16, edns bool, opcode int) {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		m.Opcode = opcode
		if edns {
			m.SetEdns0(1232, false)
		}
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, n := range []string{"servo-drive.service.rollcall.", "axis-1.servo-drive.service.rollcall.",
		"_servo-drive._tcp.service.rollcall.", "7f00000b.addr.rollcall.", "rollcall.", "example.com.",
		"fw-rev-1.2.SERVO-drive.service.rollcall.", "\\..service.rollcall."} {
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeTXT, dns.TypeANY, dns.TypeSOA} {
			seed(n, qt, qt == dns.TypeSRV, dns.OpcodeQuery)
		}
	}
	seed("rollcall.", dns.TypeSOA, false, dns.OpcodeUpdate)
	f.Add([]byte{})
	f.Add([]byte{0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1})

	insts := append(catalog(), many(200)...)
	insts = append(insts, Instance{ID: "\\\x00\xff", Service: "a.b", Passing: true, Meta: map[string]string{"k": "1.2"},
		Host: "fe80::1%eth0", Port: 70000, Endpoint: "\\123"})
	s := newServer(f, insts, time.Second)
	f.Fuzz(func(t *testing.T, b []byte) {
		req := new(dns.Msg)
		if err := req.Unpack(b); err != nil {
			return
		}
		for _, size := range []int{0, 512, 1232, 4096, dns.MaxMsgSize} {
			r := s.Answer(req, size)
			out, err := r.Pack()
			if err != nil {
				t.Fatalf("reply to %v does not pack: %v\n%v", req, err, r)
			}
			if limit := max(size, dns.MinMsgSize); len(out) > limit {
				t.Fatalf("reply of %d octets for size %d", len(out), size)
			}
		}
	})
}

// BenchmarkAnswer measures Answer against a 10 000-instance catalog, including
// a name with the most tag labels a query can carry.
func BenchmarkAnswer(b *testing.B) {
	insts := many(10000)
	for i := range insts {
		insts[i].Meta = map[string]string{"axis": "1", "fw": "1.2.3"}
	}
	s := newServer(b, insts, time.Second)
	long := ""
	for len(long) < 200 {
		long += "fw-1.2."
	}
	for _, c := range []struct {
		name  string
		qtype uint16
	}{
		{"servo-drive.service.rollcall.", dns.TypeSRV},
		{"axis-1.servo-drive.service.rollcall.", dns.TypeA},
		{long + "servo-drive.service.rollcall.", dns.TypeA},
	} {
		req := new(dns.Msg)
		req.SetQuestion(c.name, c.qtype)
		b.Run(dns.TypeToString[c.qtype]+"/"+c.name[:min(len(c.name), 20)], func(b *testing.B) {
			for b.Loop() {
				if r := s.Answer(req, MaxUDPSize); r.Rcode == dns.RcodeServerFailure {
					b.Fatal(r)
				}
			}
		})
	}
}

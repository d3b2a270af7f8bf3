package mdns

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseTXT: TXT strings from an unauthenticated multicast network become bounded,
// clean meta (RFC 6763 §6): at most MaxTXTKeys keys, printable lower-case keys, values
// valid UTF-8 without NUL or control characters and at most MaxTXTValueLen bytes.
func FuzzParseTXT(f *testing.F) {
	f.Add("vendor=acme", "serial=SN\x00/+#$", "unit=1")
	f.Add("=x", "A=1", "a=2")
	f.Add("key\xff=v", "k=\xff\xfe", strings.Repeat("v", 1000))
	f.Fuzz(func(t *testing.T, a, b, c string) {
		m := ParseTXT([]string{a, b, c, a + "=" + b})
		if len(m) > MaxTXTKeys {
			t.Fatalf("%d keys", len(m))
		}
		for k, v := range m {
			if k == "" || len(k) > MaxTXTKeyLen || k != strings.ToLower(k) {
				t.Fatalf("key %q", k)
			}
			if !utf8.ValidString(v) || len(v) > MaxTXTValueLen || strings.ContainsRune(v, 0) {
				t.Fatalf("value %q", v)
			}
			for _, r := range v {
				if r < 0x20 || r == 0x7f {
					t.Fatalf("control character in %q", v)
				}
			}
		}
	})
}

// FuzzResponse: any datagram from a browsed interface goes through parseResponse, a
// window's collector and the Browser's candidate conversion without panicking, and what
// comes out is bounded and clean: at most maxWindowInstances instances per service type,
// and every accepted candidate has a non-empty clean instance name of at most
// MaxInstanceLen bytes, a port 1–65535, 1 to MaxAddrs usable addresses and at most
// MaxTXTKeys TXT keys.
func FuzzResponse(f *testing.F) {
	good := axis()
	f.Add(response(f, good))
	f.Add(appendAdditional(response(f, good), "axis-7-sim.local.", 47, append(wireName("x."), 0, 0)))
	good.Instance, good.TXT = "Axis 7. \\Cell\x00", map[string]string{"k\xff": "v\x01", "": "x"}
	f.Add(response(f, good))
	f.Fuzz(func(t *testing.T, msg []byte) {
		b, err := NewBrowser(BrowserOptions{ServiceTypes: []string{"_modbus._tcp", "_http._tcp"}, IPv6: true})
		if err != nil {
			t.Fatal(err)
		}
		rrs, _, err := parseResponse(msg)
		if err != nil {
			return
		}
		col := newCollector(b.services, b.domain)
		col.add(rrs)
		col.add(rrs)
		entries, _ := col.entries(b.services)
		for i, svc := range b.services {
			if len(entries[i]) > maxWindowInstances {
				t.Fatalf("%d instances of %s", len(entries[i]), svc)
			}
			for _, e := range entries[i] {
				_, c, why := b.candidate(svc, e)
				if why != "" {
					continue
				}
				if c.Instance == "" || len(c.Instance) > MaxInstanceLen || !clean(Snapshot{Candidates: []Candidate{c}}) {
					t.Fatalf("instance %q host %q", c.Instance, c.Host)
				}
				if c.Port < 1 || c.Port > 65535 || len(c.Addrs) == 0 || len(c.Addrs) > MaxAddrs || len(c.TXT) > MaxTXTKeys {
					t.Fatalf("candidate %+v", c)
				}
			}
		}
	})
}

package dnsserver

import (
	"encoding/hex"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/rollcall-edge/rollcall/protocols/dnsname"

	"github.com/miekg/dns"

	"github.com/rollcall-edge/rollcall/contract"
)

// SOA timers (RFC 1035 §3.3.13). No secondaries transfer this zone, so they only
// have to be plausible; the serial is constant for the same reason.
const (
	soaSerial  = 1
	soaRefresh = 3600
	soaRetry   = 600
	soaExpire  = 86400
)

// Answer builds the reply to req without sending it. maxSize is the largest reply
// in octets the transport allows, clamped to 512–65535: pass UDPSize(req) for UDP
// and dns.MaxMsgSize for TCP. It calls Options.Instances at most once, never
// modifies req, and always returns a reply that packs within maxSize; see the
// package documentation for the rules. It builds no more answer records than
// maxSize/16+1 (the most that could fit), so a large catalog costs little beyond
// the matching. A nil req gets a FORMERR reply.
func (s *Server) Answer(req *dns.Msg, maxSize int) *dns.Msg {
	m := new(dns.Msg)
	m.Response = true
	if req == nil {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	m.Id = req.Id
	m.Opcode = req.Opcode
	if req.Opcode == dns.OpcodeQuery {
		m.RecursionDesired = req.RecursionDesired // RFC 1035 §4.1.1
		m.CheckingDisabled = req.CheckingDisabled
	}
	if len(req.Question) > 0 && validQName(req.Question[0].Name) {
		m.Question = []dns.Question{req.Question[0]}
	}
	nopt := 0
	var opt *dns.OPT
	for _, rr := range req.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			nopt++
			opt = o
		}
	}
	if opt != nil {
		m.SetEdns0(MaxUDPSize, false) // RFC 6891 §6.1.1: answer EDNS with EDNS
	}

	switch {
	case req.Opcode != dns.OpcodeQuery:
		m.Rcode = dns.RcodeNotImplemented
	case req.Response, len(req.Question) != 1, len(m.Question) != 1, nopt > 1:
		m.Rcode = dns.RcodeFormatError
	case opt != nil && opt.Version() != 0:
		m.Rcode = dns.RcodeBadVers // RFC 6891 §6.1.3
	case m.Question[0].Qclass != dns.ClassINET && m.Question[0].Qclass != dns.ClassANY:
		m.Rcode = dns.RcodeRefused
	default:
		s.resolve(m, m.Question[0], clampSize(maxSize)/minRRLen+1)
	}
	fit(m, maxSize)
	return m
}

// validQName reports whether name can be packed as an owner name.
func validQName(name string) bool {
	_, ok := dns.IsDomainName(name)
	return ok && dns.IsFqdn(name)
}

// minRRLen is the fewest octets an answer record can take in a reply: an A
// record whose owner is a compression pointer (2 + 10 + 4). A reply of size
// octets holds at most size/minRRLen answer records, so building more is waste.
const minRRLen = 16

// clampSize clamps a reply size limit to 512–65535 octets.
func clampSize(maxSize int) int { return min(max(maxSize, dns.MinMsgSize), dns.MaxMsgSize) }

// fit truncates m to maxSize octets (clamped to 512–65535). A TC bit already
// set stays; otherwise TC is set only when answer or authority records were
// dropped (RFC 2181 §9).
func fit(m *dns.Msg, maxSize int) {
	tc := m.Truncated
	nAns, nNs := len(m.Answer), len(m.Ns)
	m.Truncate(clampSize(maxSize))
	if !tc && len(m.Answer) == nAns && len(m.Ns) == nNs {
		m.Truncated = false
	}
}

// resolve fills m for a question of class IN or ANY with at most limit answer
// records; when more exist, they could not fit anyway and TC is set.
func (s *Server) resolve(m *dns.Msg, q dns.Question, limit int) {
	labels := dns.SplitDomainName(q.Name)
	nd := len(s.labels)
	if len(labels) < nd {
		m.Rcode = dns.RcodeRefused
		return
	}
	zone := labels[len(labels)-nd:]
	for i, l := range zone {
		if dnsname.Fold(l) != s.labels[i] {
			m.Rcode = dns.RcodeRefused
			return
		}
	}
	m.Authoritative = true
	if q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR {
		m.Rcode = dns.RcodeRefused
		return
	}
	// The apex as asked (0x20): zone labels are plain [a-zA-Z0-9-], no escapes.
	apexAsked := strings.Join(zone, ".") + "."
	rel := labels[:len(labels)-nd]
	for i := range rel {
		rel[i] = dnsname.Fold(rel[i])
	}
	var r result
	switch {
	case len(rel) == 0:
		r = s.apexRecords(q, apexAsked)
	case rel[len(rel)-1] == "service":
		r = s.serviceRecords(q, rel[:len(rel)-1], limit)
	case rel[len(rel)-1] == "addr":
		r = s.addrRecords(q, rel[:len(rel)-1])
	default:
		r = result{nx: true}
	}
	switch {
	case r.nx:
		m.Rcode = dns.RcodeNameError
	case len(r.answer) > 0:
		m.Truncated = r.capped
		m.Answer = r.answer
		m.Extra = append(r.extra, m.Extra...) // keep the OPT record last
		return
	}
	m.Ns = []dns.RR{s.soa(apexAsked)} // RFC 2308 §3
}

// result is the outcome of a lookup: nx for NXDOMAIN, else records (none: NODATA).
type result struct {
	nx     bool
	capped bool // answer records were left out by the limit
	answer []dns.RR
	extra  []dns.RR
}

func (s *Server) hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: s.ttl}
}

// soa is the zone's SOA owned by apex (as asked); MINIMUM is the TTL, so
// negative answers are cached no longer than positive ones (RFC 2308 §4, §5).
func (s *Server) soa(apex string) dns.RR {
	return &dns.SOA{
		Hdr:     s.hdr(apex, dns.TypeSOA),
		Ns:      "ns." + s.apex,
		Mbox:    "hostmaster." + s.apex,
		Serial:  soaSerial,
		Refresh: soaRefresh,
		Retry:   soaRetry,
		Expire:  soaExpire,
		Minttl:  s.ttl,
	}
}

// anyAnswer is the RFC 8482 §4.2 answer to an ANY query for an existing name.
func (s *Server) anyAnswer(name string) []dns.RR {
	return []dns.RR{&dns.HINFO{Hdr: s.hdr(name, dns.TypeHINFO), Cpu: "RFC8482", Os: ""}}
}

func (s *Server) apexRecords(q dns.Question, apexAsked string) result {
	switch q.Qtype {
	case dns.TypeSOA:
		return result{answer: []dns.RR{s.soa(apexAsked)}}
	case dns.TypeANY:
		return result{answer: s.anyAnswer(q.Name)}
	}
	return result{}
}

// addrRecords answers "<hex>.addr.<domain>."; sub are the lower-cased labels
// before "addr".
func (s *Server) addrRecords(q dns.Question, sub []string) result {
	if len(sub) == 0 {
		return result{} // empty non-terminal (RFC 8020)
	}
	if len(sub) != 1 {
		return result{nx: true}
	}
	addr, ok := parseHexAddr(sub[0])
	if !ok {
		return result{nx: true}
	}
	switch {
	case q.Qtype == dns.TypeANY:
		return result{answer: s.anyAnswer(q.Name)}
	case q.Qtype == dns.TypeA && addr.Is4(), q.Qtype == dns.TypeAAAA && addr.Is6():
		return result{answer: []dns.RR{s.addrRR(q.Name, addr)}}
	}
	return result{}
}

// parseHexAddr decodes 8 (IPv4) or 32 (IPv6) hex digits.
func parseHexAddr(label string) (netip.Addr, bool) {
	if len(label) != 8 && len(label) != 32 {
		return netip.Addr{}, false
	}
	b, err := hex.DecodeString(label)
	if err != nil {
		return netip.Addr{}, false
	}
	if len(b) == 4 {
		return netip.AddrFrom4([4]byte(b)), true
	}
	return netip.AddrFrom16([16]byte(b)), true
}

// hexName is the .addr. name of addr: 8 or 32 lower-case hex digits.
func (s *Server) hexName(addr netip.Addr) string {
	b := addr.AsSlice()
	return hex.EncodeToString(b) + ".addr." + s.apex
}

// addrRR is the A or AAAA record of addr owned by name.
func (s *Server) addrRR(name string, addr netip.Addr) dns.RR {
	if addr.Is4() {
		return &dns.A{Hdr: s.hdr(name, dns.TypeA), A: addr.AsSlice()}
	}
	return &dns.AAAA{Hdr: s.hdr(name, dns.TypeAAAA), AAAA: addr.AsSlice()}
}

// serviceRecords answers the names below "service.<domain>."; sub are the
// lower-cased labels before "service". It builds at most limit answer records.
func (s *Server) serviceRecords(q dns.Question, sub []string, limit int) result {
	if len(sub) == 0 {
		return result{} // empty non-terminal (RFC 8020)
	}
	svc, prefix := sub, ""
	if n := len(sub); n >= 2 && sub[n-1] == "_tcp" && strings.HasPrefix(sub[n-2], "_") {
		svc, prefix = sub[:n-1], "_" // RFC 2782: _<service>._tcp
	}
	insts := s.instances()
	exists := false
	var passing []*Instance
	for i := range insts {
		in := &insts[i]
		slug := prefix + contract.Slug(in.Service)
		n := strings.Count(slug, ".") + 1
		if n > len(svc) || !joinedEquals(svc[len(svc)-n:], slug) {
			continue
		}
		if tags := svc[:len(svc)-n]; len(tags) > 0 && !tagsMatch(tags, in.Meta) {
			continue
		}
		exists = true
		if in.Passing {
			passing = append(passing, in)
		}
	}
	if !exists {
		return result{nx: true}
	}
	rand.Shuffle(len(passing), func(i, j int) { passing[i], passing[j] = passing[j], passing[i] })

	var r result
	switch q.Qtype {
	case dns.TypeA, dns.TypeAAAA:
		seen := make(map[netip.Addr]struct{})
		for _, in := range passing {
			addr, ok := hostIP(in.Host)
			if !ok || addr.Is4() != (q.Qtype == dns.TypeA) {
				continue
			}
			if _, dup := seen[addr]; dup {
				continue
			}
			if len(r.answer) == limit {
				r.capped = true
				break
			}
			seen[addr] = struct{}{}
			r.answer = append(r.answer, s.addrRR(q.Name, addr))
		}
	case dns.TypeSRV:
		seen := make(map[netip.Addr]struct{})
		for _, in := range passing {
			if in.Port < 1 || in.Port > 65535 {
				continue
			}
			if len(r.answer) == limit {
				r.capped = true
				break
			}
			var target string
			if addr, ok := hostIP(in.Host); ok {
				target = s.hexName(addr)
				if _, dup := seen[addr]; !dup {
					seen[addr] = struct{}{}
					r.extra = append(r.extra, s.addrRR(target, addr))
				}
			} else if validHostName(in.Host) {
				target = dns.Fqdn(in.Host)
			} else {
				continue
			}
			r.answer = append(r.answer, &dns.SRV{
				Hdr: s.hdr(q.Name, dns.TypeSRV), Priority: 1, Weight: 1,
				Port: uint16(in.Port), Target: target,
			})
		}
	case dns.TypeTXT:
		for _, in := range passing {
			if len(r.answer) == limit {
				r.capped = true
				break
			}
			r.answer = append(r.answer, &dns.TXT{Hdr: s.hdr(q.Name, dns.TypeTXT), Txt: []string{
				txtString("id=" + in.ID),
				txtString("endpoint=" + in.Endpoint),
				txtString("unit=" + strconv.Itoa(in.Unit)),
			}})
		}
	case dns.TypeANY:
		if len(passing) > 0 {
			r.answer = s.anyAnswer(q.Name)
		}
	}
	return r
}

// joinedEquals reports whether the labels joined with '.' equal s, without
// allocating.
func joinedEquals(labels []string, s string) bool {
	for i, l := range labels {
		if i > 0 {
			if s == "" || s[0] != '.' {
				return false
			}
			s = s[1:]
		}
		if !strings.HasPrefix(s, l) {
			return false
		}
		s = s[len(l):]
	}
	return s == ""
}

// tagsMatch reports whether labels can be cut into consecutive runs that each
// spell one of meta's composed tags Slug(key)+"-"+Slug(value) (a tag containing
// '.' spans several labels). Repeating a tag is allowed.
func tagsMatch(labels []string, meta map[string]string) bool {
	if len(meta) == 0 {
		return false
	}
	tags := make([]string, 0, len(meta))
	span := 1 // the most labels one tag spans
	for k, v := range meta {
		t := contract.Slug(k) + "-" + contract.Slug(v)
		tags = append(tags, t)
		span = max(span, strings.Count(t, ".")+1)
	}
	// ok[i]: labels[i:] can be cut into tags. O(len(labels) * span * len(tags)).
	ok := make([]bool, len(labels)+1)
	ok[len(labels)] = true
	for i := len(labels) - 1; i >= 0; i-- {
		for j := i + 1; j <= min(len(labels), i+span) && !ok[i]; j++ {
			if !ok[j] {
				continue
			}
			for _, t := range tags {
				if joinedEquals(labels[i:j], t) {
					ok[i] = true
					break
				}
			}
		}
	}
	return ok[0]
}

// hostIP parses an IP literal host ("10.0.0.5", "fd00::1", "[fd00::1]",
// "fe80::1%eth0"); the zone is dropped and IPv4-mapped addresses are unmapped.
func hostIP(host string) (netip.Addr, bool) {
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return addr.WithZone("").Unmap(), true
}

// validHostName reports whether h (optionally absolute) is a host name usable as
// an SRV target: labels of 1–63 characters [A-Za-z0-9_-], at most 253 characters.
func validHostName(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for l := range strings.SplitSeq(h, ".") {
		if len(l) < 1 || len(l) > 63 {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// txtString turns raw text into one TXT character-string in miekg's presentation
// form: cut to 255 octets (at a rune boundary when the text is valid UTF-8) and
// with '\' escaped, so the packed string is exactly the raw text.
func txtString(raw string) string {
	if len(raw) > 255 {
		cut := 255
		for cut > 0 && !utf8.RuneStart(raw[cut]) {
			cut--
		}
		if cut == 0 {
			cut = 255
		}
		raw = raw[:cut]
	}
	if !strings.Contains(raw, `\`) {
		return raw
	}
	return strings.ReplaceAll(raw, `\`, `\\`)
}

package mdns

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/rollcall-edge/rollcall/protocols/dnsname"

	"github.com/grandcat/zeroconf"
	"github.com/miekg/dns"
)

// Bounds of what one browse window collects from the network (see collector).
const (
	// maxWindowInstances is the number of distinct instance names collected per service
	// type in one window; the records of further names are ignored and counted. Twice MaxInstances, so
	// that a window can still see every kept instance while some others come and go.
	maxWindowInstances = 2 * MaxInstances
	// maxHostAddrs is the number of distinct addresses collected per host name in one
	// window, before the unusable ones are removed and the rest cut to MaxAddrs.
	maxHostAddrs = 4 * MaxAddrs
)

// errNotResponse marks a DNS message that is not an mDNS response the Browser uses: a
// query (QR 0), or a message with a non-zero opcode or response code, which RFC 6762
// §18.3 and §18.11 say to ignore silently.
var errNotResponse = errors.New("not a response")

// errMalformed marks a datagram whose DNS header or question section cannot be read.
var errMalformed = errors.New("malformed DNS message")

// parseResponse returns the resource records of the answer, authority and additional
// sections of the mDNS response in msg, unpacked one by one with github.com/miekg/dns.
// A record whose data cannot be unpacked is skipped (its RDLENGTH says where the next
// one starts) and counted in skipped, so one bad record, such as an NSEC record that
// miekg/dns v1.1.27 refuses, does not cost the others; a record whose header cannot be
// read ends the list. It returns errNotResponse for queries and for messages with a
// non-zero opcode or RCODE (RFC 6762 §18.2, §18.3, §18.11), and errMalformed when the
// 12-byte header (RFC 1035 §4.1.1) or a question cannot be read.
func parseResponse(msg []byte) (rrs []dns.RR, skipped int, err error) {
	const headerLen = 12
	if len(msg) < headerLen {
		return nil, 0, errMalformed
	}
	flags := binary.BigEndian.Uint16(msg[2:])
	const qr, opcodeShift, opcodeMask, rcodeMask = 1 << 15, 11, 0xf, 0xf
	if flags&qr == 0 || (flags>>opcodeShift)&opcodeMask != 0 || flags&rcodeMask != 0 {
		return nil, 0, errNotResponse
	}
	qd := int(binary.BigEndian.Uint16(msg[4:]))
	records := int(binary.BigEndian.Uint16(msg[6:])) + int(binary.BigEndian.Uint16(msg[8:])) + int(binary.BigEndian.Uint16(msg[10:]))
	off := headerLen
	for range qd { // responses carry no questions (RFC 6762 §6), but tolerate them
		_, next, err := dns.UnpackDomainName(msg, off)
		if err != nil || next+4 > len(msg) {
			return nil, 0, errMalformed
		}
		off = next + 4 // QTYPE, QCLASS
	}
	for range records {
		if off >= len(msg) {
			break
		}
		rr, next, err := dns.UnpackRR(msg, off)
		if next <= off || next > len(msg) {
			skipped++ // unreadable header: nothing after it can be found
			break
		}
		off = next
		if err != nil {
			skipped++
			continue
		}
		rrs = append(rrs, rr)
	}
	return rrs, skipped, nil
}

// collector gathers, under a lock, the records of the responses one browse window
// accepted, from every socket of the window, and assembles them into instances at its
// end. Only records that can matter are kept: PTR, SRV and TXT records of an instance
// of a browsed service type, and A/AAAA records of a host that a kept SRV record names.
// Records with TTL 0 (goodbyes, RFC 6762 §10.1) are ignored: a goodbye does not undo
// what the window saw, since polling, not mDNS, decides liveness. When an instance's SRV
// or TXT record arrives again, the later one replaces the earlier (RFC 6762 §10.2).
// Names compare case-insensitively (RFC 6762 §16). Memory is bounded by
// maxWindowInstances per service type, as many host names per service type, and
// maxHostAddrs per host.
type collector struct {
	domain   string
	suffixes []string // per service: ".<service>.<domain>", lower-cased, e.g. "._modbus._tcp.local."

	mu        sync.Mutex
	instances map[string]*instanceRecords // key: lower-cased escaped service instance name
	count     []int                       // per service: instances collected
	overflow  []int                       // per service: records of instances not collected
	hosts     map[string][]netip.Addr     // key: lower-cased escaped host name
}

// instanceRecords is what a window saw of one service instance.
type instanceRecords struct {
	service int    // index into the collector's services
	label   string // escaped instance label as first seen, e.g. `Axis\ 7`
	host    string // SRV target, escaped, e.g. "axis-7-sim.local."
	port    uint16
	txt     []string // escaped TXT character-strings; nil: no TXT record seen
}

// newCollector returns an empty collector for the service types (lower-case, e.g.
// "_modbus._tcp") in domain (with its final dot).
func newCollector(services []string, domain string) *collector {
	c := &collector{
		domain:    domain,
		instances: map[string]*instanceRecords{},
		count:     make([]int, len(services)),
		overflow:  make([]int, len(services)),
		hosts:     map[string][]netip.Addr{},
	}
	for _, s := range services {
		c.suffixes = append(c.suffixes, dnsname.Fold("."+s+"."+domain))
	}
	return c
}

// add takes the records of one accepted response. Address records count only for host
// names that an SRV record of this window (in this response or an earlier one) named:
// responders send them together (RFC 6763 §12.2).
func (c *collector) add(rrs []dns.RR) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rr := range rrs {
		h := rr.Header()
		if h.Ttl == 0 || h.Class&^dnsCacheFlush != dns.ClassINET {
			continue
		}
		switch rr := rr.(type) {
		case *dns.PTR:
			if slices.Contains(c.suffixes, "."+dnsname.Fold(h.Name)) {
				c.instance(rr.Ptr)
			}
		case *dns.SRV:
			if in := c.instance(h.Name); in != nil {
				in.host, in.port = rr.Target, rr.Port
				if key := dnsname.Fold(rr.Target); c.hosts[key] == nil && len(c.hosts) < len(c.suffixes)*maxWindowInstances {
					c.hosts[key] = []netip.Addr{}
				}
			}
		case *dns.TXT:
			if in := c.instance(h.Name); in != nil {
				in.txt = append([]string{}, rr.Txt...)
			}
		}
	}
	for _, rr := range rrs {
		h := rr.Header()
		if h.Ttl == 0 || h.Class&^dnsCacheFlush != dns.ClassINET {
			continue
		}
		var ip net.IP
		switch rr := rr.(type) {
		case *dns.A:
			ip = rr.A
		case *dns.AAAA:
			ip = rr.AAAA
		default:
			continue
		}
		key := dnsname.Fold(h.Name)
		addrs, wanted := c.hosts[key]
		a, ok := netip.AddrFromSlice(ip)
		if !wanted || !ok || len(addrs) >= maxHostAddrs {
			continue
		}
		if a = a.Unmap(); !slices.Contains(addrs, a) {
			c.hosts[key] = append(addrs, a)
		}
	}
}

// dnsCacheFlush is the cache-flush bit of an mDNS record's class (RFC 6762 §10.2).
const dnsCacheFlush = 1 << 15

// instance returns the records of the service instance name (escaped, e.g.
// `Axis\ 7._modbus._tcp.local.`), creating them if the name is an instance of a browsed
// service type and the bound allows; otherwise nil.
func (c *collector) instance(name string) *instanceRecords {
	key := dnsname.Fold(name)
	if in, ok := c.instances[key]; ok {
		return in
	}
	for i, suffix := range c.suffixes {
		label, ok := instanceLabel(key, suffix)
		if !ok {
			continue
		}
		if c.count[i] >= maxWindowInstances {
			c.overflow[i]++
			return nil
		}
		c.count[i]++
		in := &instanceRecords{service: i, label: name[:len(label)]}
		c.instances[key] = in
		return in
	}
	return nil
}

// instanceLabel returns the escaped instance label of name if name is exactly one
// label followed by suffix (RFC 6763 §4.1: <Instance>.<Service>.<Domain>, the instance
// being a single DNS label); both are compared as given, so pass them lower-cased.
// The label must not be empty, must not contain an unescaped dot, and must not end in
// an escape that swallows the suffix's leading dot.
func instanceLabel(name, suffix string) (string, bool) {
	if len(name) <= len(suffix) || !strings.HasSuffix(name, suffix) {
		return "", false
	}
	label := name[:len(name)-len(suffix)]
	for i := 0; i < len(label); i++ {
		switch label[i] {
		case '\\':
			i++ // the escaped character, or the first digit of \DDD
			if i == len(label) {
				return "", false // the suffix's dot is escaped: not a label boundary
			}
		case '.':
			return "", false // more than one label
		}
	}
	return label, true
}

// entries returns, per service type (in the order given to newCollector), the
// instances collected, as zeroconf.ServiceEntry values for Browser.candidate, and the
// number of records per service type that were ignored for the bound.
func (c *collector) entries(services []string) (entries [][]*zeroconf.ServiceEntry, overflow []int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	entries = make([][]*zeroconf.ServiceEntry, len(services))
	for _, in := range c.instances {
		e := zeroconf.NewServiceEntry(in.label, services[in.service], c.domain)
		e.HostName, e.Port, e.Text = in.host, int(in.port), in.txt
		if in.host != "" {
			for _, a := range c.hosts[dnsname.Fold(in.host)] {
				if a.Is4() {
					e.AddrIPv4 = append(e.AddrIPv4, net.IP(a.AsSlice()))
				} else {
					e.AddrIPv6 = append(e.AddrIPv6, net.IP(a.AsSlice()))
				}
			}
		}
		entries[in.service] = append(entries[in.service], e)
	}
	return entries, slices.Clone(c.overflow)
}

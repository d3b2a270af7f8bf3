// Package dnsserver is the gateway's DNS interface, in the style of Consul's DNS
// interface: a client resolves "<service>.service.<domain>" and gets only the
// healthy (passing) instances of the live catalog, without any rollcall library.
//
// # Names
//
// All names are compared case-insensitively (RFC 4343 §2, §4); the question is echoed
// exactly as asked and answer records are owned by the name as asked, so resolvers
// that randomise the case of a query name ("DNS 0x20") accept the answers.
// <domain> is Options.Domain, e.g. "rollcall" or "plant.example".
//
//   - <service>.service.<domain>.
//     A and AAAA: the addresses of the passing instances whose Host is an IPv4
//     or IPv6 literal, deduplicated (RFC 1035 §3.4.1, RFC 3596 §2).
//     SRV: one record per passing instance (RFC 2782), priority 1, weight 1, the
//     instance's Port; the target is "<hex>.addr.<domain>." for an IP host (8 hex
//     digits for IPv4, 32 for IPv6, as Consul does) with the matching A/AAAA
//     record in the additional section (RFC 2782 "Usage rules", RFC 1035 §4.1), or
//     the host name itself (made absolute) for a name host.
//     TXT: one record per passing instance with three character-strings
//     "id=<ID>", "endpoint=<Endpoint>" and "unit=<Unit>" (RFC 1035 §3.3.14; each
//     string is cut to 255 octets).
//     ANY: one HINFO record "RFC8482" "" (RFC 8482 §4.2) when an instance
//     passes, else NODATA.
//     Any other type: NODATA (NOERROR without records, RFC 2308 §2.2).
//   - <tag>.….<tag>.<service>.service.<domain>.
//     The same, restricted to the instances whose Meta has every tag. A tag label
//     is contract.Slug(key) + "-" + contract.Slug(value): meta axis=2 gives the
//     label "axis-2". A composed tag that contains '.' (a value "1.2") spans
//     several labels and is matched as such.
//   - _<service>._tcp.service.<domain>.
//     The RFC 2782 form of the same name (answers all the types above).
//   - <hex>.addr.<domain>.
//     A (8 hex digits) or AAAA (32 hex digits) of that address; the other family
//     answers NODATA; anything else below addr.<domain>. is NXDOMAIN.
//   - <domain>.
//     SOA; other types NODATA. No NS records are served: the server does not know
//     the addresses it is reachable at.
//
// The service label is contract.Slug(Instance.Service); a service whose slug
// contains '.' spans as many labels. A service exists while at least one
// instance (passing or not) matches the name and its tags: with none passing the
// answer is NODATA, with none at all NXDOMAIN (RFC 1035 §4.1.1, RFC 8020).
// "service.<domain>." and "addr.<domain>." are empty non-terminals: NODATA.
//
// Negative answers (NXDOMAIN and NODATA) carry the zone's SOA in the authority
// section; its TTL and its MINIMUM field are Options.TTL, the negative-caching
// TTL (RFC 2308 §3 and §5). Answers for names in the domain set AA
// (RFC 1035 §4.1.1); RA is never set: the server does not recurse.
//
// # Errors
//
//   - a name outside <domain>: REFUSED (RFC 1035 §4.1.1), no AA;
//   - an opcode other than QUERY: NOTIMP (RFC 1035 §4.1.1);
//   - not exactly one question, more than one OPT record (RFC 6891 §6.1.1), or a
//     query with QR set: FORMERR;
//   - an EDNS version other than 0: BADVERS (RFC 6891 §6.1.3);
//   - a class other than IN or ANY: REFUSED;
//   - AXFR and IXFR: REFUSED (zone transfers are not offered).
//
// # Order and size
//
// The passing instances are shuffled for every query, so clients that take the
// first record spread their load (as Consul does). A UDP reply fits the client's
// EDNS0 UDP payload size, at least 512 and at most 4096 octets, or 512 without
// EDNS0 (RFC 1035 §4.2.1, RFC 6891 §6.2.3 and §6.2.5); a TCP reply fits 65535
// octets (RFC 1035 §4.2.2). A reply that does not fit is cut with miekg's
// Msg.Truncate and TC is set when records of the answer or authority sections
// were dropped; dropping only additional records does not set TC
// (RFC 2181 §9). An OPT record (version 0, payload size 4096) is added to the
// reply when the query had one (RFC 6891 §6.1.1).
package dnsserver

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// MaxUDPSize is the largest UDP reply, in octets, whatever the EDNS0 payload size
// the client announces (RFC 6891 §6.2.5); it is also the payload size announced in
// the OPT record of replies.
const MaxUDPSize = 4096

// MaxTTL is the largest Options.TTL.
const MaxTTL = time.Second

// Instance is one catalog instance as the DNS interface sees it.
type Instance struct {
	// ID is the instance id, served as the TXT string "id=<ID>".
	ID string
	// Service is the service name. Names are matched against
	// contract.Slug(Service), case-insensitively.
	Service string
	// Passing reports whether the instance's health checks pass. Only passing
	// instances are answered; a service whose instances are all not passing
	// answers NOERROR without records (NODATA), an unknown service NXDOMAIN.
	Passing bool
	// Meta holds the meta tags. A label "<key>-<value>" (each part
	// contract.Slug'ed) before the service label selects the instances with
	// Meta[key] == value.
	Meta map[string]string
	// Host is an IPv4 or IPv6 literal (answered as A/AAAA and as the SRV target
	// "<hex>.addr.<domain>.") or a host name (used as the SRV target only, never
	// resolved). An IPv6 zone is ignored; an IPv4-mapped IPv6 address counts as
	// IPv4. An empty or invalid Host leaves the instance out of SRV answers.
	Host string
	// Port is the SRV port, 1–65535; other values leave the instance out of SRV
	// answers.
	Port int
	// Unit is the Modbus unit ID a client must address, served as the TXT string
	// "unit=<Unit>".
	Unit int
	// Endpoint is served as the TXT string "endpoint=<Endpoint>", e.g.
	// "modbus-tcp 10.0.0.5:502 unit 1".
	Endpoint string
}

// Options configure a Server; see New.
type Options struct {
	// Domain is the zone the server is authoritative for, e.g. "rollcall" or
	// "plant.example"; a trailing dot is optional and upper case is folded. It
	// must be a DNS name of labels of 1–63 characters [a-z0-9-], at most 253
	// characters in all. Names served end in ".service.<Domain>." and
	// ".addr.<Domain>.".
	Domain string
	// TTL is the TTL of every record and the negative-caching TTL of the SOA:
	// 0–1 s (MaxTTL), rounded down to whole seconds. Short on purpose: the
	// catalog is live.
	TTL time.Duration
	// Instances returns the current catalog. It is called once per query, from
	// several goroutines at once, and must not block for long; the returned
	// slice is only read. Required.
	Instances func() []Instance
	// Logger receives debug lines for refused and malformed queries only. Nil
	// discards.
	Logger *slog.Logger
}

// Stats are counters since New; each is read atomically but the set is not a
// consistent snapshot.
type Stats struct {
	// Queries counts every message handled by Serve, malformed ones included
	// (messages with QR set are dropped silently and not counted).
	Queries uint64
	// Answered counts NOERROR replies with at least one answer record.
	Answered uint64
	// NoData counts NOERROR replies without answer records (RFC 2308 §2.2).
	NoData uint64
	// NXDomain counts NXDOMAIN replies.
	NXDomain uint64
	// Refused counts REFUSED replies (names outside the domain, other classes,
	// zone transfers).
	Refused uint64
	// FormErr counts FORMERR and BADVERS replies and packets that could not be
	// parsed (those get a FORMERR from the library, or no reply at all when even
	// the header is unreadable).
	FormErr uint64
	// NotImp counts NOTIMP replies (opcodes other than QUERY).
	NotImp uint64
	// Truncated counts replies sent with TC set.
	Truncated uint64
}

// Server answers DNS queries from a catalog; see the package documentation.
// It is safe for concurrent use. Create it with New.
type Server struct {
	apex      string   // lower case, absolute: "plant.example."
	labels    []string // labels of apex: ["plant", "example"]
	ttl       uint32   // seconds
	instances func() []Instance
	log       *slog.Logger

	queries, answered, noData, nxDomain, refused, formErr, notImp, truncated atomic.Uint64
}

// New validates o and returns a Server. The error names the offending option
// (Options.Domain, Options.TTL or Options.Instances).
func New(o Options) (*Server, error) {
	if o.Instances == nil {
		return nil, errors.New("dnsserver: Options.Instances is required")
	}
	if o.TTL < 0 || o.TTL > MaxTTL {
		return nil, fmt.Errorf("dnsserver: Options.TTL %v out of range 0–%v", o.TTL, MaxTTL)
	}
	labels, err := parseDomain(o.Domain)
	if err != nil {
		return nil, fmt.Errorf("dnsserver: Options.Domain %q: %w", o.Domain, err)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{
		apex:      strings.Join(labels, ".") + ".",
		labels:    labels,
		ttl:       uint32(o.TTL / time.Second),
		instances: o.Instances,
		log:       log,
	}, nil
}

// CheckDomain reports whether d can be Options.Domain: a DNS name of [a-z0-9-] labels of
// 1–63 characters, 253 in all, case-insensitive, one trailing dot allowed (RFC 1035
// §2.3.4). The error says what is wrong.
func CheckDomain(d string) error {
	_, err := parseDomain(d)
	return err
}

// parseDomain lower-cases d, drops one trailing dot and checks it is a DNS name
// of [a-z0-9-] labels (RFC 1035 §2.3.4 lengths).
func parseDomain(d string) ([]string, error) {
	d = strings.TrimSuffix(strings.ToLower(d), ".")
	if d == "" {
		return nil, errors.New("empty (the root zone is not served)")
	}
	if len(d) > 253 {
		return nil, fmt.Errorf("%d characters, more than 253", len(d))
	}
	labels := strings.Split(d, ".")
	for _, l := range labels {
		if len(l) < 1 || len(l) > 63 {
			return nil, fmt.Errorf("label %q is not 1–63 characters", l)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return nil, fmt.Errorf("label %q has a character outside [a-z0-9-]", l)
			}
		}
	}
	return labels, nil
}

// Domain returns the zone served, lower case and absolute ("plant.example.").
func (s *Server) Domain() string { return s.apex }

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Queries:   s.queries.Load(),
		Answered:  s.answered.Load(),
		NoData:    s.noData.Load(),
		NXDomain:  s.nxDomain.Load(),
		Refused:   s.refused.Load(),
		FormErr:   s.formErr.Load(),
		NotImp:    s.notImp.Load(),
		Truncated: s.truncated.Load(),
	}
}

// UDPSize returns the largest UDP reply, in octets, for req: the EDNS0 payload
// size of its OPT record clamped to 512–4096 (RFC 6891 §6.2.3, §6.2.5), or 512
// without an OPT record (RFC 1035 §4.2.1).
func UDPSize(req *dns.Msg) int {
	if req == nil {
		return dns.MinMsgSize
	}
	opt := req.IsEdns0()
	if opt == nil {
		return dns.MinMsgSize
	}
	return min(max(int(opt.UDPSize()), dns.MinMsgSize), MaxUDPSize)
}

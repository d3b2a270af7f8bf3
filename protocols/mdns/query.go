package mdns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// MaxDropWarnings is the number of distinct source addresses whose packets, dropped for
// arriving on an interface that is not browsed, a Browser logs at Warn (once each). A
// further source gets no line of its own; the first one beyond the bound makes a single
// Warn saying so. All of them are counted in Stats.WrongInterface.
const MaxDropWarnings = 64

// Multicast DNS transport (RFC 6762).
const (
	// mdnsPort is the mDNS UDP port (RFC 6762 §3); responses are sent to it and from it
	// (§6), and queries from it are answered by multicast (§5.2, §6).
	mdnsPort = 5353
	// mdnsHopLimit is the IP TTL / hop limit of mDNS packets (RFC 6762 §11).
	mdnsHopLimit = 255
	// maxDatagram is the read buffer: the largest UDP payload, so that no datagram is cut
	// (RFC 6762 §17 limits mDNS packets to 9000 bytes).
	maxDatagram = 65535
	// firstQueryInterval is the gap between a window's first two queries; each later gap
	// doubles (RFC 6762 §5.2: at least one second, then increasing by at least a factor
	// of two).
	firstQueryInterval = time.Second
)

// mdnsGroup returns the mDNS multicast group: 224.0.0.251, or ff02::fb for IPv6
// (RFC 6762 §3).
func mdnsGroup(v6 bool) netip.Addr {
	if v6 {
		return netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 15: 0xfb})
	}
	return netip.AddrFrom4([4]byte{224, 0, 0, 251})
}

// packet is one datagram read from a window's socket.
type packet struct {
	n       int        // length
	ifIndex int        // arrival interface (IP_PKTINFO / IPV6_PKTINFO); 0 when unknown
	src     netip.Addr // source address
	srcPort uint16
	dst     netip.Addr // destination: the mDNS group, or a unicast address of this host
}

// mconn is one address family's mDNS socket of a browse window.
type mconn interface {
	// read blocks for the next datagram; after Close it returns an error wrapping
	// net.ErrClosed.
	read(buf []byte) (packet, error)
	// send sends msg to the mDNS group out of interface ifIndex.
	send(msg []byte, ifIndex int) error
	Close() error
}

// conn4 is an IPv4 mconn.
type conn4 struct{ pc *ipv4.PacketConn }

func (c conn4) read(buf []byte) (packet, error) {
	n, cm, src, err := c.pc.ReadFrom(buf)
	if err != nil {
		return packet{}, err
	}
	p := packet{n: n}
	p.src, p.srcPort = udpSource(src)
	if cm != nil {
		p.ifIndex = cm.IfIndex
		p.dst, _ = netip.AddrFromSlice(cm.Dst)
		p.dst = p.dst.Unmap()
	}
	return p, nil
}

func (c conn4) send(msg []byte, ifIndex int) error {
	_, err := c.pc.WriteTo(msg, &ipv4.ControlMessage{IfIndex: ifIndex}, &net.UDPAddr{IP: mdnsGroup(false).AsSlice(), Port: mdnsPort})
	return err
}

func (c conn4) Close() error { return c.pc.Close() }

// conn6 is an IPv6 mconn.
type conn6 struct{ pc *ipv6.PacketConn }

func (c conn6) read(buf []byte) (packet, error) {
	n, cm, src, err := c.pc.ReadFrom(buf)
	if err != nil {
		return packet{}, err
	}
	p := packet{n: n}
	p.src, p.srcPort = udpSource(src)
	if cm != nil {
		p.ifIndex = cm.IfIndex
		p.dst, _ = netip.AddrFromSlice(cm.Dst)
	}
	return p, nil
}

func (c conn6) send(msg []byte, ifIndex int) error {
	_, err := c.pc.WriteTo(msg, &ipv6.ControlMessage{IfIndex: ifIndex}, &net.UDPAddr{IP: mdnsGroup(true).AsSlice(), Port: mdnsPort})
	return err
}

func (c conn6) Close() error { return c.pc.Close() }

// udpSource returns the address and port of a *net.UDPAddr, IPv4-mapped addresses
// unmapped; the zero values for anything else.
func udpSource(a net.Addr) (netip.Addr, uint16) {
	if u, ok := a.(*net.UDPAddr); ok {
		ap := u.AddrPort()
		return ap.Addr().Unmap(), ap.Port()
	}
	return netip.Addr{}, 0
}

// familyName names an address family in logs and errors.
func familyName(v6 bool) string {
	if v6 {
		return "IPv6"
	}
	return "IPv4"
}

// listen opens one family's socket of a window: bound to the mDNS port on the wildcard
// address, sharing the port with the responders on this host, reporting each
// datagram's arrival interface and destination, sending with hop limit 255 (RFC 6762
// §11), multicast loopback on (so responders on this host hear the queries), and joined
// to the mDNS group on each of ifaces. Joins that fail are returned in joinErrs; it is
// an error only when none succeeds.
func listen(v6 bool, ifaces []net.Interface) (c mconn, joinErrs []error, err error) {
	network := "udp4"
	if v6 {
		network = "udp6"
	}
	group := &net.UDPAddr{IP: mdnsGroup(v6).AsSlice(), Port: mdnsPort}
	// With a multicast address, net.ListenUDP binds the wildcard address with
	// SO_REUSEADDR (net/sock_posix.go, listenDatagram), as zeroconf's sockets do.
	uc, err := net.ListenUDP(network, group)
	if err != nil {
		return nil, nil, err
	}
	restrictMulticast(uc, v6)
	var join func(*net.Interface) error
	if v6 {
		pc := ipv6.NewPacketConn(uc)
		c, join = conn6{pc}, func(ifi *net.Interface) error { return pc.JoinGroup(ifi, group) }
		err = errors.Join(pc.SetControlMessage(ipv6.FlagInterface|ipv6.FlagDst, true),
			pc.SetMulticastHopLimit(mdnsHopLimit), pc.SetMulticastLoopback(true))
	} else {
		pc := ipv4.NewPacketConn(uc)
		c, join = conn4{pc}, func(ifi *net.Interface) error { return pc.JoinGroup(ifi, group) }
		err = errors.Join(pc.SetControlMessage(ipv4.FlagInterface|ipv4.FlagDst, true),
			pc.SetMulticastTTL(mdnsHopLimit), pc.SetMulticastLoopback(true))
	}
	if err != nil {
		_ = c.Close()
		return nil, nil, fmt.Errorf("socket options: %w", err)
	}
	for i := range ifaces {
		if err := join(&ifaces[i]); err != nil {
			joinErrs = append(joinErrs, fmt.Errorf("join %s on %s: %w", group.IP, ifaces[i].Name, err))
		}
	}
	if len(joinErrs) == len(ifaces) {
		_ = c.Close()
		return nil, nil, errors.Join(joinErrs...)
	}
	return c, joinErrs, nil
}

// interfaces resolves the configured interface names, or, when none are configured,
// lists the interfaces that are up and have the MULTICAST flag (which excludes "lo" on
// Linux). It returns an error when none is available.
func (b *Browser) interfaces() ([]net.Interface, error) {
	var ifaces []net.Interface
	if len(b.ifaceNames) == 0 {
		all, err := net.Interfaces()
		if err != nil {
			return nil, fmt.Errorf("list interfaces: %w", err)
		}
		for _, ifi := range all {
			if ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagMulticast != 0 {
				ifaces = append(ifaces, ifi)
			}
		}
		if len(ifaces) == 0 {
			return nil, errors.New("no interface is up with the MULTICAST flag")
		}
		return ifaces, nil
	}
	for _, name := range b.ifaceNames {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			b.log.Debug("mdns: interface not available", "iface", name, "err", err)
			continue
		}
		ifaces = append(ifaces, *ifi)
	}
	if len(ifaces) == 0 {
		return nil, fmt.Errorf("none of the interfaces %q is available", b.ifaceNames)
	}
	return ifaces, nil
}

// browseWindow browses all service types for one window: it opens a socket per address
// family (IPv4, and IPv6 when enabled) joined on the browsed interfaces, sends PTR
// queries (see query), collects the responses that arrive on a browsed interface until
// the window ends, closes the sockets, waits for their readers and returns each service
// type's instances, or the error that kept the whole window from browsing.
func (b *Browser) browseWindow(ctx context.Context) map[string]windowResult {
	results := make(map[string]windowResult, len(b.services))
	fail := func(err error) map[string]windowResult {
		for _, svc := range b.services {
			results[svc] = windowResult{err: err}
		}
		return results
	}
	ifaces, err := b.interfaces()
	if err != nil {
		return fail(err)
	}
	browsed := make(map[int]bool, len(ifaces))
	for _, ifi := range ifaces {
		browsed[ifi.Index] = true
	}
	var conns []mconn
	var errs []error
	families := []bool{false} // v6
	if b.ipv6 {
		families = append(families, true)
	}
	for _, v6 := range families {
		c, joinErrs, err := listen(v6, ifaces)
		for _, e := range joinErrs {
			b.log.Debug("mdns: cannot browse on an interface", "family", familyName(v6), "err", e)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("mdns: listen (%s): %w", familyName(v6), err))
			continue
		}
		conns = append(conns, c)
	}
	if len(conns) == 0 {
		return fail(errors.Join(errs...))
	}
	for _, err := range errs {
		b.log.Debug("mdns: browsing one address family only", "err", err)
	}

	wctx, cancel := context.WithTimeout(ctx, b.window)
	defer cancel()
	col := newCollector(b.services, b.domain)
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() { // ends when c is closed below
			defer wg.Done()
			b.receive(c, browsed, col)
		}()
	}
	err = b.query(wctx, conns, ifaces)
	for _, c := range conns {
		_ = c.Close()
	}
	wg.Wait()
	if err != nil {
		return fail(err)
	}

	entries, overflow := col.entries(b.services)
	for i, svc := range b.services {
		found := map[string]Candidate{}
		for _, e := range entries[i] {
			key, c, why := b.candidate(svc, e)
			if why != "" {
				b.log.Debug("mdns: ignoring answer", "service", svc, "instance", c.Instance, "reason", why)
				continue
			}
			if prev, ok := found[key]; ok {
				c = merge(prev, c)
			}
			found[key] = c
		}
		if overflow[i] > 0 {
			b.log.Warn("mdns: too many instance names in one window; ignoring the records of some", "service", svc, "max", maxWindowInstances, "ignored_records", overflow[i])
		}
		results[svc] = windowResult{found: found}
	}
	return results
}

// query sends a PTR query for every service type (RFC 6763 §4.1; RFC 6762 §5: ID 0,
// §18.1, and no recursion desired, §18.6) out of every browsed interface on every
// socket, at once and then after 1 s, 3 s, 7 s … (RFC 6762 §5.2) until ctx ends, and
// returns then. Sending from port 5353 asks for multicast answers (§5.2, §6). It returns
// an error at once when the first round could not send a single query; later failures
// are only logged (Debug).
func (b *Browser) query(ctx context.Context, conns []mconn, ifaces []net.Interface) error {
	msgs := make([][]byte, len(b.services))
	for i, svc := range b.services {
		m := dns.Msg{Question: []dns.Question{{Name: svc + "." + b.domain, Qtype: dns.TypePTR, Qclass: dns.ClassINET}}}
		buf, err := m.Pack()
		if err != nil {
			return fmt.Errorf("mdns: query for %s: %w", svc, err)
		}
		msgs[i] = buf
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	interval := firstQueryInterval
	for round := 0; ; round++ {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		sent, err := 0, error(nil)
		for _, c := range conns {
			for _, ifi := range ifaces {
				for _, msg := range msgs {
					if e := c.send(msg, ifi.Index); e != nil {
						err = fmt.Errorf("%s: %w", ifi.Name, e)
					} else {
						sent++
					}
				}
			}
		}
		if sent == 0 && round == 0 {
			return fmt.Errorf("mdns: send query: %w", err)
		}
		if err != nil {
			b.log.Debug("mdns: sending a query failed", "err", err)
		}
		timer.Reset(interval)
		interval *= 2
	}
}

// receive reads c until it is closed. A datagram that arrived on an interface not in
// browsed is dropped unread (see dropWrongInterface); the others are parsed, and the
// records of responses go to col.
func (b *Browser) receive(c mconn, browsed map[int]bool, col *collector) {
	buf := make([]byte, maxDatagram)
	for {
		p, err := c.read(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				b.log.Debug("mdns: receiving failed; this socket hears nothing more in this window", "err", err)
			}
			return
		}
		b.received.Add(1)
		if !browsed[p.ifIndex] {
			b.dropWrongInterface(p)
			continue
		}
		rrs, skipped, err := parseResponse(buf[:p.n])
		switch {
		case errors.Is(err, errNotResponse):
			continue
		case err != nil || skipped > 0:
			b.malformed.Add(1)
		}
		if len(rrs) > 0 {
			col.add(rrs)
		}
	}
}

// dropWrongInterface counts a datagram that arrived on an interface that is not
// browsed and logs its source address at Warn the first time it is seen, for up to
// MaxDropWarnings addresses.
func (b *Browser) dropWrongInterface(p packet) {
	b.wrongIface.Add(1)
	b.dropMu.Lock()
	_, known := b.dropSeen[p.src]
	logIt := !known && len(b.dropSeen) < MaxDropWarnings
	if logIt {
		b.dropSeen[p.src] = struct{}{}
	}
	logFull := !known && !logIt && !b.dropFull
	if logFull {
		b.dropFull = true
	}
	b.dropMu.Unlock()
	switch {
	case logIt:
		iface := fmt.Sprintf("index %d", p.ifIndex)
		if ifi, err := net.InterfaceByIndex(p.ifIndex); err == nil {
			iface = ifi.Name
		}
		b.log.Warn("mdns: dropping packets that arrive on an interface not browsed",
			"src", p.src, "srcport", p.srcPort, "dst", p.dst, "iface", iface, "browsed", b.ifaceNames)
	case logFull:
		b.log.Warn("mdns: packets from more sources arrive on interfaces not browsed; counting them without logging each",
			"src", p.src, "max", MaxDropWarnings)
	}
}

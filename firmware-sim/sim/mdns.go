package sim

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/grandcat/zeroconf"

	"github.com/rollcall-edge/rollcall/firmware-sim/drive"
)

// zeroconfAnnounceBound bounds how long grandcat/zeroconf v1.0.0's announcement
// goroutine ((*Server).probe) runs after RegisterProxy returns: two probes with random
// pauses below 250 ms, then two announcements with pauses of 1 s and 2 s, all with
// time.Sleep — about 3.5 s. Shutdown does not stop it (it then writes to closed
// sockets and ignores the errors), so Wait waits this long after the latest
// registration.
const zeroconfAnnounceBound = 4 * time.Second

// advertise registers listener l, bound at addr, over mDNS/DNS-SD with
// zeroconf.RegisterProxy (plain Register refuses loopback addresses and uses the
// machine's host name): instance, service and domain from l.mdns; SRV target
// <host>.<domain>; port = the bound port; A/AAAA records = the bound IP, or when
// it is unspecified (0.0.0.0, ::) the addresses of the chosen interfaces; TXT = vendor,
// model, serial, unit of the listener's first drive, then the free keys sorted.
// Errors name the listener.
func (s *Sim) advertise(l *simListener, addr net.Addr) (*zeroconf.Server, error) {
	m := l.mdns
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return nil, fmt.Errorf("firmware-sim: listener %s: mdns: unexpected listener address %v", l.cfg.Name, addr)
	}
	ifaces, err := interfaces(m.Interfaces)
	if err != nil {
		return nil, fmt.Errorf("firmware-sim: listener %s: mdns: %w", l.cfg.Name, err)
	}
	ips, err := advertisedIPs(ta.IP, ifaces)
	if err != nil {
		return nil, fmt.Errorf("firmware-sim: listener %s: mdns: %w", l.cfg.Name, err)
	}
	domain := strings.TrimSuffix(m.Domain, ".")
	// A fully qualified host name: RegisterProxy appends the domain only when the
	// name does not already end with it.
	host := m.Host + "." + domain + "."
	txt := l.txtRecord()
	srv, err := zeroconf.RegisterProxy(m.Instance, m.Service, domain, ta.Port, host, ips, txt, ifaces)
	if err != nil {
		return nil, fmt.Errorf("firmware-sim: listener %s: mdns: register %s.%s.%s: %w", l.cfg.Name, m.Instance, m.Service, domain, err)
	}
	s.mu.Lock()
	if until := time.Now().Add(zeroconfAnnounceBound); until.After(s.probeUntil) {
		s.probeUntil = until
	}
	s.mu.Unlock()
	names := make([]string, len(ifaces))
	for i, ifc := range ifaces {
		names[i] = ifc.Name
	}
	s.log.Info("mdns advertised", "listener", l.cfg.Name, "instance", m.Instance, "service", m.Service,
		"domain", domain, "host", host, "port", ta.Port, "ips", ips, "interfaces", names, "txt", txt)
	return srv, nil
}

// waitAnnouncements returns once every zeroconf announcement goroutine started by
// advertise has certainly ended (see zeroconfAnnounceBound).
func (s *Sim) waitAnnouncements() {
	s.mu.Lock()
	until := s.probeUntil
	s.mu.Unlock()
	if d := time.Until(until); d > 0 {
		t := time.NewTimer(d)
		<-t.C
	}
}

// txtRecord returns the TXT strings: vendor, model, serial and unit of the first drive
// (docs/registers.md identification objects), then the free keys in sorted order.
func (l *simListener) txtRecord() []string {
	first := l.drives[0]
	d := l.byUnit[first.Unit]
	vendor, _ := d.IdentificationObject(drive.ObjVendorName)
	txt := []string{
		"vendor=" + string(vendor),
		"model=" + d.Model(),
		"serial=" + d.Serial(),
		"unit=" + strconv.Itoa(first.Unit),
	}
	keys := make([]string, 0, len(l.mdns.TXT))
	for k := range l.mdns.TXT {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		txt = append(txt, k+"="+l.mdns.TXT[k])
	}
	return txt
}

// interfaces returns the named network interfaces, or with no names every interface
// that is up and multicast-capable (zeroconf's default choice, which skips lo).
func interfaces(names []string) ([]net.Interface, error) {
	if len(names) > 0 {
		out := make([]net.Interface, 0, len(names))
		for _, name := range names {
			ifc, err := net.InterfaceByName(name)
			if err != nil {
				return nil, fmt.Errorf("interface %s: %w", name, err)
			}
			if ifc.Flags&net.FlagUp == 0 {
				return nil, fmt.Errorf("interface %s is down", name)
			}
			out = append(out, *ifc)
		}
		return out, nil
	}
	all, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list network interfaces: %w", err)
	}
	var out []net.Interface
	for _, ifc := range all {
		if ifc.Flags&net.FlagUp != 0 && ifc.Flags&net.FlagMulticast != 0 {
			out = append(out, ifc)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no network interface is up and multicast-capable; name one with interfaces (e.g. [lo])")
	}
	return out, nil
}

// advertisedIPs returns bound when it is a specific address; for 0.0.0.0 the IPv4
// addresses of ifaces; for :: (dual stack) their IPv4 and IPv6 addresses, IPv6
// link-local ones excepted (an AAAA record carries no zone).
func advertisedIPs(bound net.IP, ifaces []net.Interface) ([]string, error) {
	if !bound.IsUnspecified() {
		return []string{bound.String()}, nil
	}
	v4only := bound.To4() != nil
	var ips []string
	for _, ifc := range ifaces {
		addrs, err := ifc.Addrs()
		if err != nil {
			return nil, fmt.Errorf("interface %s: addresses: %w", ifc.Name, err)
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip := ipn.IP
			switch {
			case ip.To4() != nil:
				ips = append(ips, ip.String())
			case !v4only && !ip.IsLinkLocalUnicast():
				ips = append(ips, ip.String())
			}
		}
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("listening on %v, but the interfaces have no address to advertise", bound)
	}
	return ips, nil
}

package gateway

import (
	"context"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/devices"
	"github.com/rollcall-edge/rollcall/gateway/config"
	"github.com/rollcall-edge/rollcall/gateway/metrics"
	"github.com/rollcall-edge/rollcall/protocols/mdns"
	"github.com/rollcall-edge/rollcall/protocols/modbus"
	"github.com/rollcall-edge/rollcall/registry"
)

// poller is a master or a service checker run by the discovery manager.
type poller interface {
	run(ctx context.Context) error
	setHints(h hints)
	liveDevices() int
}

// endpoint is one network endpoint the manager polls, with how it is known.
type endpoint struct {
	p       poller
	cancel  context.CancelFunc
	done    chan struct{}
	static  *config.TCPTarget // non-nil: configured in discovery.tcp
	inMDNS  map[string]bool   // service types whose last snapshot holds it
	txtMeta map[string]string // TXT of the last mDNS announcement
}

// discovery runs the network side: static Modbus TCP targets and what mDNS browsing
// finds. Each endpoint (host:port) gets one poller — for Modbus, one master and so one
// connection shared by its unit IDs; an mDNS announcement only creates a candidate, and
// the module is registered when a poll succeeds. An endpoint that leaves mDNS is
// stopped once none of its devices is live any more (liveness comes from polls, not
// from announcements); a device that moved to another address keeps its id, and its
// old endpoint loses it (registry owners).
type discovery struct {
	cfg      *config.Config
	profiles *devices.Profiles
	reg      *registry.Registry
	metrics  *metrics.Metrics
	log      *slog.Logger

	wg        sync.WaitGroup
	endpoints map[string]*endpoint // key: "tcp:host:port" / "svc:host:port"
	allow     []*regexp.Regexp     // mdns.instance_patterns; empty: all
	capped    bool                 // the endpoint cap was hit and logged
	count     *atomic.Int32        // len(endpoints), readable by Gateway.Endpoints
	ignored   map[string]bool      // instance names refused by the allowlist (logged once, bounded)
	// shared runs the Modbus TCP masters (no goroutine each); nil: each runs on its own.
	shared *sharedPoller
	// dir lists the Modbus TCP masters for routed requests; nil: the Modbus TCP server
	// is off.
	dir *masterDir
	// reloads takes reloaded configs (Gateway.Reload) for run to apply (reconfigure).
	reloads chan discReload
}

func newDiscovery(cfg *config.Config, profiles *devices.Profiles, reg *registry.Registry,
	mx *metrics.Metrics, log *slog.Logger, count *atomic.Int32) *discovery {
	return &discovery{cfg: cfg, profiles: profiles, reg: reg, metrics: mx, log: log, endpoints: map[string]*endpoint{},
		allow: instancePatterns(cfg), ignored: map[string]bool{}, count: count, reloads: make(chan discReload)}
}

// instancePatterns compiles cfg's mDNS instance-name allowlist (validated by config);
// nil when there is none.
func instancePatterns(cfg *config.Config) []*regexp.Regexp {
	var out []*regexp.Regexp
	for _, p := range cfg.Discovery.MDNS.InstancePatterns {
		out = append(out, regexp.MustCompile(p))
	}
	return out
}

// allowed applies the instance-name allowlist, logging each refused name once (at most
// 100 names are remembered, so a flood cannot grow memory).
func (d *discovery) allowed(c mdns.Candidate) bool {
	if len(d.allow) == 0 {
		return true
	}
	for _, re := range d.allow {
		if re.MatchString(c.Instance) {
			return true
		}
	}
	if !d.ignored[c.Instance] && len(d.ignored) < 100 {
		d.ignored[c.Instance] = true
		d.log.Info("mdns announcement ignored: instance name not in discovery.mdns.instance_patterns", "instance", c.Instance, "service", c.Service)
	}
	return false
}

// roomFor reports whether another endpoint may be started (limits.max_endpoints),
// logging once when the cap is first hit.
func (d *discovery) roomFor(key string) bool {
	if len(d.endpoints) < d.cfg.Limits.MaxEndpoints {
		d.capped = false
		return true
	}
	if !d.capped {
		d.capped = true
		d.log.Warn("mdns candidate ignored: limits.max_endpoints reached", "endpoint", key, "max_endpoints", d.cfg.Limits.MaxEndpoints)
	}
	return false
}

// run starts the static targets, then applies mDNS snapshots and reloaded configs
// (reconfigure) until ctx ends; it returns after every poller (each running under ctx)
// has stopped.
func (d *discovery) run(ctx context.Context, snapshots <-chan mdns.Snapshot) {
	for i := range d.cfg.Discovery.TCP {
		t := &d.cfg.Discovery.TCP[i]
		ep := d.newModbus(t.Address, t.Name, t.UnitList, t.Timeout, t.PollInterval)
		ep.static = t
		d.refreshHints(ep)
		d.launch(ctx, ep)
	}
	for {
		select {
		case <-ctx.Done():
			d.wg.Wait()
			return
		case s := <-snapshots:
			d.apply(ctx, s)
		case r := <-d.reloads:
			r.done <- d.reconfigure(ctx, r.cfg)
		}
	}
}

// newModbus adds the (not yet running) master of a Modbus TCP endpoint.
func (d *discovery) newModbus(address, scope string, units []int, timeout, interval time.Duration) *endpoint {
	host, portStr, _ := net.SplitHostPort(address)
	port, _ := strconv.Atoi(portStr)
	mc := masterConfig{
		Name: address, Owner: tcpOwner(host, port), IDScope: scope, Units: units,
		PollInterval: interval, Timeout: timeout, ProbeShare: 0.2, CyclePause: max(interval, time.Second),
		Endpoint: func(unit int) contract.Endpoint {
			return contract.Endpoint{Transport: "modbus-tcp", Host: host, Port: port, Unit: unit}
		},
		RelayShare: d.relayShare(),
		Open: func() (modbus.Client, error) {
			return modbus.NewTCP(modbus.TCPConfig{Address: address, Timeout: timeout})
		},
	}
	m := newMaster(mc, hints{}, d.cfg.Gateway.ID, d.profiles, d.reg, d.metrics, d.log.With("endpoint", address))
	m.dir = d.dir
	return d.add(tcpOwner(host, port), m)
}

// relayShare is masterConfig.RelayShare of a Modbus TCP master: 1 (routed requests go
// straight to its connection) when the Modbus TCP server is on, else 0.
func (d *discovery) relayShare() float64 {
	if d.dir == nil {
		return 0
	}
	return 1
}

// add records a new endpoint polled by p; launch starts it once its hints are set, so
// that its first registration already carries them (the id may come from TXT).
func (d *discovery) add(key string, p poller) *endpoint {
	ep := &endpoint{p: p, done: make(chan struct{}), inMDNS: map[string]bool{}}
	d.endpoints[key] = ep
	d.count.Store(int32(len(d.endpoints)))
	return ep
}

// launch runs ep's poller under a child of ctx until the endpoint is stopped or ctx ends
// (a Modbus master on the shared poller, which ctx owns too).
func (d *discovery) launch(ctx context.Context, ep *endpoint) {
	if m, ok := ep.p.(*master); ok && d.shared != nil {
		ep.cancel = d.shared.add(m, ep.done)
		return
	}
	ctx, ep.cancel = context.WithCancel(ctx)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer close(ep.done)
		_ = ep.p.run(ctx)
	}()
}

// refreshHints recomputes discovered_by and meta of an endpoint from how it is known.
func (d *discovery) refreshHints(ep *endpoint) {
	var h hints
	meta := map[string]string{}
	if len(ep.inMDNS) > 0 {
		h.DiscoveredBy = append(h.DiscoveredBy, "mdns")
		maps.Copy(meta, ep.txtMeta)
	}
	if ep.static != nil {
		h.DiscoveredBy = append(h.DiscoveredBy, "tcp-static")
		maps.Copy(meta, ep.static.Meta) // configured meta wins over TXT
		h.UnitMeta = unitMeta(ep.static.Devices)
	}
	h.Meta = meta
	ep.p.setHints(h)
}

// apply takes one browse snapshot of a service type.
func (d *discovery) apply(ctx context.Context, s mdns.Snapshot) {
	seen := map[string]bool{}
	for _, c := range s.Candidates {
		if !d.allowed(c) {
			continue
		}
		addr, ok := firstIPv4(c.Addrs)
		if !ok || c.Port <= 0 || c.Port > 65535 {
			d.log.Debug("mdns candidate without usable address", "service", s.Service, "instance", c.Instance)
			continue
		}
		hostport := net.JoinHostPort(addr.String(), strconv.Itoa(c.Port))
		var key string
		var ep *endpoint
		if s.Service == "_modbus._tcp" {
			key = tcpOwner(addr.String(), c.Port)
			if ep = d.endpoints[key]; ep == nil {
				if !d.roomFor(key) {
					continue
				}
				unit := 1
				if u, err := strconv.Atoi(c.TXT["unit"]); err == nil && u >= 0 && u <= 255 {
					unit = u
				}
				md := d.cfg.Discovery.MDNS
				ep = d.newModbus(hostport, c.Host, []int{unit}, md.Timeout, d.cfg.Health.PollInterval)
				d.log.Info("mdns candidate", "service", s.Service, "instance", c.Instance, "endpoint", hostport, "unit", unit)
			}
		} else {
			ck, found := d.serviceCheck(s.Service)
			if !found {
				continue
			}
			key = "svc:" + hostport
			if ep = d.endpoints[key]; ep == nil {
				if !d.roomFor(key) {
					continue
				}
				sc := newServiceChecker(ck, addr.String(), c.Port, c.Instance, d.cfg.Gateway.ID, d.cfg.Health.PollInterval,
					hints{}, d.reg, d.metrics, d.log.With("endpoint", hostport, "check", ck.Type))
				ep = d.add(key, sc)
				d.log.Info("mdns candidate", "service", s.Service, "instance", c.Instance, "endpoint", hostport, "check", ck.Type)
			}
		}
		seen[key] = true
		ep.inMDNS[s.Service] = true
		ep.txtMeta = c.TXT
		d.refreshHints(ep)
		if ep.cancel == nil { // new: its hints are in place now
			d.launch(ctx, ep)
		}
	}
	// Endpoints of this service type that left the snapshot: forget the announcement;
	// stop them once nothing is live there (static targets always stay).
	for key, ep := range d.endpoints {
		if seen[key] || !ep.inMDNS[s.Service] {
			if !seen[key] && len(ep.inMDNS) == 0 && ep.static == nil && ep.p.liveDevices() == 0 {
				d.stop(key, ep)
			}
			continue
		}
		delete(ep.inMDNS, s.Service)
		d.refreshHints(ep)
		if len(ep.inMDNS) == 0 && ep.static == nil && ep.p.liveDevices() == 0 {
			d.stop(key, ep)
		}
	}
}

func (d *discovery) stop(key string, ep *endpoint) {
	ep.cancel()
	<-ep.done
	delete(d.endpoints, key)
	d.count.Store(int32(len(d.endpoints)))
	d.log.Info("endpoint dropped: not announced and nothing live there", "endpoint", key)
}

func (d *discovery) serviceCheck(serviceType string) (config.ServiceCheck, bool) {
	for _, ck := range d.cfg.Discovery.MDNS.Checks {
		if ck.ServiceType == serviceType {
			return ck, true
		}
	}
	return config.ServiceCheck{}, false
}

func firstIPv4(addrs []netip.Addr) (netip.Addr, bool) {
	i := slices.IndexFunc(addrs, func(a netip.Addr) bool { return a.Is4() })
	if i < 0 {
		return netip.Addr{}, false
	}
	return addrs[i], true
}

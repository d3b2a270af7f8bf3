package gateway

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/gateway/config"
	"github.com/rollcall-edge/rollcall/gateway/dnsserver"
	"github.com/rollcall-edge/rollcall/gateway/router"
	"github.com/rollcall-edge/rollcall/protocols/modbus"
	"github.com/rollcall-edge/rollcall/registry"
)

// catalog is what the Modbus TCP server and the DNS interface read: the gateway's own
// registry, and its masters for routed requests (router.Catalog).
type catalog struct {
	reg *registry.Registry
	dir *masterDir
}

// ownLease tells whether one of the gateway's own records' lease has run out: no
// clock-skew allowance, the clock is the one that wrote it.
var ownLease = contract.Lease{MaxClockSkew: -1}

// usable reports whether rec may take traffic now: not critical, its lease valid.
func (c *catalog) usable(rec *contract.Record, now time.Time) bool {
	if rec.Status != contract.Passing && rec.Status != contract.Warning {
		return false
	}
	return !ownLease.Expired(rec.ValidUntil, now)
}

// Live implements router.Catalog: the instances of service that are not critical, with
// a valid lease, with every meta pair, and polled by a master that takes routed
// requests.
func (c *catalog) Live(service string, meta map[string]string) []router.Target {
	now := time.Now()
	recs := c.reg.Select(service, func(owner string, rec *contract.Record) bool {
		// Only an instance that the master of its endpoint polls: a self-registered
		// record naming a bus or a Modbus TCP endpoint is never routed to.
		ep, ok := endpointOwner(rec.Endpoint)
		return ok && ep == owner && hasMeta(rec.Meta, meta) && c.usable(rec, now) && c.dir.get(owner) != nil
	})
	out := make([]router.Target, len(recs))
	for i, rec := range recs {
		out[i] = router.Target{ID: rec.ID, Passing: rec.Status == contract.Passing,
			RTT: time.Duration(rec.Check.RTTMS * float64(time.Millisecond))}
	}
	return out
}

// Forward implements router.Catalog: the request goes to the master of the instance's
// endpoint (master.forward), for its unit ID.
func (c *catalog) Forward(ctx context.Context, id string, pdu []byte) ([]byte, error) {
	rec, ok := c.reg.Get(id)
	owner, _ := c.reg.Owner(id)
	if !ok {
		return nil, fmt.Errorf("instance %s: deregistered: %w", id, modbus.ErrClosed)
	}
	if ep, _ := endpointOwner(rec.Endpoint); ep != owner || rec.Endpoint.Unit < 0 || rec.Endpoint.Unit > 255 {
		return nil, fmt.Errorf("instance %s: not polled by the master of its endpoint: %w", id, modbus.ErrClosed)
	}
	m := c.dir.get(owner)
	if m == nil {
		return nil, fmt.Errorf("instance %s: its master (%s) is closed: %w", id, owner, modbus.ErrClosed)
	}
	return m.forward(ctx, byte(rec.Endpoint.Unit), pdu)
}

func hasMeta(have, want map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}

// dnsInstances is the DNS interface's view of the catalog (dnsserver.Options.Instances):
// every live instance, passing only if its status is passing and its lease valid. A
// Modbus TCP instance, or a checked module (tcp, http), is answered with its own address;
// an RTU instance with the Modbus TCP server's (advertise, port) and the virtual unit of
// the first route that selects it — one that no route selects cannot be reached over IP,
// and is left out.
func (c *catalog) dnsInstances(routes []config.Route, advertise string, port int) []dnsserver.Instance {
	now := time.Now()
	var out []dnsserver.Instance
	for _, rec := range c.reg.Snapshot() {
		in := dnsserver.Instance{ID: rec.ID, Service: rec.Service, Meta: rec.Meta,
			Passing: rec.Status == contract.Passing && c.usable(&rec, now)}
		ep := rec.Endpoint
		switch ep.Transport {
		case "modbus-rtu":
			unit := routeFor(routes, &rec)
			owner, _ := c.reg.Owner(rec.ID)
			if unit == 0 || advertise == "" || owner != rtuOwner(ep.Bus) {
				continue // not routable (a self-registered record naming a bus is never routed to)
			}
			in.Host, in.Port, in.Unit = advertise, port, unit
			in.Endpoint = fmt.Sprintf("modbus-rtu bus %s unit %d, through the Modbus TCP server as unit %d", ep.Bus, ep.Unit, unit)
		case "modbus-tcp":
			in.Host, in.Port, in.Unit = ep.Host, ep.Port, ep.Unit
			in.Endpoint = fmt.Sprintf("modbus-tcp %s unit %d", net.JoinHostPort(ep.Host, strconv.Itoa(ep.Port)), ep.Unit)
		case "tcp":
			in.Host, in.Port = ep.Host, ep.Port
			in.Endpoint = "tcp " + net.JoinHostPort(ep.Host, strconv.Itoa(ep.Port))
		case "http":
			u, err := url.Parse(ep.URL)
			if err != nil {
				continue
			}
			in.Host = u.Hostname()
			if in.Port, err = strconv.Atoi(u.Port()); err != nil {
				in.Port = 80
				if u.Scheme == "https" {
					in.Port = 443
				}
			}
			in.Endpoint = "http " + ep.URL
		default:
			continue
		}
		out = append(out, in)
	}
	return out
}

// routeFor is the virtual unit of the first route (by unit) that selects rec, or 0.
func routeFor(routes []config.Route, rec *contract.Record) int {
	best := 0
	for _, r := range routes {
		if r.Service == rec.Service && hasMeta(rec.Meta, r.Meta) && (best == 0 || r.Unit < best) {
			best = r.Unit
		}
	}
	return best
}

// routerRoutes converts the configured routes (validated by config).
func routerRoutes(rs []config.Route) []router.Route {
	out := make([]router.Route, 0, len(rs))
	for _, r := range rs {
		s, _ := router.ParseStrategy(r.Strategy)
		out = append(out, router.Route{Unit: byte(r.Unit), Service: r.Service, Meta: r.Meta, Strategy: s, Writes: r.Writes})
	}
	slices.SortFunc(out, func(a, b router.Route) int { return int(a.Unit) - int(b.Unit) })
	return out
}

package client

import (
	"fmt"
	"maps"
	"strconv"

	"github.com/rollcall-edge/rollcall/contract"
)

// Fallback is a configured endpoint of a service (Options.Fallback) that Pick and Wait
// return only when the catalog cannot be reached and the client knows nothing at all of
// the service. Precisely, Pick returns a fallback of service S only when
//
//   - no instance qualifies (Pick would fail with ErrNoneLive), and
//   - the client is not connected to a broker and has found none reachable: a round of
//     connection attempts to every broker failed since the last connection, or the
//     connection was lost, or Run has returned (before Run's first round of attempts
//     has failed, the catalog may still arrive: no fallback), and
//   - the catalog holds no entry of S at all: none live, none from the cache file,
//     none refused for any reason (critical, maintenance, stale, filtered out …).
//     An entry of S that is known but refused makes Pick fail with ErrNoneLive
//     instead: the catalog said something about S, and a fallback must not override
//     it.
//
// While the client is connected, Pick never returns a fallback, even when the broker
// holds nothing of S. (A catalog that held nothing of S when the connection was lost
// holds no entry of it either: during that outage the fallback is used.)
//
// The filters apply to a fallback as to a catalog instance: WithMeta to its Meta,
// WithID to its id, WithIdentity to an empty identity; WithGateway never matches it
// (it has no gateway), and RequireGatewayOnline refuses it. The Strategy chooses among
// the fallbacks of S that pass (RoundRobin by default, in configuration order;
// Weighted reads their Meta "weight"). The Instance returned has Fallback true, ID
// "fallback-<slug(service)>-<n>" (n: 1-based position among the service's fallbacks in
// Options.Fallback), Service and Endpoint and Meta as configured, an empty Status and
// Gateway, GatewayState GatewayUnknown: there is no health check behind it.
type Fallback struct {
	// Service is the service this endpoint provides (compared slugged; required).
	Service string
	// Endpoint is where the service is reached (Transport required).
	Endpoint contract.Endpoint
	// Meta is matched by WithMeta, as an instance record's meta is.
	Meta map[string]string
}

// fallbackIDPrefix starts the id of every fallback instance.
const fallbackIDPrefix = "fallback-"

// fallbackRR prefixes the round-robin counter key of a service's fallbacks; ':' is not
// a slug character, so it never collides with a service's own counter.
const fallbackRR = "fallback:"

// checkFallbacks validates Options.Fallback and returns the fallbacks by service slug,
// as instances (their Meta copied). services is the slug set of Options.Services
// (empty: every service).
func checkFallbacks(fbs []Fallback, services map[string]bool) (map[string][]Instance, error) {
	out := map[string][]Instance{}
	for i, f := range fbs {
		switch {
		case f.Service == "":
			return nil, fmt.Errorf("client: Options.Fallback[%d]: no service", i)
		case f.Endpoint.Transport == "":
			return nil, fmt.Errorf("client: Options.Fallback[%d] (%s): endpoint without transport", i, f.Service)
		}
		svc := contract.Slug(f.Service)
		if len(services) > 0 && !services[svc] {
			return nil, fmt.Errorf("client: Options.Fallback[%d]: service %q is not in Options.Services", i, f.Service)
		}
		n := len(out[svc]) + 1
		in := Instance{
			Record: contract.Record{
				Schema:   contract.Schema,
				ID:       fallbackIDPrefix + svc + "-" + strconv.Itoa(n),
				Service:  f.Service,
				Endpoint: f.Endpoint,
				Meta:     maps.Clone(f.Meta),
			},
			GatewayState: GatewayUnknown,
			Fallback:     true,
		}
		if in.Meta == nil {
			in.Meta = map[string]string{}
		}
		out[svc] = append(out[svc], in)
	}
	return out, nil
}

// fallbackLocked returns a fallback of service for a Pick under p that found nothing
// (see Fallback for when one applies): ok reports whether it did; refused counts the
// fallbacks that applied but did not pass p's filters. c.mu held.
func (c *Client) fallbackLocked(service string, p *pickSpec) (in Instance, ok bool, refused int) {
	svc := contract.Slug(service)
	fbs := c.fallbacks[svc]
	if len(fbs) == 0 || c.conn.connected || !c.unreachable {
		return Instance{}, false, 0
	}
	for _, e := range c.entries {
		if e.svc == svc {
			return Instance{}, false, 0 // something is known of it: never the fallback
		}
	}
	var cands []Instance
	for _, f := range fbs {
		f.Record.Meta = maps.Clone(f.Record.Meta)
		if p.requireOnline || !p.matches(&entry{svc: svc, inst: f.ID}, &f) {
			refused++
			continue
		}
		cands = append(cands, f)
	}
	if len(cands) == 0 {
		return Instance{}, false, refused
	}
	return c.chooseLocked(fallbackRR+svc, cands, p.strategy), true, 0
}

package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/devices"
	"github.com/rollcall-edge/rollcall/gateway/config"
	"github.com/rollcall-edge/rollcall/gateway/metrics"
	"github.com/rollcall-edge/rollcall/registry"
)

// serviceChecker is the heartbeat of one non-Modbus module announced over mDNS (e.g. a
// vision module's _http._tcp): a TCP connect or an HTTP GET (2xx = healthy) every poll
// interval, with the same health semantics as a Modbus poll. The instance is registered
// after its first successful check.
type serviceChecker struct {
	check    config.ServiceCheck
	host     string // IP address to reach
	port     int
	instance string // DNS-SD instance name
	gateway  string
	interval time.Duration
	reg      *registry.Registry
	metrics  *metrics.Metrics
	log      *slog.Logger
	client   *http.Client

	hints atomic.Pointer[hints]
	live  atomic.Int32
}

func newServiceChecker(ck config.ServiceCheck, host string, port int, instance, gatewayID string, interval time.Duration,
	h hints, reg *registry.Registry, mx *metrics.Metrics, log *slog.Logger) *serviceChecker {
	c := &serviceChecker{check: ck, host: host, port: port, instance: instance, gateway: gatewayID, interval: interval,
		reg: reg, metrics: mx, log: log, client: &http.Client{Timeout: ck.Timeout}}
	c.hints.Store(&h)
	return c
}

func (c *serviceChecker) setHints(h hints) { c.hints.Store(&h) }
func (c *serviceChecker) liveDevices() int { return int(c.live.Load()) }

func (c *serviceChecker) addr() string { return net.JoinHostPort(c.host, strconv.Itoa(c.port)) }

// id applies contract.InstanceID with the vendor and serial announced in TXT and the
// mDNS instance name as the local part.
func (c *serviceChecker) id(h *hints) string {
	return contract.InstanceID(contract.Identity{Vendor: h.Meta["vendor"], Serial: h.Meta["serial"]}, c.gateway, c.instance)
}

// probe runs one check.
func (c *serviceChecker) probe(ctx context.Context) registry.Observation {
	start := time.Now()
	var err error
	ctx, cancel := context.WithTimeout(ctx, c.check.Timeout)
	defer cancel()
	switch c.check.Type {
	case "tcp":
		var conn net.Conn
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", c.addr())
		if err == nil {
			conn.Close()
		}
	case "http":
		var req *http.Request
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, c.url(), nil)
		if err == nil {
			var resp *http.Response
			resp, err = c.client.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode < 200 || resp.StatusCode > 299 {
					err = fmt.Errorf("GET %s: %s", c.url(), resp.Status)
				}
			}
		}
	}
	end := time.Now()
	out := devices.Classify(err)
	return registry.Observation{At: end, RTT: end.Sub(start), Answered: out.Answered(), Err: err, Outcome: out}
}

func (c *serviceChecker) url() string { return "http://" + c.addr() + c.check.Path }

func (c *serviceChecker) run(ctx context.Context) error {
	owner := "svc:" + c.addr()
	t := time.NewTicker(c.interval)
	defer t.Stop()
	master := c.metrics.Master(c.addr())
	defer master.Close()
	stats := master.Unit("")
	registered := ""
	refusedLogged := false
	for {
		o := c.probe(ctx)
		if ctx.Err() != nil {
			c.live.Store(0)
			return nil
		}
		h := c.hints.Load()
		switch {
		case registered != "":
			stats.Poll(o)
			if !c.reg.Observe(registered, owner, o) {
				registered = ""
				c.live.Store(0)
			}
		case o.Answered:
			id := c.id(h)
			ep := contract.Endpoint{Transport: c.check.Type, Host: c.host, Port: c.port}
			if c.check.Type == "http" {
				ep.URL = c.url()
			}
			_, err := c.reg.Register(registry.Registration{
				ID: id, Service: c.check.Service, Profile: "mdns-" + c.check.Type + "-check",
				Endpoint: ep, Identity: contract.Identity{Vendor: h.Meta["vendor"], Model: h.Meta["model"], Serial: h.Meta["serial"]},
				Meta: h.Meta, DiscoveredBy: h.DiscoveredBy, Owner: owner,
				Check: contract.Check{
					IntervalMS: c.interval.Milliseconds(), TimeoutMS: c.check.Timeout.Milliseconds(),
					DetectBudgetMS: registry.DetectBudget(c.reg.Policy(), registry.TickerSchedule(c.interval, c.check.Timeout)).Milliseconds(),
				},
			}, o)
			if err != nil {
				if !refusedLogged {
					refusedLogged = true
					c.log.Warn("registration refused: a limit is reached", "instance", id, "err", err)
				}
				break
			}
			registered = id
			c.live.Store(1)
		}
		select {
		case <-ctx.Done():
			c.live.Store(0)
			return nil
		case <-t.C:
		}
	}
}

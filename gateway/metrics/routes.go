package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rollcall-edge/rollcall/gateway/router"
)

// RouteObserver is the Modbus TCP server's router.Observer: per route (label unit, the
// virtual unit ID, and service),
//   - rollcall_route_requests_total{unit,service,outcome}: requests by outcome (ok,
//     exception, refused, busy, unavailable, failed; router.Outcome);
//   - rollcall_route_exceptions_total{unit,service,code}: exception replies sent to
//     clients, the devices' relayed and the router's own, by exception code;
//   - rollcall_route_failovers_total{unit,service}: reads retried on another instance;
//   - rollcall_route_request_seconds{unit,service}: time from a request's arrival to
//     its reply.
//
// Series of a route exist from the start (at 0), so a rate over them is defined.
type RouteObserver struct {
	services  map[byte]string
	requests  *prometheus.CounterVec
	failovers *prometheus.CounterVec
	exception *prometheus.CounterVec
	latency   *prometheus.HistogramVec
}

// Routes registers the route metrics for routes and returns their observer; conns
// (router.Router.Stats) is read at scrape time for rollcall_route_connections and
// rollcall_route_refused_connections_total. Call it once.
func (m *Metrics) Routes(routes []router.Route, conns func() router.Stats) *RouteObserver {
	o := &RouteObserver{
		services: map[byte]string{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollcall_route_requests_total",
			Help: "Requests to a virtual unit of the Modbus TCP server, by outcome (ok, exception: the device's relayed, " +
				"refused: 0x01/0x03, busy: 0x06, unavailable: 0x0A, failed: 0x0B).",
		}, []string{"unit", "service", "outcome"}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollcall_route_failovers_total",
			Help: "Reads of a virtual unit retried on another live instance after the first failed.",
		}, []string{"unit", "service"}),
		exception: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollcall_route_exceptions_total",
			Help: "Exception replies sent to Modbus TCP clients of a virtual unit, by exception code.",
		}, []string{"unit", "service", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rollcall_route_request_seconds",
			Help:    "Time from a routed request's arrival to its reply, a retry on another instance included.",
			Buckets: []float64{.002, .005, .01, .02, .03, .05, .075, .1, .2, .5, 1, 2.5},
		}, []string{"unit", "service"}),
	}
	for _, r := range routes {
		o.services[r.Unit] = r.Service
		u := strconv.Itoa(int(r.Unit))
		for _, out := range []router.Outcome{router.OutcomeOK, router.OutcomeException, router.OutcomeRefused,
			router.OutcomeBusy, router.OutcomeUnavailable, router.OutcomeFailed} {
			o.requests.WithLabelValues(u, r.Service, string(out))
		}
		o.failovers.WithLabelValues(u, r.Service)
		o.latency.WithLabelValues(u, r.Service)
	}
	m.reg.MustRegister(o.requests, o.failovers, o.exception, o.latency,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rollcall_route_connections",
			Help: "Client connections open to the Modbus TCP server.",
		}, func() float64 { return float64(conns().Connections) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "rollcall_route_refused_connections_total",
			Help: "Client connections the Modbus TCP server closed at once: over max_connections or max_client_connections.",
		}, func() float64 { return float64(conns().Refused) }))
	return o
}

// Routed implements router.Observer.
func (o *RouteObserver) Routed(unit byte, out router.Outcome, code byte, d time.Duration) {
	u, svc := strconv.Itoa(int(unit)), o.services[unit]
	o.requests.WithLabelValues(u, svc, string(out)).Inc()
	if code != 0 {
		o.exception.WithLabelValues(u, svc, strconv.Itoa(int(code))).Inc()
	}
	o.latency.WithLabelValues(u, svc).Observe(d.Seconds())
}

// Failover implements router.Observer.
func (o *RouteObserver) Failover(unit byte) {
	o.failovers.WithLabelValues(strconv.Itoa(int(unit)), o.services[unit]).Inc()
}

// DNSStats are the DNS interface's counters as DNS reads them (dnsserver.Stats).
type DNSStats struct {
	Queries, Answered, NoData, NXDomain, Refused, FormErr, NotImp, Truncated uint64
}

// DNS registers rollcall_dns_queries_total{result} (answered, nodata, nxdomain,
// refused, formerr, notimp) and rollcall_dns_truncated_total, read at scrape time from
// stats. Call it once.
func (m *Metrics) DNS(stats func() DNSStats) {
	desc := prometheus.NewDesc("rollcall_dns_queries_total",
		"Queries to the DNS interface by result: answered (records given), nodata (a known name with no passing instance), "+
			"nxdomain, refused (outside the domain), formerr, notimp.", []string{"result"}, nil)
	trunc := prometheus.NewDesc("rollcall_dns_truncated_total", "UDP answers truncated (TC set) to fit the client's size.", nil, nil)
	m.reg.MustRegister(collectorFunc{descs: []*prometheus.Desc{desc, trunc}, collect: func(ch chan<- prometheus.Metric) {
		s := stats()
		for _, kv := range []struct {
			k string
			v uint64
		}{{"answered", s.Answered}, {"nodata", s.NoData}, {"nxdomain", s.NXDomain}, {"refused", s.Refused},
			{"formerr", s.FormErr}, {"notimp", s.NotImp}} {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(kv.v), kv.k)
		}
		ch <- prometheus.MustNewConstMetric(trunc, prometheus.CounterValue, float64(s.Truncated))
	}})
}

// collectorFunc is a prometheus.Collector of fixed descriptions whose metrics a function
// makes at scrape time.
type collectorFunc struct {
	descs   []*prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

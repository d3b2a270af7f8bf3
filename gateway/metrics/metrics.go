// Package metrics holds the Prometheus collectors of one rollcall gateway: heartbeat
// polls and their round trips, the Modbus masters' transaction counters and time on
// the bus, sweep progress, catalog changes (registrations, deregistrations, status
// transitions, instances by status) and the MQTT publisher's counters.
//
// Each gateway run owns one *Metrics with its own prometheus.Registry; nothing is
// registered in the client library's global default registry. The hot path (one
// heartbeat poll) costs atomic additions only: the counters a device needs are
// resolved once, when it is registered (Master.Unit), not on every poll. Per-master
// and per-device values live in atomics and become series at scrape time, so a device
// costs a few dozen bytes here whether or not its series are shown (Options.PerUnit).
package metrics

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/protocols/mqtt"
	"github.com/rollcall-edge/rollcall/protocols/mqtt/embedded"
	"github.com/rollcall-edge/rollcall/registry"
)

// RoundTripBuckets returns the upper bounds (seconds) of the poll round-trip histogram:
// 1 ms to 500 ms, dense where RS-485 polls (about 2–20 ms) and LAN Modbus TCP polls
// fall.
func RoundTripBuckets() []float64 {
	return []float64{0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5}
}

// UtilisationWindow is the shortest window over which rollcall_master_utilisation_ratio
// is computed.
const UtilisationWindow = 10 * time.Second

// Options identifies the gateway in rollcall_gateway_info and rollcall_gateway_epoch,
// and decides which read-back records Adopted takes and which series are per unit.
type Options struct {
	Gateway string // gateway id
	Epoch   int64  // this run's gateway epoch
	Version string // build version
	// PerUnit says when series are exported per device (see PerUnit); the zero value
	// is PerUnitAuto.
	PerUnit PerUnit
}

// PerUnit says when /metrics shows series per device: rollcall_polls_total per unit,
// and every per-master series (round trips, busy time, utilisation, sweep progress,
// Modbus transaction counters) per network endpoint — a Modbus TCP endpoint or a
// checked module is usually one device. Without them, rollcall_polls_total has unit=""
// (the sum over a master's units), and the series of all network endpoints are summed
// under master="*" (AggregateMaster; no utilisation ratio there, as the sum of many
// masters' time is not a share of one); RTU buses keep their own series. Counting is
// the same either way: the choice is made at each scrape.
type PerUnit int

// PerUnit settings (config metrics.per_unit: auto, true, false).
const (
	// PerUnitAuto: per-unit series while the gateway polls at most PerUnitAutoMax
	// devices (units registered on its masters, counted at each scrape).
	PerUnitAuto PerUnit = iota
	// PerUnitOn: always per-unit series.
	PerUnitOn
	// PerUnitOff: never per-unit series.
	PerUnitOff
)

// PerUnitAutoMax is the most devices (units registered on the gateway's masters) for
// which PerUnitAuto shows per-unit series: 256 Modbus TCP devices make about 8000
// series (5 of rollcall_polls_total each, plus about 26 per endpoint: the round-trip
// histogram's 17, busy time, utilisation, sweep progress and transaction counters), a
// still comfortable scrape; a plant of 3000 would make about 90 000. Fewer than 256
// devices on RTU buses make far fewer (about 5 each, plus about 27 per bus).
const PerUnitAutoMax = 256

// AggregateMaster is the master label of the series that sum every network endpoint
// (Modbus TCP endpoints and checked modules) when per-unit series are off.
const AggregateMaster = "*"

// Metrics is the set of collectors of one gateway run. Its methods are safe for
// concurrent use. The zero value is not usable: call New.
type Metrics struct {
	opts Options
	reg  *prometheus.Registry

	registrations   prometheus.Counter
	deregistrations prometheus.Counter
	transitions     *prometheus.CounterVec // from, to
	instances       *prometheus.GaugeVec   // status
	unregistrable   *prometheus.CounterVec // master, reason
	busUp           *prometheus.GaugeVec   // master
	detections      prometheus.Counter
	overBudget      prometheus.Counter
	detectSeconds   prometheus.Histogram

	mu             sync.Mutex
	publishLatency prometheus.Histogram
	masters        map[string]*Master    // by name
	statuses       map[string]instStatus // by instance id: last status and revision seen in events

	devices atomic.Int64 // units of the open masters (Master.Unit), for PerUnitAuto
}

// instStatus is what the catalog tracker remembers of an instance (the registry keeps
// deregistered instances too, to continue their revisions; so does this map).
type instStatus struct {
	status   contract.Status
	revision int64
	live     bool
}

// New creates the collectors and a registry holding them, plus the Go runtime and
// process collectors.
func New(o Options) *Metrics {
	m := &Metrics{
		opts:     o,
		reg:      prometheus.NewRegistry(),
		masters:  map[string]*Master{},
		statuses: map[string]instStatus{},
		registrations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rollcall_registrations_total",
			Help: "Instances registered (new, or back after a deregistration).",
		}),
		deregistrations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rollcall_deregistrations_total",
			Help: "Instances deregistered (empty retained record published).",
		}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollcall_status_transitions_total",
			Help: "Status changes of live instances, by previous and new status (passing, warning, critical).",
		}, []string{"from", "to"}),
		instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rollcall_instances",
			Help: "Live instances of this gateway by status.",
		}, []string{"status"}),
		detections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rollcall_detections_total",
			Help: "Instances that went critical (a death detected).",
		}),
		overBudget: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rollcall_detections_over_budget_total",
			Help: "Deaths detected later than the instance's published detect_budget_ms: from its last answered poll to critical took longer than the budget, which bounds it.",
		}),
		detectSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "rollcall_detection_seconds",
			Help:    "From an instance's last answered poll to its critical status: an upper bound of each death's detection time.",
			Buckets: []float64{.05, .1, .2, .3, .5, .75, 1, 2, 5, 10, 30, 60},
		}),
		busUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rollcall_bus_up",
			Help: "1 while the configured RS-485 bus's serial port is open, 0 while it cannot be opened (missing device, another master holds it).",
		}, []string{"master"}),
		unregistrable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollcall_unregistrable_devices_total",
			Help: "Devices that answered the sweep but could not be registered, by master and reason " +
				"(exception, malformed, identification_loop, timeout, limit, other); counted once per unit and reason.",
		}, []string{"master", "reason"}),
	}
	statuses := []contract.Status{contract.Passing, contract.Warning, contract.Critical}
	for _, s := range statuses {
		m.instances.WithLabelValues(string(s)).Set(0)
		for _, to := range statuses {
			if to != s {
				m.transitions.WithLabelValues(string(s), string(to)) // series exist from the start, at 0
			}
		}
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "rollcall_gateway_info",
		Help:        "Always 1; labels name the gateway and its version.",
		ConstLabels: prometheus.Labels{"gateway": o.Gateway, "version": o.Version},
	})
	info.Set(1)
	epoch := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "rollcall_gateway_epoch",
		Help: "Gateway epoch of this run (+1 on every start).",
	})
	epoch.Set(float64(o.Epoch))
	m.publishLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "rollcall_mqtt_publish_latency_seconds",
		Help: "Time from a registry change to the broker's acknowledgement of its record (QoS 1 PUBACK); " +
			"a broker outage counts in full.",
		Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	})
	m.reg.MustRegister(m.publishLatency, m.registrations, m.deregistrations, m.transitions, m.instances, m.unregistrable, m.busUp,
		m.detections, m.overBudget, m.detectSeconds,
		info, epoch, masterCollector{m, newMasterDescs()},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// BusUp sets rollcall_bus_up of the configured bus name: whether its serial port is
// open.
func (m *Metrics) BusUp(name string, up bool) {
	v := 0.0
	if up {
		v = 1
	}
	m.busUp.WithLabelValues(name).Set(v)
}

// ForgetBus deletes rollcall_bus_up of the bus name: the bus was removed from the config
// (a reload), so it is neither up nor down; its master's other series went with it.
func (m *Metrics) ForgetBus(name string) {
	m.busUp.DeleteLabelValues(name)
}

// Devices is the number of devices (units registered on open masters) the gateway's
// metrics count now.
func (m *Metrics) Devices() int { return int(m.devices.Load()) }

// PerUnitSeries reports whether a scrape now shows per-unit series (Options.PerUnit).
func (m *Metrics) PerUnitSeries() bool {
	switch m.opts.PerUnit {
	case PerUnitOn:
		return true
	case PerUnitOff:
		return false
	}
	return m.Devices() <= PerUnitAutoMax
}

// PublishLatency records one acknowledged record publication (for
// mqtt.PublisherOptions.OnPublished): rollcall_mqtt_publish_latency_seconds.
func (m *Metrics) PublishLatency(d time.Duration) { m.publishLatency.Observe(d.Seconds()) }

// Registry is the registry holding every collector, for promhttp.HandlerFor.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Publisher registers the MQTT publisher's metrics, read at scrape time from stats
// ((*mqtt.Publisher).Stats) and connected ((*mqtt.Publisher).Connected):
// rollcall_mqtt_publications_total, rollcall_mqtt_publication_failures_total,
// rollcall_mqtt_rejected_records_total, rollcall_mqtt_overwritten_records_total,
// rollcall_mqtt_reconnects_total, rollcall_mqtt_pending_instances and
// rollcall_mqtt_connected. Call it once.
func (m *Metrics) Publisher(stats func() mqtt.PublisherStats, connected func() bool) {
	counter := func(name, help string, v func(mqtt.PublisherStats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(v(stats())) })
	}
	m.reg.MustRegister(
		counter("rollcall_mqtt_publications_total", "Publications acknowledged by the broker: records, empty records and gateway status.",
			func(s mqtt.PublisherStats) uint64 { return s.Published }),
		counter("rollcall_mqtt_publication_failures_total", "Publications that failed or timed out (each is retried).",
			func(s mqtt.PublisherStats) uint64 { return s.Failed }),
		counter("rollcall_mqtt_rejected_records_total", "Records refused before publication: invalid, too large, or another gateway's.",
			func(s mqtt.PublisherStats) uint64 { return s.Rejected }),
		counter("rollcall_mqtt_overwritten_records_total", "Messages on the gateway's own topics that it did not publish (forged, played back, or another writer's); each was overwritten with its own record.",
			func(s mqtt.PublisherStats) uint64 { return s.Overwritten }),
		counter("rollcall_mqtt_reconnects_total", "Connections to the broker after the first one.",
			func(s mqtt.PublisherStats) uint64 { return s.Reconnects }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rollcall_mqtt_pending_instances",
			Help: "Instance topics with a change the broker has not acknowledged yet.",
		}, func() float64 { return float64(stats().Pending) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rollcall_mqtt_connected",
			Help: "1 while the publisher holds an open connection to the broker, else 0.",
		}, func() float64 {
			if connected() {
				return 1
			}
			return 0
		}),
	)
}

// EventStream registers the metrics of the dashboard's event stream, read at scrape
// time: rollcall_http_event_clients (connected server-sent-event clients) and
// rollcall_http_event_resyncs_total (times a slow client lost events and was sent a
// fresh snapshot). Call it once.
func (m *Metrics) EventStream(clients func() int, resyncs func() uint64) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rollcall_http_event_clients",
			Help: "Clients connected to /v1/events.",
		}, func() float64 { return float64(clients()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "rollcall_http_event_resyncs_total",
			Help: "Times a slow /v1/events client lost events (oldest dropped) and was resynchronised from a snapshot.",
		}, func() float64 { return float64(resyncs()) }),
	)
}

// EmbeddedBroker registers the embedded broker's metrics, read at scrape time from stats
// ((*embedded.Broker).Stats): rollcall_broker_clients, rollcall_broker_retained_messages
// and rollcall_broker_retained_bytes (of the accounts the quotas count, all but the
// gateway's own), and rollcall_broker_refused_total (connections, publications,
// subscriptions and wills refused, retained messages dropped over a quota). Call it
// once, and only with the embedded broker.
func (m *Metrics) EmbeddedBroker(stats func() embedded.Stats) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "rollcall_broker_clients",
			Help: "Clients connected to the embedded broker."}, func() float64 { return float64(stats().Clients) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "rollcall_broker_retained_messages",
			Help: "Retained messages the embedded broker's quotas count (every account but the gateway's own)."},
			func() float64 { return float64(stats().Retained) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "rollcall_broker_retained_bytes",
			Help: "Bytes (topic + payload) of those retained messages."}, func() float64 { return float64(stats().RetainedBytes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "rollcall_broker_refused_total",
			Help: "Connections, publications, subscriptions and wills the embedded broker refused, and retained messages it dropped over a quota."},
			func() float64 { return float64(stats().Refused) }),
	)
}

// Event counts one registry change event: call it from the registry's Sink. An Upsert
// of an instance not live before counts as a registration, one whose status differs
// from the last one seen as a transition; a Deregister as a deregistration. Events
// older (by revision) than one already seen for the instance are ignored, so events
// delivered out of order by concurrent callers cannot corrupt the counts.
func (m *Metrics) Event(ev registry.Event) {
	rec := ev.Record
	m.mu.Lock()
	defer m.mu.Unlock()
	prev, known := m.statuses[rec.ID]
	switch ev.Kind {
	case registry.Upsert:
		if known && (rec.Revision < prev.revision || (!prev.live && rec.Revision <= prev.revision)) {
			return // stale: older than what was counted (or than the deregistration)
		}
		m.statuses[rec.ID] = instStatus{status: rec.Status, revision: rec.Revision, live: true}
		switch {
		case !prev.live:
			m.registrations.Inc()
			m.instances.WithLabelValues(string(rec.Status)).Inc()
		case prev.status != rec.Status:
			m.transitions.WithLabelValues(string(prev.status), string(rec.Status)).Inc()
			if rec.Status == contract.Critical && !rec.LastSeen.IsZero() {
				m.detected(rec)
			}
			m.instances.WithLabelValues(string(prev.status)).Dec()
			m.instances.WithLabelValues(string(rec.Status)).Inc()
		}
	case registry.Deregister:
		if !prev.live || rec.Revision < prev.revision {
			return
		}
		m.statuses[rec.ID] = instStatus{status: prev.status, revision: rec.Revision} // kept: later stale upserts are ignored
		m.deregistrations.Inc()
		m.instances.WithLabelValues(string(prev.status)).Dec()
	}
}

// detected counts a death detected in rec (a transition to critical): the time from
// its last answered poll to its critical status bounds the detection time from above
// (the device died after it last answered), so a value over detect_budget_ms proves the
// budget broken.
func (m *Metrics) detected(rec contract.Record) {
	d := rec.StatusSince.Sub(rec.LastSeen.Time)
	m.detections.Inc()
	m.detectSeconds.Observe(d.Seconds())
	if b := rec.Check.DetectBudgetMS; b > 0 && d > time.Duration(b)*time.Millisecond {
		m.overBudget.Inc()
	}
}

// Adopted tells the catalog tracker about records read back from the gateway's subtree
// and adopted by registry.Reconcile (its first result): they count as live instances,
// not as registrations, and their later status changes count from their read-back
// status.
func (m *Metrics) Adopted(recs []contract.Record) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, rec := range recs {
		if prev, known := m.statuses[rec.ID]; known && prev.live {
			continue
		}
		// Revision 0: every event of this epoch is newer.
		m.statuses[rec.ID] = instStatus{status: rec.Status, live: true}
		m.instances.WithLabelValues(string(rec.Status)).Inc()
	}
}

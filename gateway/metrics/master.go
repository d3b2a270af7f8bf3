package metrics

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rollcall-edge/rollcall/protocols/modbus"
	"github.com/rollcall-edge/rollcall/registry"
)

// Master is the instrumentation of one master: a serial bus, a Modbus TCP endpoint, or
// the checker of one non-Modbus module. Its methods are cheap (atomic operations) and
// safe for concurrent use; a nil *Master does nothing.
type Master struct {
	m    *Metrics
	name string
	refs int // guarded by m.mu: masters of the same name share one Master

	busyNs  atomic.Int64  // time in transactions (polls and probes)
	probed  atomic.Int64  // units probed in the current sweep cycle
	absent  atomic.Int64  // units the sweep probes (not registered)
	cycles  atomic.Uint64 // completed sweep cycles
	sweeps  atomic.Bool   // the master sweeps (Probe or Sweep was called)
	client  atomic.Value  // clientBox: where the Modbus transaction counters come from
	started time.Time
	rtt     prometheus.Observer

	utilMu   sync.Mutex
	winStart time.Time // start of the current utilisation window
	winBusy  int64     // busyNs at winStart
	ratio    float64   // utilisation over the last complete window
	full     bool      // a window completed
}

// clientBox holds a Modbus client; atomic.Value needs one concrete type.
type clientBox struct{ c modbus.Client }

// Master returns the instrumentation of the master named name (the bus name, or
// host:port of a TCP endpoint or checked module), registering it. Call Close when
// the master stops: its series are then removed. Two masters of the same name at once
// share one Master (its series are removed when both closed).
func (m *Metrics) Master(name string) *Master {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if mm := m.masters[name]; mm != nil {
		mm.refs++
		return mm
	}
	now := time.Now()
	mm := &Master{m: m, name: name, refs: 1, started: now, winStart: now,
		rtt: m.roundTrip.WithLabelValues(name)}
	m.masters[name] = mm
	return mm
}

// Close ends the master's instrumentation: its series (polls, round trips, transaction
// counters, sweep progress, utilisation) disappear from /metrics.
func (mm *Master) Close() {
	if mm == nil {
		return
	}
	m := mm.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if mm.refs--; mm.refs > 0 || m.masters[mm.name] != mm {
		return
	}
	delete(m.masters, mm.name)
	m.polls.DeletePartialMatch(prometheus.Labels{"master": mm.name})
	m.unregistrable.DeletePartialMatch(prometheus.Labels{"master": mm.name})
	m.roundTrip.DeleteLabelValues(mm.name)
}

// SetClient names the Modbus client whose transaction counters (Client.Counters) are
// exported for this master: rollcall_modbus_requests_total, _timeouts_total,
// _crc_errors_total (RTU only), _bad_frames_total, _exceptions_total.
func (mm *Master) SetClient(c modbus.Client) {
	if mm == nil {
		return
	}
	mm.client.Store(clientBox{c})
}

// Probe records one sweep probe that kept the master busy for d (identification and,
// for a device found, its registration); cycleDone says the probe ended a sweep cycle.
func (mm *Master) Probe(d time.Duration, cycleDone bool) {
	if mm == nil {
		return
	}
	mm.busyNs.Add(int64(d))
	if cycleDone {
		mm.cycles.Add(1)
	}
}

// Unregistrable counts a unit that answered the sweep but could not be registered, for
// reason (rollcall_unregistrable_devices_total); the caller counts each unit and reason
// once.
func (mm *Master) Unregistrable(reason string) {
	if mm == nil {
		return
	}
	mm.m.unregistrable.WithLabelValues(mm.name, reason).Inc()
}

// Sweep sets the sweep progress: probed units of the current cycle, and the number of
// absent units the sweep goes through.
func (mm *Master) Sweep(probed, absent int) {
	if mm == nil {
		return
	}
	mm.sweeps.Store(true)
	mm.probed.Store(int64(probed))
	mm.absent.Store(int64(absent))
}

// Unit returns the instrumentation of one device of the master; unit is its label
// value (the Modbus unit ID, or "" for a module checked over TCP or HTTP). Resolve it
// once, when the device is registered, and keep it for its polls.
func (mm *Master) Unit(unit string) *Unit {
	if mm == nil {
		return nil
	}
	u := &Unit{master: mm}
	for o := registry.OutcomeOK; o < registry.NumOutcomes; o++ {
		u.polls[o] = mm.m.polls.WithLabelValues(mm.name, unit, o.String())
	}
	return u
}

// Unit is the instrumentation of one polled device. A nil *Unit does nothing.
type Unit struct {
	master *Master
	polls  [registry.NumOutcomes]prometheus.Counter // by outcome; OutcomeUnknown unused
}

// Poll records one heartbeat poll: its outcome (rollcall_polls_total, label
// o.Class().String(): the outcome its producer classified, see registry.Outcome), its
// round trip when answered (rollcall_poll_round_trip_seconds) and its time on the
// master (o.RTT, for utilisation). It does not allocate.
func (u *Unit) Poll(o registry.Observation) {
	if u == nil {
		return
	}
	u.polls[o.Class()].Inc()
	if o.Answered {
		u.master.rtt.Observe(o.RTT.Seconds())
	}
	u.master.busyNs.Add(int64(o.RTT))
}

// utilisation returns the share of time in transactions over the last window of at
// least UtilisationWindow (before the first one completes: since the master started).
func (mm *Master) utilisation(now time.Time) float64 {
	mm.utilMu.Lock()
	defer mm.utilMu.Unlock()
	busy := mm.busyNs.Load()
	elapsed := now.Sub(mm.winStart)
	if elapsed >= UtilisationWindow {
		mm.ratio = min(1, float64(busy-mm.winBusy)/float64(elapsed))
		mm.full = true
		mm.winStart, mm.winBusy = now, busy
	}
	if !mm.full {
		if elapsed <= 0 {
			return 0
		}
		return min(1, float64(busy-mm.winBusy)/float64(elapsed))
	}
	return mm.ratio
}

// masterDescs describe the per-master series exported by masterCollector.
type masterDescs struct {
	busy, util, probed, absent, cycles, requests, timeouts, crc, badFrames, exceptions *prometheus.Desc
}

func newMasterDescs() masterDescs {
	l := []string{"master"}
	return masterDescs{
		busy: prometheus.NewDesc("rollcall_master_busy_seconds_total",
			"Time the master spent in transactions (heartbeat polls and sweep probes); its rate is the bus utilisation.", l, nil),
		util: prometheus.NewDesc("rollcall_master_utilisation_ratio",
			"Share of time the master spent in transactions over the last window of at least 10 s (0–1).", l, nil),
		probed: prometheus.NewDesc("rollcall_sweep_probed_units",
			"Absent units probed in the current sweep cycle.", l, nil),
		absent: prometheus.NewDesc("rollcall_sweep_absent_units",
			"Units the sweep probes because no device is registered there.", l, nil),
		cycles: prometheus.NewDesc("rollcall_sweep_cycles_total",
			"Completed sweep cycles over the absent units.", l, nil),
		requests: prometheus.NewDesc("rollcall_modbus_requests_total",
			"Modbus requests sent by the master (polls, probes and identification).", l, nil),
		timeouts: prometheus.NewDesc("rollcall_modbus_timeouts_total",
			"Modbus requests without a reply within the timeout (sweep probes of absent units included).", l, nil),
		crc: prometheus.NewDesc("rollcall_modbus_crc_errors_total",
			"Modbus RTU replies with a bad CRC (buses only).", l, nil),
		badFrames: prometheus.NewDesc("rollcall_modbus_bad_frames_total",
			"Modbus replies that were short, malformed or from another unit.", l, nil),
		exceptions: prometheus.NewDesc("rollcall_modbus_exceptions_total",
			"Modbus exception replies.", l, nil),
	}
}

// masterCollector exports the per-master values kept in atomics, read at scrape time.
type masterCollector struct {
	m *Metrics
	d masterDescs
}

// Describe implements prometheus.Collector.
func (c masterCollector) Describe(ch chan<- *prometheus.Desc) {
	d := c.d
	for _, x := range []*prometheus.Desc{d.busy, d.util, d.probed, d.absent, d.cycles,
		d.requests, d.timeouts, d.crc, d.badFrames, d.exceptions} {
		ch <- x
	}
}

// Collect implements prometheus.Collector.
func (c masterCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	masters := make([]*Master, 0, len(c.m.masters))
	for _, mm := range c.m.masters {
		masters = append(masters, mm)
	}
	c.m.mu.Unlock()
	d, now := c.d, time.Now()
	emit := func(desc *prometheus.Desc, t prometheus.ValueType, v float64, master string) {
		ch <- prometheus.MustNewConstMetric(desc, t, v, master)
	}
	for _, mm := range masters {
		n := mm.name
		emit(d.busy, prometheus.CounterValue, float64(mm.busyNs.Load())/1e9, n)
		emit(d.util, prometheus.GaugeValue, mm.utilisation(now), n)
		if mm.sweeps.Load() {
			emit(d.probed, prometheus.GaugeValue, float64(mm.probed.Load()), n)
			emit(d.absent, prometheus.GaugeValue, float64(mm.absent.Load()), n)
			emit(d.cycles, prometheus.CounterValue, float64(mm.cycles.Load()), n)
		}
		if b, _ := mm.client.Load().(clientBox); b.c != nil {
			s := b.c.Counters()
			emit(d.requests, prometheus.CounterValue, float64(s.Requests), n)
			emit(d.timeouts, prometheus.CounterValue, float64(s.Timeouts), n)
			if s.Serial { // Modbus TCP has no CRC
				emit(d.crc, prometheus.CounterValue, float64(s.CRCErrors), n)
			}
			emit(d.badFrames, prometheus.CounterValue, float64(s.BadFrames), n)
			emit(d.exceptions, prometheus.CounterValue, float64(s.Exceptions), n)
		}
	}
}

package metrics

import (
	"math"
	"slices"
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
//
// Everything a master and its devices count is kept in atomics of a few hundred bytes
// per master and a few dozen per device, and turned into series only when /metrics is
// scraped (masterCollector): no Prometheus child collector is held per device. Which
// series a scrape shows is decided then too (Options.PerUnit).
type Master struct {
	m    *Metrics
	name string
	bus  bool // an RTU bus: its series stay per master with per-unit series off
	refs int  // guarded by m.mu: masters of the same name share one Master

	busyNs  atomic.Int64  // time in transactions (polls, probes and routed requests)
	routed  atomic.Int64  // time in routed requests (the Modbus TCP server's), ns
	probed  atomic.Int64  // units probed in the current sweep cycle
	absent  atomic.Int64  // units the sweep probes (not registered)
	cycles  atomic.Uint64 // completed sweep cycles
	sweeps  atomic.Bool   // the master sweeps (Probe or Sweep was called)
	client  atomic.Value  // clientBox: where the Modbus transaction counters come from
	started time.Time
	rtt     rttHistogram // round trips of answered polls

	unitsMu sync.Mutex
	units   []*Unit // one per unit label; a device registered again continues its counters

	utilMu   sync.Mutex
	winStart time.Time // start of the current utilisation window
	winBusy  int64     // busyNs at winStart
	ratio    float64   // utilisation over the last complete window
	full     bool      // a window completed
}

// clientBox holds a Modbus client; atomic.Value needs one concrete type.
type clientBox struct{ c modbus.Client }

// Master returns the instrumentation of the network master named name (host:port of
// a Modbus TCP endpoint or of a checked module), registering it. Call Close when the
// master stops: its series are then removed. Two masters of the same name at once
// share one Master (its series are removed when both closed). With per-unit series off
// (Options.PerUnit), the series of all network masters are summed under
// master="*" (AggregateMaster).
func (m *Metrics) Master(name string) *Master { return m.master(name, false) }

// Bus is Master for an RTU bus (name: the bus name): with per-unit series off its
// series stay per bus, only the unit label of rollcall_polls_total is dropped (the
// sum over its units, unit=""). A gateway has few buses and each is a shared medium
// whose utilisation matters on its own.
func (m *Metrics) Bus(name string) *Master { return m.master(name, true) }

func (m *Metrics) master(name string, bus bool) *Master {
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
	mm := &Master{m: m, name: name, bus: bus, refs: 1, started: now, winStart: now}
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
	mm.unitsMu.Lock()
	m.devices.Add(-int64(len(mm.units)))
	mm.unitsMu.Unlock()
	m.unregistrable.DeletePartialMatch(prometheus.Labels{"master": mm.name})
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

// Relayed records one routed request (the Modbus TCP server's) that kept the master
// busy for d: it counts in rollcall_master_busy_seconds_total and the utilisation.
func (mm *Master) Relayed(d time.Duration) {
	if mm == nil {
		return
	}
	mm.busyNs.Add(int64(d))
	mm.routed.Add(int64(d))
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
// once, when the device is registered, and keep it for its polls. The same unit of the
// same master gets the same *Unit (its counters continue when the device comes back).
func (mm *Master) Unit(unit string) *Unit {
	if mm == nil {
		return nil
	}
	mm.unitsMu.Lock()
	defer mm.unitsMu.Unlock()
	for _, u := range mm.units { // a few units per master: a map would cost more
		if u.label == unit {
			return u
		}
	}
	u := &Unit{master: mm, label: unit}
	mm.units = append(mm.units, u)
	mm.m.devices.Add(1)
	return u
}

// Unit is the instrumentation of one polled device. A nil *Unit does nothing.
type Unit struct {
	master  *Master
	label   string
	polls   [registry.NumOutcomes]atomic.Uint64 // by outcome; OutcomeUnknown unused
	link    atomic.Uint64                       // math.Float64bits(link quality + 1); 0: not measured
	retries atomic.Uint64                       // garbled replies retried at once
}

// Poll records one heartbeat poll: its outcome (rollcall_polls_total, label
// o.Class().String(): the outcome its producer classified, see registry.Outcome), its
// round trip when answered (rollcall_poll_round_trip_seconds) and its time on the
// master (o.RTT, for utilisation). It does not allocate.
func (u *Unit) Poll(o registry.Observation) {
	if u == nil {
		return
	}
	u.polls[o.Class()].Add(1)
	if o.Answered {
		u.master.rtt.observe(o.RTT)
	}
	u.master.busyNs.Add(int64(o.RTT))
	if o.LinkMeasured {
		u.link.Store(math.Float64bits(o.LinkQuality + 1))
	}
}

// Retry records a garbled reply retried at once within its poll slot
// (rollcall_link_retries_total). It does not allocate.
func (u *Unit) Retry() {
	if u == nil {
		return
	}
	u.retries.Add(1)
}

// linkQuality is the unit's latest link quality (0–1); ok is false when none was
// measured (Modbus TCP, checks).
func (u *Unit) linkQuality() (q float64, ok bool) {
	b := u.link.Load()
	return math.Float64frombits(b) - 1, b != 0
}

// numRTTBuckets is len(RoundTripBuckets()).
const numRTTBuckets = 14

// rttBucket is the index of the RoundTripBuckets bucket of a round trip of ns
// nanoseconds (upper bounds inclusive), numRTTBuckets for +Inf.
func rttBucket(ns int64) int {
	bounds := [numRTTBuckets]int64{1e6, 2e6, 3e6, 5e6, 7.5e6, 10e6, 15e6, 20e6, 30e6, 50e6, 75e6, 100e6, 200e6, 500e6}
	i := 0
	for i < numRTTBuckets && ns > bounds[i] {
		i++
	}
	return i
}

// rttHistogram is a histogram of round trips over RoundTripBuckets in atomics:
// observe is lock-free; a scrape may see a poll in flight counted in one field and not
// yet in another.
type rttHistogram struct {
	counts [numRTTBuckets + 1]atomic.Uint64 // per bucket (not cumulative); the last is +Inf
	sumNs  atomic.Int64
}

func (h *rttHistogram) observe(d time.Duration) {
	ns := int64(d)
	h.counts[rttBucket(ns)].Add(1)
	h.sumNs.Add(ns)
}

// rttSnapshot is an rttHistogram read at scrape time; add merges another into it.
type rttSnapshot struct {
	counts [numRTTBuckets + 1]uint64
	sumNs  int64
}

func (h *rttHistogram) snapshot() (s rttSnapshot) {
	for i := range h.counts {
		s.counts[i] = h.counts[i].Load()
	}
	s.sumNs = h.sumNs.Load()
	return s
}

func (s *rttSnapshot) add(o rttSnapshot) {
	for i := range s.counts {
		s.counts[i] += o.counts[i]
	}
	s.sumNs += o.sumNs
}

// metric is the snapshot as a constant Prometheus histogram of desc with label values lv.
func (s *rttSnapshot) metric(desc *prometheus.Desc, lv ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, numRTTBuckets)
	var cum uint64
	for i, ub := range RoundTripBuckets() {
		cum += s.counts[i]
		buckets[ub] = cum
	}
	count := cum + s.counts[numRTTBuckets]
	return prometheus.MustNewConstHistogram(desc, count, float64(s.sumNs)/1e9, buckets, lv...)
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
	polls, roundTrip, linkQuality, linkRetries, routed                                 *prometheus.Desc
	busy, util, probed, absent, cycles, requests, timeouts, crc, badFrames, exceptions *prometheus.Desc
}

func newMasterDescs() masterDescs {
	l := []string{"master"}
	return masterDescs{
		polls: prometheus.NewDesc("rollcall_polls_total",
			"Heartbeat polls by master (RTU bus name or Modbus TCP host:port; \"*\": every network endpoint together), "+
				"unit (\"\": every unit of the master together) and outcome "+
				"(ok, exception, timeout, bad_frame: CRC error, short, malformed or wrong-unit reply, other).",
			[]string{"master", "unit", "outcome"}, nil),
		roundTrip: prometheus.NewDesc("rollcall_poll_round_trip_seconds",
			"Round trip of answered heartbeat polls (request sent to reply parsed), by master.", l, nil),
		linkQuality: prometheus.NewDesc("rollcall_link_quality_ratio",
			"Share of a device's latest 64 replies that arrived intact (0–1), by RTU bus and unit; below 0.97 the instance is warning "+
				"(check.link_quality of its record).", []string{"master", "unit"}, nil),
		linkRetries: prometheus.NewDesc("rollcall_link_retries_total",
			"Garbled replies (bad CRC, wrong length, another unit) retried at once within their poll slot, by RTU bus.", l, nil),
		busy: prometheus.NewDesc("rollcall_master_busy_seconds_total",
			"Time the master spent in transactions (heartbeat polls, sweep probes and routed requests); its rate is the bus utilisation.", l, nil),
		routed: prometheus.NewDesc("rollcall_master_routed_seconds_total",
			"Time an RTU bus spent in requests routed to it by the Modbus TCP server; its rate is their share of the bus "+
				"(at most modbus_server.bus_share over time).", l, nil),
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

// masterCollector exports the per-master and per-unit values kept in atomics, read at
// scrape time.
type masterCollector struct {
	m *Metrics
	d masterDescs
}

// Describe implements prometheus.Collector.
func (c masterCollector) Describe(ch chan<- *prometheus.Desc) {
	d := c.d
	for _, x := range []*prometheus.Desc{d.polls, d.roundTrip, d.linkQuality, d.linkRetries, d.routed, d.busy, d.util, d.probed, d.absent, d.cycles,
		d.requests, d.timeouts, d.crc, d.badFrames, d.exceptions} {
		ch <- x
	}
}

// masterSums is what a scrape reads from one master, or sums over several.
type masterSums struct {
	polls               [registry.NumOutcomes]uint64
	rtt                 rttSnapshot
	busyNs              int64
	sweeps              bool
	probed, absent      int64
	cycles              uint64
	hasClient, serial   bool
	requests, crcErrors uint64
	timeouts, badFrames uint64
	exceptions          uint64
}

func (s *masterSums) add(o *masterSums) {
	for i := range s.polls {
		s.polls[i] += o.polls[i]
	}
	s.rtt.add(o.rtt)
	s.busyNs += o.busyNs
	if o.sweeps {
		s.sweeps = true
		s.probed += o.probed
		s.absent += o.absent
		s.cycles += o.cycles
	}
	if o.hasClient {
		s.hasClient = true
		s.serial = s.serial || o.serial
		s.requests += o.requests
		s.timeouts += o.timeouts
		s.crcErrors += o.crcErrors
		s.badFrames += o.badFrames
		s.exceptions += o.exceptions
	}
}

// read takes the master's values (polls summed over its units).
func (mm *Master) read() *masterSums {
	s := &masterSums{rtt: mm.rtt.snapshot(), busyNs: mm.busyNs.Load(), sweeps: mm.sweeps.Load()}
	mm.unitsMu.Lock()
	for _, u := range mm.units {
		for o := range s.polls {
			s.polls[o] += u.polls[o].Load()
		}
	}
	mm.unitsMu.Unlock()
	if s.sweeps {
		s.probed, s.absent, s.cycles = mm.probed.Load(), mm.absent.Load(), mm.cycles.Load()
	}
	if b, _ := mm.client.Load().(clientBox); b.c != nil {
		k := b.c.Counters()
		s.hasClient, s.serial = true, k.Serial
		s.requests, s.timeouts, s.crcErrors, s.badFrames, s.exceptions = k.Requests, k.Timeouts, k.CRCErrors, k.BadFrames, k.Exceptions
	}
	return s
}

// Collect implements prometheus.Collector.
func (c masterCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	masters := make([]*Master, 0, len(c.m.masters))
	for _, mm := range c.m.masters {
		masters = append(masters, mm)
	}
	c.m.mu.Unlock()
	perUnit := c.m.PerUnitSeries()
	now := time.Now()
	var agg masterSums
	aggregated := false
	for _, mm := range masters {
		if !perUnit && !mm.bus {
			agg.add(mm.read())
			aggregated = true
			continue
		}
		s := mm.read()
		if perUnit {
			c.unitPolls(ch, mm)
		} else {
			c.polls(ch, mm.name, "", &s.polls)
		}
		c.master(ch, mm.name, s, mm.utilisation(now))
		if mm.bus {
			c.link(ch, mm)
		}
	}
	if aggregated {
		c.polls(ch, AggregateMaster, "", &agg.polls)
		c.master(ch, AggregateMaster, &agg, -1)
	}
}

// unitPolls emits rollcall_polls_total of every unit of mm.
func (c masterCollector) unitPolls(ch chan<- prometheus.Metric, mm *Master) {
	mm.unitsMu.Lock()
	units := slices.Clone(mm.units)
	mm.unitsMu.Unlock()
	for _, u := range units {
		var p [registry.NumOutcomes]uint64
		for o := range p {
			p[o] = u.polls[o].Load()
		}
		c.polls(ch, mm.name, u.label, &p)
	}
}

// link emits the link series of the RTU bus mm: the link quality of every unit that
// measured one, and the retries summed over its units. A bus has at most 247 units, so
// these stay per unit whatever Options.PerUnit says.
func (c masterCollector) link(ch chan<- prometheus.Metric, mm *Master) {
	mm.unitsMu.Lock()
	units := slices.Clone(mm.units)
	mm.unitsMu.Unlock()
	var retries uint64
	for _, u := range units {
		retries += u.retries.Load()
		if q, ok := u.linkQuality(); ok {
			ch <- prometheus.MustNewConstMetric(c.d.linkQuality, prometheus.GaugeValue, q, mm.name, u.label)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.d.linkRetries, prometheus.CounterValue, float64(retries), mm.name)
	ch <- prometheus.MustNewConstMetric(c.d.routed, prometheus.CounterValue, time.Duration(mm.routed.Load()).Seconds(), mm.name)
}

// polls emits rollcall_polls_total of one master and unit label, one series per outcome.
func (c masterCollector) polls(ch chan<- prometheus.Metric, master, unit string, p *[registry.NumOutcomes]uint64) {
	for o := registry.OutcomeOK; o < registry.NumOutcomes; o++ {
		ch <- prometheus.MustNewConstMetric(c.d.polls, prometheus.CounterValue, float64(p[o]), master, unit, o.String())
	}
}

// master emits the per-master series of s under the label master; util < 0 leaves
// out the utilisation (of the sum of many masters, which is not a share of one).
func (c masterCollector) master(ch chan<- prometheus.Metric, master string, s *masterSums, util float64) {
	d := c.d
	emit := func(desc *prometheus.Desc, t prometheus.ValueType, v float64) {
		ch <- prometheus.MustNewConstMetric(desc, t, v, master)
	}
	ch <- s.rtt.metric(d.roundTrip, master)
	emit(d.busy, prometheus.CounterValue, float64(s.busyNs)/1e9)
	if util >= 0 {
		emit(d.util, prometheus.GaugeValue, util)
	}
	if s.sweeps {
		emit(d.probed, prometheus.GaugeValue, float64(s.probed))
		emit(d.absent, prometheus.GaugeValue, float64(s.absent))
		emit(d.cycles, prometheus.CounterValue, float64(s.cycles))
	}
	if s.hasClient {
		emit(d.requests, prometheus.CounterValue, float64(s.requests))
		emit(d.timeouts, prometheus.CounterValue, float64(s.timeouts))
		if s.serial { // Modbus TCP has no CRC
			emit(d.crc, prometheus.CounterValue, float64(s.crcErrors))
		}
		emit(d.badFrames, prometheus.CounterValue, float64(s.badFrames))
		emit(d.exceptions, prometheus.CounterValue, float64(s.exceptions))
	}
}

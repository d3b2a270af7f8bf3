package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/devices"
	"github.com/rollcall-edge/rollcall/gateway/metrics"
	"github.com/rollcall-edge/rollcall/protocols/modbus"
	"github.com/rollcall-edge/rollcall/registry"
)

// masterConfig describes one Modbus master: an RS-485 bus, or one Modbus TCP endpoint
// (one connection shared by its unit IDs).
type masterConfig struct {
	Name         string        // bus name, or host:port, for logs
	Owner        string        // registry owner key: "rtu:<bus>", "tcp:<host:port>"
	IDScope      string        // <bus or host> in fallback instance ids
	Units        []int         // unit IDs to sweep, ascending
	PollInterval time.Duration // heartbeat period per device
	Timeout      time.Duration // reply timeout per request
	// ProbeShare is the largest share of the master's time given to probing absent units
	// while devices are known (0 < share ≤ 1).
	ProbeShare float64
	// CyclePause is waited after each full sweep of the absent units (0 on a bus, where
	// a probe of an absent unit already costs a timeout; > 0 on TCP, where a dead
	// endpoint fails at once).
	CyclePause time.Duration
	Endpoint   func(unit int) contract.Endpoint
	Open       func() (modbus.Client, error)
	// Baud is the serial line speed (RTU); 0 on TCP. On RTU it makes probes adaptive:
	// a probe of an absent unit waits for the first reply byte wire(request) + t3.5 +
	// the longest recent turnaround of the bus's devices (at least Turnaround) + one
	// character + margin, not the full Timeout (Modbus over Serial Line V1.02 §2.5.1.1
	// for t3.5) — every other sweep cycle, the other ones wait Timeout (thorough); and
	// a garbled poll reply is retried at once (linkStats).
	Baud int
	// Turnaround is the device turnaround assumed before one is observed (RTU).
	Turnaround time.Duration
	// Adaptive makes the reply timeout of each poll adaptive (RTU): the device's estimated
	// recent turnaround plus wire times and margin (firstByteTimeout), at most Timeout.
	Adaptive bool
	// RelayShare > 0 makes the master take routed requests (the Modbus TCP server's,
	// gateway/router): on RTU it queues them and runs them when no heartbeat poll is
	// due, within this share of its time (0 < share ≤ 1); on TCP they go straight to
	// its connection, one at a time. Either way the detect budget counts one routed
	// request in flight (relayCost). 0: no routed requests.
	RelayShare float64
}

// hints are what discovery knows about a master's devices beyond the wire: how it was
// found and meta from config and mDNS TXT. They can change while the master runs.
type hints struct {
	DiscoveredBy []string
	Meta         map[string]string         // for every unit
	UnitMeta     map[int]map[string]string // per unit, overrides Meta
}

// master is the single master of one bus or TCP endpoint. One goroutine (run) owns all
// its state: health polls of known devices come first, each on its own interval; probes
// of absent unit IDs (the sweep that finds new and returning devices) use the idle time,
// limited to ProbeShare of the master's time while devices are known.
type master struct {
	cfg      masterConfig
	gateway  string
	profiles *devices.Profiles
	reg      *registry.Registry
	policy   registry.Policy
	metrics  *metrics.Metrics
	log      *slog.Logger

	hints   atomic.Pointer[hints]
	applied *hints       // the hints the registered devices were last updated with
	live    atomic.Int32 // number of registered devices, readable from other goroutines

	failCost  time.Duration   // master time of one failed poll at most: timeout + resync, twice on RTU (a garbled reply is retried)
	known     map[int]*device // registered units
	unreg     map[int]string  // units that answer but cannot be registered → reason (reported once)
	absent    []int           // units to probe, ascending
	sweepPos  int             // index into absent of the next probe
	nextProbe time.Time       // earliest start of the next probe
	thorough  bool            // this sweep cycle's probes wait the full Timeout (RTU, alternate cycles)
	failedTx  bool            // the last poll or probe failed (timeout, garbled): a late reply, or the rest of one, may garble the next (RTU)
	hostLate  turnarounds     // how late the master's own timed waits returned, latest transactions (RTU)
	stats     *metrics.Master // set by run

	relayQ      chan *relayReq                // routed requests waiting to be taken (RTU; maxRelayQueue)
	relayKick   chan struct{}                 // 1-buffered: a routed request was queued (RTU)
	relaySem    chan struct{}                 // 1 routed request at a time (TCP)
	relays      []*relayReq                   // routed requests taken from relayQ, oldest first (RTU; run's)
	nextRelay   time.Time                     // earliest start of the next routed request (RTU: relayBudget)
	relayBudget busBudget                     // bus time routed requests may still take (RTU: RelayShare, relayBurst)
	relayCost   time.Duration                 // longest a routed request holds the master (set by begin)
	client      atomic.Pointer[modbus.Client] // the open client, for routed requests on TCP; nil when closed
	openErr     atomic.Pointer[string]        // why the port or endpoint cannot be opened now; nil when open or not tried
	dir         *masterDir                    // where routed requests find the master by owner; nil: none
}

// device is a registered unit.
type device struct {
	unit     int
	id       string
	profile  *devices.Profile
	hasDevID bool
	next     time.Time // when its next regular poll is due
	failures int       // consecutive failed polls
	retry    bool      // retry at once, before regular polls (a suspect device)
	stats    *metrics.Unit
	reqLen   int            // bytes of its poll request (RTU), from the last trace
	ta       turnarounds    // its latest observed turnarounds (RTU)
	link     linkStats      // its latest replies, intact or garbled (RTU)
	state    map[string]any // the State of its latest answered poll, reused while unchanged (devices.Poll)
}

// dueAt is when d should be polled: now for a suspect device (retries go first, so a
// dead device reaches critical in failures_before_critical back-to-back polls), else its
// regular slot.
func (d *device) dueAt() time.Time {
	if d.retry {
		return time.Time{}
	}
	return d.next
}

func newMaster(cfg masterConfig, h hints, gatewayID string, profiles *devices.Profiles, reg *registry.Registry,
	mx *metrics.Metrics, log *slog.Logger) *master {
	m := &master{
		cfg: cfg, gateway: gatewayID, profiles: profiles, reg: reg, policy: reg.Policy(), metrics: mx,
		log:    log,
		known:  map[int]*device{},
		unreg:  map[int]string{},
		absent: slices.Clone(cfg.Units),
	}
	switch {
	case cfg.RelayShare > 0 && cfg.Baud > 0:
		m.relayQ, m.relayKick = make(chan *relayReq, maxRelayQueue), make(chan struct{}, 1)
	case cfg.RelayShare > 0:
		m.relaySem = make(chan struct{}, 1)
	}
	m.hints.Store(&h)
	return m
}

// setHints replaces the discovery hints; used at the next registration.
func (m *master) setHints(h hints) { m.hints.Store(&h) }

// liveDevices is the number of devices the master has registered now.
func (m *master) liveDevices() int { return int(m.live.Load()) }

// run opens the port or endpoint (retrying with capped backoff while it is missing, e.g.
// a USB adapter not yet plugged in) and schedules polls and probes until ctx ends: the
// master's own goroutine (RTU buses). Modbus TCP masters are run by a sharedPoller,
// which calls begin, step and end the same way.
func (m *master) run(ctx context.Context) error {
	client, err := m.begin(ctx)
	if err != nil {
		return nil // ctx ended while waiting for the port
	}
	defer m.end(client)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for ctx.Err() == nil {
		if d := time.Until(m.step(ctx, client)); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
			case <-timer.C:
			case <-m.relayKick:
			}
		}
	}
	return nil
}

// begin starts the master's instrumentation and opens its port or endpoint
// (openRetry: it returns an error only when ctx ended first).
func (m *master) begin(ctx context.Context) (modbus.Client, error) {
	if m.cfg.Baud > 0 {
		m.stats = m.metrics.Bus(m.cfg.Name)
	} else {
		m.stats = m.metrics.Master(m.cfg.Name)
	}
	m.stats.Sweep(m.sweepPos, len(m.absent))
	client, err := m.openRetry(ctx)
	if err != nil {
		m.stats.Close()
		return nil, err
	}
	m.stats.SetClient(client)
	m.failCost = client.Timeout() + client.Resync()
	m.relayCost = m.failCost
	if m.cfg.Baud > 0 {
		m.failCost *= 2 // a garbled reply, then its retry
		// A routed request is not retried, but its request and reply may be as long as
		// the largest frame.
		m.relayCost += 2 * modbus.WireTime(modbus.MaxADU, m.cfg.Baud)
	}
	m.client.Store(&client)
	if m.dir != nil && m.cfg.RelayShare > 0 {
		m.dir.add(m.cfg.Owner, m)
	}
	m.log.Info("master open", "units", len(m.cfg.Units))
	return client, nil
}

// openError returns why the master's port or endpoint cannot be opened now, or nil.
func (m *master) openError() error {
	if p := m.openErr.Load(); p != nil {
		return errors.New(*p)
	}
	return nil
}

// end closes what begin opened; the master's devices no longer count as live, and its
// routed requests, queued or to come, fail.
func (m *master) end(client modbus.Client) {
	if m.dir != nil {
		m.dir.remove(m.cfg.Owner, m)
	}
	m.client.Store(nil)
	m.live.Store(0)
	if m.cfg.Baud > 0 {
		m.metrics.BusUp(m.cfg.Name, false)
	}
	_ = client.Close()
	m.stats.Close()
	m.failRelays(modbus.ErrClosed)
}

// step does the master's next piece of work that is due and returns the zero time, or,
// when nothing is due, returns when something will be.
func (m *master) step(ctx context.Context, client modbus.Client) (wake time.Time) {
	if h := m.hints.Load(); h != m.applied {
		m.applyHints(h)
	}
	now := time.Now()
	d := m.earliest()
	// Order: suspect devices are retried first (a dead one reaches critical in back-
	// to-back polls); then a probe whose share of bus time has come — the share is
	// guaranteed, not only a cap, so a bus kept busy by polls still finds new drives;
	// then the regular polls that are due.
	if d != nil && d.retry {
		m.poll(ctx, client, d)
		return time.Time{}
	}
	if len(m.absent) > 0 && !now.Before(m.nextProbe) {
		m.probe(ctx, client)
		return time.Time{}
	}
	if d != nil && !d.dueAt().After(now) {
		m.poll(ctx, client, d)
		return time.Time{}
	}
	// Routed requests last: only when no poll is due, within their share of bus time.
	m.takeRelays()
	if len(m.relays) > 0 && !now.Before(m.nextRelay) {
		m.relay(client)
		return time.Time{}
	}
	wake = now.Add(time.Hour)
	if d != nil {
		wake = d.next
	}
	if len(m.absent) > 0 && m.nextProbe.Before(wake) {
		wake = m.nextProbe
	}
	if len(m.relays) > 0 && m.nextRelay.Before(wake) {
		wake = m.nextRelay
	}
	return wake
}

// openRetry opens the port or endpoint, retrying with backoff (500 ms doubling to
// 10 s) until it opens or ctx ends. A failure is logged at Warn when it is new (its
// message changed: another holder of the bus, another error), then at Debug, so a bus
// held by another program for hours does not fill the log; the Warn names the holder
// (modbus.ErrBusInUse).
func (m *master) openRetry(ctx context.Context) (modbus.Client, error) {
	backoff := 500 * time.Millisecond
	last := ""
	for {
		c, err := m.cfg.Open()
		if err == nil {
			if last != "" {
				m.log.Info("opened after retrying")
			}
			m.openErr.Store(nil)
			if m.cfg.Baud > 0 {
				m.metrics.BusUp(m.cfg.Name, true)
			}
			return c, nil
		}
		msg := err.Error()
		m.openErr.Store(&msg)
		if m.cfg.Baud > 0 {
			m.metrics.BusUp(m.cfg.Name, false)
		}
		level := slog.LevelDebug
		if err.Error() != last {
			level, last = slog.LevelWarn, err.Error()
		}
		m.log.Log(ctx, level, "cannot open, retrying", "retry_in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// applyHints passes changed discovery hints (discovered_by, meta) on to the devices
// already registered.
func (m *master) applyHints(h *hints) {
	m.applied = h
	for _, d := range m.known {
		m.reg.UpdateSources(d.id, m.cfg.Owner, h.DiscoveredBy, m.meta(d.profile, h, d.unit))
	}
}

// earliest returns the known device whose poll is due first, or nil.
func (m *master) earliest() *device {
	var best *device
	for _, d := range m.known {
		if best == nil || d.dueAt().Before(best.dueAt()) || (d.dueAt().Equal(best.dueAt()) && d.unit < best.unit) {
			best = d
		}
	}
	return best
}

// poll runs one heartbeat of d and feeds the registry. On RTU a garbled reply is
// retried at once, and the poll is missed only when the retry fails too. A device
// deregistered by the registry, or registered meanwhile through another endpoint, goes
// back to the sweep.
func (m *master) poll(ctx context.Context, c modbus.Client, d *device) {
	o := m.attempt(ctx, c, d, m.cfg.Adaptive)
	if o.Outcome == registry.OutcomeBadFrame && m.cfg.Baud > 0 && ctx.Err() == nil {
		// A garbled reply says the device is alive: its retry waits the bus's timeout,
		// which costs a silent device nothing (it never gets here) and keeps a stall of
		// the line or the host from turning noise into a missed poll.
		d.stats.Poll(o)
		d.stats.Retry()
		o = m.attempt(ctx, c, d, false)
	}
	if ctx.Err() != nil {
		return // shutting down: a cancelled request says nothing about the device
	}
	if o.State != nil {
		d.state = o.State
	}
	d.stats.Poll(o)
	if d.retry {
		d.retry = false // a retry does not move the regular schedule
	} else {
		interval := m.cfg.PollInterval
		d.next = d.next.Add(interval)
		if late := time.Since(d.next); late > interval {
			d.next = time.Now().Add(interval) // fell behind (e.g. a slow bus): skip, don't burst
		}
	}
	if o.Answered {
		d.failures = 0
	} else {
		d.failures++
		d.retry = d.failures < m.policy.FailuresBeforeCritical
	}
	if live := m.reg.Observe(d.id, m.cfg.Owner, o); !live {
		delete(m.known, d.unit)
		m.live.Store(int32(len(m.known)))
		m.addAbsent(d.unit)
		m.stats.Sweep(m.sweepPos, len(m.absent))
		m.updateChecks()
		m.log.Info("device dropped, back to sweep", "unit", d.unit, "instance", d.id)
	}
}

// attempt is one request of d's poll. On RTU it is traced: an answer adds its turnaround
// to d's window and every reply (intact or garbled) to d's link record; when adaptive,
// its timeout is firstByteTimeout of d's estimated turnaround (turnarounds), else the bus's.
func (m *master) attempt(ctx context.Context, c modbus.Client, d *device, adaptive bool) registry.Observation {
	if m.cfg.Baud == 0 {
		return devices.Poll(ctx, c, byte(d.unit), d.profile, d.hasDevID, d.state)
	}
	var tr modbus.Trace
	opts := []modbus.RequestOption{modbus.WithTrace(&tr)}
	if ta, ok := d.ta.estimate(); ok && adaptive {
		// The timeout covers the device's slowest recent reply: after it, no resync
		// beyond what the spec needs (modbus.WithResync).
		opts = append(opts, modbus.WithTimeout(m.adaptiveTimeout(ta, d.reqLen)),
			modbus.WithResync(time.Nanosecond))
	}
	o := devices.Poll(ctx, c, byte(d.unit), d.profile, d.hasDevID, d.state, opts...)
	m.hostLate.add(tr.Late)
	m.traced(d, tr, o.Outcome, m.failedTx)
	m.failedTx = o.Outcome == registry.OutcomeTimeout || o.Outcome == registry.OutcomeBadFrame
	o.LinkQuality, o.LinkMeasured = d.link.quality(), true
	o.Degraded = o.Degraded || d.link.degraded
	return o
}

// traced adds what trace tr of a request to d says about d: its turnaround, if it
// answered, and whether its reply (if any) was intact. A garbled reply right after a
// failed request (afterFailure: a timeout or a garbled reply) is not held against the
// line: it may be the late reply to that request, or the rest of it, running into this
// one (a device or a host that stalled), not noise.
func (m *master) traced(d *device, tr modbus.Trace, out registry.Outcome, afterFailure bool) {
	if tr.RequestBytes > 0 {
		d.reqLen = tr.RequestBytes
	}
	if tr.ReplyBytes == 0 {
		return
	}
	if garbled := out == registry.OutcomeBadFrame; !garbled || !afterFailure {
		d.link.add(garbled)
	}
	if out == registry.OutcomeOK || out == registry.OutcomeException {
		d.ta.add(observedTurnaround(tr.FirstByte, tr.RequestBytes, m.cfg.Baud))
	}
}

// probe tries the next absent unit: identify, match a profile, read its identity, poll
// once; only a device that answers all of that is registered.
func (m *master) probe(ctx context.Context, c modbus.Client) {
	if m.sweepPos >= len(m.absent) {
		m.sweepPos = 0
	}
	unit := m.absent[m.sweepPos]
	m.sweepPos++
	start := time.Now()
	// The probe is a basic Read Device Identification with the probe timeout and the
	// shortest resync, the bus's frame gap (nobody, hence no late reply, is expected at
	// most unit IDs; TCP ignores it); identification goes on, if the unit answered, with
	// the client's default timeout and resync.
	var tr modbus.Trace
	ask := func() (*modbus.DeviceIdentification, error) {
		return c.ReadDeviceIdentification(ctx, byte(unit), modbus.DevIDBasic,
			modbus.WithTimeout(m.probeTimeout()), modbus.WithResync(time.Nanosecond), modbus.WithTrace(&tr))
	}
	basic, err := ask()
	if devices.Classify(err) == registry.OutcomeBadFrame && ctx.Err() == nil {
		// A garbled reply: a late reply to an earlier request, a noisy line, or a device
		// that answers badly. Ask once more; only the last says what is there.
		basic, err = ask()
	}
	m.failedTx = err != nil && !modbus.IsAnswer(err)
	if m.cfg.Baud != 0 { // RTU: TCP requests are not traced
		m.hostLate.add(tr.Late)
	}
	// Something is at the unit if the probe got any reply: a normal one, an exception,
	// or a malformed one.
	present := err == nil || !(errors.Is(err, modbus.ErrTimeout) || errors.Is(err, modbus.ErrUnreachable) ||
		errors.Is(err, modbus.ErrClosed) || errors.Is(err, context.Canceled))
	probeErr := err
	err = m.register(ctx, c, unit, basic, probeErr, tr)
	if err != nil && devices.Classify(err) == registry.OutcomeBadFrame && ctx.Err() == nil {
		// A reply of the identification or the first poll came garbled (a noisy line, a
		// reply cut short): the device is there, try once more at once.
		err = m.register(ctx, c, unit, basic, probeErr, tr)
	}
	switch {
	case err == nil || !present || ctx.Err() != nil:
		delete(m.unreg, unit)
	default:
		m.reportUnregistrable(unit, err)
	}
	now := time.Now()
	m.stats.Probe(now.Sub(start), m.sweepPos >= len(m.absent))
	m.stats.Sweep(m.sweepPos, len(m.absent))
	if m.sweepPos >= len(m.absent) && m.cfg.Baud > 0 {
		m.thorough = !m.thorough // fast and thorough cycles alternate
	}
	m.nextProbe = now
	if len(m.known) > 0 {
		share := m.cfg.ProbeShare
		m.nextProbe = now.Add(time.Duration(float64(now.Sub(start)) * (1 - share) / share))
	}
	if m.sweepPos >= len(m.absent) && m.cfg.CyclePause > 0 {
		m.nextProbe = later(m.nextProbe, now.Add(m.cfg.CyclePause))
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// adaptiveTimeout is the adaptive reply timeout of a request of reqLen bytes to a device
// with turnaround ta on this bus: firstByteTimeout, with hostAllowance added to ta and
// the bus's timeout as the ceiling.
func (m *master) adaptiveTimeout(ta time.Duration, reqLen int) time.Duration {
	return firstByteTimeout(ta+m.hostAllowance(), reqLen, m.cfg.Baud, m.cfg.Timeout)
}

// hostAllowance is added to adaptive timeouts for the host's scheduling latency: the
// estimate (turnarounds.estimate) of how late the master's own timed waits returned in
// the bus's latest transactions. About 0 on an idle host; on a starved one, where a
// device simulated on the same host is late by as much, the timeouts stretch with it
// (at most to the bus's timeout) instead of taking a stall for a dead device.
func (m *master) hostAllowance() time.Duration {
	d, _ := m.hostLate.estimate()
	return d
}

// probeRequestLen is the RTU length (bytes) of a sweep probe, a basic Read Device
// Identification request: unit, function, MEI type, code, object id, CRC.
const probeRequestLen = 7

// probeTimeout is the reply timeout of a sweep probe. On RTU in a fast cycle, the time
// by which the first reply byte is due from a device with the bus's probe turnaround
// (firstByteTimeout of probeTurnaround); in a thorough cycle (every other one), and on
// TCP, the configured timeout: a device slower than the assumed turnaround is found in
// the thorough cycle, and from then on its turnaround raises the fast cycles' timeout.
func (m *master) probeTimeout() time.Duration {
	if m.cfg.Baud == 0 || m.thorough {
		return m.cfg.Timeout
	}
	return m.adaptiveTimeout(m.probeTurnaround(), probeRequestLen)
}

// probeTurnaround is the turnaround a fast-cycle probe allows for: the longest estimated
// turnaround of the bus's registered devices, at least the assumed one (Turnaround).
func (m *master) probeTurnaround() time.Duration {
	ta := m.cfg.Turnaround
	for _, d := range m.known {
		if t, ok := d.ta.estimate(); ok {
			ta = max(ta, t)
		}
	}
	return ta
}

// register identifies the unit that answered the probe (basic, basicErr, traced in tr),
// matches a profile, reads its identity and polls it once; only a device that answers
// all of that is registered. Errors name the step and the profile.
func (m *master) register(ctx context.Context, c modbus.Client, unit int, basic *modbus.DeviceIdentification, basicErr error, tr modbus.Trace) error {
	ident, err := devices.IdentifyAfter(ctx, c, byte(unit), basic, basicErr)
	if err != nil {
		return err
	}
	p := m.profiles.Match(ident.Objects)
	identity, err := devices.ReadIdentity(ctx, c, byte(unit), p, ident)
	if err != nil {
		return fmt.Errorf("identity (profile %s): %w", p.Name, err)
	}
	d := &device{unit: unit, id: m.instanceID(identity, unit), profile: p, hasDevID: ident.Objects != nil, reqLen: 8}
	if basicErr == nil || modbus.IsAnswer(basicErr) {
		m.traced(d, tr, devices.Classify(basicErr), false)
	}
	o := m.attempt(ctx, c, d, false) // the bus's timeout: one sample says little yet
	if !o.Answered {
		return fmt.Errorf("first poll (profile %s): %w", p.Name, o.Err)
	}
	d.state = o.State
	h := m.hints.Load()
	d.stats = m.stats.Unit(strconv.Itoa(unit))
	d.next = o.At.Add(m.cfg.PollInterval)
	if _, err := m.reg.Register(registry.Registration{
		ID:           d.id,
		Service:      p.Service,
		Profile:      p.Name,
		Endpoint:     m.cfg.Endpoint(unit),
		Identity:     identity,
		Meta:         m.meta(p, h, unit),
		DiscoveredBy: h.DiscoveredBy,
		Check:        m.check(len(m.known) + 1),
		Owner:        m.cfg.Owner,
	}, o); err != nil {
		return fmt.Errorf("instance %s: %w", d.id, err)
	}
	m.known[unit] = d
	m.live.Store(int32(len(m.known)))
	m.removeAbsent(unit)
	m.updateChecks()
	m.log.Info("device registered", "unit", unit, "instance", d.id, "profile", p.Name, "serial", identity.Serial)
	return nil
}

// Reasons a unit that answers cannot be registered (rollcall_unregistrable_devices_total).
const (
	unregException = "exception"           // a Modbus exception where identification or the first poll needs a reply
	unregMalformed = "malformed"           // CRC errors, short, malformed or wrong-unit replies
	unregIDLoop    = "identification_loop" // FC 0x2B "more follows" never ends (modbus.ErrDeviceIDLoop)
	unregTimeout   = "timeout"             // answered the probe, then stopped answering
	unregLimit     = "limit"               // the registry's instance cap or record size limit
	unregOther     = "other"
)

// unregistrableReason classifies why a unit that answers could not be registered.
func unregistrableReason(err error) string {
	var wrong *modbus.WrongUnitError
	switch {
	case errors.Is(err, modbus.ErrDeviceIDLoop):
		return unregIDLoop
	case modbus.IsAnswer(err):
		return unregException
	case errors.Is(err, modbus.ErrBadFrame), errors.Is(err, modbus.ErrCRC), errors.Is(err, modbus.ErrShortFrame), errors.As(err, &wrong):
		return unregMalformed
	case errors.Is(err, modbus.ErrTimeout):
		return unregTimeout
	case errors.Is(err, registry.ErrTooManyInstances), errors.Is(err, registry.ErrRecordTooLarge):
		return unregLimit
	}
	return unregOther
}

// reportUnregistrable reports, once per unit and reason, a unit that answers the sweep
// but cannot be registered: a Warn line at the default log level with the reason and the
// error, and rollcall_unregistrable_devices_total. The sweep keeps trying it.
func (m *master) reportUnregistrable(unit int, err error) {
	reason := unregistrableReason(err)
	if m.unreg[unit] == reason {
		return
	}
	m.unreg[unit] = reason
	m.stats.Unregistrable(reason)
	m.log.Warn("device answers but cannot be registered; the sweep keeps trying it", "unit", unit, "reason", reason, "err", err)
}

// detectBudget is the worst case from a device's death to critical with n devices on
// the master: registry.DetectBudget of the master's schedule (registry.MasterSchedule:
// a due poll may wait behind the request in flight and the other n−1 devices' polls,
// suspect devices are retried back to back, each failed request occupies the master
// for failCost; probes never take longer than that, as their timeout is at most the
// default one and their resync the shortest), plus one routed request (relayCost) when
// the master takes them: they start only when no poll is due, so a poll waits for one
// at most.
func (m *master) detectBudget(n int) time.Duration {
	s := registry.MasterSchedule(m.cfg.PollInterval, m.failCost, n)
	if m.cfg.RelayShare > 0 {
		s.Wait += m.relayCost // a routed request in flight when the poll falls due
	}
	return registry.DetectBudget(m.policy, s)
}

func (m *master) check(n int) contract.Check {
	return contract.Check{
		IntervalMS:     m.cfg.PollInterval.Milliseconds(),
		TimeoutMS:      m.cfg.Timeout.Milliseconds(),
		DetectBudgetMS: m.detectBudget(n).Milliseconds(),
	}
}

// updateChecks republishes the check (detect budget) of every device of the master
// after the number of devices changed.
func (m *master) updateChecks() {
	chk := m.check(len(m.known))
	for _, d := range m.known {
		m.reg.SetCheck(d.id, chk)
	}
}

// instanceID applies contract.InstanceID with the local part <bus or host>-u<unit>.
func (m *master) instanceID(id contract.Identity, unit int) string {
	return contract.InstanceID(id, m.gateway, contract.UnitLocal(m.cfg.IDScope, unit))
}

func (m *master) meta(p *devices.Profile, h *hints, unit int) map[string]string {
	out := maps.Clone(p.Meta)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, h.Meta)
	maps.Copy(out, h.UnitMeta[unit])
	return out
}

func (m *master) addAbsent(unit int) {
	i, found := slices.BinarySearch(m.absent, unit)
	if !found {
		m.absent = slices.Insert(m.absent, i, unit)
		if i < m.sweepPos {
			m.sweepPos++
		}
	}
}

func (m *master) removeAbsent(unit int) {
	if i, found := slices.BinarySearch(m.absent, unit); found {
		m.absent = slices.Delete(m.absent, i, i+1)
		if i < m.sweepPos {
			m.sweepPos--
		}
	}
}

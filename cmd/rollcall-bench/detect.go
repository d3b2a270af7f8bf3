package main

import (
	"context"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/firmware-sim/slave"
	"github.com/rollcall-edge/rollcall/protocols/mqtt"
	"github.com/rollcall-edge/rollcall/registry"
)

// Settings of figures detect and propagation (the gateway's health policy under test).
const (
	detectPoll      = 100 * time.Millisecond // health.poll_interval
	detectFailures  = 3                      // health.failures_before_critical
	detectGoal32P99 = 240 * time.Millisecond // goal for 32 drives
	detectGoal8P99  = 130 * time.Millisecond // goal for 8 drives
	propGoalP99     = 5 * time.Millisecond   // goal of figure propagation
	waitRecord      = 30 * time.Second       // longest wait for one expected record
	// victimCooldown is the least time between two trials on the same drive: each trial
	// publishes 2 records, and the registry's per-instance publication limit (default
	// burst 5, one more per second) must not hold them back.
	victimCooldown = 3 * time.Second
	// propHeld is the propagation above which a record was evidently held back
	// (publication limit) rather than slowed down.
	propHeld = 100 * time.Millisecond
)

// silenceResult is what one bus size's trials measured.
type silenceResult struct {
	drives      int
	registered  int             // drives registered (passing) by the registration deadline
	regDeadline time.Duration   // how long registration was waited for at most
	regStall    time.Duration   // … or until no drive registered for this long
	lastReg     time.Duration   // gateway start → the last of them passing at the subscriber
	detect      []time.Duration // silence → critical record at the subscriber, per trial
	budgets     []int64         // detect_budget_ms of each trial's critical record
	overBudget  int             // trials with detect > their record's detect_budget_ms
	timeoutMS   int64           // check.timeout_ms of the records
	intervalMS  int64           // check.interval_ms of the records
	prop        []time.Duration // confirming poll → subscriber, per critical and passing record
	propCoarse  int             // samples that had to use the record's millisecond time
	bystanders  int             // records of other drives that were not passing
	pollPeriod  time.Duration   // measured mean time between two polls of one drive
	unregReqs   uint64          // requests the unregistered drives received during the trials
	dropped     int64           // subscriber queue overflows
	payload     []byte          // one record as published (size reference for the hop floor)
}

// figDetectAndPropagation measures figures detect and propagation in one session per
// bus size (8 and 32 drives): gateway in-process on a firmware-sim bus at 115200 baud,
// publishing to a Mosquitto it starts, a plain paho subscriber; K trials each make a
// random drive silent, time its critical record at the subscriber, restore it and wait
// until it is passing again. The same records give the propagation samples: from the
// confirming poll's completion (status_since, read at full resolution from the
// in-process registry) to the subscriber's receipt. The broker hop floor is measured on
// the same Mosquitto with a plain paho publisher.
func figDetectAndPropagation(ctx context.Context, b *bench) error {
	const fig = "detect"
	trials := 20
	if b.opt.quick {
		trials = 4
	}
	broker, err := startMosquitto(b.dir)
	if err != nil {
		return fmt.Errorf("%s: start mosquitto: %w", fig, err)
	}
	defer broker.Stop()

	var results []*silenceResult
	for _, n := range []int{8, 32} {
		r, err := silenceTrials(ctx, b, broker.URL(), n, trials)
		if err != nil {
			return fmt.Errorf("%s: %d drives: %w", fig, n, err)
		}
		results = append(results, r)
	}
	hopSamples := 300
	if b.opt.quick {
		hopSamples = 100
	}
	hop, err := brokerHop(ctx, broker.URL(), results[0].payload, hopSamples)
	if err != nil {
		return fmt.Errorf("propagation: broker hop floor: %w", err)
	}

	o := b.out
	if b.opt.selected("detect") {
		for _, r := range results {
			// The floor: a drive is polled once per round, the longer of the poll interval
			// and n polls (rtuFloor each) back to back; it dies at a uniform phase of its
			// round, and then failures polls must fail, each waiting at least until the
			// reply's first byte would have come (rtuFirstByte: a shorter timeout would
			// miss a live drive). A percentile of a sample of trials can fall below it.
			poll, failed := rtuFloor(rtuTurnaround), rtuFirstByte(rtuTurnaround)
			round := max(detectPoll, time.Duration(r.drives)*poll)
			floorAt := func(pct float64) time.Duration {
				return time.Duration(float64(round)*pct/100) + detectFailures*failed
			}
			minBudget := int64(math.MaxInt64)
			for _, bu := range r.budgets {
				minBudget = min(minBudget, bu)
			}
			o.note("detect %d drives: %d trials, poll_interval %v, failures_before_critical %d, timeout ceiling %d ms (gateway default, adaptive per request), "+
				"2-register status read at 115200 baud, sim turnaround 1 ms, a drive is victim at most every %v; measured mean poll period per registered drive %v; "+
				"floor at percentile p = p × round (max(poll_interval, n × %v per poll) = %v) + %d × %v (failed polls, each until a reply's first byte); budget = published detect_budget_ms (%d ms)",
				r.drives, len(r.detect), detectPoll, detectFailures, r.timeoutMS, victimCooldown, r.pollPeriod.Round(100*time.Microsecond),
				poll.Round(10*time.Microsecond), round.Round(100*time.Microsecond), detectFailures, failed.Round(10*time.Microsecond), minBudget)
			p := fmt.Sprintf("detect_%d", r.drives)
			o.line(p+"_p50", ms(percentile(r.detect, 50)), "ms", ms(floorAt(50)), valueOverFloor)
			o.line(p+"_p99", ms(percentile(r.detect, 99)), "ms", ms(floorAt(99)), valueOverFloor)
			o.line(p+"_max", ms(percentile(r.detect, 100)), "ms", float64(minBudget), valueOverBudget)
			if r.registered < r.drives {
				o.note("detect %d drives: only %d of %d drives registered (waited up to %v, or until none for %v; the last at %v after gateway start); "+
					"the trials used those. The others received %d requests during the trials (a late registration shows as its polls): the bus scheduler starts a probe "+
					"only when no poll is due, and %d drives polled every %v (≥ %.1f ms of bus time each) keep a poll due all the time",
					r.drives, r.registered, r.drives, r.regDeadline, r.regStall, r.lastReg.Round(time.Millisecond),
					r.unregReqs, r.registered, detectPoll, ms(rtuFloor(rtuTurnaround)))
			} else {
				o.note("detect %d drives: all registered and passing %v after gateway start", r.drives, r.lastReg.Round(time.Millisecond))
			}
			if r.bystanders > 0 {
				o.note("detect %d drives: %d records of bystander drives were not passing", r.drives, r.bystanders)
			}
			if r.dropped > 0 {
				o.note("detect %d drives: subscriber dropped %d messages", r.drives, r.dropped)
			}
		}
		for i, goal := range []time.Duration{detectGoal8P99, detectGoal32P99} {
			r := results[i]
			what := fmt.Sprintf("%d-drive p99", r.drives)
			if r.registered < r.drives {
				what = fmt.Sprintf("%d-drive p99 (only %d of %d drives registered: goal not met either way)", r.drives, r.registered, r.drives)
			}
			o.goalAtMost(fmt.Sprintf("%s_%d", fig, r.drives), what, ms(percentile(r.detect, 99)), ms(goal), "ms")
			o.goalAtMost(fmt.Sprintf("%s_%d", fig, r.drives), "bystander records not passing (false criticals/warnings)", float64(r.bystanders), 0, "records")
		}
		for _, r := range results {
			worst := 0.0
			for i, d := range r.detect {
				worst = max(worst, ms(d)/float64(r.budgets[i]))
			}
			o.goalAtMost(fmt.Sprintf("%s_%d", fig, r.drives), "max/detect_budget_ms (every trial)", worst, 1, "×")
		}
	}
	if b.opt.selected("propagation") {
		var prop []time.Duration
		coarse := 0
		for _, r := range results {
			prop = append(prop, r.prop...)
			coarse += r.propCoarse
		}
		o.note("propagation: %d records (critical and passing, 8 and 32 drives), Mosquitto on loopback (set_tcp_nodelay true), QoS 1; "+
			"from status_since (the confirming poll's completion, full resolution from the in-process registry; %d samples "+
			"fell back to the record's ms field) to the paho subscriber's handler; floor = the broker hop: plain paho "+
			"publisher → same Mosquitto → subscriber, %d-byte payload, %d samples",
			len(prop), coarse, len(results[0].payload), len(hop))
		held := 0
		for _, p := range prop {
			if p > propHeld {
				held++
			}
		}
		if held > 0 {
			o.note("propagation: %d of %d records arrived more than %v after their confirming poll (held back by the publication limit?)",
				held, len(prop), propHeld)
		}
		o.line("propagation_p50", ms(percentile(prop, 50)), "ms", ms(percentile(hop, 50)), floorOverValue)
		o.line("propagation_p99", ms(percentile(prop, 99)), "ms", ms(percentile(hop, 99)), floorOverValue)
		o.line("propagation_max", ms(percentile(prop, 100)), "ms", ms(percentile(hop, 100)), floorOverValue)
		o.goalAtMost("propagation", "p99 of the gateway's added latency", ms(percentile(prop, 99)), ms(propGoalP99), "ms")
	}
	return nil
}

// silenceTrials runs one bus size's session.
func silenceTrials(ctx context.Context, b *bench, brokerURL string, n, trials int) (*silenceResult, error) {
	log, closeLog, err := logFile(b.dir, fmt.Sprintf("detect-%d.log", n))
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	defer closeLog()
	units := make([]int, n)
	for i := range units {
		units[i] = i + 1
	}
	link := filepath.Join(b.dir, fmt.Sprintf("detect-bus-%d", n))
	s, err := startSim(ctx, simBusYAML(link, rtuBaud, rtuTurnaround, units), log)
	if err != nil {
		return nil, err
	}
	defer s.Stop()

	gwID := fmt.Sprintf("bench-detect-%d", n)
	sub, err := subscribe(brokerURL, fmt.Sprintf("bench-sub-%d-%d", n, time.Now().UnixNano()), contract.Topics{}.GatewayCatalogFilter(gwID))
	if err != nil {
		return nil, err
	}
	defer sub.Close()
	g, _, err := startGateway(ctx, fmt.Sprintf(`gateway: {id: %s, state_dir: %s}
mqtt: {broker: %q}
discovery:
  serial:
    - {name: bus1, device: %s, baud: %d, parity: none, units: "1-%d"}
health:
  poll_interval: %v
  failures_before_critical: %d
  successes_before_passing: 2
  deregister_critical_after: 1h
`, gwID, filepath.Join(b.dir, "state-"+gwID), brokerURL, link, rtuBaud, n, detectPoll, detectFailures), log)
	if err != nil {
		return nil, err
	}
	defer g.Stop()

	// All n drives registered and passing, or as many as registered by the deadline.
	res := &silenceResult{drives: n}
	// Registration ends when all are passing, at regDeadline, or after regStall without a
	// new registration.
	regDeadline, regStall := 45*time.Second, 15*time.Second
	if b.opt.quick {
		regDeadline, regStall = 15*time.Second, 5*time.Second
	}
	ids := map[int]string{}
	gwStart := time.Now()
	for len(ids) < n {
		left := min(regDeadline-time.Since(gwStart), res.lastReg+regStall-time.Since(gwStart))
		if left <= 0 {
			break
		}
		m, err := sub.next(ctx, left, "record", func(message) bool { return true })
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			break // deadline
		}
		rec, err := m.record()
		if err != nil || rec == nil || rec.Status != contract.Passing {
			continue
		}
		if _, seen := ids[rec.Endpoint.Unit]; !seen {
			ids[rec.Endpoint.Unit] = rec.ID
			res.lastReg = m.at.Sub(gwStart)
		}
		res.payload = m.payload
	}
	res.registered, res.regDeadline, res.regStall = len(ids), regDeadline, regStall
	if len(ids) == 0 {
		return nil, fmt.Errorf("no drive registered within %v", regDeadline)
	}
	regUnits := slices.Sorted(maps.Keys(ids))
	b.log.Info("drives passing", "drives", n, "registered", len(ids), "last_after", res.lastReg)

	var unregUnits []int
	for u := 1; u <= n; u++ {
		if _, ok := ids[u]; !ok {
			unregUnits = append(unregUnits, u)
		}
	}
	before, unregBefore := busRequests(s, regUnits), busRequests(s, unregUnits)
	start := time.Now()
	rng := rand.New(rand.NewPCG(b.opt.seed, uint64(n)))
	lastUsed := map[int]time.Time{}
	for t := 0; t < trials; t++ {
		// A random drive not used in the last victimCooldown, so that the per-instance
		// publication limit (a flapping device's records are held back) stays out of it.
		var eligible []int
		wait := victimCooldown
		for _, u := range regUnits {
			if left := victimCooldown - time.Since(lastUsed[u]); left <= 0 {
				eligible = append(eligible, u)
			} else {
				wait = min(wait, left)
			}
		}
		if len(eligible) == 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			t--
			continue
		}
		unit := eligible[rng.IntN(len(eligible))]
		id := ids[unit]
		// A random phase against the poll schedule.
		select {
		case <-time.After(time.Duration(rng.Int64N(int64(detectPoll)))):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if err := s.SetFault("bus1", unit, slave.Fault{Mode: slave.FaultSilent}); err != nil {
			return nil, fmt.Errorf("trial %d: silence unit %d: %w", t, unit, err)
		}
		silentAt := time.Now()
		crit, rec, err := res.waitStatus(ctx, sub, id, contract.Critical)
		if err != nil {
			return nil, fmt.Errorf("trial %d: unit %d: %w", t, unit, err)
		}
		res.detect = append(res.detect, crit.at.Sub(silentAt))
		res.budgets = append(res.budgets, rec.Check.DetectBudgetMS)
		if ms(crit.at.Sub(silentAt)) > float64(rec.Check.DetectBudgetMS) {
			res.overBudget++
		}
		res.timeoutMS, res.intervalMS = rec.Check.TimeoutMS, rec.Check.IntervalMS
		res.addProp(g.Registry(), crit, rec)

		if err := s.SetFault("bus1", unit, slave.Fault{Mode: slave.FaultNone}); err != nil {
			return nil, fmt.Errorf("trial %d: restore unit %d: %w", t, unit, err)
		}
		back, rec, err := res.waitStatus(ctx, sub, id, contract.Passing)
		if err != nil {
			return nil, fmt.Errorf("trial %d: unit %d back: %w", t, unit, err)
		}
		res.addProp(g.Registry(), back, rec)
		lastUsed[unit] = time.Now()
		b.log.Info("trial", "drives", n, "trial", t, "unit", unit, "detect", crit.at.Sub(silentAt).Round(time.Millisecond),
			"budget_ms", rec.Check.DetectBudgetMS)
	}
	elapsed := time.Since(start)
	if polls := busRequests(s, regUnits) - before; polls > 0 {
		res.pollPeriod = time.Duration(float64(elapsed) * float64(len(regUnits)) / float64(polls))
	}
	res.unregReqs = busRequests(s, unregUnits) - unregBefore
	res.dropped = sub.dropped.Load()
	return res, nil
}

// waitStatus waits for the record of id with status want at the subscriber, counting
// records of other instances that are not passing.
func (r *silenceResult) waitStatus(ctx context.Context, sub *subscriber, id string, want contract.Status) (message, *contract.Record, error) {
	var got *contract.Record
	m, err := sub.next(ctx, waitRecord, fmt.Sprintf("%s record of %s", want, id), func(m message) bool {
		rec, err := m.record()
		if err != nil || rec == nil {
			return false
		}
		if rec.ID != id {
			if rec.Status != contract.Passing {
				r.bystanders++
			}
			return false
		}
		got = rec
		return rec.Status == want
	})
	return m, got, err
}

// addProp adds the propagation sample of record rec received in m: from the confirming
// poll's completion (status_since) to receipt. The registry's current record of the
// instance gives status_since at full resolution when it is still the same revision;
// otherwise the record's millisecond value is used (an overestimate by < 1 ms).
func (r *silenceResult) addProp(reg *registry.Registry, m message, rec *contract.Record) {
	since := rec.StatusSince.Time
	if cur, ok := reg.Get(rec.ID); ok && cur.Revision == rec.Revision && cur.Status == rec.Status &&
		cur.StatusSince.Time.Truncate(time.Millisecond).Equal(rec.StatusSince.Time) {
		since = cur.StatusSince.Time
	} else {
		r.propCoarse++
	}
	r.prop = append(r.prop, m.at.Sub(since))
}

// busRequests is the number of requests the simulator's bus drives at units have
// received.
func busRequests(s *runningSim, units []int) uint64 {
	var n uint64
	for _, d := range s.Devices() {
		if d.Transport == "modbus-rtu" && slices.Contains(units, d.Unit) {
			n += d.Requests
		}
	}
	return n
}

// brokerHop measures the floor of figure propagation: a plain paho publisher publishes
// payload (QoS 1, retained, like a record) to a fresh topic on the broker, and a plain
// paho subscriber times its arrival; samples one after the other.
func brokerHop(ctx context.Context, brokerURL string, payload []byte, samples int) ([]time.Duration, error) {
	sub, err := subscribe(brokerURL, fmt.Sprintf("bench-hop-sub-%d", time.Now().UnixNano()), "bench/hop/#")
	if err != nil {
		return nil, err
	}
	defer sub.Close()
	pub := paho.NewClient(mqtt.Session{Brokers: []string{brokerURL},
		ClientID: fmt.Sprintf("bench-hop-pub-%d", time.Now().UnixNano()), CleanSession: true}.Options())
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("publisher connect: %v", tok.Error())
	}
	defer pub.Disconnect(100)
	var out []time.Duration
	for i := 0; i < samples; i++ {
		topic := "bench/hop/" + strconv.Itoa(i)
		t0 := time.Now()
		tok := pub.Publish(topic, 1, true, payload)
		m, err := sub.next(ctx, 10*time.Second, "hop message "+topic, func(m message) bool { return m.topic == topic })
		if err != nil {
			return nil, err
		}
		out = append(out, m.at.Sub(t0))
		tok.WaitTimeout(10 * time.Second)
		// Clear the retained message again so the broker does not accumulate them.
		pub.Publish(topic, 1, true, []byte{}).WaitTimeout(10 * time.Second)
		if _, err := sub.next(ctx, 10*time.Second, "hop clear "+topic, func(m message) bool {
			return m.topic == topic && len(m.payload) == 0
		}); err != nil {
			return nil, err
		}
		select {
		case <-time.After(2 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return out, nil
}

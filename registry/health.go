// Package registry holds rollcall's instances: the catalog entries of discovered devices,
// each with a health state machine driven by polls (docs/contract.md, "Health semantics"), and
// emits a change event whenever an instance's record must be (re)published or removed.
//
// The health rules follow Consul's check counters (agent/checks/check.go StatusHandler):
// failures_before_critical consecutive failed polls make an instance critical, and
// successes_before_passing consecutive answered polls bring it back. Degradation reported
// by the device itself (a CiA 402 fault, a Modbus exception, a slow round trip) is
// immediate, because it is the device's own statement and not a guess from silence.
package registry

import (
	"time"

	"github.com/rollcall-edge/rollcall/contract"
)

// Policy holds the health thresholds of docs/contract.md ("Health semantics"). The zero value is
// not useful; use DefaultPolicy and override fields.
type Policy struct {
	// FailuresBeforeCritical consecutive polls without a valid answer make an instance
	// critical. Default 3.
	FailuresBeforeCritical int
	// SuccessesBeforePassing consecutive answered polls take an instance out of critical,
	// or from warning back to passing. Default 2.
	SuccessesBeforePassing int
	// DeregisterCriticalAfter is how long an instance stays critical before its record is
	// removed (empty retained record). Default 30 s.
	DeregisterCriticalAfter time.Duration
	// RefreshInterval bounds how often a record is republished when nothing but
	// last_seen/rtt_ms changed. Default 10 s.
	RefreshInterval time.Duration
	// SlowRTT: an answered poll whose round trip exceeds it counts as degraded (warning).
	// 0 disables the check. Default 0.
	SlowRTT time.Duration
	// RestartGrace: an instance read back from an earlier epoch of this gateway that no
	// poller has claimed after this long becomes critical (and is deregistered
	// DeregisterCriticalAfter later). Default 5 s.
	RestartGrace time.Duration
	// PublishBurst and PublishEvery limit each instance's record publications (token
	// bucket: PublishBurst publications at once, one more every PublishEvery), so a
	// flapping device cannot flood the broker. A held-back record is published when a
	// token is free: the last state always gets out. A death is never held back: a
	// transition to critical, and a deregistration, is published at once even with the
	// bucket empty, so detect_budget_ms holds after flapping. Defaults 5 and 1 s;
	// PublishBurst < 0 disables the limit.
	PublishBurst int
	PublishEvery time.Duration
	// InstanceLease, if > 0, is the lease of every instance record published (its
	// valid_until = publication time + InstanceLease; docs/contract.md, "Leases"). It
	// must exceed RefreshInterval, which renews it. Default 0 (no lease); the gateway
	// sets 3 × RefreshInterval.
	InstanceLease time.Duration
}

// DefaultPolicy returns the defaults documented on Policy's fields.
func DefaultPolicy() Policy {
	return Policy{
		FailuresBeforeCritical:  3,
		SuccessesBeforePassing:  2,
		DeregisterCriticalAfter: 30 * time.Second,
		RefreshInterval:         10 * time.Second,
		RestartGrace:            5 * time.Second,
		PublishBurst:            5,
		PublishEvery:            time.Second,
	}
}

// Observation is the outcome of one poll of a device: its heartbeat.
type Observation struct {
	// At is when the poll completed.
	At time.Time
	// Answered: a valid reply arrived (a Modbus exception reply counts: the device is alive).
	Answered bool
	// Degraded: the device answered but reports a fault or warning, or answered with an
	// exception. Ignored when !Answered.
	Degraded bool
	// RTT is the poll's round trip (request sent to reply parsed). Meaningful when Answered.
	RTT time.Duration
	// State is the decoded device state (e.g. {"cia402":"operation_enabled","fault":false,
	// "error_code":0}); nil keeps the previous state.
	State map[string]any
	// Err is the poll error when !Answered or the exception when Degraded; for logs only.
	Err error
	// Outcome is the class of the poll's result, set by whoever made the poll from its
	// error, consistently with Answered (OutcomeOK and OutcomeException are answered) —
	// devices.Poll for a Modbus poll. Consumers (metrics) read it through Class and do not
	// classify Err again. OutcomeUnknown (the zero value) means the producer did not set it.
	Outcome Outcome
	// LinkQuality is the share (0–1) of the device's latest replies that arrived intact
	// (a garbled one: bad CRC, wrong length, another unit), when LinkMeasured: an RTU
	// master measures it, other pollers leave both zero. A low one is also Degraded.
	LinkQuality  float64
	LinkMeasured bool
}

// Outcome is the class of one poll's result: the outcome label of the poll counters.
type Outcome uint8

// Poll outcomes; String gives the label value.
const (
	// OutcomeUnknown: not classified by the producer of the observation (see Class).
	OutcomeUnknown Outcome = iota
	// OutcomeOK: a valid normal reply (a CiA 402 fault bit in it is still OK: the reply
	// is valid, the device reports the fault).
	OutcomeOK
	// OutcomeException: a Modbus exception reply (Modbus Application Protocol V1.1b3
	// §7): the device is alive but refused the request.
	OutcomeException
	// OutcomeTimeout: no reply within the request's timeout.
	OutcomeTimeout
	// OutcomeBadFrame: a reply that cannot be used: CRC error, short or malformed frame,
	// a reply from another unit ID.
	OutcomeBadFrame
	// OutcomeOther: anything else: a serial port or connection error, an unreachable
	// endpoint, a non-2xx HTTP status of a module check.
	OutcomeOther
	// NumOutcomes is one more than the largest Outcome, to size arrays indexed by it.
	NumOutcomes
)

// String is the outcome's label value: ok, exception, timeout, bad_frame, other, or
// unknown for OutcomeUnknown and out-of-range values.
func (o Outcome) String() string {
	switch o {
	case OutcomeOK:
		return "ok"
	case OutcomeException:
		return "exception"
	case OutcomeTimeout:
		return "timeout"
	case OutcomeBadFrame:
		return "bad_frame"
	case OutcomeOther:
		return "other"
	}
	return "unknown"
}

// Answered reports whether the outcome proves the device alive (a heartbeat):
// OutcomeOK or OutcomeException.
func (o Outcome) Answered() bool { return o == OutcomeOK || o == OutcomeException }

// Class is the observation's outcome: o.Outcome when the producer set it; otherwise
// (OutcomeUnknown) OutcomeOK when answered and OutcomeOther when not. It never returns
// OutcomeUnknown and does not look at Err.
func (o Observation) Class() Outcome {
	switch {
	case o.Outcome != OutcomeUnknown && o.Outcome < NumOutcomes:
		return o.Outcome
	case o.Answered:
		return OutcomeOK
	}
	return OutcomeOther
}

// Schedule is how a poller spends its time on one device, as far as the time from the
// device's death to critical depends on it (DetectBudget). Durations are wall-clock time.
type Schedule struct {
	// Interval is the regular poll period of the device.
	Interval time.Duration
	// Wait is the longest a due poll can wait behind other work of the poller: the
	// request in flight and the polls of other devices due at the same time. 0 for a
	// poller of its own.
	Wait time.Duration
	// Retry is the time from the start of a failed poll to the start of the next one:
	// Attempt when a suspect device is retried back to back, the period when polls
	// follow a ticker.
	Retry time.Duration
	// Attempt is the longest one failed poll takes before it is known to have failed:
	// the reply timeout, plus the resync listening on an RTU bus.
	Attempt time.Duration
}

// MasterSchedule is the schedule of a device on a Modbus master (an RTU bus or a TCP
// endpoint) shared by devices devices (this one included), polled every interval, where
// a failed request occupies the master for failCost (reply timeout + resync listening)
// and a probe of an absent unit never longer than that: a due poll may wait behind the
// request in flight and the polls of the other devices−1 devices (Wait = devices ×
// failCost), and a suspect device is retried back to back, before any regular poll
// (Retry = Attempt = failCost). devices < 1 counts as 1.
func MasterSchedule(interval, failCost time.Duration, devices int) Schedule {
	return Schedule{Interval: interval, Wait: time.Duration(max(devices, 1)) * failCost, Retry: failCost, Attempt: failCost}
}

// TickerSchedule is the schedule of a device checked on its own every interval (a
// ticker; a check that overruns delays the next one) with each check bounded by
// timeout: no wait, failed checks interval apart (or timeout apart, if longer).
func TickerSchedule(interval, timeout time.Duration) Schedule {
	return Schedule{Interval: interval, Retry: max(interval, timeout), Attempt: timeout}
}

// DetectBudget is the worst case from a device's death to its instance becoming
// critical (the published detect_budget_ms) under policy p and schedule s:
//
//	Interval + Wait + (F − 1) × Retry + Attempt,  F = p.FailuresBeforeCritical (at least 1)
//
// The last good poll may have happened just before the death, so the next poll is due
// up to Interval later; it may wait up to Wait behind other work; then F polls must fail
// (Health.Observe), Retry apart, the last one taking Attempt to fail. E.g. 3 failures,
// 4 devices on a bus polled every 250 ms with a 70 ms failed request (50 ms timeout +
// 20 ms resync): 250 + 4×70 + 2×70 + 70 = 740 ms.
func DetectBudget(p Policy, s Schedule) time.Duration {
	f := max(p.FailuresBeforeCritical, 1)
	return s.Interval + s.Wait + time.Duration(f-1)*s.Retry + s.Attempt
}

// Health is the health state machine of one instance. Its zero value is not valid: start
// it with NewHealth from the first answered observation.
type Health struct {
	Status   contract.Status // current status
	Since    time.Time       // when Status last changed
	LastSeen time.Time       // last answered poll
	RTT      time.Duration   // round trip of the last answered poll
	Failures int             // consecutive unanswered polls
	// Link is the link quality of the latest observation that measured it (0–1), or −1
	// when none did (record field check.link_quality).
	Link      float64
	successes int // consecutive answered polls counted toward leaving the current status
}

// NewHealth starts a state machine from the first observation, which the caller requires
// to be answered (a device is registered only after a successful poll): passing, or
// warning when the observation is degraded.
func NewHealth(o Observation, p Policy) Health {
	h := Health{Status: target(o, p), Since: o.At, LastSeen: o.At, RTT: o.RTT, Link: -1}
	h.link(o)
	return h
}

func target(o Observation, p Policy) contract.Status {
	if o.Degraded || (p.SlowRTT > 0 && o.RTT > p.SlowRTT) {
		return contract.Warning
	}
	return contract.Passing
}

// Observe feeds one poll outcome into the state machine and reports whether Status changed.
//
// Rules (docs/contract.md, "Health semantics"):
//   - unanswered: Failures+1; at FailuresBeforeCritical the status becomes critical;
//   - answered and degraded while passing: warning at once;
//   - answered while critical: back to passing/warning after SuccessesBeforePassing
//     consecutive answered polls;
//   - answered, not degraded, while warning: passing after SuccessesBeforePassing
//     consecutive good polls (hysteresis against a flapping fault bit).
func (h *Health) Observe(o Observation, p Policy) bool {
	h.link(o)
	if !o.Answered {
		h.successes = 0
		h.Failures++
		if h.Failures >= p.FailuresBeforeCritical && h.Status != contract.Critical {
			h.set(contract.Critical, o.At)
			return true
		}
		return false
	}
	h.Failures = 0
	h.LastSeen = o.At
	h.RTT = o.RTT
	want := target(o, p)
	switch {
	case want == h.Status:
		h.successes = 0
		return false
	case h.Status == contract.Passing: // → warning: the device says so, believe it now
		h.set(want, o.At)
		return true
	default: // critical → anything, or warning → passing: hysteresis
		h.successes++
		if h.successes >= p.SuccessesBeforePassing {
			h.set(want, o.At)
			return true
		}
		return false
	}
}

// link takes the link quality of o, when o measured it.
func (h *Health) link(o Observation) {
	if o.LinkMeasured {
		h.Link = o.LinkQuality
	}
}

func (h *Health) set(s contract.Status, at time.Time) {
	h.Status = s
	h.Since = at
	h.successes = 0
}

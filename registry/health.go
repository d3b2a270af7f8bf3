// Package registry holds rollcall's instances: the catalog entries of discovered devices,
// each with a health state machine driven by polls (DESIGN.md, "Health semantics"), and
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

// Policy holds the health thresholds of DESIGN.md ("Health semantics"). The zero value is
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
	// token is free: the last state always gets out. Deregistrations are never held
	// back. Defaults 5 and 1 s; PublishBurst < 0 disables the limit.
	PublishBurst int
	PublishEvery time.Duration
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
}

// Health is the health state machine of one instance. Its zero value is not valid: start
// it with NewHealth from the first answered observation.
type Health struct {
	Status    contract.Status // current status
	Since     time.Time       // when Status last changed
	LastSeen  time.Time       // last answered poll
	RTT       time.Duration   // round trip of the last answered poll
	Failures  int             // consecutive unanswered polls
	successes int             // consecutive answered polls counted toward leaving the current status
}

// NewHealth starts a state machine from the first observation, which the caller requires
// to be answered (a device is registered only after a successful poll): passing, or
// warning when the observation is degraded.
func NewHealth(o Observation, p Policy) Health {
	h := Health{Status: target(o, p), Since: o.At, LastSeen: o.At, RTT: o.RTT}
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
// Rules (DESIGN.md "Health semantics"):
//   - unanswered: Failures+1; at FailuresBeforeCritical the status becomes critical;
//   - answered and degraded while passing: warning at once;
//   - answered while critical: back to passing/warning after SuccessesBeforePassing
//     consecutive answered polls;
//   - answered, not degraded, while warning: passing after SuccessesBeforePassing
//     consecutive good polls (hysteresis against a flapping fault bit).
func (h *Health) Observe(o Observation, p Policy) bool {
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

func (h *Health) set(s contract.Status, at time.Time) {
	h.Status = s
	h.Since = at
	h.successes = 0
}

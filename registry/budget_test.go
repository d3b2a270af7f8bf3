package registry

import (
	"testing"
	"time"
)

func TestDetectBudget(t *testing.T) {
	ms := time.Millisecond
	three := DefaultPolicy() // 3 failures before critical
	one := DefaultPolicy()
	one.FailuresBeforeCritical = 1
	zero := DefaultPolicy()
	zero.FailuresBeforeCritical = 0 // the first failure is already critical: as 1
	for _, c := range []struct {
		name string
		p    Policy
		s    Schedule
		want time.Duration
	}{
		// interval + devices×failCost + failures×failCost
		{"bus, 1 device", three, MasterSchedule(250*ms, 70*ms, 1), 250*ms + 1*70*ms + 3*70*ms},
		{"bus, 4 devices: a longer round", three, MasterSchedule(250*ms, 70*ms, 4), 740 * ms},
		{"bus, 0 devices counts as 1", three, MasterSchedule(250*ms, 70*ms, 0), 250*ms + 70*ms + 3*70*ms},
		{"bus, 1 failure", one, MasterSchedule(100*ms, 20*ms, 2), 100*ms + 2*20*ms + 20*ms},
		{"bus, failures 0 as 1", zero, MasterSchedule(100*ms, 20*ms, 2), 100*ms + 2*20*ms + 20*ms},
		// failures×interval + timeout while the timeout is below the interval
		{"ticker", three, TickerSchedule(time.Second, 200*ms), 3*time.Second + 200*ms},
		{"ticker, 1 failure", one, TickerSchedule(time.Second, 200*ms), time.Second + 200*ms},
		{"ticker, check overruns the interval", three, TickerSchedule(100*ms, 300*ms), 100*ms + 2*300*ms + 300*ms},
		{"explicit", three, Schedule{Interval: 10 * ms, Wait: 1 * ms, Retry: 100 * ms, Attempt: 1000 * ms}, 10*ms + 1*ms + 200*ms + 1000*ms},
	} {
		if got := DetectBudget(c.p, c.s); got != c.want {
			t.Errorf("%s: DetectBudget = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestObservationClass(t *testing.T) {
	for _, c := range []struct {
		o     Observation
		want  Outcome
		label string
	}{
		{Observation{Answered: true, Outcome: OutcomeOK}, OutcomeOK, "ok"},
		{Observation{Answered: true, Degraded: true, Outcome: OutcomeException}, OutcomeException, "exception"},
		{Observation{Outcome: OutcomeTimeout}, OutcomeTimeout, "timeout"},
		{Observation{Outcome: OutcomeBadFrame}, OutcomeBadFrame, "bad_frame"},
		{Observation{Outcome: OutcomeOther}, OutcomeOther, "other"},
		// Not classified by the producer: from Answered alone.
		{Observation{Answered: true}, OutcomeOK, "ok"},
		{Observation{}, OutcomeOther, "other"},
		{Observation{Outcome: NumOutcomes + 3}, OutcomeOther, "other"},
	} {
		got := c.o.Class()
		if got != c.want || got.String() != c.label {
			t.Errorf("%+v: Class() = %v (%d), want %s", c.o, got, got, c.label)
		}
	}
	for o, answered := range map[Outcome]bool{OutcomeOK: true, OutcomeException: true, OutcomeTimeout: false,
		OutcomeBadFrame: false, OutcomeOther: false, OutcomeUnknown: false} {
		if o.Answered() != answered {
			t.Errorf("%v.Answered() = %v", o, !answered)
		}
	}
	if OutcomeUnknown.String() != "unknown" {
		t.Errorf("OutcomeUnknown.String() = %q", OutcomeUnknown.String())
	}
}

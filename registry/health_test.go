package registry

import (
	"errors"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// step is one poll outcome in a scripted sequence: 'o' answered OK, 'd' answered
// degraded, 's' answered but slow, 'x' no answer.
func obs(c byte, i int) Observation {
	o := Observation{At: t0.Add(time.Duration(i) * 100 * time.Millisecond), RTT: 5 * time.Millisecond}
	switch c {
	case 'o':
		o.Answered = true
	case 'd':
		o.Answered, o.Degraded = true, true
	case 's':
		o.Answered, o.RTT = true, 80*time.Millisecond
	case 'x':
		o.Err = errors.New("timeout")
	}
	return o
}

func TestHealthTransitions(t *testing.T) {
	p := DefaultPolicy()
	p.SlowRTT = 50 * time.Millisecond
	tests := []struct {
		name   string
		script string // first char starts the machine
		want   string // status after each subsequent step: P/W/C
	}{
		{"stays passing", "oooo", "PPP"},
		{"critical after 3 failures", "oxxxx", "PPCC"},
		{"2 failures are not critical", "oxxo", "PPP"},
		{"failure count resets on answer", "oxxoxx", "PPPPP"},
		{"fault is warning at once", "odd", "WW"},
		{"warning back to passing needs 2 good polls", "odoo", "WWP"},
		{"flapping fault stays warning", "ododod", "WWWWW"},
		{"slow round trip is warning", "os", "W"},
		{"starts warning when first poll degraded", "dd", "W"},
		{"critical back needs 2 answers", "oxxxoo", "PPCCP"},
		{"critical interrupted recovery", "oxxxoxoo", "PPCCCCP"},
		{"critical to warning via degraded answers", "oxxxdd", "PPCCW"},
		{"warning device goes critical", "dxxx", "WWC"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHealth(obs(tc.script[0], 0), p)
			got := ""
			for i := 1; i < len(tc.script); i++ {
				prev := h.Status
				changed := h.Observe(obs(tc.script[i], i), p)
				if changed != (prev != h.Status) {
					t.Fatalf("step %d: changed=%v but %s→%s", i, changed, prev, h.Status)
				}
				got += map[contract.Status]string{contract.Passing: "P", contract.Warning: "W", contract.Critical: "C"}[h.Status]
			}
			if got != tc.want {
				t.Fatalf("script %q: got %s, want %s", tc.script, got, tc.want)
			}
		})
	}
}

func TestHealthSinceAndLastSeen(t *testing.T) {
	p := DefaultPolicy()
	h := NewHealth(obs('o', 0), p)
	h.Observe(obs('o', 1), p)
	for i := 2; i <= 4; i++ {
		h.Observe(obs('x', i), p)
	}
	if h.Status != contract.Critical {
		t.Fatalf("status %s, want critical", h.Status)
	}
	if want := obs('x', 4).At; !h.Since.Equal(want) {
		t.Errorf("since %v, want %v (the poll that made it critical)", h.Since, want)
	}
	if want := obs('o', 1).At; !h.LastSeen.Equal(want) {
		t.Errorf("last seen %v, want %v (last answered poll)", h.LastSeen, want)
	}
	if h.Failures != 3 {
		t.Errorf("failures %d, want 3", h.Failures)
	}
}

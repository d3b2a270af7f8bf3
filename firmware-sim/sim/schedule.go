package sim

import (
	"context"
	"time"
)

// runSchedule runs the fault schedule of drive dc of group g until it is done (no
// Repeat) or ctx ends: step i of cycle k sets its fault at
// base + k×dc.Repeat + Schedule[i].After, as SetFault does, and logs it ("fault set"
// with source=schedule, step and cycle). A step that is late (the process was
// stalled) fires at once.
func (s *Sim) runSchedule(ctx context.Context, g *group, dc Drive, base time.Time) {
	for cycle := 0; ; cycle++ {
		start := base.Add(time.Duration(cycle) * dc.Repeat)
		for i, st := range dc.Schedule {
			if !sleepUntil(ctx, start.Add(st.After)) {
				return
			}
			if err := s.setFault(g.name, dc.Unit, st.Fault, "source", "schedule", "step", i, "cycle", cycle); err != nil {
				s.log.Error("scheduled fault failed", g.kind, g.name, "unit", dc.Unit, "step", i, "err", err)
			}
		}
		if dc.Repeat <= 0 {
			return
		}
	}
}

// sleepUntil waits until t; it returns false when ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

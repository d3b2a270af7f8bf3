package httpapi

import (
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/registry"
)

// HistoryLen is the number of status transitions a Hub keeps per live instance for
// GET /v1/instances/{id}; an older one is dropped for each new one beyond it.
const HistoryLen = 32

// RoundTripLen is the number of heartbeat polls a Hub keeps per live instance (their
// time and round trip) for GET /v1/instances/{id}; the oldest is overwritten by each new
// one beyond it.
const RoundTripLen = 60

// maxReason caps a Transition's Reason in bytes (cut at a character boundary).
const maxReason = 256

// Transition is one entry of an instance's status history (InstanceDetail.History).
type Transition struct {
	// At is when the status began: the record's status_since (RFC 3339, milliseconds,
	// UTC).
	At contract.Time `json:"at"`
	// Status is the instance's status from At on.
	Status contract.Status `json:"status"`
	// Revision is the revision of the first record published with this status.
	Revision int64 `json:"revision"`
	// Reason is the check output behind the status, at most 256 bytes: "registered"
	// for an instance's first entry, the consecutive failed polls and the last poll's
	// error, the output of failing checks, a fault or warning the device reports, a
	// poor link, the maintenance reason; "" when there is nothing to say (a recovery).
	Reason string `json:"reason"`
}

// RoundTrip is one heartbeat poll of an instance (InstanceDetail.RoundTrips).
type RoundTrip struct {
	// At is when the poll completed (RFC 3339, milliseconds, UTC).
	At contract.Time `json:"at"`
	// MS is the poll's round trip in milliseconds (0.01 ms resolution, as the
	// record's check.rtt_ms); null when the device did not answer.
	MS *float64 `json:"ms"`
}

// InstanceDetail is the answer of GET /v1/instances/{id}: the instance's current record
// (contract v1 shape, as /v1/catalog has it) and two fields more.
type InstanceDetail struct {
	contract.Record
	// History is the instance's status transitions since it registered, oldest first:
	// at most HistoryLen (the oldest are dropped); [] when the gateway keeps none (no
	// event hub).
	History []Transition `json:"history"`
	// RoundTrips is the instance's latest heartbeat polls, oldest first, at most
	// RoundTripLen; [] when none was seen (a self-registered instance, or no event hub).
	RoundTrips []RoundTrip `json:"round_trips"`
}

// history is what a Hub keeps of one live instance. It is created by the instance's
// first Upsert and dropped by its Deregister.
type history struct {
	trans []Transition // oldest at head once full (len HistoryLen)
	head  int

	base int64                 // Unix milliseconds the polls' times count from
	at   [RoundTripLen]uint32  // poll completion, milliseconds after base (49 days)
	ms   [RoundTripLen]float32 // round trip, ms; < 0: no answer
	n    int                   // polls held
	next int                   // slot of the next poll

	lastErr error // the last poll's error (registry.Observation.Err), for a Reason
}

// Observe records one heartbeat poll of instance id (its completion time and, when
// answered, round trip) in the instance's ring of RoundTripLen; give it to the
// registry as registry.Options.Observed. It does not allocate and ignores ids the Hub
// has not seen registered. A nil *Hub does nothing.
func (h *Hub) Observe(id string, o registry.Observation) {
	if h == nil {
		return
	}
	h.histMu.Lock()
	defer h.histMu.Unlock()
	hs := h.hist[id]
	if hs == nil {
		return
	}
	ms := float32(-1)
	if o.Answered {
		ms = float32(o.RTT) / float32(time.Millisecond)
	}
	hs.add(o.At, ms)
	hs.lastErr = o.Err
}

// add records one poll. Times are kept as offsets from base (4 bytes a poll, not 8).
// When a poll is 49 days past base, base moves up to the oldest poll held; a poll before
// base, or still too far past it (the clock was set back or jumped), starts the ring
// again from it.
func (hs *history) add(at time.Time, ms float32) {
	t := at.UnixMilli()
	if hs.n > 0 && t-hs.base > math.MaxUint32 {
		oldest := hs.at[(hs.next-hs.n+RoundTripLen)%RoundTripLen]
		for i := range hs.at {
			hs.at[i] -= min(hs.at[i], oldest) // slots not held may go to 0
		}
		hs.base += int64(oldest)
	}
	if hs.n == 0 || t < hs.base || t-hs.base > math.MaxUint32 {
		hs.base, hs.n, hs.next = t, 0, 0
	}
	hs.at[hs.next], hs.ms[hs.next] = uint32(t-hs.base), ms
	hs.next = (hs.next + 1) % RoundTripLen
	hs.n = min(hs.n+1, RoundTripLen)
}

// record keeps what ev changes of its instance's history: created by the first
// Upsert (with the record's round trip as the first poll), a transition added for
// each change of status, dropped by a Deregister.
func (h *Hub) record(ev registry.Event) {
	rec := &ev.Record
	h.histMu.Lock()
	defer h.histMu.Unlock()
	if ev.Kind == registry.Deregister {
		delete(h.hist, rec.ID)
		return
	}
	hs := h.hist[rec.ID]
	if hs == nil {
		hs = &history{}
		h.hist[rec.ID] = hs
		if !rec.LastSeen.IsZero() && rec.Check.RTTMS > 0 {
			hs.add(rec.LastSeen.Time, float32(rec.Check.RTTMS))
		}
		hs.push(Transition{At: rec.StatusSince, Status: rec.Status, Revision: rec.Revision,
			Reason: cut(joinReason("registered", reason(rec, nil)))})
		return
	}
	if last := hs.last(); last.Status == rec.Status && last.At.Equal(rec.StatusSince.Time) {
		return // a refresh, or a state change within the status
	}
	hs.push(Transition{At: rec.StatusSince, Status: rec.Status, Revision: rec.Revision,
		Reason: cut(reason(rec, hs.lastErr))})
}

func (hs *history) push(t Transition) {
	if len(hs.trans) < HistoryLen {
		hs.trans = append(hs.trans, t)
		return
	}
	hs.trans[hs.head] = t
	hs.head = (hs.head + 1) % HistoryLen
}

// last is the latest transition (there is at least one).
func (hs *history) last() Transition {
	return hs.trans[(hs.head+len(hs.trans)-1)%len(hs.trans)]
}

// history returns copies of instance id's transitions and polls, oldest first; ok is
// false when the Hub keeps no history of id.
func (h *Hub) history(id string) (trans []Transition, polls []RoundTrip, ok bool) {
	if h == nil {
		return nil, nil, false
	}
	h.histMu.Lock()
	defer h.histMu.Unlock()
	hs := h.hist[id]
	if hs == nil {
		return nil, nil, false
	}
	trans = make([]Transition, 0, len(hs.trans))
	trans = append(trans, hs.trans[hs.head:]...)
	trans = append(trans, hs.trans[:hs.head]...)
	polls = make([]RoundTrip, 0, hs.n)
	for i := range hs.n {
		j := (hs.next - hs.n + i + RoundTripLen) % RoundTripLen
		p := RoundTrip{At: contract.Time{Time: time.UnixMilli(hs.base + int64(hs.at[j])).UTC()}}
		if hs.ms[j] >= 0 {
			ms := math.Round(float64(hs.ms[j])*100) / 100
			p.MS = &ms
		}
		polls = append(polls, p)
	}
	return trans, polls, true
}

// reason is the check output behind rec's status (see Transition.Reason); lastErr is
// the error of the poll that preceded rec, if known.
func reason(rec *contract.Record, lastErr error) string {
	var parts []string
	switch rec.Status {
	case contract.Passing:
		return ""
	case contract.Maintenance:
		if m := rec.Maintenance; m != nil {
			s := "maintenance: " + m.Reason
			if !m.Until.IsZero() {
				s += " (until " + m.Until.UTC().Format(contract.TimeLayout) + ")"
			}
			return s
		}
		return "maintenance"
	}
	if f := rec.Check.Failures; f > 0 {
		s := fmt.Sprintf("%d failed polls", f)
		if f == 1 {
			s = "1 failed poll"
		}
		if lastErr != nil {
			s += ": " + lastErr.Error()
		}
		parts = append(parts, s)
	}
	for _, c := range rec.Checks {
		if c.Status == contract.Passing || (c.Name == "poll" && c.Note == "") {
			continue
		}
		s := c.Name + " " + string(c.Status)
		if c.Note != "" {
			s += ": " + c.Note
		}
		parts = append(parts, s)
	}
	if fault, _ := rec.State["fault"].(bool); fault {
		parts = append(parts, fmt.Sprintf("device fault 0x%04X", errorCode(rec.State["error_code"])))
	} else if warn, _ := rec.State["warning"].(bool); warn {
		parts = append(parts, "device warning")
	}
	if q := rec.Check.LinkQuality; q != nil && *q < 0.97 {
		parts = append(parts, fmt.Sprintf("link quality %.3f", *q))
	}
	if len(parts) == 0 && rec.Status == contract.Warning && lastErr != nil {
		parts = append(parts, lastErr.Error()) // an exception reply, a slow round trip
	}
	return strings.Join(parts, "; ")
}

// errorCode is a device state's error_code as a number (0 if it is none).
func errorCode(v any) uint64 {
	switch n := v.(type) {
	case int:
		return uint64(n)
	case int64:
		return uint64(n)
	case uint16:
		return uint64(n)
	case uint32:
		return uint64(n)
	case uint64:
		return n
	case float64:
		return uint64(n)
	}
	return 0
}

func joinReason(a, b string) string {
	if b == "" {
		return a
	}
	return a + "; " + b
}

// cut shortens s to maxReason bytes at a character boundary.
func cut(s string) string {
	if len(s) <= maxReason {
		return s
	}
	i := maxReason
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

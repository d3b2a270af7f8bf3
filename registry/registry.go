package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
)

// EventKind says what a change event asks the publisher to do.
type EventKind int

const (
	// Upsert: publish Event.Record (retained) at the instance's topic.
	Upsert EventKind = iota + 1
	// Deregister: publish an empty retained record at the instance's topic.
	Deregister
)

func (k EventKind) String() string {
	switch k {
	case Upsert:
		return "upsert"
	case Deregister:
		return "deregister"
	}
	return "unknown"
}

// Event is one change of the catalog. For Deregister, Record is the last record
// published, with its Service and ID naming the topic to clear. Record's maps and
// slices (State, Meta, DiscoveredBy) are shared with the registry, which never changes
// them in place: read them, never modify them.
type Event struct {
	Kind   EventKind
	Record contract.Record
	// Transition is true when the instance's status changed with this event (or it was
	// registered or deregistered), false for a refresh or a state-only change.
	Transition bool
}

// Registration describes a device that the gateway identified and polled successfully.
type Registration struct {
	ID           string // stable instance id (contract.InstanceID; docs/contract.md, "Instance id")
	Service      string
	Profile      string
	Endpoint     contract.Endpoint
	Identity     contract.Identity
	Meta         map[string]string
	DiscoveredBy []string
	// Check carries interval_ms, timeout_ms and detect_budget_ms; Failures and RTTMS are
	// filled in by the registry.
	Check contract.Check
	// Owner names the poller that registered the instance (e.g. "rtu:bus1",
	// "tcp:10.0.0.5:502"); not published. When the same device (same id) is registered
	// by another owner — it moved to another address or port — only the new owner's
	// observations count; the old owner learns from Observe that it lost the instance.
	Owner string
}

// Options configures a Registry.
type Options struct {
	Gateway string // gateway id written into every record
	Epoch   int64  // gateway epoch (≥ 1), written into every record and the revision's high bits
	Policy  Policy
	// Sink receives every change event, synchronously, in order, with the registry's lock
	// NOT held. It must not block for long: hand the event to a queue.
	Sink func(Event)
	// OnLimit is called (lock not held) when an instance's publication limit engages;
	// for a log line. Optional.
	OnLimit func(id string)
	// MaxInstances caps the live instances of this gateway (0: no cap). A registration
	// beyond it is refused with ErrTooManyInstances.
	MaxInstances int
	// MaxRecordBytes caps the JSON size of one record (0: no cap). A registration whose
	// record would be larger is refused with ErrRecordTooLarge.
	MaxRecordBytes int
	// Observed, if set, receives every poll outcome that Observe applies (a live
	// instance, polled by its owner): id and the observation, before the registry applies
	// it, so the events it causes reach Sink after it. It is called with the registry's
	// lock held, once per heartbeat poll: it must be quick and allocation-free (a ring
	// write), must not block and must not call the Registry. Optional.
	Observed func(id string, o Observation)
}

// Registration refusals (Register).
var (
	ErrTooManyInstances = errors.New("registry: instance cap reached")
	ErrRecordTooLarge   = errors.New("registry: record too large")
)

// Registry is the instance store. It is safe for concurrent use.
//
// The maps and slices an instance holds (state, meta, discovered_by) are replaced, never
// changed in place, so the records it emits share them instead of copying them (Get and
// Snapshot return copies); maps passed in (Registration.Meta, Observation.State) are
// kept as they are and must not be changed by the caller afterwards.
type Registry struct {
	opts Options

	mu        sync.Mutex
	sinkMu    sync.Mutex // held while the sink runs, taken before mu is released (unlockSink)
	instances map[string]*entry
	// timed holds the entries Tick must look at: held back by the publication limit,
	// or adopted and not claimed yet. Entries that no longer qualify are dropped by
	// Tick, so it costs nothing per instance at a steady state.
	timed map[*entry]struct{}
	// maint holds the instances in maintenance, by id, whether live or not (yet): an id
	// put in maintenance before its device registers, or read from the gateway's state
	// at start, is in maintenance from its registration on.
	maint map[string]contract.MaintenanceInfo
}

type entry struct {
	reg       Registration
	health    Health
	state     map[string]any
	live      bool      // false once deregistered (kept to continue its revision)
	seq       int64     // publications of this instance in this epoch
	rev       int64     // revision of the last record emitted, or the highest read back
	validTo   time.Time // valid_until of the last record emitted (or read back); zero: no lease
	published time.Time
	last      contract.Record // last record emitted

	adoptedAt time.Time // read back from an earlier epoch, not claimed by a poller yet (Owner "")

	// status and since are what the record says: Maintenance while r.maint has the id,
	// else the worst of health and checks (settleLocked).
	status contract.Status
	since  time.Time
	// checks are the instance's configured checks besides its heartbeat (ObserveCheck),
	// in the order they first reported.
	checks []*checkState
	// ttl > 0: a self-registered instance, whose heartbeat is its renewals (RegisterSelf,
	// Renew): critical when none came within ttl of renewed. note is the last renewal's.
	ttl     time.Duration
	renewed time.Time
	note    string

	tokens  float64   // publication token bucket (Policy.PublishBurst, PublishEvery)
	refill  time.Time // last refill of tokens
	held    bool      // a change is waiting for a token
	heldTr  bool      // the held change includes a status transition
	limited bool      // the limit engaged and was logged, until the bucket is full again
}

// checkState is one configured check of an instance besides its heartbeat.
type checkState struct {
	name, kind string
	status     contract.Status
	note       string
	since      time.Time
}

// New returns an empty registry.
func New(o Options) *Registry {
	return &Registry{opts: o, instances: make(map[string]*entry), timed: make(map[*entry]struct{}),
		maint: map[string]contract.MaintenanceInfo{}}
}

// Policy returns the health policy in force.
func (r *Registry) Policy() Policy { return r.opts.Policy }

// Register adds an instance, or revives a deregistered one with the same id (its
// revision keeps increasing), or updates the endpoint, identity, meta and discovery
// sources of a live one. first must be an answered observation: a device is registered
// only after a successful poll. It emits an Upsert event and returns the record.
// A new instance beyond Options.MaxInstances, or whose record would exceed
// Options.MaxRecordBytes, is refused (ErrTooManyInstances, ErrRecordTooLarge) and
// nothing changes.
func (r *Registry) Register(reg Registration, first Observation) (contract.Record, error) {
	r.mu.Lock()
	e, ok := r.instances[reg.ID]
	if err := r.admitLocked(reg, ok && e.live); err != nil {
		r.mu.Unlock()
		return contract.Record{}, err
	}
	if ok && e.live && ownerConflict(e, reg.Owner) {
		r.mu.Unlock()
		return contract.Record{}, fmt.Errorf("%w: %s", ErrNotOwner, reg.ID)
	}
	transition := true
	if ok && e.live && !e.adoptedAt.IsZero() {
		// Read back at start and now found again: a fresh start in this epoch.
		e.adoptedAt = time.Time{}
		e.reg = reg
		e.reg.DiscoveredBy = mergeSorted(nil, reg.DiscoveredBy)
		e.health = NewHealth(first, r.opts.Policy)
		e.status, e.since = "", time.Time{}
	} else if ok && e.live {
		// Same device seen again (another way or another address): merge, keep health.
		reg.DiscoveredBy = mergeSorted(e.reg.DiscoveredBy, reg.DiscoveredBy)
		e.reg = reg
		e.health.Observe(first, r.opts.Policy)
		transition = false
	} else {
		if !ok {
			e = &entry{}
			r.instances[reg.ID] = e
		}
		e.reg = reg
		e.reg.DiscoveredBy = mergeSorted(nil, reg.DiscoveredBy)
		e.health = NewHealth(first, r.opts.Policy)
		e.status, e.since, e.checks = "", time.Time{}, nil
		e.live = true
	}
	if first.State != nil {
		e.state = first.State
	}
	e.ttl, e.note = 0, ""
	r.settleLocked(e, first.At)
	rec := r.emitLocked(e, first.At)
	e.take(first.At, r.opts.Policy)
	r.unlockSink(Event{Kind: Upsert, Record: rec, Transition: transition})
	return rec, nil
}

// admitLocked applies the caps to a registration; live says the id is live already.
func (r *Registry) admitLocked(reg Registration, live bool) error {
	if n := r.opts.MaxInstances; n > 0 && !live {
		count := 0
		for _, e := range r.instances {
			if e.live {
				count++
			}
		}
		if count >= n {
			return fmt.Errorf("%w (%d): %s not registered", ErrTooManyInstances, n, reg.ID)
		}
	}
	if max := r.opts.MaxRecordBytes; max > 0 {
		b, err := json.Marshal(contract.Record{Schema: contract.Schema, ID: reg.ID, Service: reg.Service, Gateway: r.opts.Gateway,
			Endpoint: reg.Endpoint, Identity: reg.Identity, Profile: reg.Profile, Check: reg.Check,
			DiscoveredBy: reg.DiscoveredBy, Meta: reg.Meta})
		if err == nil && len(b)+256 > max { // + status, times, revision and state
			return fmt.Errorf("%w: %s would take about %d bytes, the cap is %d", ErrRecordTooLarge, reg.ID, len(b)+256, max)
		}
	}
	return nil
}

// Observe feeds a poll outcome of instance id, polled by owner. It emits an Upsert when the status or the
// decoded state changed or the refresh interval elapsed, and a Deregister once the
// instance has been critical for DeregisterCriticalAfter. It returns live=false when the
// instance is (now) deregistered or unknown, so the caller stops polling it as a known
// device. It also returns false, ignoring o, when owner is not the instance's owner
// any more (the device was registered again through another endpoint).
func (r *Registry) Observe(id, owner string, o Observation) (live bool) {
	r.mu.Lock()
	e, ok := r.instances[id]
	if !ok || !e.live || e.reg.Owner != owner {
		r.mu.Unlock()
		return false
	}
	if r.opts.Observed != nil {
		r.opts.Observed(id, o)
	}
	p := r.opts.Policy
	e.health.Observe(o, p)
	changed := r.settleLocked(e, o.At)
	if o.State != nil && !stateEqual(o.State, e.state) {
		e.state = o.State
		changed = true
	}
	if r.expiredLocked(e, o.At) {
		r.deregisterLocked(e)
		return false
	}
	// Failures count changes on every failed poll; publish it only with a transition or
	// a refresh, like last_seen.
	if !changed && !e.held && o.At.Sub(e.published) < p.RefreshInterval {
		r.mu.Unlock()
		return true
	}
	r.publishLocked(e, o.At, changed)
	return true
}

// publishLocked emits e's record if its publication bucket has a token, else holds it
// back until Tick finds one; a transition to critical is emitted at once regardless (it
// still spends a token when there is one). It unlocks r.mu.
func (r *Registry) publishLocked(e *entry, now time.Time, changed bool) {
	transition := e.last.Status != e.status
	death := transition && e.status == contract.Critical
	if !e.take(now, r.opts.Policy) && !death {
		e.held = true
		e.heldTr = e.heldTr || transition
		r.timed[e] = struct{}{}
		engaged := !e.limited
		e.limited = true
		id := e.reg.ID
		r.mu.Unlock()
		if engaged && r.opts.OnLimit != nil {
			r.opts.OnLimit(id)
		}
		return
	}
	transition = transition || e.heldTr
	e.held, e.heldTr = false, false
	rec := r.emitLocked(e, now)
	r.unlockSink(Event{Kind: Upsert, Record: rec, Transition: transition})
}

// take takes a publication token at now, reporting false when the bucket is empty.
func (e *entry) take(now time.Time, p Policy) bool {
	if p.PublishBurst < 0 || p.PublishEvery <= 0 {
		return true
	}
	burst := float64(max(p.PublishBurst, 1))
	if e.refill.IsZero() {
		e.tokens, e.refill = burst, now
	}
	if dt := now.Sub(e.refill); dt > 0 {
		e.tokens = min(burst, e.tokens+float64(dt)/float64(p.PublishEvery))
		e.refill = now
	}
	if e.tokens >= burst {
		e.limited = false
	}
	if e.tokens < 1 {
		return false
	}
	e.tokens--
	return true
}

// MaxAdoptedRevision is the highest revision Reconcile takes over from a read-back
// record (2^53 − 2^40): new revisions stay exact in JSON numbers (2^53) with room for
// 2^40 more publications, whatever a record in the gateway's subtree claimed.
const MaxAdoptedRevision = 1<<53 - 1<<40

// Reconcile compares what the broker retains in this gateway's subtree (read back at
// start and after every reconnect; docs/contract.md, "Gateway start" and "Broker
// outage") with what the registry vouches for now, whatever the records' epochs:
//
//   - a record of a live instance: vouched for; the publisher's resynchronisation
//     replaces it with the current record;
//   - a record of an instance this gateway deregistered (a broker restored from its
//     persistence file, say): returned in clear, to be cleared at once;
//   - a record of an id the registry does not know (an earlier run's, whatever its
//     epoch, even a later one than ours after a lost state directory, or a forgery in
//     our subtree): adopted. It keeps its last status until a poller registers the same
//     id again (then it starts afresh), or until Policy.RestartGrace has passed: then
//     Tick makes it critical and, DeregisterCriticalAfter later, deregisters it, so no
//     stale record is left behind.
//
// It returns the records adopted and those to clear. Records of other gateways are
// ignored. Every record's revision (up to MaxAdoptedRevision) becomes a floor for its
// id, so revisions stay strictly increasing even when the epoch went back (a lost state
// directory); a live instance already published at or below that floor in this run is
// published again above it (an Upsert event), so consumers that keep the highest
// revision take the current record. Nothing else is published by Reconcile.
func (r *Registry) Reconcile(recs []contract.Record, now time.Time) (adopted, clear []contract.Record) {
	r.mu.Lock()
	var bumped []contract.Record
	defer func() { r.unlockSink(bumpedEvents(bumped)...) }()
	for _, rec := range recs {
		if rec.Gateway != r.opts.Gateway || rec.ID == "" {
			continue // another gateway's
		}
		floor := min(max(rec.Revision, 0), MaxAdoptedRevision)
		if e, ok := r.instances[rec.ID]; ok {
			if !e.live {
				clear = append(clear, rec)
			}
			bumped = r.floorLocked(e, floor, now, bumped)
			continue
		}
		e := &entry{
			reg: Registration{
				ID: rec.ID, Service: rec.Service, Profile: rec.Profile, Endpoint: rec.Endpoint,
				Identity: rec.Identity, Meta: rec.Meta, DiscoveredBy: rec.DiscoveredBy, Check: rec.Check,
			},
			health:    Health{Status: adoptedHealth(rec.Status), Since: rec.StatusSince.Time, LastSeen: rec.LastSeen.Time, Failures: rec.Check.Failures},
			status:    rec.Status,
			since:     rec.StatusSince.Time,
			state:     rec.State,
			live:      true,
			adoptedAt: now,
			last:      rec,
			rev:       floor,
			validTo:   rec.ValidUntil.Time,
		}
		r.instances[rec.ID] = e
		r.settleLocked(e, now)
		r.timed[e] = struct{}{}
		adopted = append(adopted, rec)
	}
	return adopted, clear
}

// Floor takes the revisions of records read back from this gateway's subtree that it
// will not adopt (they fail its signature check: a forgery, or its own records signed
// with a key lost with the state directory; the caller clears them) as floors, as
// Reconcile does, without adopting anything: an instance registered later under such an
// id continues above that revision (up to MaxAdoptedRevision), so consumers that keep
// the highest revision take its records. Records of other gateways are ignored.
func (r *Registry) Floor(recs []contract.Record, now time.Time) {
	r.mu.Lock()
	var bumped []contract.Record
	for _, rec := range recs {
		if rec.Gateway != r.opts.Gateway || rec.ID == "" {
			continue
		}
		floor := min(max(rec.Revision, 0), MaxAdoptedRevision)
		e, ok := r.instances[rec.ID]
		if !ok {
			// Deregistered, as far as this run knows: kept for its revision only.
			r.instances[rec.ID] = &entry{reg: Registration{ID: rec.ID, Service: rec.Service}, rev: floor}
			continue
		}
		bumped = r.floorLocked(e, floor, now, bumped)
	}
	r.unlockSink(bumpedEvents(bumped)...)
}

// floorLocked raises e's revision to at least floor; a live instance already published
// in this run at or below it is emitted again above it (appended to bumped). r.mu held.
func (r *Registry) floorLocked(e *entry, floor int64, now time.Time, bumped []contract.Record) []contract.Record {
	published := e.rev
	e.rev = max(e.rev, floor)
	if e.live && e.adoptedAt.IsZero() && e.seq > 0 && published <= floor {
		// Published in this run below what the broker held (the epoch went back):
		// publish again above it, so consumers that keep the highest revision take
		// the current record.
		bumped = append(bumped, r.emitLocked(e, now))
	}
	return bumped
}

// bumpedEvents are the Upsert events of records floorLocked emitted again.
func bumpedEvents(bumped []contract.Record) []Event {
	evs := make([]Event, len(bumped))
	for i, rec := range bumped {
		evs[i] = Event{Kind: Upsert, Record: rec}
	}
	return evs
}

// Tick advances time-driven transitions; the gateway calls it periodically (e.g. every
// 100 ms): adopted instances past RestartGrace become critical, self-registered ones
// whose TTL ran out without a renewal become critical, critical ones of either kind
// past DeregisterCriticalAfter are deregistered, maintenance whose until has passed
// ends, and records held back by the publication limit are published once a token is
// free.
func (r *Registry) Tick(now time.Time) {
	p := r.opts.Policy
	r.mu.Lock()
	var due []*entry
	for e := range r.timed {
		if e.live && (e.held || !e.adoptedAt.IsZero() || e.ttl > 0 || r.maintUntil(e.reg.ID)) {
			due = append(due, e)
		} else {
			delete(r.timed, e)
		}
	}
	r.mu.Unlock()
	for _, e := range due {
		r.mu.Lock()
		if !e.live {
			r.mu.Unlock()
			continue
		}
		changed := false
		if m, ok := r.maint[e.reg.ID]; ok && !m.Until.IsZero() && !now.Before(m.Until.Time) {
			delete(r.maint, e.reg.ID)
			changed = true
		}
		switch {
		case !e.adoptedAt.IsZero() && e.health.Status != contract.Critical && now.Sub(e.adoptedAt) >= p.RestartGrace:
			e.health.set(contract.Critical, now)
			e.health.Failures = p.FailuresBeforeCritical
		case e.ttl > 0 && e.health.Status != contract.Critical && now.Sub(e.renewed) > e.ttl:
			e.health.set(contract.Critical, now)
			e.note = fmt.Sprintf("TTL expired: no renewal within %v", e.ttl)
			changed = true
		}
		changed = r.settleLocked(e, now) || changed
		switch {
		case (!e.adoptedAt.IsZero() || e.ttl > 0) && r.expiredLocked(e, now):
			r.deregisterLocked(e)
		case changed || e.held:
			r.publishLocked(e, now, true)
		default:
			r.mu.Unlock()
		}
	}
}

// maintUntil reports whether id is in maintenance that ends by itself (Tick ends it).
// r.mu held.
func (r *Registry) maintUntil(id string) bool {
	m, ok := r.maint[id]
	return ok && !m.Until.IsZero()
}

// expiredLocked reports whether e's heartbeat (its poll, or its TTL renewals) has been
// critical for DeregisterCriticalAfter at now (an adopted instance: since it was
// adopted, at least). A configured check alone never deregisters an instance whose
// heartbeat answers (its poller would register it again at once, and it would flap);
// an instance in maintenance is never deregistered. r.mu held.
func (r *Registry) expiredLocked(e *entry, now time.Time) bool {
	if _, inMaint := r.maint[e.reg.ID]; inMaint || e.health.Status != contract.Critical {
		return false
	}
	since := e.health.Since
	if !e.adoptedAt.IsZero() {
		since = later(since, e.adoptedAt)
	}
	return now.Sub(since) >= r.opts.Policy.DeregisterCriticalAfter
}

// deregisterLocked deregisters e and emits its Deregister event; it unlocks r.mu.
func (r *Registry) deregisterLocked(e *entry) {
	r.unlockSink(r.dropLocked(e))
}

// dropLocked deregisters e and returns its Deregister event, for the caller to emit
// (unlockSink). r.mu held.
func (r *Registry) dropLocked(e *entry) Event {
	e.live = false
	e.seq++
	return Event{Kind: Deregister, Record: e.last, Transition: true}
}

// settleLocked sets the status the record says (Maintenance while the id is in
// maintenance, else the worst of the heartbeat's and the checks' statuses) and reports
// whether it changed. A change takes the heartbeat's time when the heartbeat's status
// is the one shown, else now. r.mu held.
func (r *Registry) settleLocked(e *entry, now time.Time) bool {
	st, since := e.health.Status, e.health.Since
	for _, c := range e.checks {
		if worse(c.status, st) {
			st, since = c.status, c.since
		}
	}
	if m, ok := r.maint[e.reg.ID]; ok {
		st, since = contract.Maintenance, now
		if !m.Until.IsZero() {
			r.timed[e] = struct{}{} // Tick ends it
		}
	}
	if st == e.status {
		return false
	}
	if since.IsZero() || since.Before(e.since) {
		since = now
	}
	e.status, e.since = st, since
	return true
}

// worse reports whether status a is worse than b: critical, then warning, then passing
// (anything else counts as passing).
func worse(a, b contract.Status) bool {
	rank := func(s contract.Status) int {
		switch s {
		case contract.Critical:
			return 2
		case contract.Warning:
			return 1
		}
		return 0
	}
	return rank(a) > rank(b)
}

// adoptedHealth is the heartbeat status taken over from a record read back: its status,
// except that maintenance (whatever was under it is unknown) counts as warning.
func adoptedHealth(s contract.Status) contract.Status {
	if s == contract.Maintenance {
		return contract.Warning
	}
	return s
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// UpdateSources records new discovery facts about a live instance polled by owner: the
// ways it was seen are merged into discovered_by (it lists every way the device was
// seen), and its meta is replaced (e.g. mDNS TXT changed, or the device is now also a
// configured target). An Upsert is emitted when something changed.
func (r *Registry) UpdateSources(id, owner string, discoveredBy []string, meta map[string]string) {
	r.mu.Lock()
	e, ok := r.instances[id]
	if !ok || !e.live || e.reg.Owner != owner {
		r.mu.Unlock()
		return
	}
	db := mergeSorted(e.reg.DiscoveredBy, discoveredBy)
	if slices.Equal(db, e.reg.DiscoveredBy) && maps.Equal(meta, e.reg.Meta) {
		r.mu.Unlock()
		return
	}
	e.reg.DiscoveredBy, e.reg.Meta = db, maps.Clone(meta)
	r.publishLocked(e, time.Now(), true)
}

// SetCheck replaces the configured part of a live instance's check (interval_ms,
// timeout_ms, detect_budget_ms) and emits an Upsert when it changed. Failures and RTTMS
// are kept by the registry.
func (r *Registry) SetCheck(id string, c contract.Check) {
	r.mu.Lock()
	e, ok := r.instances[id]
	if !ok || !e.live || (e.reg.Check.IntervalMS == c.IntervalMS && e.reg.Check.TimeoutMS == c.TimeoutMS &&
		e.reg.Check.DetectBudgetMS == c.DetectBudgetMS) {
		r.mu.Unlock()
		return
	}
	e.reg.Check = c
	rec := r.emitLocked(e, e.published)
	r.unlockSink(Event{Kind: Upsert, Record: rec})
}

// emitLocked builds the record of e for publication at now, bumping its revision.
func (r *Registry) emitLocked(e *entry, now time.Time) contract.Record {
	e.seq++
	e.rev = max(Revision(r.opts.Epoch, e.seq), e.rev+1)
	e.validTo = time.Time{}
	if l := r.opts.Policy.InstanceLease; l > 0 {
		e.validTo = now.Add(l)
	}
	e.published = now
	e.last = r.recordShared(e)
	return e.last
}

// recordLocked is e's current record with its own copies of the maps and slices.
func (r *Registry) recordLocked(e *entry) contract.Record {
	return ownCopy(r.recordShared(e))
}

// ownCopy gives rec its own copies of the maps and slices it shares with an entry.
func ownCopy(rec contract.Record) contract.Record {
	rec.State = maps.Clone(rec.State)
	rec.DiscoveredBy = slices.Clone(rec.DiscoveredBy)
	rec.Meta = maps.Clone(rec.Meta)
	return rec
}

// recordShared is e's current record, sharing e's maps and slices (see Registry).
func (r *Registry) recordShared(e *entry) contract.Record {
	chk := e.reg.Check
	chk.Failures = e.health.Failures
	chk.RTTMS = float64(e.health.RTT.Round(10*time.Microsecond)) / float64(time.Millisecond)
	chk.LinkQuality = nil
	if e.health.Link >= 0 {
		q := math.Round(e.health.Link*1000) / 1000
		chk.LinkQuality = &q
	}
	var lastSeen contract.Time
	if !e.health.LastSeen.IsZero() {
		lastSeen = contract.Time{Time: e.health.LastSeen}
	}
	meta := e.reg.Meta
	if meta == nil {
		meta = map[string]string{} // encoded as {}, not null
	}
	state := e.state
	if state == nil {
		state = map[string]any{}
	}
	return contract.Record{
		Schema:       contract.Schema,
		ID:           e.reg.ID,
		Service:      e.reg.Service,
		Gateway:      r.opts.Gateway,
		Epoch:        r.opts.Epoch,
		Revision:     e.rev,
		Status:       e.status,
		StatusSince:  contract.Time{Time: e.since},
		LastSeen:     lastSeen,
		Endpoint:     e.reg.Endpoint,
		Identity:     e.reg.Identity,
		Profile:      e.reg.Profile,
		State:        state,
		Check:        chk,
		DiscoveredBy: e.reg.DiscoveredBy,
		Meta:         meta,
		ValidUntil:   contract.Time{Time: e.validTo},
		Checks:       r.checksOf(e),
		Maintenance:  r.maintOf(e),
	}
}

// checksOf is the record's checks: the heartbeat (poll, or ttl with its note) and the
// configured ones, when there is more than a plain poll; nil otherwise.
func (r *Registry) checksOf(e *entry) []contract.CheckState {
	if len(e.checks) == 0 && e.ttl == 0 {
		return nil
	}
	first := contract.CheckState{Name: "poll", Kind: "poll", Status: e.health.Status, Since: contract.Time{Time: e.health.Since}}
	if e.ttl > 0 {
		first.Name, first.Kind, first.Note = "ttl", "ttl", e.note
	}
	out := []contract.CheckState{first}
	for _, c := range e.checks {
		out = append(out, contract.CheckState{Name: c.name, Kind: c.kind, Status: c.status, Note: c.note, Since: contract.Time{Time: c.since}})
	}
	return out
}

// maintOf is the record's maintenance, or nil.
func (r *Registry) maintOf(e *entry) *contract.MaintenanceInfo {
	m, ok := r.maint[e.reg.ID]
	if !ok {
		return nil
	}
	return &m
}

// Revision is the record revision for the seq-th publication of an instance in the given
// gateway epoch: epoch × 2^32 + seq, or one more than the instance's previous revision
// when that is higher (see Reconcile). It increases strictly for an instance across
// epochs (the epoch is bumped on every gateway start) without persisting per-instance
// counters, and stays below 2^53 (exact in JSON/JavaScript numbers) for epochs < 2^21.
func Revision(epoch, seq int64) int64 { return epoch<<32 + seq }

// Owner returns the owner (Registration.Owner) of the live instance id.
func (r *Registry) Owner(id string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.instances[id]
	if !ok || !e.live {
		return "", false
	}
	return e.reg.Owner, true
}

// Get returns the last record emitted for a live instance.
func (r *Registry) Get(id string) (contract.Record, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.instances[id]
	if !ok || !e.live {
		return contract.Record{}, false
	}
	return r.recordLocked(e), true
}

// Snapshot returns the current record of every live instance, sorted by id.
func (r *Registry) Snapshot() []contract.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]contract.Record, 0, len(r.instances))
	for _, e := range r.instances {
		if e.live {
			out = append(out, r.recordLocked(e))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Select returns the current record of every live instance of service ("": of every
// service) for which keep returns true, sorted by id: Snapshot without copying the
// records that are not kept, for a caller that asks often (a router picking an
// instance per request). keep gets the instance's owner (Registration.Owner) and a
// record that shares the registry's maps; it is called with the registry's lock held:
// it must not keep or change the record's maps, nor call the Registry. The records
// returned have their own copies.
func (r *Registry) Select(service string, keep func(owner string, rec *contract.Record) bool) []contract.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []contract.Record
	for _, e := range r.instances {
		if !e.live || (service != "" && e.reg.Service != service) {
			continue
		}
		if rec := r.recordShared(e); keep(e.reg.Owner, &rec) {
			out = append(out, ownCopy(rec))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// unlockSink releases r.mu and hands evs to the sink, in order. The sink lock is taken
// before r.mu is released, so events reach the sink in the order the registry emitted
// them, whichever goroutines emitted them (a renewal, a tick, a check, a poll of one
// instance at once): a late Upsert can never follow its instance's Deregister. The sink
// must not call the Registry (Options.Sink).
func (r *Registry) unlockSink(evs ...Event) {
	r.sinkMu.Lock()
	r.mu.Unlock()
	defer r.sinkMu.Unlock()
	for _, ev := range evs {
		r.sink(ev)
	}
}

func (r *Registry) sink(ev Event) {
	if r.opts.Sink != nil {
		r.opts.Sink(ev)
	}
}

// stateEqual reports whether two decoded device states are equal, as reflect.DeepEqual
// would, without reflection for the flat maps of scalars that decoders produce
// (strings, booleans, numbers); other values fall back to reflect.DeepEqual.
func stateEqual(a, b map[string]any) bool {
	if len(a) != len(b) || (a == nil) != (b == nil) {
		return false
	}
	for k, va := range a {
		vb, ok := b[k]
		if !ok {
			return false
		}
		switch x := va.(type) {
		case string:
			if y, ok := vb.(string); !ok || x != y {
				return false
			}
		case bool:
			if y, ok := vb.(bool); !ok || x != y {
				return false
			}
		case int:
			if y, ok := vb.(int); !ok || x != y {
				return false
			}
		case int64:
			if y, ok := vb.(int64); !ok || x != y {
				return false
			}
		case uint16:
			if y, ok := vb.(uint16); !ok || x != y {
				return false
			}
		case float64:
			// DeepEqual compares floats with ==: NaN differs from itself.
			if y, ok := vb.(float64); !ok || x != y {
				return false
			}
		default:
			if !reflect.DeepEqual(va, vb) {
				return false
			}
		}
	}
	return true
}

func mergeSorted(a, b []string) []string {
	out := slices.Concat(a, b)
	slices.Sort(out)
	return slices.Compact(out)
}

// Errors of the self-registration and maintenance methods.
var (
	// ErrUnknownInstance: no live instance has this id.
	ErrUnknownInstance = errors.New("registry: no live instance with this id")
	// ErrNotOwner: the instance is live but belongs to another owner (another
	// registering client, or a poller of the gateway).
	ErrNotOwner = errors.New("registry: the instance belongs to another owner")
)

// SelfOwnerPrefix starts the owner (Registration.Owner) of every self-registered
// instance. An instance never changes hands between a self-registering client and a
// poller of the gateway, nor between two clients (Register refuses with ErrNotOwner):
// a client cannot take over a polled device's id, nor a poller a module's.
const SelfOwnerPrefix = "self:"

// ownerConflict reports whether a registration by owner may not take over the live
// entry e. An adopted entry (no owner yet) was self-registered if its record said so.
func ownerConflict(e *entry, owner string) bool {
	newSelf := strings.HasPrefix(owner, SelfOwnerPrefix)
	if !e.adoptedAt.IsZero() {
		return slices.Contains(e.reg.DiscoveredBy, "self") != newSelf
	}
	cur := e.reg.Owner
	return cur != owner && (newSelf || strings.HasPrefix(cur, SelfOwnerPrefix))
}

// RegisterSelf registers a self-registered instance (docs/contract.md,
// "Self-registration"): its heartbeat is its renewals, ttl apart at most. status is
// the first renewal's (contract.TTLPass, TTLWarn, TTLFail; "" is pass), note its note.
// reg.Owner names the registering client (SelfOwnerPrefix + its name): an id already
// live under another owner is refused (ErrNotOwner), as are the caps of Register. A live instance
// of the same owner is updated (a client that registers again after a reconnection).
func (r *Registry) RegisterSelf(reg Registration, ttl time.Duration, status, note string, now time.Time) (contract.Record, error) {
	first := Observation{At: now, Answered: true, Outcome: OutcomeOK}
	if _, err := r.Register(reg, first); err != nil {
		return contract.Record{}, err
	}
	return r.Renew(reg.ID, reg.Owner, ttl, status, note, now)
}

// Renew takes a renewal of the self-registered instance id from owner: status pass,
// warn or fail ("" is pass) sets its heartbeat's status at once (Consul's TTL check),
// note becomes the check's note (contract.CleanNote), and the TTL starts again (ttl > 0
// replaces it). A change is published. Errors: ErrUnknownInstance, ErrNotOwner.
func (r *Registry) Renew(id, owner string, ttl time.Duration, status, note string, now time.Time) (contract.Record, error) {
	r.mu.Lock()
	e, ok := r.instances[id]
	switch {
	case !ok || !e.live:
		r.mu.Unlock()
		return contract.Record{}, fmt.Errorf("%w: %s", ErrUnknownInstance, id)
	case e.reg.Owner != owner:
		r.mu.Unlock()
		return contract.Record{}, fmt.Errorf("%w: %s", ErrNotOwner, id)
	}
	if ttl > 0 {
		e.ttl = ttl
	}
	e.renewed = now
	want := contract.Passing
	switch status {
	case contract.TTLWarn:
		want = contract.Warning
	case contract.TTLFail:
		want = contract.Critical
	}
	if want != contract.Critical {
		e.health.LastSeen, e.health.Failures = now, 0
	}
	changed := false
	if e.health.Status != want {
		e.health.set(want, now)
		changed = true
	}
	if n := contract.CleanNote(note); n != e.note {
		e.note, changed = n, true
	}
	changed = r.settleLocked(e, now) || changed
	r.timed[e] = struct{}{}
	if !changed && now.Sub(e.published) < r.opts.Policy.RefreshInterval {
		rec := e.last
		r.mu.Unlock()
		return rec, nil
	}
	r.publishLocked(e, now, true)
	rec, _ := r.Get(id)
	return rec, nil
}

// Deregister removes the live instance id of owner at once (an explicit
// deregistration): its record is cleared. Errors: ErrUnknownInstance, ErrNotOwner.
func (r *Registry) Deregister(id, owner string) error {
	r.mu.Lock()
	e, ok := r.instances[id]
	switch {
	case !ok || !e.live:
		r.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrUnknownInstance, id)
	case e.reg.Owner != owner:
		r.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNotOwner, id)
	}
	r.deregisterLocked(e)
	return nil
}

// ObserveCheck takes one result of the configured check name (of kind script, http or
// tcp) of every live instance polled by owner: its status counts in the instance's
// (the worst of its checks), its note is shown in the record's checks. A change is
// published.
func (r *Registry) ObserveCheck(owner, name, kind string, status contract.Status, note string, now time.Time) {
	note = contract.CleanNote(note)
	r.mu.Lock()
	todo := r.liveOfLocked(owner)
	r.mu.Unlock()
	for _, e := range todo {
		r.mu.Lock()
		if !e.live || e.reg.Owner != owner {
			r.mu.Unlock()
			continue
		}
		var c *checkState
		for _, x := range e.checks {
			if x.name == name {
				c = x
			}
		}
		changed := false
		if c == nil {
			c = &checkState{name: name, kind: kind, status: status, note: note, since: now}
			e.checks = append(slices.Clone(e.checks), c)
			changed = true
		} else if c.status != status || c.note != note {
			nc := *c
			if nc.status != status {
				nc.since = now
			}
			nc.status, nc.note = status, note
			e.checks = slices.Clone(e.checks)
			e.checks[slices.Index(e.checks, c)] = &nc
			changed = true
		}
		changed = r.settleLocked(e, now) || changed
		if !changed {
			r.mu.Unlock()
			continue
		}
		if r.expiredLocked(e, now) {
			r.deregisterLocked(e)
			continue
		}
		r.publishLocked(e, now, true)
	}
}

// SetMaintenance puts the instance id in maintenance (m) or ends it (m nil): while in
// maintenance its status is contract.Maintenance with m in its record, it is never
// deregistered, and its polls go on without counting (when it ends, its status is its
// heartbeat's and checks' again). The id need not be live: maintenance applies from
// its registration on. A live instance's record is published. It reports whether id is
// live now.
func (r *Registry) SetMaintenance(id string, m *contract.MaintenanceInfo, now time.Time) (live bool) {
	r.mu.Lock()
	if m == nil {
		delete(r.maint, id)
	} else {
		mm := *m
		mm.Reason = contract.CleanNote(mm.Reason)
		r.maint[id] = mm
	}
	e, ok := r.instances[id]
	if !ok || !e.live {
		r.mu.Unlock()
		return false
	}
	if m != nil && !m.Until.IsZero() {
		r.timed[e] = struct{}{}
	}
	changed := r.settleLocked(e, now)
	if !changed && m == nil {
		r.mu.Unlock()
		return true
	}
	r.publishLocked(e, now, true)
	return true
}

// Maintenance returns every id in maintenance with its reason, since and until (the
// gateway persists it in its state directory).
func (r *Registry) Maintenance() map[string]contract.MaintenanceInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.maint)
}

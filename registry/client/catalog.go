package client

import (
	"crypto/sha256"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
)

// Gateway states of Instance.GatewayState.
const (
	GatewayOnline  = contract.StateOnline  // the gateway's status record says "online"
	GatewayOffline = contract.StateOffline // "offline": clean shutdown, or the broker's will
	GatewayUnknown = "unknown"             // no status record known for the gateway
)

// Instance is one catalog entry: the instance record as its gateway last published it,
// plus what the client knows about how current it is.
type Instance struct {
	contract.Record
	// Stale: the record has not been confirmed by a broker since this process started
	// (it comes from the cache file), or, with Options.StaleAfter > 0, not for longer
	// than StaleAfter. Pick skips stale entries unless AllowStale is given.
	Stale bool
	// Age is how long ago the record was last known to be current. It is 0 while the
	// broker connection that delivered it is up (the broker pushes every change, so the
	// record is current); during an outage it is the time since the connection was
	// lost; for an entry read from the cache file, the time since the process that
	// wrote it last had it confirmed.
	Age time.Duration
	// GatewayState is the state of the publishing gateway: GatewayOnline,
	// GatewayOffline or GatewayUnknown.
	GatewayState string
	// GatewayEpoch is the epoch of the gateway's status record (0 when unknown): the
	// gateway's current epoch. Pick never returns an instance whose Epoch is below it.
	GatewayEpoch int64
	// Expired: the record's lease (valid_until) or its gateway's status lease has
	// expired (contract.Lease, with Options.MaxClockSkew): the instance is unknown, not
	// live, whatever its status says. Pick never returns it, not even with AllowStale,
	// and Subscribe reports the moment it expires as an Updated change.
	Expired bool
	// SeenBy lists, for an instance returned by Pick or Live or merged by MergeByID,
	// the gateways (ids, sorted) that publish a record of this id that was merged into
	// it: a device seen by several gateways is one instance. Nil from Instances.
	SeenBy []string
	// Fallback: not from the catalog: a configured fallback (Options.Fallback), used
	// because the catalog was unreachable and nothing was known of the service; no
	// health behind it (Status and Gateway are empty). Only Pick and Wait return one.
	Fallback bool
}

// live reports whether in could be picked at all (passing or warning, gateway not
// offline, lease valid, not stale).
func (in *Instance) live() bool {
	return (in.Status == contract.Passing || in.Status == contract.Warning) &&
		in.GatewayState != GatewayOffline && !in.Expired && !in.Stale
}

// better reports whether a is the better record of one device than b: live before not
// live, passing before warning, then the newer last_seen (the gateway that heard from
// the device last), then the newer status_since.
func better(a, b *Instance) bool {
	if al, bl := a.live(), b.live(); al != bl {
		return al
	}
	if ap, bp := a.Status == contract.Passing, b.Status == contract.Passing; ap != bp {
		return ap
	}
	if !a.LastSeen.Equal(b.LastSeen.Time) {
		return a.LastSeen.After(b.LastSeen.Time)
	}
	return a.StatusSince.After(b.StatusSince.Time)
}

// MergeByID merges the records of one device (the same id, published by several
// gateways: docs/contract.md, "Instance id") into one instance: the better record
// (live before not live, passing before warning, then the newest last_seen), with
// SeenBy listing every gateway that published one. The result keeps the order of the
// first record of each id. ins is not modified.
func MergeByID(ins []Instance) []Instance {
	out := make([]Instance, 0, len(ins))
	at := make(map[string]int, len(ins)) // id → index in out
	for _, in := range ins {
		i, ok := at[in.ID]
		if !ok {
			at[in.ID] = len(out)
			in.SeenBy = []string{in.Gateway}
			out = append(out, in)
			continue
		}
		seen := append(out[i].SeenBy, in.Gateway)
		if better(&in, &out[i]) {
			out[i] = in
		}
		slices.Sort(seen)
		out[i].SeenBy = slices.Compact(seen)
	}
	return out
}

// ChangeKind says what happened to an instance.
type ChangeKind int

// Kinds of Change.
const (
	// Added: a new entry (a record on a topic the client did not know).
	Added ChangeKind = iota + 1
	// Updated: the record was replaced (new revision, status, epoch …), a cached entry
	// was confirmed by a broker, or its gateway's status or epoch changed.
	Updated
	// Removed: deregistered (empty retained record), or not confirmed by the broker at
	// a resynchronisation. Change.Instance is the last known state.
	Removed
)

// String returns "added", "updated" or "removed".
func (k ChangeKind) String() string {
	switch k {
	case Added:
		return "added"
	case Updated:
		return "updated"
	case Removed:
		return "removed"
	}
	return "unknown"
}

// Change is one change of one catalog entry, delivered by Subscribe.
type Change struct {
	Kind ChangeKind
	// Instance is the entry after the change (for Removed, the last known state), with
	// Stale, Age and GatewayState as of the change.
	Instance Instance
	// Missed is the number of changes dropped just before this one because the
	// subscriber's buffer was full (drop-oldest). A subscriber that sees Missed > 0
	// and needs the whole picture re-reads it with Instances.
	Missed uint64
}

// entry is one instance topic's record.
type entry struct {
	topic         string
	svc, gw, inst string // topic levels (slugs)
	rec           *contract.Record
	gen           uint64    // connection generation that last delivered it; 0: the cache file
	confirmed     time.Time // when last known current (meaningful when not live)
	cached        bool      // read from the cache file, not confirmed since
	expired       bool      // Expired when last reported (see expireLocked)
	// sum is the SHA-256 of the payload rec was decoded from, once its signature (with
	// trusted keys) checked out; zero for an entry from the cache file. The same
	// payload again (every resynchronisation delivers it) is taken as rec without
	// being verified and decoded again: a signature check costs about 40 µs, which for
	// thousands of records is most of a resynchronisation's time.
	sum [sha256.Size]byte
}

// gwEntry is one gateway's status record.
type gwEntry struct {
	topic     string
	rec       *contract.GatewayRecord
	gen       uint64
	confirmed time.Time
	cached    bool
}

// liveLocked reports whether gen is the generation of the connection that is up: a
// record it delivered is current.
func (c *Client) liveLocked(gen uint64) bool {
	return c.conn.connected && gen != 0 && gen == c.conn.gen
}

// instanceLocked builds the Instance view of e at now; c.mu held.
func (c *Client) instanceLocked(e *entry, now time.Time) Instance {
	in := Instance{Record: cloneRecord(e.rec), GatewayState: GatewayUnknown, Expired: c.expiredLocked(e, now)}
	if !c.liveLocked(e.gen) {
		in.Age = max(now.Sub(e.confirmed), 0)
	}
	in.Stale = e.cached || (c.o.StaleAfter > 0 && in.Age > c.o.StaleAfter)
	if g := c.gateways[e.gw]; g != nil {
		in.GatewayState, in.GatewayEpoch = g.rec.State, g.rec.Epoch
	}
	return in
}

// expiredLocked reports whether e's lease, or its gateway's status lease, has expired
// at now (contract.Lease with Options.MaxClockSkew); c.mu held.
func (c *Client) expiredLocked(e *entry, now time.Time) bool {
	lease := contract.Lease{MaxClockSkew: c.o.MaxClockSkew}
	if lease.Expired(e.rec.ValidUntil, now) {
		return true
	}
	g := c.gateways[e.gw]
	return g != nil && lease.Expired(g.rec.ValidUntil, now)
}

// tombstone remembers the last record of a removed instance until its lease ran out,
// so that an older record of the same gateway run played back on its topic (whose
// lease, being older, runs out no later) is not taken for a new registration.
type tombstone struct {
	epoch, revision int64
	until           time.Time // the removed record's lease expiry (reader's clock)
	// swept: removed because the broker no longer had it at a sync (see sweep), not
	// deregistered (an empty record): the very record removed may come back — its
	// gateway republishes it to a broker that lost its retained store — and is taken
	// again; only older ones are refused.
	swept bool
}

// maxTombstones bounds the tombstones a client keeps.
const maxTombstones = 1 << 16

// buryLocked keeps a tombstone for e, which is being removed (swept: by a sync, see
// tombstone); c.mu held. Records without a lease get none (nothing bounds how long it
// would be needed).
func (c *Client) buryLocked(e *entry, swept bool) {
	until, ok := contract.Lease{MaxClockSkew: c.o.MaxClockSkew}.Expiry(e.rec.ValidUntil)
	if !ok || len(c.tombs) >= maxTombstones {
		return
	}
	if c.tombs == nil {
		c.tombs = map[string]tombstone{}
	}
	c.tombs[e.topic] = tombstone{epoch: e.rec.Epoch, revision: e.rec.Revision, until: until, swept: swept}
}

// buriedLocked reports whether rec, arriving on topic where no entry is held, is not
// newer than the record removed there (same epoch, revision not above it; below it,
// when the removal was a sync's) while that record's lease lasts; c.mu held.
func (c *Client) buriedLocked(topic string, rec *contract.Record, now time.Time) bool {
	t, ok := c.tombs[topic]
	if !ok || !now.Before(t.until) || rec.Epoch != t.epoch {
		return false
	}
	if t.swept {
		return rec.Revision < t.revision
	}
	return rec.Revision <= t.revision
}

// expireLocked reports, as an Updated change, every entry whose lease expired (or came
// back) since it was last reported; c.mu held. The loop calls it periodically, so it
// builds an Instance only for the entries that changed.
func (c *Client) expireLocked(now time.Time) {
	for topic, t := range c.tombs {
		if !now.Before(t.until) {
			delete(c.tombs, topic)
		}
	}
	for _, e := range c.entries {
		expired := c.expiredLocked(e, now)
		if expired == e.expired {
			continue
		}
		e.expired = expired
		if expired {
			c.log.Info("client: lease expired; instance unknown", "service", e.svc, "gateway", e.gw, "instance", e.inst)
		}
		c.emitLocked(Updated, e, now)
	}
}

// cloneRecord copies a record with its maps and slices, so callers may keep or modify it.
func cloneRecord(r *contract.Record) contract.Record {
	out := *r
	out.State = maps.Clone(r.State)
	out.Meta = maps.Clone(r.Meta)
	out.DiscoveredBy = slices.Clone(r.DiscoveredBy)
	out.Checks = slices.Clone(r.Checks)
	if r.Maintenance != nil {
		m := *r.Maintenance
		out.Maintenance = &m
	}
	return out
}

// apply applies one message on a catalog or gateway status topic (the loop's own).
func (c *Client) apply(in inbound) {
	t := c.o.Topics
	if svc, gw, inst, ok := t.ParseInstanceTopic(in.topic); ok {
		if len(c.services) > 0 && !c.services[svc] {
			return
		}
		var sum [sha256.Size]byte
		if len(in.payload) > 0 {
			sum = sha256.Sum256(in.payload)
			if rec := c.heldRecord(in.topic, sum); rec != nil {
				c.applyInstance(in, svc, gw, inst, rec, sum)
				return
			}
		}
		body, ok := c.verify(gw, contract.KindInstance, in.payload)
		if !ok {
			return
		}
		rec, err := contract.DecodeRecord(body)
		if err != nil {
			c.log.Warn("client: malformed instance record skipped", "topic", in.topic, "err", err)
			return
		}
		if rec != nil && (contract.Slug(rec.Service) != svc || contract.Slug(rec.Gateway) != gw || contract.Slug(rec.ID) != inst) {
			c.log.Warn("client: instance record does not match its topic; skipped", "topic", in.topic,
				"instance", rec.ID, "service", rec.Service, "gateway", rec.Gateway)
			return
		}
		c.applyInstance(in, svc, gw, inst, rec, sum)
		return
	}
	if gw, ok := t.ParseGatewayStatusTopic(in.topic); ok {
		body, ok := c.verify(gw, contract.KindGateway, in.payload)
		if !ok {
			return
		}
		rec, err := contract.DecodeGatewayRecord(body)
		if err != nil {
			c.log.Warn("client: malformed gateway record skipped", "topic", in.topic, "err", err)
			return
		}
		if rec != nil && contract.Slug(rec.Gateway) != gw {
			c.log.Warn("client: gateway record does not match its topic; skipped", "topic", in.topic, "gateway", rec.Gateway)
			return
		}
		c.applyGateway(in, gw, rec)
		return
	}
	c.log.Debug("client: message on an unexpected topic skipped", "topic", in.topic)
}

// maxSigLogged bounds the (gateway, reason) pairs verify remembers having logged.
const maxSigLogged = 1024

// verify checks the signature of a payload published under gateway slug gw when the
// client has trusted keys, and returns the bytes to decode (the signed body; an empty
// payload as it is). A payload that fails is counted and logged once per gateway and
// reason, and ok is false.
func (c *Client) verify(gw string, kind contract.SignedKind, payload []byte) (body []byte, ok bool) {
	if c.o.TrustedKeys.Len() == 0 || len(payload) == 0 {
		return payload, true
	}
	body, err := c.o.TrustedKeys.Verify(gw, kind, payload)
	if err == nil {
		return body, true
	}
	reason := "bad-signature"
	c.mu.Lock()
	if errors.Is(err, contract.ErrUnsigned) {
		reason = "unsigned"
		c.unsigned++
	} else {
		c.badSigs++
	}
	// Bounded: a forger can make up any number of gateway ids.
	first := !c.sigLogged[gw+" "+reason] && len(c.sigLogged) < maxSigLogged
	if first {
		if c.sigLogged == nil {
			c.sigLogged = map[string]bool{}
		}
		c.sigLogged[gw+" "+reason] = true
	}
	c.mu.Unlock()
	if first {
		c.log.Warn("client: records that fail the signature check are ignored (logged once per gateway and reason; see Status)",
			"gateway", gw, "reason", reason, "kind", string(kind), "err", err)
	}
	return nil, false
}

// heldRecord returns the record held for topic when it was decoded from a payload of
// SHA-256 sum (see entry.sum), else nil.
func (c *Client) heldRecord(topic string, sum [sha256.Size]byte) *contract.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[topic]; e != nil && !e.cached && e.sum == sum {
		return e.rec
	}
	return nil
}

// applyInstance applies rec (nil: an empty payload), decoded from a payload of SHA-256
// sum, on an instance topic.
func (c *Client) applyInstance(in inbound, svc, gw, inst string, rec *contract.Record, sum [sha256.Size]byte) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[in.topic]
	if rec == nil {
		if e == nil {
			// Deregistered while it was away: a sync's tombstone becomes a
			// deregistration's, which refuses the removed record itself too.
			if t, ok := c.tombs[in.topic]; ok && t.swept {
				t.swept = false
				c.tombs[in.topic] = t
			}
			return
		}
		c.buryLocked(e, false)
		delete(c.entries, in.topic)
		c.log.Debug("client: instance deregistered", "service", svc, "gateway", gw, "instance", inst)
		c.emitLocked(Removed, e, now)
		return
	}
	kind := Updated
	switch {
	case e == nil && c.buriedLocked(in.topic, rec, now):
		c.log.Debug("client: older record of a removed instance ignored (a replay?)", "service", svc, "gateway", gw,
			"instance", inst, "revision", rec.Revision)
		return
	case e == nil:
		kind = Added
		e = &entry{topic: in.topic, svc: svc, gw: gw, inst: inst}
		c.entries[in.topic] = e
	case rec.Epoch == e.rec.Epoch && rec.Revision < e.rec.Revision:
		// An older publication of the same gateway run, delivered late: the instance
		// exists on the broker, but the record held is newer. (Across epochs the
		// broker's record wins: a gateway whose state directory was reset starts
		// again at epoch 1.)
		c.log.Debug("client: older revision of the same epoch ignored", "service", svc, "gateway", gw,
			"instance", inst, "revision", rec.Revision, "held", e.rec.Revision)
		rec, sum = e.rec, e.sum
		if !e.cached {
			kind = 0
		}
	case !e.cached && e.rec.Revision == rec.Revision && e.rec.Status == rec.Status && e.rec.Epoch == rec.Epoch:
		kind = 0 // the same record again (a resynchronisation): confirmed, not changed
	}
	e.rec, e.sum, e.gen, e.confirmed, e.cached = rec, sum, in.gen, now, false
	c.dirty = true
	if kind != 0 {
		c.emitLocked(kind, e, now)
	}
}

func (c *Client) applyGateway(in inbound, gw string, rec *contract.GatewayRecord) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.gateways[gw]
	if rec == nil {
		if old == nil {
			return
		}
		delete(c.gateways, gw)
	} else {
		c.gateways[gw] = &gwEntry{topic: in.topic, rec: rec, gen: in.gen, confirmed: now}
	}
	c.dirty = true
	if old == nil || rec == nil || old.rec.State != rec.State || old.rec.Epoch != rec.Epoch || old.cached {
		state := GatewayUnknown
		if rec != nil {
			state = rec.State
		}
		c.log.Info("client: gateway status", "gateway", gw, "state", state)
		c.emitGatewayLocked(gw, now)
		c.linkNotifyLocked()
	}
}

// emitGatewayLocked sends an Updated change for every instance of gateway gw.
func (c *Client) emitGatewayLocked(gw string, now time.Time) {
	for _, e := range c.sortedLocked("") {
		if e.gw == gw {
			c.emitLocked(Updated, e, now)
		}
	}
}

// sweep ends the resynchronisation of connection gen: entries and gateway statuses it
// did not deliver are gone from the broker, and are removed.
func (c *Client) sweep(gen uint64) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.conn.connected || c.conn.gen != gen {
		return
	}
	removed := 0
	for _, e := range c.sortedLocked("") {
		if e.gen != gen {
			c.buryLocked(e, true)
			delete(c.entries, e.topic)
			c.emitLocked(Removed, e, now)
			removed++
		}
	}
	for gw, g := range c.gateways {
		if g.gen != gen {
			delete(c.gateways, gw)
			c.emitGatewayLocked(gw, now)
			c.linkNotifyLocked()
		}
	}
	c.conn.synced = true
	c.gwComplete = true
	c.dirty = true
	if !c.isReady {
		c.isReady = true
		close(c.ready)
	}
	c.notifyLocked()
	c.log.Info("client: catalog synchronised", "broker", c.conn.broker, "instances", len(c.entries), "removed", removed)
}

// markLostLocked records that the current connection is gone at now: what it
// delivered was current until now.
func (c *Client) markLostLocked(now time.Time) {
	for _, e := range c.entries {
		if c.liveLocked(e.gen) {
			e.confirmed = now
		}
	}
	for _, g := range c.gateways {
		if c.liveLocked(g.gen) {
			g.confirmed = now
		}
	}
	c.conn.connected, c.conn.synced, c.conn.since = false, false, now
	c.dirty = true
}

// sortedLocked returns the entries of service slug svc ("" = all), ordered by service,
// gateway and instance.
func (c *Client) sortedLocked(svc string) []*entry {
	out := make([]*entry, 0, len(c.entries))
	for _, e := range c.entries {
		if svc == "" || e.svc == svc {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b *entry) int {
		if d := strings.Compare(a.svc, b.svc); d != 0 {
			return d
		}
		if d := strings.Compare(a.gw, b.gw); d != 0 {
			return d
		}
		return strings.Compare(a.inst, b.inst)
	})
	return out
}

// Instances returns every entry of service (slugged; "" = every service), of any status,
// stale ones included, ordered by service, gateway and instance id. Use Pick or Live to
// get only what may be used.
func (c *Client) Instances(service string) []Instance {
	svc := ""
	if service != "" {
		svc = contract.Slug(service)
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	es := c.sortedLocked(svc)
	out := make([]Instance, 0, len(es))
	for _, e := range es {
		out = append(out, c.instanceLocked(e, now))
	}
	return out
}

// linkNotifyLocked wakes every Register: the connection or a gateway status changed.
func (c *Client) linkNotifyLocked() {
	close(c.linkChanged)
	c.linkChanged = make(chan struct{})
}

// notifyLocked wakes every Wait.
func (c *Client) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// emitLocked sends a change of e to every subscriber and wakes every Wait.
func (c *Client) emitLocked(kind ChangeKind, e *entry, now time.Time) {
	ch := Change{Kind: kind, Instance: c.instanceLocked(e, now)}
	for s := range c.subs {
		s.send(ch)
	}
	c.notifyLocked()
}

// subscription is one Subscribe channel.
type subscription struct {
	mu     sync.Mutex
	ch     chan Change
	closed bool
}

// send queues ch without blocking: when the buffer is full the oldest queued change is
// dropped and counted in the Missed of the change queued now. The client is the only
// sender.
func (s *subscription) send(ch Change) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	for {
		select {
		case s.ch <- ch:
			return
		default:
		}
		select {
		case old := <-s.ch:
			ch.Missed += 1 + old.Missed
		default:
		}
	}
}

func (s *subscription) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.ch)
	}
}

// Subscribe returns a channel of catalog changes and a function that cancels the
// subscription (idempotent; it closes the channel). The channel holds up to buffer
// changes (values below 1 count as 1). The client never blocks on a subscriber: when
// the buffer is full it drops the OLDEST queued change to make room, and the change
// queued then carries the count of dropped ones in Missed (drop-oldest). The channel
// is also closed when Run returns (at once if Run has already returned).
//
// Changes are sent for every instance added, replaced, removed, confirmed after being
// read from the cache file, or affected by its gateway's status or epoch changing. A
// change says nothing about whether Pick would return the instance: call Pick (or
// Live) with the filters that matter to you.
func (c *Client) Subscribe(buffer int) (<-chan Change, func()) {
	s := &subscription{ch: make(chan Change, max(buffer, 1))}
	c.mu.Lock()
	if c.done {
		s.close()
	} else {
		c.subs[s] = struct{}{}
	}
	c.mu.Unlock()
	var once sync.Once
	return s.ch, func() {
		once.Do(func() {
			c.mu.Lock()
			delete(c.subs, s)
			c.mu.Unlock()
			s.close()
		})
	}
}

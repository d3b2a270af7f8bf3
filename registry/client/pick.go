package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
)

// ErrNoneLive is returned (wrapped, with the service, the filters and why the known
// instances were refused) by Pick when no instance qualifies, and by Wait when its
// context ends first. Test with errors.Is.
var ErrNoneLive = errors.New("no live instance")

// PickOption is a filter, a relaxation or a Strategy for Pick, Live and Wait.
type PickOption interface {
	applyPick(*pickSpec)
}

type pickFunc func(*pickSpec)

func (f pickFunc) applyPick(p *pickSpec) { f(p) }

// pickSpec is the combined PickOptions of one call.
type pickSpec struct {
	meta          [][2]string
	ids           []string
	gateways      []string
	identity      []func(contract.Identity) bool
	allowWarning  bool
	allowStale    bool
	requireOnline bool
	strategy      Strategy
}

// WithMeta keeps instances whose meta has key k with value v exactly. Repeatable: every
// pair must match.
func WithMeta(k, v string) PickOption {
	return pickFunc(func(p *pickSpec) { p.meta = append(p.meta, [2]string{k, v}) })
}

// WithID keeps the instance with this id (compared as given, or slugged as in its
// topic). Given twice, nothing can match both unless the ids are the same.
func WithID(id string) PickOption {
	return pickFunc(func(p *pickSpec) { p.ids = append(p.ids, id) })
}

// WithGateway keeps instances published by gateway g (compared slugged).
func WithGateway(g string) PickOption {
	return pickFunc(func(p *pickSpec) { p.gateways = append(p.gateways, g) })
}

// WithIdentity keeps instances for which f returns true; f gets the identity the device
// reported (vendor, product code, revision, model, serial). Repeatable. f is called with
// the client's lock held: it must not call the Client.
func WithIdentity(f func(contract.Identity) bool) PickOption {
	return pickFunc(func(p *pickSpec) { p.identity = append(p.identity, f) })
}

// AllowWarning also accepts instances in status "warning" (answering, but degraded: a
// device fault bit, Modbus exceptions, slow replies). By default only "passing" ones
// qualify. A "critical" instance never does.
func AllowWarning() PickOption { return pickFunc(func(p *pickSpec) { p.allowWarning = true }) }

// AllowStale also accepts Stale entries: read from the cache file and not confirmed by a
// broker yet (or, with Options.StaleAfter, unconfirmed for too long). Their status is
// what their gateway said when the cache was written.
func AllowStale() PickOption { return pickFunc(func(p *pickSpec) { p.allowStale = true }) }

// RequireGatewayOnline refuses instances whose gateway's status is unknown (no status
// record seen). Instances of an "offline" gateway are always refused; those of a
// gateway with no known status are accepted by default once the client has the
// broker's complete retained catalog (refused before), see the package documentation.
func RequireGatewayOnline() PickOption {
	return pickFunc(func(p *pickSpec) { p.requireOnline = true })
}

// Strategy chooses among the instances that qualify. A Strategy is itself a PickOption:
// c.Pick("servo-drive", client.LowestRTT).
type Strategy int

// Strategies.
const (
	// RoundRobin (the default) cycles through the qualifying instances, ordered by
	// gateway and id, with one counter per service shared by all callers.
	RoundRobin Strategy = iota
	// Random picks uniformly among the qualifying instances.
	Random
	// LowestRTT picks the instance with the lowest check.rtt_ms (the round trip of its
	// gateway's last poll; a value ≤ 0 counts as unknown and comes last); ties go to the
	// first by gateway and id.
	LowestRTT
	// Weighted picks at random, each qualifying instance with a probability
	// proportional to its weight: its meta key "weight" (WeightMetaKey), a decimal
	// integer 0–1000 (digits only). A missing or invalid value (not digits, above 1000)
	// counts as 1; weight 0 is never picked unless every qualifying instance has weight
	// 0, and then they are picked uniformly. A gateway copies a device profile's meta
	// into its instances' meta, so a profile sets the weights of its devices the same
	// way. Weights 1, 2 and 7 give shares of 10 %, 20 % and 70 %.
	Weighted
)

// WeightMetaKey is the meta key the Weighted strategy reads an instance's weight from.
const WeightMetaKey = "weight"

// maxWeight is the largest valid weight.
const maxWeight = 1000

// weightOf returns the weight of an instance with meta m for Weighted: the decimal
// integer at WeightMetaKey, 0–maxWeight; 1 when missing or invalid.
func weightOf(m map[string]string) int {
	s, ok := m[WeightMetaKey]
	if !ok || s == "" {
		return 1
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 1
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > maxWeight {
		return 1
	}
	return n
}

func (s Strategy) applyPick(p *pickSpec) { p.strategy = s }

// String returns "round-robin", "random", "lowest-rtt" or "weighted".
func (s Strategy) String() string {
	switch s {
	case RoundRobin:
		return "round-robin"
	case Random:
		return "random"
	case LowestRTT:
		return "lowest-rtt"
	case Weighted:
		return "weighted"
	}
	return fmt.Sprintf("Strategy(%d)", int(s))
}

func newPickSpec(opts []PickOption) *pickSpec {
	p := &pickSpec{}
	for _, o := range opts {
		if o != nil {
			o.applyPick(p)
		}
	}
	return p
}

// describe renders the filters for error messages: " (meta axis=3, gateway gw1)".
func (p *pickSpec) describe() string {
	var parts []string
	for _, kv := range p.meta {
		parts = append(parts, "meta "+kv[0]+"="+kv[1])
	}
	for _, id := range p.ids {
		parts = append(parts, "id "+id)
	}
	for _, g := range p.gateways {
		parts = append(parts, "gateway "+g)
	}
	if n := len(p.identity); n > 0 {
		parts = append(parts, fmt.Sprintf("%d identity filter(s)", n))
	}
	if p.allowWarning {
		parts = append(parts, "warning allowed")
	}
	if p.allowStale {
		parts = append(parts, "stale allowed")
	}
	if p.requireOnline {
		parts = append(parts, "gateway must be online")
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// Reasons an instance is refused, in the order they are checked and reported.
const (
	refFilter = iota
	refCritical
	refMaintenance
	refWarning
	refOffline
	refUnknownGW
	refPendingGW
	refOldEpoch
	refExpired
	refStale
	refCount
)

// refusalText describes reason r in ErrNoneLive messages.
func refusalText(r int) string {
	switch r {
	case refFilter:
		return "not matching the filters"
	case refCritical:
		return "critical"
	case refMaintenance:
		return "in maintenance"
	case refWarning:
		return "warning"
	case refOffline:
		return "gateway offline"
	case refUnknownGW:
		return "gateway status unknown"
	case refPendingGW:
		return "gateway status not received yet"
	case refOldEpoch:
		return "older epoch than their gateway"
	case refExpired:
		return "lease expired"
	case refStale:
		return "stale"
	}
	return "refused"
}

// matches reports whether in passes the filters of p.
func (p *pickSpec) matches(e *entry, in *Instance) bool {
	for _, kv := range p.meta {
		if v, ok := in.Meta[kv[0]]; !ok || v != kv[1] {
			return false
		}
	}
	for _, id := range p.ids {
		if id != in.ID && contract.Slug(id) != e.inst {
			return false
		}
	}
	for _, g := range p.gateways {
		if contract.Slug(g) != e.gw {
			return false
		}
	}
	for _, f := range p.identity {
		if !f(in.Identity) {
			return false
		}
	}
	return true
}

// refusal returns why in may not be picked under p, or -1 if it may.
func (p *pickSpec) refusal(e *entry, in *Instance, gwComplete bool) int {
	switch {
	case !p.matches(e, in):
		return refFilter
	case in.Status == contract.Critical:
		return refCritical
	case in.Status == contract.Maintenance:
		return refMaintenance // taken out of service by an operator, whatever the options
	case in.Status == contract.Warning && !p.allowWarning:
		return refWarning
	case in.Status != contract.Passing && in.Status != contract.Warning:
		return refCritical // an unknown status is not live
	case in.GatewayState == GatewayOffline:
		return refOffline
	case in.GatewayState == GatewayUnknown && (p.requireOnline || !in.ValidUntil.IsZero()):
		// A leased record (docs/contract.md, "Leases") is live only while its gateway's
		// status lease is: with no status record there is nothing to check it against.
		return refUnknownGW
	case in.GatewayState == GatewayUnknown && !gwComplete:
		return refPendingGW // it may be on its way, and say "offline"
	case in.GatewayState != GatewayUnknown && in.Epoch < in.GatewayEpoch:
		return refOldEpoch
	case in.Expired:
		return refExpired
	case in.Stale && !p.allowStale:
		return refStale
	}
	return -1
}

// candidatesLocked returns the instances of service that qualify under p, ordered by
// gateway and id, or an ErrNoneLive error explaining why none does.
func (c *Client) candidatesLocked(service string, p *pickSpec, now time.Time) ([]Instance, error) {
	svc := contract.Slug(service)
	var (
		out     []Instance
		refused [refCount]int
		known   int
	)
	for _, e := range c.sortedLocked(svc) {
		known++
		in := c.instanceLocked(e, now)
		if r := p.refusal(e, &in, c.gwComplete); r >= 0 {
			refused[r]++
			continue
		}
		out = append(out, in)
	}
	if len(out) > 0 {
		return MergeByID(out), nil
	}
	var why []string
	for r, n := range refused {
		if n > 0 {
			why = append(why, fmt.Sprintf("%d %s", n, refusalText(r)))
		}
	}
	msg := fmt.Sprintf("%d known", known)
	if len(why) > 0 {
		msg += ": " + strings.Join(why, ", ")
	}
	if len(c.services) > 0 && !c.services[svc] {
		msg += "; the client does not subscribe to this service (Options.Services)"
	}
	return nil, fmt.Errorf("client: %w for service %q%s: %s", ErrNoneLive, service, p.describe(), msg)
}

// Pick returns one instance of service that may be used now:
//
//   - status "passing" ("warning" too with AllowWarning; "critical" never);
//   - its gateway not "offline" (and, with RequireGatewayOnline or when the record has
//     a lease, known to be "online");
//   - its record's epoch not older than its gateway's current epoch (from the
//     gateway's status record);
//   - its lease and its gateway's status lease not expired (Instance.Expired), with or
//     without AllowStale;
//   - not Stale, unless AllowStale;
//   - matching every filter (WithMeta, WithID, WithGateway, WithIdentity).
//
// An instance in status "maintenance" (taken out of service by an operator) is never
// returned, whatever the options. Among those, the Strategy chooses (RoundRobin by
// default). Instances of the same
// service from several gateways are one pool, and a device published by several
// gateways (the same id) is one instance in it: the record of the gateway that heard
// from it last (the newest last_seen; passing before warning), with Instance.SeenBy
// naming every gateway that sees it. So killing one of two gateways that poll the same
// device changes nothing for Pick. Pick never blocks on the network: it
// answers from memory, also while the broker is unreachable (see Instance.Age). When
// nothing qualifies the error wraps ErrNoneLive and names the service, the filters and
// how many known instances were refused for which reason.
//
// Only when the catalog cannot be reached and nothing at all is known of service
// does Pick return a configured fallback (Options.Fallback, Instance.Fallback): see
// Fallback for the exact conditions.
func (c *Client) Pick(service string, opts ...PickOption) (Instance, error) {
	p := newPickSpec(opts)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pickLocked(service, p)
}

func (c *Client) pickLocked(service string, p *pickSpec) (Instance, error) {
	cands, err := c.candidatesLocked(service, p, time.Now())
	if err != nil {
		in, ok, refused := c.fallbackLocked(service, p)
		if ok {
			return in, nil
		}
		if refused > 0 {
			err = fmt.Errorf("%w; %d configured fallback(s) refused by the filters", err, refused)
		}
		return Instance{}, err
	}
	return c.chooseLocked(contract.Slug(service), cands, p.strategy), nil
}

// chooseLocked applies strategy s to cands (not empty); rrKey names its round-robin
// counter. c.mu held.
func (c *Client) chooseLocked(rrKey string, cands []Instance, s Strategy) Instance {
	switch s {
	case Random:
		return cands[rand.IntN(len(cands))]
	case LowestRTT:
		best := 0
		for i, in := range cands {
			b := cands[best].Check.RTTMS
			if r := in.Check.RTTMS; r > 0 && (b <= 0 || r < b) {
				best = i
			}
		}
		return cands[best]
	case Weighted:
		weights := make([]int, len(cands))
		total := 0
		for i := range cands {
			weights[i] = weightOf(cands[i].Meta)
			total += weights[i]
		}
		if total == 0 {
			return cands[rand.IntN(len(cands))]
		}
		r := rand.IntN(total)
		for i, w := range weights {
			if r < w {
				return cands[i]
			}
			r -= w
		}
		return cands[len(cands)-1] // not reached
	default:
		n := c.rr[rrKey]
		c.rr[rrKey] = n + 1
		return cands[n%uint64(len(cands))]
	}
}

// Live returns every instance of service that Pick could return with these options,
// merged by id as Pick merges them (Instance.SeenBy), ordered by the gateway and id of
// each device's first record (a Strategy among opts is ignored), or nil when there is
// none. It never returns a configured fallback (Options.Fallback).
func (c *Client) Live(service string, opts ...PickOption) []Instance {
	p := newPickSpec(opts)
	c.mu.Lock()
	defer c.mu.Unlock()
	out, _ := c.candidatesLocked(service, p, time.Now())
	return out
}

// Wait returns as soon as Pick(service, opts...) succeeds, with its result: at once if
// an instance qualifies now, else when a catalog change makes one qualify (or, with
// Options.Fallback, when the broker turns out to be unreachable and nothing is known of
// service: Pick then returns the fallback). It does not
// poll; it wakes on every change of the catalog or of the connection. When ctx ends
// first it returns an error wrapping both ErrNoneLive (with Pick's explanation) and
// ctx's error (context.Canceled or context.DeadlineExceeded, or the cause).
func (c *Client) Wait(ctx context.Context, service string, opts ...PickOption) (Instance, error) {
	p := newPickSpec(opts)
	for {
		c.mu.Lock()
		changed := c.changed
		in, err := c.pickLocked(service, p)
		c.mu.Unlock()
		if err == nil {
			return in, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return Instance{}, fmt.Errorf("%w (wait ended: %w)", err, context.Cause(ctx))
		}
	}
}

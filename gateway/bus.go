package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/rollcall-edge/rollcall/devices"
	"github.com/rollcall-edge/rollcall/gateway/config"
	"github.com/rollcall-edge/rollcall/protocols/modbus"
	"github.com/rollcall-edge/rollcall/protocols/mqtt"
	"github.com/rollcall-edge/rollcall/registry"
)

// bus is the single master of one serial bus. One goroutine (run) owns all its state:
// health polls of known devices come first, each on its own interval; probes of absent
// unit IDs (the sweep that finds new and returning drives) use the idle time, limited to
// ProbeShare of bus time while devices are known (DESIGN.md, "gateway").
type bus struct {
	cfg      config.SerialBus
	gateway  string
	open     func() (modbus.Client, error)
	profiles *devices.Profiles
	reg      *registry.Registry
	policy   registry.Policy
	log      *slog.Logger

	failCost  time.Duration   // bus time of one failed request: timeout + resync listening
	known     map[int]*device // registered units
	absent    []int           // units to probe, ascending
	sweepPos  int             // index into absent of the next probe
	nextProbe time.Time       // earliest start of the next probe (bus-time budget)
}

// device is a registered unit on the bus.
type device struct {
	unit     int
	id       string
	profile  *devices.Profile
	hasDevID bool
	next     time.Time // when its next poll is due
}

func newBus(cfg config.SerialBus, gatewayID string, profiles *devices.Profiles, reg *registry.Registry, log *slog.Logger) *bus {
	b := &bus{
		cfg: cfg, gateway: gatewayID, profiles: profiles, reg: reg, policy: reg.Policy(),
		log:    log.With("bus", cfg.Name),
		known:  map[int]*device{},
		absent: slices.Clone(cfg.UnitList),
	}
	b.open = func() (modbus.Client, error) {
		return modbus.OpenRTU(modbus.SerialConfig{
			Device: cfg.Device, Baud: cfg.Baud, Parity: cfg.Parity, StopBits: cfg.StopBits, Timeout: cfg.Timeout,
		})
	}
	return b
}

// run opens the port (retrying with capped backoff while it is missing, e.g. a USB
// adapter not yet plugged in) and schedules polls and probes until ctx ends.
func (b *bus) run(ctx context.Context) error {
	client, err := b.openRetry(ctx)
	if err != nil {
		return nil // ctx ended while waiting for the port
	}
	defer client.Close()
	b.failCost = client.Timeout()
	if rtu, ok := client.(*modbus.RTU); ok {
		b.failCost += rtu.Config().Resync
	}
	b.log.Info("bus open", "device", b.cfg.Device, "baud", b.cfg.Baud, "units", len(b.cfg.UnitList))
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for ctx.Err() == nil {
		now := time.Now()
		d := b.earliest()
		if d != nil && !d.next.After(now) {
			b.poll(ctx, client, d)
			continue
		}
		if len(b.absent) > 0 && !now.Before(b.nextProbe) {
			b.probe(ctx, client)
			continue
		}
		wake := now.Add(time.Hour)
		if d != nil {
			wake = d.next
		}
		if len(b.absent) > 0 && b.nextProbe.Before(wake) {
			wake = b.nextProbe
		}
		timer.Reset(time.Until(wake))
		select {
		case <-ctx.Done():
		case <-timer.C:
		}
	}
	return nil
}

func (b *bus) openRetry(ctx context.Context) (modbus.Client, error) {
	backoff := 500 * time.Millisecond
	for {
		c, err := b.open()
		if err == nil {
			return c, nil
		}
		b.log.Warn("cannot open serial port, retrying", "device", b.cfg.Device, "retry_in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// earliest returns the known device whose poll is due first, or nil.
func (b *bus) earliest() *device {
	var best *device
	for _, d := range b.known {
		if best == nil || d.next.Before(best.next) || (d.next.Equal(best.next) && d.unit < best.unit) {
			best = d
		}
	}
	return best
}

// poll runs one heartbeat of d and feeds the registry. A device deregistered by the
// registry goes back to the sweep, so it is found again when it answers.
func (b *bus) poll(ctx context.Context, c modbus.Client, d *device) {
	o := devices.Poll(ctx, c, byte(d.unit), d.profile, d.hasDevID)
	if ctx.Err() != nil {
		return // shutting down: a cancelled request says nothing about the device
	}
	interval := b.cfg.PollInterval
	d.next = d.next.Add(interval)
	if late := time.Since(d.next); late > interval {
		d.next = time.Now().Add(interval) // fell behind (e.g. a slow bus): skip, don't burst
	}
	if live := b.reg.Observe(d.id, o); !live {
		delete(b.known, d.unit)
		b.addAbsent(d.unit)
		b.updateChecks()
		b.log.Info("device deregistered, back to sweep", "unit", d.unit, "instance", d.id)
	}
}

// probe tries the next absent unit: identify, match a profile, read its identity, poll
// once; only a device that answers all of that is registered.
func (b *bus) probe(ctx context.Context, c modbus.Client) {
	if b.sweepPos >= len(b.absent) {
		b.sweepPos = 0
	}
	unit := b.absent[b.sweepPos]
	b.sweepPos++
	start := time.Now()
	defer func() {
		if len(b.known) == 0 {
			b.nextProbe = time.Time{} // nothing to protect: sweep at full speed
			return
		}
		spent := time.Since(start)
		share := b.cfg.ProbeShare
		b.nextProbe = time.Now().Add(time.Duration(float64(spent) * (1 - share) / share))
	}()
	err := b.register(ctx, c, unit)
	if err != nil && ctx.Err() == nil && !errors.Is(err, modbus.ErrTimeout) {
		b.log.Debug("probe", "unit", unit, "err", err)
	}
}

func (b *bus) register(ctx context.Context, c modbus.Client, unit int) error {
	ident, err := devices.Identify(ctx, c, byte(unit))
	if err != nil {
		return err
	}
	p := b.profiles.Match(ident.Objects)
	identity, err := devices.ReadIdentity(ctx, c, byte(unit), p, ident)
	if err != nil {
		b.log.Warn("device answers but its identity cannot be read", "unit", unit, "profile", p.Name, "err", err)
		return err
	}
	o := devices.Poll(ctx, c, byte(unit), p, ident.Objects != nil)
	if !o.Answered {
		return fmt.Errorf("first poll: %w", o.Err)
	}
	d := &device{unit: unit, id: b.instanceID(identity, unit), profile: p, hasDevID: ident.Objects != nil}
	d.next = o.At.Add(b.cfg.PollInterval)
	b.reg.Register(registry.Registration{
		ID:           d.id,
		Service:      p.Service,
		Profile:      p.Name,
		Endpoint:     registry.Endpoint{Transport: "modbus-rtu", Bus: b.cfg.Name, Device: b.cfg.Device, Baud: b.cfg.Baud, Unit: unit},
		Identity:     identity,
		Meta:         b.meta(p, unit),
		DiscoveredBy: []string{"rtu-sweep"},
		Check:        b.check(len(b.known) + 1),
	}, o)
	b.known[unit] = d
	b.removeAbsent(unit)
	b.updateChecks()
	b.log.Info("device registered", "unit", unit, "instance", d.id, "profile", p.Name, "serial", identity.Serial)
	return nil
}

// detectBudget is the worst case from a device's death to critical with n devices on the
// bus. Its last good poll may have happened just before it died; the next
// failures_before_critical polls are due one interval apart, and the last of them needs
// a full timeout to fail. On the way each poll may wait for the bus behind one probe of
// an absent unit and behind the polls of the other n−1 devices; each of those occupies
// the bus at most failCost (timeout + resync listening, when it fails too).
func (b *bus) detectBudget(n int) time.Duration {
	return time.Duration(b.policy.FailuresBeforeCritical)*b.cfg.PollInterval + b.cfg.Timeout +
		time.Duration(n)*b.failCost
}

func (b *bus) check(n int) registry.Check {
	return registry.Check{
		IntervalMS:     b.cfg.PollInterval.Milliseconds(),
		TimeoutMS:      b.cfg.Timeout.Milliseconds(),
		DetectBudgetMS: b.detectBudget(n).Milliseconds(),
	}
}

// updateChecks republishes the check (detect budget) of every device on the bus after
// the number of devices changed.
func (b *bus) updateChecks() {
	chk := b.check(len(b.known))
	for _, d := range b.known {
		b.reg.SetCheck(d.id, chk)
	}
}

// instanceID is <vendor>-<serial> when the device gave a serial number, else
// <gateway>-<bus>-u<unit> (DESIGN.md, instance record "id"), slugged.
func (b *bus) instanceID(id registry.Identity, unit int) string {
	if id.Serial != "" {
		vendor := id.Vendor
		if vendor == "" {
			vendor = "unknown"
		}
		return mqtt.Slug(vendor + "-" + id.Serial)
	}
	return mqtt.Slug(b.gateway + "-" + b.cfg.Name + "-u" + strconv.Itoa(unit))
}

func (b *bus) meta(p *devices.Profile, unit int) map[string]string {
	m := maps.Clone(p.Meta)
	if m == nil {
		m = map[string]string{}
	}
	maps.Copy(m, b.cfg.Meta)
	for _, u := range b.cfg.Devices {
		if u.Unit == unit {
			maps.Copy(m, u.Meta)
		}
	}
	return m
}

func (b *bus) addAbsent(unit int) {
	i, found := slices.BinarySearch(b.absent, unit)
	if !found {
		b.absent = slices.Insert(b.absent, i, unit)
		if i < b.sweepPos {
			b.sweepPos++
		}
	}
}

func (b *bus) removeAbsent(unit int) {
	if i, found := slices.BinarySearch(b.absent, unit); found {
		b.absent = slices.Delete(b.absent, i, i+1)
		if i < b.sweepPos {
			b.sweepPos--
		}
	}
}

package gateway

import (
	"context"
	"errors"
	"net"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/gateway/config"
	"github.com/rollcall-edge/rollcall/protocols/mdns"
)

// ErrNotRunning is returned by Reload when the gateway is not running: Run has not
// started it yet, or has returned.
var ErrNotRunning = errors.New("gateway not running")

// reloadableKeys are the config keys a reload applies while the gateway runs (README,
// "Reloading the config"); a difference in any other key is logged, key by key, and
// waits for a restart.
var reloadableKeys = map[string]bool{
	"discovery.serial":                 true,
	"discovery.tcp":                    true,
	"discovery.mdns.timeout":           true,
	"discovery.mdns.instance_patterns": true,
	"discovery.mdns.checks":            true,
	"limits.max_endpoints":             true,
	"health.poll_interval":             true,
}

// reloadRequest is one Reload handed to the run loop, which answers on done.
type reloadRequest struct {
	cfg  *config.Config
	done chan error // 1-buffered
}

// Reload applies cfg to the running gateway without dropping its live instances. What
// can change while it runs is applied: serial buses added, removed or changed (a
// changed bus's master is restarted; one whose meta alone changed keeps running),
// Modbus TCP targets likewise, the checks of TCP targets, the mDNS checks, timeout and
// instance patterns, limits.max_endpoints and health.poll_interval (through the buses
// and targets it is the default of). Buses and targets that did not change keep polling
// without a gap. Instances of a removed bus or target are deregistered at once (their
// records cleared), with those an earlier reload released and it had not found again;
// those of a restarted one are claimed again by its new master as it
// finds them, and any it does not find are taken through critical to deregistered as
// after a gateway restart (health.restart_grace, then deregister_critical_after).
// Every other key that differs is not applied: each is named in one warning ("reload:
// mqtt.broker changed; restart to apply") and the rest is applied.
//
// The reload runs in Run's loop, so it never races the start or the shutdown; Reload
// returns once it is applied, or ErrNotRunning (nothing applied) when the gateway has
// not started or has stopped. cfg must be a validated config (config.Load, Parse) that
// the caller no longer changes.
func (g *Gateway) Reload(cfg *config.Config) error {
	if cfg == nil {
		return errors.New("reload: no config")
	}
	select {
	case <-g.started:
	default:
		return ErrNotRunning
	}
	req := reloadRequest{cfg: cfg, done: make(chan error, 1)}
	select {
	case g.reloads <- req:
	case <-g.stopped:
		return ErrNotRunning
	}
	return <-req.done
}

// ReloadFile loads the config file at path (config.Load) and applies it (Reload). A
// file with errors is rejected whole: each error is logged (file:line:column: key:
// what), nothing changes, and the error is returned.
func (g *Gateway) ReloadFile(path string) error {
	cfg, err := config.Load(path)
	if err != nil {
		errs := []error{err}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			errs = j.Unwrap()
		}
		for _, e := range errs {
			g.log.Error("reload: config error", "err", e)
		}
		g.log.Error("reload: config rejected; nothing changed", "file", path, "errors", len(errs))
		return err
	}
	return g.Reload(cfg)
}

// live is what reloads change while the gateway runs; run's goroutine owns it.
type live struct {
	cfg    *config.Config // in force: the start config with the reloadable keys of every reload since
	wg     *sync.WaitGroup
	buses  map[string]*busRun      // by bus name
	checks map[checkKey]*targetRun // checks of static Modbus TCP targets
}

// busRun is the running master of one serial bus.
type busRun struct {
	cfg    config.SerialBus
	m      *master
	cancel context.CancelFunc
	done   chan struct{}
}

// stop stops the master and waits until it has closed its port.
func (b *busRun) stop() {
	b.cancel()
	<-b.done
}

// checkKey names a check of a static target: the target's owner key and the check's
// name.
type checkKey struct{ owner, name string }

// targetCheck is one check of a static target, with the target's name.
type targetCheck struct {
	target string
	ck     config.TargetCheck
}

// targetRun is one running check of a static target.
type targetRun struct {
	targetCheck
	cancel context.CancelFunc
	done   chan struct{}
}

// reloadCounts are what a reload did, for its summary line.
type reloadCounts struct {
	added, removed, restarted, updated int
}

func (c *reloadCounts) add(o reloadCounts) {
	c.added += o.added
	c.removed += o.removed
	c.restarted += o.restarted
	c.updated += o.updated
}

// startLive starts the serial buses' masters built by build, the checks of the static
// targets and the network discovery (static targets and mDNS), each under ctx in a
// goroutine of wg; it returns their state for reloads.
func (g *Gateway) startLive(ctx context.Context, p *parts, wg *sync.WaitGroup) *live {
	lv := &live{cfg: g.cfg, wg: wg, buses: map[string]*busRun{}, checks: map[checkKey]*targetRun{}}
	for i, m := range p.masters {
		g.startBus(ctx, lv, g.cfg.Discovery.Serial[i], m)
	}
	for k, ck := range targetChecks(g.cfg) {
		g.startCheck(ctx, lv, k, ck)
	}
	if p.disc != nil {
		g.startDiscovery(ctx, p, wg)
	}
	return lv
}

// serveReloads applies reload requests until ctx ends; then Reload refuses (g.stopped).
func (g *Gateway) serveReloads(ctx context.Context, p *parts, lv *live) {
	defer close(g.stopped)
	for {
		select {
		case <-ctx.Done():
			return
		case req := <-g.reloads:
			req.done <- g.applyReload(ctx, p, lv, req.cfg)
		}
	}
}

// newBusMaster makes the (not yet running) master of serial bus bc.
func (g *Gateway) newBusMaster(p *parts, bc config.SerialBus) *master {
	mc, h := rtuMaster(bc)
	if p.dir != nil {
		mc.RelayShare = g.cfg.ModbusServer.BusShare
	}
	m := newMaster(mc, h, g.cfg.Gateway.ID, g.profiles, g.reg, p.mx, g.log.With("bus", bc.Name))
	m.dir = p.dir
	return m
}

// startBus runs m, the master of bus bc, until ctx ends or the bus is stopped.
func (g *Gateway) startBus(ctx context.Context, lv *live, bc config.SerialBus, m *master) {
	ctx, cancel := context.WithCancel(ctx)
	b := &busRun{cfg: bc, m: m, cancel: cancel, done: make(chan struct{})}
	lv.buses[bc.Name] = b
	lv.wg.Add(1)
	go func() {
		defer lv.wg.Done()
		defer close(b.done)
		_ = m.run(ctx)
	}()
}

// targetChecks lists the checks of cfg's static targets by key.
func targetChecks(cfg *config.Config) map[checkKey]targetCheck {
	out := map[checkKey]targetCheck{}
	for _, t := range cfg.Discovery.TCP {
		for _, ck := range t.Checks {
			out[checkKey{targetOwner(t.Address), ck.Name}] = targetCheck{target: t.Name, ck: ck}
		}
	}
	return out
}

// targetOwner is the owner key of a static target's master (tcpOwner) from its
// configured address.
func targetOwner(address string) string {
	host, ps, _ := net.SplitHostPort(address)
	port, _ := strconv.Atoi(ps)
	return tcpOwner(host, port)
}

// startCheck runs one check of a static target until ctx ends or it is stopped.
func (g *Gateway) startCheck(ctx context.Context, lv *live, k checkKey, tc targetCheck) {
	ctx, cancel := context.WithCancel(ctx)
	r := &targetRun{targetCheck: tc, cancel: cancel, done: make(chan struct{})}
	lv.checks[k] = r
	lv.wg.Add(1)
	go func() {
		defer lv.wg.Done()
		defer close(r.done)
		runTargetCheck(ctx, g.reg, k.owner, tc.ck, g.log.With("target", tc.target, "check", tc.ck.Name))
	}()
}

// startDiscovery runs p.disc, its shared poller and the mDNS browser (if any) under ctx
// in goroutines of wg.
func (g *Gateway) startDiscovery(ctx context.Context, p *parts, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.shared.run(ctx)
	}()
	snapshots := make(chan mdns.Snapshot)
	if p.browser != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.browser.Run(ctx, snapshots); err != nil && ctx.Err() == nil {
				g.log.Error("mdns browser stopped", "err", err)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.disc.run(ctx, snapshots)
	}()
}

// applyReload applies next to the running gateway (see Reload); run's goroutine.
func (g *Gateway) applyReload(ctx context.Context, p *parts, lv *live, next *config.Config) error {
	if err := ctx.Err(); err != nil {
		return ErrNotRunning
	}
	for _, w := range next.Warnings() {
		g.log.Warn("reload: config", "warning", w)
	}
	fixed := fixedChanges(lv.cfg, next)
	for _, key := range fixed {
		g.log.Warn("reload: "+key+" changed; restart to apply", "key", key)
	}
	eff := withReloadable(lv.cfg, next)
	now := time.Now()
	var n reloadCounts

	// Serial buses: stop the removed and changed ones first (a bus renamed keeps its
	// device: its old master must have closed it), then start the new and changed ones.
	want := map[string]config.SerialBus{}
	for _, bc := range eff.Discovery.Serial {
		want[bc.Name] = bc
	}
	restarted := map[string]bool{} // buses stopped to be started again
	for name, b := range lv.buses {
		bc, ok := want[name]
		switch {
		case !ok:
			b.stop()
			delete(lv.buses, name)
			p.mx.ForgetBus(name)
			gone := g.reg.DeregisterOwner(rtuOwner(name), ownedBy(rtuOwner(name)))
			n.removed++
			g.log.Info("reload: bus removed", "bus", name, "deregistered", gone)
		case sameBus(b.cfg, bc):
			if !reflect.DeepEqual(b.cfg.Meta, bc.Meta) || !reflect.DeepEqual(b.cfg.Devices, bc.Devices) {
				_, h := rtuMaster(bc)
				b.m.setHints(h)
				n.updated++
				g.log.Info("reload: bus meta updated", "bus", name)
			}
			b.cfg = bc
		default:
			b.stop()
			delete(lv.buses, name)
			released := g.reg.Release(rtuOwner(name), now)
			restarted[name] = true
			n.restarted++
			g.log.Info("reload: bus changed; restarting its master", "bus", name, "instances", released)
		}
	}
	for _, bc := range eff.Discovery.Serial {
		if lv.buses[bc.Name] != nil {
			continue
		}
		if !restarted[bc.Name] { // else counted above
			n.added++
			g.log.Info("reload: bus added", "bus", bc.Name)
		}
		g.startBus(ctx, lv, bc, g.newBusMaster(p, bc))
	}
	masters := make([]*master, 0, len(eff.Discovery.Serial))
	for _, bc := range eff.Discovery.Serial {
		masters = append(masters, lv.buses[bc.Name].m)
	}
	p.mu.Lock()
	p.masters = masters
	p.mu.Unlock()

	// Checks of static targets: stop the removed and changed ones (a removed check no
	// longer counts in its instances' status), start the new and changed ones after the
	// targets are in place.
	checks := targetChecks(eff)
	restartedChecks := map[checkKey]bool{}
	for k, r := range lv.checks {
		tc, ok := checks[k]
		if ok && reflect.DeepEqual(tc, r.targetCheck) {
			continue
		}
		r.cancel()
		<-r.done
		delete(lv.checks, k)
		if !ok || tc.ck.Type != r.ck.Type {
			g.reg.DropCheck(k.owner, k.name, now)
		}
		if ok {
			restartedChecks[k] = true
			n.restarted++
			g.log.Info("reload: check changed; restarting it", "target", r.target, "check", k.name)
		} else {
			n.removed++
			g.log.Info("reload: check removed", "target", r.target, "check", k.name)
		}
	}

	// Network discovery: static targets and mDNS checks, in the discovery's goroutine.
	switch {
	case p.disc != nil:
		r := discReload{cfg: eff, done: make(chan reloadCounts, 1)}
		select {
		case p.disc.reloads <- r:
		case <-ctx.Done():
			return ErrNotRunning
		}
		n.add(<-r.done)
	case len(eff.Discovery.TCP) > 0:
		g.buildDiscovery(p, eff)
		g.startDiscovery(ctx, p, lv.wg)
		for _, t := range eff.Discovery.TCP {
			n.added++
			g.log.Info("reload: target added", "target", t.Name, "endpoint", t.Address)
		}
	}
	for k, tc := range checks {
		if lv.checks[k] == nil {
			if !restartedChecks[k] { // else counted above
				n.added++
				g.log.Info("reload: check added", "target", tc.target, "check", k.name)
			}
			g.startCheck(ctx, lv, k, tc)
		}
	}

	lv.cfg = eff
	g.log.Info("reload applied", "added", n.added, "removed", n.removed, "restarted", n.restarted,
		"updated", n.updated, "restart_needed", len(fixed))
	return nil
}

// ownedBy reports whether an instance's endpoint is polled by the master whose owner
// key is owner (endpointOwner): what Registry.DeregisterOwner clears of a removed bus or
// target besides its live instances, the ones it released at an earlier reload (or read
// back at the start) and has not found again.
func ownedBy(owner string) func(contract.Endpoint) bool {
	return func(ep contract.Endpoint) bool {
		o, ok := endpointOwner(ep)
		return ok && o == owner
	}
}

// sameBus reports whether two configs of a bus differ at most in meta (which a running
// master takes as new hints) and in how their units are written (UnitList is what is
// swept: "1-3" is "1,2,3").
func sameBus(a, b config.SerialBus) bool {
	a.Meta, a.Devices, b.Meta, b.Devices = nil, nil, nil, nil
	a.Units, b.Units = "", ""
	return reflect.DeepEqual(a, b)
}

// sameTarget reports whether two configs of a static target differ at most in meta and
// checks (the checks run on their own; meta is new hints) and in how their units are
// written.
func sameTarget(a, b config.TCPTarget) bool {
	a.Meta, a.Devices, a.Checks, b.Meta, b.Devices, b.Checks = nil, nil, nil, nil, nil, nil
	a.Units, b.Units = "", ""
	return reflect.DeepEqual(a, b)
}

// withReloadable returns the config in force after a reload: cur with the reloadable
// keys (reloadableKeys) of next.
func withReloadable(cur, next *config.Config) *config.Config {
	eff := *cur
	eff.Discovery.Serial = next.Discovery.Serial
	eff.Discovery.TCP = next.Discovery.TCP
	eff.Discovery.MDNS.Timeout = next.Discovery.MDNS.Timeout
	eff.Discovery.MDNS.InstancePatterns = next.Discovery.MDNS.InstancePatterns
	eff.Discovery.MDNS.Checks = next.Discovery.MDNS.Checks
	eff.Limits.MaxEndpoints = next.Limits.MaxEndpoints
	eff.Health.PollInterval = next.Health.PollInterval
	return &eff
}

// fixedChanges returns the keys (YAML paths, e.g. "mqtt.broker") outside
// reloadableKeys whose values differ between cur and next, in the order of the Config
// struct: a key holding a list or a map is named as a whole.
func fixedChanges(cur, next *config.Config) []string {
	var keys []string
	var walk func(prefix string, a, b reflect.Value)
	walk = func(prefix string, a, b reflect.Value) {
		t := a.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || tag == "" || tag == "-" {
				continue
			}
			key := tag
			if prefix != "" {
				key = prefix + "." + tag
			}
			if reloadableKeys[key] {
				continue
			}
			fa, fb := a.Field(i), b.Field(i)
			if f.Type.Kind() == reflect.Struct {
				walk(key, fa, fb)
				continue
			}
			if !sameValue(fa, fb) {
				keys = append(keys, key)
			}
		}
	}
	walk("", reflect.ValueOf(*cur), reflect.ValueOf(*next))
	return keys
}

// sameValue is reflect.DeepEqual on two config values, with an empty list or map equal
// to an absent one.
func sameValue(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Slice, reflect.Map:
		if a.Len() == 0 && b.Len() == 0 {
			return true
		}
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

// discReload asks the discovery's goroutine to apply a reloaded config (reconfigure).
type discReload struct {
	cfg  *config.Config
	done chan reloadCounts // 1-buffered
}

// reconfigure applies a reloaded config to the network side (discovery's goroutine):
// static targets added are started; removed ones are stopped and their instances
// deregistered (a target also announced over mDNS goes on as an mDNS endpoint);
// changed ones are restarted, their instances released to the new master (as a
// restarted bus's), or, when only their meta changed, take the new meta. mDNS
// endpoints whose check was removed or changed are stopped and their instances
// deregistered; with a check still configured they are found again, with it, at the
// next browse window. New mDNS candidates take the new timeout, poll interval, instance
// patterns and endpoint cap.
func (d *discovery) reconfigure(ctx context.Context, cfg *config.Config) reloadCounts {
	var n reloadCounts
	now := time.Now()
	want := map[string]*config.TCPTarget{}
	for i := range cfg.Discovery.TCP {
		t := &cfg.Discovery.TCP[i]
		want[targetOwner(t.Address)] = t
	}
	restarted := map[string]*endpoint{} // stopped, to be started again: the old endpoint
	for key, ep := range d.endpoints {
		if ep.static == nil {
			continue
		}
		t, ok := want[key]
		switch {
		case !ok && len(ep.inMDNS) > 0:
			ep.static = nil
			d.refreshHints(ep)
			n.removed++
			d.log.Info("reload: target removed; still polled as announced over mDNS", "endpoint", key)
		case !ok:
			d.halt(key, ep)
			gone := d.reg.DeregisterOwner(key, ownedBy(key))
			n.removed++
			d.log.Info("reload: target removed", "endpoint", key, "deregistered", gone)
		case sameTarget(*ep.static, *t):
			if !reflect.DeepEqual(ep.static.Meta, t.Meta) || !reflect.DeepEqual(ep.static.Devices, t.Devices) {
				n.updated++
				d.log.Info("reload: target meta updated", "target", t.Name, "endpoint", key)
			}
			ep.static = t
			d.refreshHints(ep)
		default:
			d.halt(key, ep)
			released := d.reg.Release(key, now)
			restarted[key] = ep
			n.restarted++
			d.log.Info("reload: target changed; restarting its master", "target", t.Name, "endpoint", key, "instances", released)
		}
	}
	d.cfg = cfg
	d.allow = instancePatterns(cfg)
	clear(d.ignored)
	for i := range cfg.Discovery.TCP {
		t := &cfg.Discovery.TCP[i]
		key := targetOwner(t.Address)
		old := restarted[key]
		if ep := d.endpoints[key]; ep != nil {
			if ep.static != nil {
				continue // running, unchanged
			}
			// Found over mDNS, configured now: its master restarts with the configuration.
			d.halt(key, ep)
			d.reg.Release(key, now)
			old = ep
		}
		if restarted[key] == nil {
			n.added++
			d.log.Info("reload: target added", "target", t.Name, "endpoint", key)
		}
		ep := d.newModbus(t.Address, t.Name, t.UnitList, t.Timeout, t.PollInterval)
		ep.static = t
		if old != nil { // what mDNS said about it still holds
			ep.inMDNS, ep.txtMeta = old.inMDNS, old.txtMeta
		}
		d.refreshHints(ep)
		d.launch(ctx, ep)
	}
	for key, ep := range d.endpoints {
		sc, ok := ep.p.(*serviceChecker)
		if !ok {
			continue
		}
		ck, found := d.serviceCheck(sc.check.ServiceType)
		if found && reflect.DeepEqual(ck, sc.check) {
			continue
		}
		d.halt(key, ep)
		gone := d.reg.DeregisterOwner(key, nil)
		if found {
			n.restarted++
		} else {
			n.removed++
		}
		d.log.Info("reload: mdns check changed or removed; endpoint dropped until announced again", "endpoint", key,
			"service_type", sc.check.ServiceType, "deregistered", gone)
	}
	return n
}

// halt stops the poller of endpoint key and forgets the endpoint.
func (d *discovery) halt(key string, ep *endpoint) {
	ep.cancel()
	<-ep.done
	delete(d.endpoints, key)
	d.count.Store(int32(len(d.endpoints)))
}

package client

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
)

// Registration describes an instance that a module registers for itself with a
// gateway (docs/contract.md, "Self-registration"), for Client.Register. The gateway
// publishes it in the catalog like the instances it discovers, with the status of the
// module's renewals.
type Registration struct {
	// Gateway is the id of the gateway that is to publish the instance (required;
	// slugged in the topic).
	Gateway string
	// Name names the instance within this client: 1–64 characters [a-z0-9._-]. The
	// gateway derives the instance id from it (contract.SelfInstanceID with the
	// client's MQTT client id).
	Name string
	// Service is the service the instance provides: 1–64 characters [a-z0-9._-].
	Service string
	// Endpoint says where the instance is reached; Transport is required.
	Endpoint contract.Endpoint
	// Meta and Identity are published in the instance record as given.
	Meta     map[string]string
	Identity contract.Identity
	// TTL is how long the gateway waits for the next renewal before it marks the
	// instance critical: contract.MinTTL–contract.MaxTTL (1 s–1 h), sent in whole
	// milliseconds. Register renews every TTL/3.
	TTL time.Duration
	// Renew returns the status (contract.TTLPass, TTLWarn or TTLFail; "" means pass)
	// and a note (why; cut to contract.MaxNoteBytes) sent with the registration and
	// with every renewal. Any other status is sent as fail, with a note saying so. It
	// is called from Register's goroutine, once per message: it should return
	// quickly, as it delays the renewal. nil: always pass, no note.
	Renew func() (status, note string)
}

// deregisterWait bounds the wait for the broker's acknowledgement of a deregistration,
// in Register and in Run's shutdown.
const deregisterWait = 2 * time.Second

// registration is one running Register call, for Run's shutdown.
type registration struct {
	ctx  context.Context
	done chan struct{} // closed when Register returns
}

// gatewayView is what a Register call last saw of its gateway's status record.
type gatewayView struct {
	known, online bool
	epoch         int64
}

// restarted reports whether the gateway came (back) online since prev was seen: a new
// epoch, or online after offline. Then it no longer knows the registration.
func (v gatewayView) restarted(prev gatewayView) bool {
	return v.known && v.online && prev.known && (!prev.online || v.epoch != prev.epoch)
}

// Register registers r with r.Gateway through the client's own MQTT connection and
// keeps it alive until ctx ends. It publishes (QoS 1, not retained) on
// Topics.Register(r.Gateway, Options.ClientID):
//
//   - a contract.SelfRegistration with op "register" (ttl_ms, and the status and note
//     of r.Renew) as soon as the client is connected, again after every reconnection
//     (a new connection may lead to a restarted broker, or follow an outage longer
//     than the TTL), and again when the gateway's status record shows it restarted
//     (a new epoch, or online after offline): a restarted gateway has forgotten it;
//   - op "renew" every TTL/3 while connected, with the status and note of r.Renew;
//   - op "deregister" when ctx ends, if connected, waiting at most 2 s for the
//     broker's acknowledgement (best effort: without it the gateway marks the
//     instance critical one TTL after the last renewal). When ctx is also Run's, Run
//     waits for that deregistration (at most 2 s) before it disconnects.
//
// Register blocks until ctx ends and then returns nil; messages are not sent while no
// broker connection is up (before Run connects, during an outage). It returns at once
// an error wrapping contract.ErrBadRegistration for an invalid r (no gateway, or what
// contract.SelfRegistration.Check refuses: name or service not a slug, TTL outside
// 1 s–1 h, no endpoint transport), and ErrStopped when Run has returned (or returns
// while Register runs, before ctx ends). Several registrations (distinct names) may
// run at once on one Client. The broker's ACL must let the client publish on its
// register topic (e.g. Mosquitto "pattern write rollcall/v1/register/+/%c", for
// client ids that are slugs already).
func (c *Client) Register(ctx context.Context, r Registration) error {
	reg := contract.SelfRegistration{Op: contract.OpRegister, Name: r.Name, Service: r.Service,
		Endpoint: r.Endpoint, Meta: r.Meta, Identity: r.Identity, TTLMS: r.TTL.Milliseconds()}
	if r.Gateway == "" {
		return fmt.Errorf("client: Register: %w: no gateway", contract.ErrBadRegistration)
	}
	if err := reg.Check(); err != nil {
		return fmt.Errorf("client: Register: %w", err)
	}
	payload := func(op string) []byte {
		// Every message carries the whole description (docs/contract.md,
		// "Self-registration"): the identity names the instance, and a renewal that
		// reaches a gateway that does not know the instance (it restarted, or had not
		// subscribed yet) registers it.
		m := reg
		m.Op = op
		if op != contract.OpDeregister {
			m.Status, m.Note = renewStatus(r.Renew)
		}
		b, _ := json.Marshal(m) // strings, numbers and maps of strings only
		return b
	}
	topic := c.o.Topics.Register(r.Gateway, c.o.ClientID)
	gw := contract.Slug(r.Gateway)
	log := c.log.With("gateway", r.Gateway, "name", r.Name, "topic", topic)

	rg := &registration{ctx: ctx, done: make(chan struct{})}
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		return ErrStopped
	}
	c.regs[rg] = struct{}{}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.regs, rg)
		c.mu.Unlock()
		close(rg.done)
	}()

	interval := r.TTL / 3
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var (
		sent   uint64 // connection generation the registration was last sent on; 0: none
		seenGW gatewayView
	)
	for {
		c.mu.Lock()
		pc, conn, done, changed := c.pc, c.conn, c.done, c.linkChanged
		view := c.gatewayViewLocked(gw)
		c.mu.Unlock()
		switch {
		case ctx.Err() != nil:
			if sent != 0 && conn.connected && !done {
				tok := pc.Publish(topic, 1, false, payload(contract.OpDeregister))
				if !tok.WaitTimeout(deregisterWait) {
					log.Warn("client: deregistration not acknowledged in time", "timeout", deregisterWait)
				} else if err := tok.Error(); err != nil {
					log.Warn("client: deregistration failed", "err", err)
				} else {
					log.Info("client: deregistered")
				}
			}
			return nil
		case done:
			return ErrStopped
		case conn.connected && (conn.gen != sent || view.restarted(seenGW)):
			// Not awaited: a connection lost meanwhile is followed by a registration
			// on the next one.
			pc.Publish(topic, 1, false, payload(contract.OpRegister))
			switch {
			case sent == 0:
				log.Info("client: self-registration sent", "service", r.Service, "ttl", r.TTL)
			case conn.gen != sent:
				log.Info("client: self-registration sent again after a reconnection")
			default:
				log.Info("client: self-registration sent again: the gateway restarted", "epoch", view.epoch)
			}
			sent = conn.gen
			tick.Reset(interval)
		}
		if view.known {
			seenGW = view
		}
		select {
		case <-ctx.Done():
		case <-changed:
		case <-tick.C:
			c.mu.Lock()
			pc, conn = c.pc, c.conn
			c.mu.Unlock()
			if conn.connected && conn.gen == sent {
				pc.Publish(topic, 1, false, payload(contract.OpRenew))
			}
		}
	}
}

// renewStatus calls renew (nil: pass) and returns a valid status and a clean note.
func renewStatus(renew func() (string, string)) (status, note string) {
	if renew == nil {
		return contract.TTLPass, ""
	}
	status, note = renew()
	switch status {
	case "":
		status = contract.TTLPass
	case contract.TTLPass, contract.TTLWarn, contract.TTLFail:
	default:
		note = fmt.Sprintf("invalid status %q from Registration.Renew: %s", status, note)
		status = contract.TTLFail
	}
	return status, contract.CleanNote(note)
}

// gatewayViewLocked returns what the catalog says of gateway slug gw; c.mu held.
func (c *Client) gatewayViewLocked(gw string) gatewayView {
	g := c.gateways[gw]
	if g == nil {
		return gatewayView{}
	}
	return gatewayView{known: true, online: g.rec.State == GatewayOnline, epoch: g.rec.Epoch}
}

// awaitDeregistrations lets the Register calls whose context has ended (typically the
// context that also ended Run) send their deregistration before Run disconnects: it
// waits for them to return, at most deregisterWait in all.
func (c *Client) awaitDeregistrations() {
	c.mu.Lock()
	var ending []*registration
	for rg := range c.regs {
		if rg.ctx.Err() != nil {
			ending = append(ending, rg)
		}
	}
	c.mu.Unlock()
	if len(ending) == 0 {
		return
	}
	deadline := time.NewTimer(deregisterWait + 100*time.Millisecond)
	defer deadline.Stop()
	for _, rg := range ending {
		select {
		case <-rg.done:
		case <-deadline.C:
			c.log.Warn("client: gave up waiting for self-registrations to deregister")
			return
		}
	}
}

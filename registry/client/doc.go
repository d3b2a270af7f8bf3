// Package client is the consumer side of rollcall's service registry: a library for
// line and robot controllers that need "a live servo drive for axis 3 on cell 2 — and
// another one when that one dies, even while the broker is down".
//
// rollcall gateways poll the drives and modules on their buses and publish one
// retained MQTT record per instance, plus a status record per gateway (the MQTT
// contract v1, docs/contract.md). A Client subscribes to those records, keeps a live
// catalog in memory (and optionally in a cache file), and picks instances from it.
// It never talks to the devices; the endpoint in the record says where to reach them.
//
// # Connect
//
// Create a Client with New and run it with Run in a goroutine of its own; Run returns
// when its context ends, after every goroutine it started (paho's included) has ended:
//
//	c, err := client.New(client.Options{
//		Brokers:   []string{"tcp://10.0.0.2:1883", "tcp://10.0.0.3:1883"},
//		Services:  []string{"servo-drive"}, // empty: every service
//		CacheFile: "/var/lib/cell2/rollcall-catalog.json",
//	})
//	if err != nil { … }
//	go c.Run(ctx)
//
// On every connection the client subscribes, in paho's OnConnect handler, to
// <prefix>/catalog/<service>/+/+ for each service of Options.Services (or
// <prefix>/catalog/+/+/+ for all), to <prefix>/gateways/+/status, and to its own sync
// topic, all at QoS 0: a broker sends a SUBSCRIBE's retained records at once, and
// Mosquitto 2.0's default per-client queue (max_inflight_messages 20,
// max_queued_messages 1000) drops QoS 1 deliveries beyond it, retained records and the
// sync marker included, where QoS 0 ones are written out in order. The session is
// clean, so each (re)connection delivers the whole retained catalog again. To learn
// when that delivery is complete, the client publishes a sync marker (QoS 1, not
// retained) to <prefix>/consumers/<client id>/sync, which comes back after every
// retained record; entries that the broker did not confirm by then are
// removed (it no longer has them). Let the client publish and subscribe there in your
// broker's ACL, or the catalog counts as complete only Options.SyncTimeout after the
// subscription. Status reports the connection; Ready is closed after the first
// complete catalog. Malformed records, and records whose service, gateway or id do
// not match their topic, are logged and skipped; the gateways' read-back marker topic
// (<prefix>/gateways/<g>/readback) is not matched by these filters.
//
// Records are taken as the broker delivers them, with two exceptions: a record of the
// same epoch as the one held but with a lower revision is an older publication
// delivered late, and does not replace the newer one; and after an instance was
// deregistered (an empty record), a record of it no newer than the removed one (same
// epoch, revision not above) is not taken for a new registration while the removed
// record's lease could still run. An entry removed at a resynchronisation because the
// broker no longer had it (a broker that lost its retained store) refuses only older
// records: its gateway republishes the very record it holds, which is taken again.
// A record already held is confirmed without checking its signature and decoding it
// again when the same payload comes back (as every resynchronisation brings it).
//
// # Signatures
//
// Give Options.TrustedKeys the gateways' public keys (contract.ParseKeyRing reads the
// lines `rollcall key` prints) and the client believes only what they signed: an
// instance or status record that is unsigned, signed with another key, or altered is
// ignored, counted in Status().Unsigned or Status().BadSignatures, and logged once per
// gateway and reason. Empty records (deregistrations) cannot be signed and are taken:
// a forger can hide an instance but never add, alter or revive one. Without trusted
// keys Run logs one warning that the catalog is not authenticated
// (docs/contract.md, "Signed records").
//
// # Pick
//
// Pick returns one instance that may be used now, from memory, without blocking:
//
//	drive, err := c.Pick("servo-drive", client.WithMeta("cell", "2"), client.WithMeta("axis", "3"))
//	if errors.Is(err, client.ErrNoneLive) { … nothing live right now … }
//	addr := drive.Endpoint // transport, bus/device/baud or host/port, unit
//
// Pick never returns an instance that is
//   - "critical" (its gateway's polls failed), nor "warning" unless AllowWarning is
//     given (answering but degraded: fault bit, exceptions, slow);
//   - "maintenance" (taken out of service by an operator; Record.Maintenance says why
//     and until when), whatever the options, nor in any status it does not know;
//   - published by a gateway whose status is "offline" (clean shutdown, or the
//     broker's will after a crash): the contract says such instances are unknown, not
//     live;
//   - of an older epoch than its gateway's current one (from the gateway's status
//     record): a record left over from before a gateway restart, not yet confirmed
//     by the restarted gateway;
//   - Stale (see "Cache and staleness") unless AllowStale is given.
//
// The instances of a gateway with no status record at all are accepted by default,
// but only once the client has received the broker's complete retained catalog on
// the current connection: the status and catalog topics are separate subscriptions
// whose retained records arrive in any order, so until then a missing status may be
// an "offline" one still on its way. After that, a gateway without status is one
// that never published it (or whose status was cleared), and the record's own status
// is still the device's health as its gateway polled it. Pass RequireGatewayOnline
// to refuse such instances always. Without a known status there is no current epoch
// to compare with, so the epoch rule does not apply to them. A record with a lease
// (valid_until) is never accepted without its gateway's status: its gateway publishes
// a leased status, and only that lease says the gateway is still alive.
//
// When nothing qualifies the error wraps ErrNoneLive and names the service, the
// filters, and how many known instances were refused for which reason, e.g.
//
//	client: no live instance for service "servo-drive" (meta axis=3): 2 known: 1 critical, 1 gateway offline
//
// (the reasons: not matching the filters, critical, in maintenance, warning, gateway
// offline, gateway status unknown or not received yet, older epoch, lease expired,
// stale).
//
// Live returns every instance Pick could choose from; Instances returns every entry of
// the catalog, whatever its status. Instance is the record as published
// (contract.Record) plus Stale, Age, GatewayState and GatewayEpoch.
//
// # Filters
//
// Filters combine with AND: WithMeta(k, v) (repeatable: every pair must match),
// WithID(id), WithGateway(g), WithIdentity(func(contract.Identity) bool) (vendor,
// product code, revision, model, serial as the device reported them). Instances of the
// same service published by several gateways form one pool; entries are keyed by
// gateway and instance id (by topic), so two gateways that see devices with equal ids
// keep two entries. Use WithGateway to stay on one gateway.
//
// # Strategies
//
// A Strategy is a PickOption that chooses among the qualifying instances:
// RoundRobin (default; one counter per service, instances ordered by gateway and id),
// Random, LowestRTT (lowest check.rtt_ms, the gateway's last poll round trip), and
// Weighted (at random, in proportion to each instance's meta "weight", an integer
// 0–1000; missing or invalid counts as 1, 0 is picked only when all are 0). Gateways
// copy a device profile's meta into the instance's, so a profile can set weights.
// For a controller that keeps one drive until it fails, Pick once, then Pick again
// (or Wait) only when the one it has stops qualifying — see Subscribe.
//
// # Wait
//
// Wait blocks until Pick with the same arguments succeeds, or its context ends (the
// error then wraps both ErrNoneLive and the context's error). It does not poll: it
// wakes on every catalog change.
//
//	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
//	drive, err := c.Wait(ctx, "servo-drive", client.WithMeta("axis", "3"))
//
// # Notifications
//
// Subscribe(buffer) returns a channel of Change values (Added, Updated, Removed, with
// the Instance as of the change) and a cancel function. The MQTT side never waits for
// a subscriber: when the buffer is full, the oldest queued change is dropped and the
// next queued change carries the number dropped in Missed (drop-oldest); re-read the
// catalog with Instances or Live when Missed > 0. A change is sent when an instance
// is added, its record is replaced, it is removed (deregistered, or gone from the
// broker at a resynchronisation), a cached entry is confirmed, or its gateway's status
// or epoch changes. A typical failover loop:
//
//	changes, cancel := c.Subscribe(64)
//	defer cancel()
//	for range changes {
//		if _, err := c.Pick("servo-drive", client.WithID(current.ID)); err != nil {
//			current, err = c.Pick("servo-drive", client.WithMeta("axis_group", "A"))
//			…
//		}
//	}
//
// How fast a dead drive is noticed is bounded by its record's check.detect_budget_ms
// (death to "critical" at the gateway) plus the broker's delivery.
//
// # Cache and staleness
//
// With Options.CacheFile the catalog (instance and gateway status records, each with
// when it was last confirmed) is written as JSON, atomically (temporary file in the
// same directory, fsync, rename), at most every CacheInterval while something changed,
// and when Run returns. New reads it back: a controller restarted while the broker is
// unreachable starts from the last known catalog. Those entries are Stale, with Age the
// time since they were last confirmed, and Pick skips them unless AllowStale is given
// (their status is as old as Age says). Once a broker is reachable, entries confirmed
// by its retained records become fresh, and those it no longer has are removed when
// the sync marker comes back.
//
// During a broker outage the client keeps its catalog and keeps answering Pick: the
// entries it had received are not Stale (unless Options.StaleAfter is set and the
// outage lasts longer), but their Age grows from the moment the connection was lost,
// and Status().Connected is false. The gateways keep polling meanwhile; what they
// learn reaches the client after the reconnection. While the connection that
// delivered an entry is up, its Age is 0: the broker pushes every change.
//
// # Failover
//
// Options.Brokers may list several brokers (e.g. the two members of a bridged pair, or
// a cluster's nodes). paho tries them in the listed order on every connection attempt
// and stays with the first that accepts; after a lost connection it starts again from
// the first (a dead broker is noticed within about KeepAlive + 3 s; a broker that shuts
// down or restarts closes the connection at once). The first round of attempts comes
// at once (within 50 ms, jittered); while rounds fail, the waits between them double
// from 50–100 ms up to MaxReconnectInterval (1–2 s by default), each jittered within
// the upper half of its step so that the consumers of a restarted broker do not all
// reconnect at the same moment. A consumer is thus back within about the outage's own
// length after the broker is: a restarted Mosquitto with 5000 records had a consumer
// holding all of them live again within about 0.1 s (broker kept its store) and
// 0.35–0.5 s (store lost: the gateway republishes them) (rollcall-bench -only resync;
// docs/contract.md, "Implementation note (reconnection)"). The client does not move back to an earlier broker while the
// connection to a later one is up. Each new connection is resynchronised from scratch
// (clean session, retained records, sync marker), so the brokers must carry the same
// retained catalog: entries the new broker does not have are removed after its sync.
// Meanwhile Pick answers from memory.
//
// # Fallback endpoints
//
// Options.Fallback lists endpoints per service for a controller that must start even
// when it has never seen the catalog:
//
//	Fallback: []client.Fallback{{Service: "plc", Endpoint: contract.Endpoint{
//		Transport: "modbus-tcp", Host: "10.0.2.10", Port: 502, Unit: 1}}},
//
// Pick and Wait (never Live) return one, as an Instance with Fallback true and ID
// "fallback-<service>-<n>", only when no broker can be reached (a round of connection
// attempts failed, or the connection was lost) and the client knows no entry of the
// service at all: not live, not from the cache file, not even a refused one. Whenever
// anything is known of the service, or a broker is connected, Pick behaves as without
// fallbacks (ErrNoneLive when nothing qualifies). Filters apply to the fallback's Meta.
// There is no health check behind a fallback: its Status is empty.
//
// # Self-registration
//
// A module that is not discovered on a bus (a vision server, a PC-based controller)
// can have a gateway publish it, with Register over the client's own connection:
//
//	go c.Register(ctx, client.Registration{Gateway: "gw-cell2", Name: "vision",
//		Service: "vision", Endpoint: contract.Endpoint{Transport: "tcp", Host: "10.0.2.20", Port: 9000},
//		TTL: 3 * time.Second, Renew: func() (string, string) { return contract.TTLPass, "" }})
//
// It sends a register message (contract.SelfRegistration, QoS 1, not retained) on
// <prefix>/register/<gateway>/<client id> once connected, again after every
// reconnection and gateway restart, a renewal with Renew's status and note every TTL/3,
// and a deregistration when ctx ends (Run, if it ends with the same context, waits up
// to 2 s for it). The gateway marks the instance critical when no renewal comes within
// the TTL.
//
// # Errors and logs
//
// New reports invalid options; Run only fails its final cache write (or ErrAlreadyRun);
// Register reports an invalid registration at once (contract.ErrBadRegistration) and
// ErrStopped after Run returned.
// Connection problems are logged (log/slog, keys broker, service, gateway, instance,
// topic, err) and retried for as long as the context lives.
package client

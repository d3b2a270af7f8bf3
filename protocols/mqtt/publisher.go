package mqtt

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rollcall-edge/rollcall/contract"
)

// Defaults of PublisherOptions.
const (
	DefaultKeepAlive            = 5 * time.Second
	DefaultPingTimeout          = 3 * time.Second
	DefaultConnectTimeout       = 5 * time.Second
	DefaultMaxReconnectInterval = 2 * time.Second
	DefaultPublishTimeout       = 5 * time.Second
	DefaultShutdownTimeout      = 2 * time.Second
	DefaultRetryInterval        = 1 * time.Second
)

// publishBatch is how many publications the worker has in flight at once.
const publishBatch = 128

// ErrAlreadyRun is returned by a second call of Publisher.Run.
var ErrAlreadyRun = errors.New("mqtt: Publisher.Run called more than once")

// PublisherOptions configures a Publisher. Zero durations take the documented default.
type PublisherOptions struct {
	// BrokerURL is the broker, scheme://host:port with scheme tcp, ssl (TLS), ws or wss
	// (paho's aliases mqtt, mqtts, tls, tcps and unix work too). A password in the URL's
	// user info is never logged. Required unless Brokers is set.
	BrokerURL string
	// Brokers, if not empty, replaces BrokerURL with several brokers of one cluster (or
	// a bridged pair), same URL rules: every connection attempt tries them in order and
	// keeps the first that accepts, so a lost node is replaced by the next; the
	// publisher resynchronises on every (re)connection, whichever node it reaches.
	Brokers []string
	// ClientID is the MQTT client identifier; it must be stable across restarts and
	// unique per gateway. Default "rollcall-" + Slug(Gateway.Gateway).
	ClientID string
	// Topics gives the topic prefix (zero value: DefaultPrefix).
	Topics contract.Topics
	// Gateway is this gateway's record: Gateway (id, required), Epoch, Started, Version.
	// State is ignored: the publisher sets "online" and "offline" (docs/contract.md, "Gateway
	// record").
	Gateway contract.GatewayRecord
	// Username and Password authenticate to the broker when Username is not empty.
	Username, Password string
	// TLSConfig is used for ssl/wss URLs; nil means Go's defaults.
	TLSConfig *tls.Config
	// Logger receives connection events and failures (keys: gateway, broker, instance,
	// topic, err). Default slog.Default().
	Logger *slog.Logger

	// KeepAlive is the MQTT keep-alive (whole seconds, at least 1 s; default 5 s). The
	// broker treats the gateway as dead, and publishes its will (status "offline"),
	// after 1.5 × KeepAlive without a packet from it (MQTT 3.1.1 §3.1.2.10): 7.5 s by
	// default. The publisher itself pings after KeepAlive of silence.
	KeepAlive time.Duration
	// PingTimeout is how long the publisher waits for a PINGRESP before it drops the
	// connection and reconnects (default 3 s): a dead broker is noticed within about
	// KeepAlive + PingTimeout.
	PingTimeout time.Duration
	// ConnectTimeout bounds one connection attempt (TCP, TLS and CONNACK; default 5 s).
	ConnectTimeout time.Duration
	// MaxReconnectInterval caps the back-off between connection attempts (default 2 s).
	// After a lost connection the publisher tries again at once (jittered over 0–50
	// ms), then after 50–100 ms, 100–200 ms and so on, doubling up to this cap
	// (Timing.MinReconnectInterval): it is back within about the outage's own length
	// after the broker is.
	MaxReconnectInterval time.Duration
	// PublishTimeout is how long the worker waits for the broker to acknowledge a batch
	// of publications before it counts them failed and retries them (default 5 s). It
	// also bounds how long one paho write may block.
	PublishTimeout time.Duration
	// RetryInterval is how long the worker waits before it retries publications that
	// failed while the connection stayed up (default 1 s). After a reconnect everything
	// is republished at once.
	RetryInterval time.Duration
	// ShutdownTimeout bounds the clean shutdown: publishing status "offline" and then
	// the pending records (default 2 s).
	ShutdownTimeout time.Duration
	// StatusLease, if > 0, is the lease of the "online" status record (its valid_until,
	// docs/contract.md "Leases"): the publisher renews it every StatusLease/3 while
	// connected, so readers keep the gateway's instances live only while it runs and
	// reaches the broker. 0: no lease (valid_until omitted).
	StatusLease time.Duration
	// OnForeignOnline, if set, is called (from an MQTT client goroutine; it must not
	// block) with every live "online" status record on this gateway's status topic that
	// is not this publisher's own (another epoch or start time): another gateway is
	// publishing under the same id. See Withdraw.
	OnForeignOnline func(contract.GatewayRecord)
	// HoldRecords: instance records (and empty records) are kept, not published, until
	// Release is called; the gateway status is published as usual. The gateway holds
	// its records until it has read back its subtree once, so that its first records
	// cannot overwrite (and hide) the revisions an earlier run left on the broker.
	HoldRecords bool
	// SigningKey, if set, signs every record the publisher sends — instance records,
	// the status record and the will (contract.Sign; docs/contract.md, "Signed
	// records") — and its public key is published in the status record's "key".
	SigningKey ed25519.PrivateKey
	// OnPublished, if set, is called for every record (or empty record) the broker
	// acknowledged, with the time from the Publish or Deregister call that made it to
	// the PUBACK (an outage counts in full: it is the time the change took to get out).
	// Called from the publisher's worker goroutine; it must not block.
	OnPublished func(latency time.Duration)
}

// PublisherStats are counters of a Publisher since NewPublisher.
type PublisherStats struct {
	Connects   uint64 // connections established (the first one included)
	Reconnects uint64 // connections after the first: Connects - 1 (or 0)
	Published  uint64 // publications acknowledged by the broker: records, empty records, status
	Failed     uint64 // publications that failed or timed out; each is retried later
	Rejected   uint64 // records refused by Publish: invalid, too large, or another gateway's
	// Overwritten counts live messages on this gateway's own topics that were not its
	// own publications (a forgery, a replayed old record, another writer): each made
	// the publisher publish its own current record (or empty record) there again.
	Overwritten uint64
	Instances   int // instance topics held in memory: current records + unconfirmed deregistrations
	Pending     int // of Instances, those with a change the broker has not acknowledged
	// Synced: connected, "online" published on this connection, and no change pending:
	// the broker holds exactly what the gateway wants published.
	Synced bool
}

// entry is the latest state the gateway wants retained at one instance topic.
type entry struct {
	instance string    // instance id as given (for logs)
	payload  []byte    // JSON record; nil = deregistered (empty retained payload)
	prev     []byte    // the payload wanted before this one, until this one's echo came back (see onRecordMessage)
	echoed   bool      // payload's echo came back on our subscription
	rev      uint64    // sequence number of the latest change
	done     uint64    // rev acknowledged by the broker on the current connection
	changed  time.Time // when rev was set (Publish/Deregister), for OnPublished
}

// outgoing is one publication of a batch.
type outgoing struct {
	topic    string
	instance string
	payload  []byte
	rev      uint64
	changed  time.Time
}

// Publisher is the gateway side of the MQTT contract v1 (docs/contract.md; docs/design.md,
// "Health semantics"):
//
//   - the gateway status record, retained QoS 1, "online" after every (re)connect and
//     "offline" on clean shutdown; the same record with "offline" is the MQTT will,
//     so the broker publishes it when the gateway dies or its link goes silent;
//   - one retained QoS 1 record per instance, an empty retained payload on
//     deregistration;
//   - after every reconnect: "online", then the current record of every instance and
//     the empty record of every instance deregistered while disconnected.
//
// Publish and Deregister never block: they store the latest wanted state per instance
// topic in memory (coalescing, latest wins) and wake the worker that Run runs, which
// publishes pending changes and waits for the broker's acknowledgements. Create it
// with NewPublisher; run it once with Run. Methods are safe for concurrent use.
//
// MQTT session: stable client id, persistent session (CleanSession false), paho's
// automatic reconnect. On each connection the worker first lets paho finish resending
// what it had stored (see trackingStore), then subscribes (QoS 0) to its own status
// topic: should a live "offline" arrive within 2 × KeepAlive after its "online" (the
// will of its previous connection, published late after a session takeover), it
// publishes "online" again.
type Publisher struct {
	o         PublisherOptions
	log       *slog.Logger
	broker    string // redacted URL, for logs
	gwSlug    string
	statusTop string
	online    []byte
	offline   []byte
	client    paho.Client
	stopWait  chan struct{} // closed when Run stops: ends a reconnection back-off wait
	store     *trackingStore
	started   atomic.Bool
	connGen   atomic.Uint64 // OnConnect calls so far
	connEv    chan struct{} // 1-slot: connection came up or went down
	kick      chan struct{} // 1-slot: something to publish
	published atomic.Uint64
	failed    atomic.Uint64
	rejected  atomic.Uint64
	overwrite atomic.Uint64     // Stats().Overwritten
	overLog   atomic.Int64      // unix ns of the last "overwritten" log line
	attempt   atomic.Value      // string: redacted URL of the latest connection attempt (the node connected to)
	ownKeys   *contract.KeyRing // this publisher's public key (SigningKey); nil without one
	// resumeTimeouts counts waitResumed giving up (tests expect 0).
	resumeTimeouts atomic.Uint64
	statusStale    atomic.Bool   // a live non-online message arrived on our status topic
	held           atomic.Bool   // HoldRecords in force: records are not published yet
	withdrawn      atomic.Bool   // Withdraw called: publish nothing more
	onlineAt       atomic.Int64  // when "online" was last published (Unix ns), for the lease
	syncedGen      atomic.Uint64 // connection generation whose resync completed (for Stats)
	healUntil      atomic.Int64  // unix ns: until then onStatusMessage repairs our status
	mu             sync.Mutex
	entries        map[string]*entry // by instance topic
	current        map[string]string // Slug(instance id) → topic of its current record
	seq            uint64            // last rev handed out
	lostErr        error             // why the connection was lost (for the worker's log)
	lostLogged     bool
}

// NewPublisher checks o, applies defaults and prepares the MQTT client (it does not
// connect: Run does). Errors: an invalid BrokerURL or topic prefix, an empty
// Gateway.Gateway, or a KeepAlive below one second.
func NewPublisher(o PublisherOptions) (*Publisher, error) {
	if len(o.Brokers) == 0 {
		o.Brokers = []string{o.BrokerURL}
	}
	redacted := make([]string, 0, len(o.Brokers))
	for _, b := range o.Brokers {
		r, err := parseBrokerURL(b)
		if err != nil {
			return nil, err
		}
		redacted = append(redacted, r)
	}
	broker := strings.Join(redacted, ",")
	if err := o.Topics.Validate(); err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	if o.Gateway.Gateway == "" {
		return nil, errors.New("mqtt: PublisherOptions.Gateway.Gateway (the gateway id) is empty")
	}
	timing := Timing{KeepAlive: o.KeepAlive, PingTimeout: o.PingTimeout, ConnectTimeout: o.ConnectTimeout,
		MaxReconnectInterval: o.MaxReconnectInterval, WriteTimeout: o.PublishTimeout}.WithDefaults()
	if err := timing.Validate(); err != nil {
		return nil, err
	}
	o.KeepAlive, o.PingTimeout, o.ConnectTimeout = timing.KeepAlive, timing.PingTimeout, timing.ConnectTimeout
	o.MaxReconnectInterval, o.PublishTimeout = timing.MaxReconnectInterval, timing.WriteTimeout
	if o.RetryInterval <= 0 {
		o.RetryInterval = DefaultRetryInterval
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ClientID == "" {
		o.ClientID = "rollcall-" + contract.Slug(o.Gateway.Gateway)
	}

	p := &Publisher{
		o:         o,
		broker:    broker,
		gwSlug:    contract.Slug(o.Gateway.Gateway),
		statusTop: o.Topics.GatewayStatus(o.Gateway.Gateway),
		store:     newTrackingStore(),
		stopWait:  make(chan struct{}),
		connEv:    make(chan struct{}, 1),
		kick:      make(chan struct{}, 1),
		entries:   map[string]*entry{},
		current:   map[string]string{},
	}
	p.held.Store(o.HoldRecords)
	p.log = o.Logger.With("gateway", o.Gateway.Gateway)
	if o.SigningKey != nil {
		pub := o.SigningKey.Public().(ed25519.PublicKey)
		p.o.Gateway.Key = contract.FormatPublicKey(pub)
		p.ownKeys = &contract.KeyRing{}
		p.ownKeys.Add(o.Gateway.Gateway, pub)
	}
	g := p.o.Gateway
	g.State, g.ValidUntil = contract.StateOnline, contract.Time{}
	var err error
	if p.online, err = p.encodeStatus(g); err != nil { // checks the record once
		return nil, err
	}
	g.State = contract.StateOffline
	if p.offline, err = p.encodeStatus(g); err != nil {
		return nil, err
	}

	co := Session{Brokers: o.Brokers, ClientID: o.ClientID, Reconnect: true, Stop: p.stopWait,
		Username: o.Username, Password: o.Password, TLSConfig: o.TLSConfig, Timing: timing}.Options().
		SetBinaryWill(p.statusTop, p.offline, 1, true).
		SetStore(p.store).
		SetDefaultPublishHandler(p.onStatusMessage).
		SetConnectionAttemptHandler(func(u *url.URL, cfg *tls.Config) *tls.Config {
			p.attempt.Store(u.Redacted())
			return cfg
		}).
		SetOnConnectHandler(func(paho.Client) {
			// Runs in a goroutine of paho's: only signal the worker.
			p.connGen.Add(1)
			signal(p.connEv)
		}).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			p.mu.Lock()
			p.lostErr, p.lostLogged = err, false
			p.mu.Unlock()
			signal(p.connEv)
		})
	p.client = paho.NewClient(co)
	return p, nil
}

// encodeStatus encodes (and signs, with a SigningKey) a gateway status record.
func (p *Publisher) encodeStatus(g contract.GatewayRecord) ([]byte, error) {
	b, err := contract.EncodeGatewayRecord(g)
	if err == nil && p.o.SigningKey != nil {
		b, err = contract.Sign(p.o.SigningKey, contract.KindGateway, b)
	}
	if err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	return b, nil
}

// Withdraw stops every publication for good: nothing more is published, not even
// status "offline" at shutdown (a clean DISCONNECT then also discards the will). The
// gateway calls it when another gateway publishes under its id (OnForeignOnline), so
// that it never overwrites the other's status or records.
func (p *Publisher) Withdraw() {
	if !p.withdrawn.Swap(true) {
		p.held.Store(true)
		signal(p.kick)
	}
}

// Release ends HoldRecords: the records kept so far, and every later one, are published.
// Calling it again, or without HoldRecords, does nothing.
func (p *Publisher) Release() {
	if !p.withdrawn.Load() && p.held.CompareAndSwap(true, false) {
		signal(p.kick)
	}
}

// Connections returns the number of connections to the broker established so far (the
// first included): it changes after every reconnect.
func (p *Publisher) Connections() uint64 { return p.connGen.Load() }

// Connected reports whether the publisher holds an open connection to the broker now.
func (p *Publisher) Connected() bool { return p.client.IsConnectionOpen() }

// Stats returns a snapshot of the publisher's counters.
func (p *Publisher) Stats() PublisherStats {
	s := PublisherStats{
		Connects:    p.connGen.Load(),
		Published:   p.published.Load(),
		Failed:      p.failed.Load(),
		Rejected:    p.rejected.Load(),
		Overwritten: p.overwrite.Load(),
	}
	if s.Connects > 0 {
		s.Reconnects = s.Connects - 1
	}
	synced := s.Connects > 0 && p.syncedGen.Load() == s.Connects && p.client.IsConnectionOpen() && !p.statusStale.Load()
	p.mu.Lock()
	defer p.mu.Unlock()
	s.Instances = len(p.entries)
	for _, e := range p.entries {
		if e.rev != e.done {
			s.Pending++
		}
	}
	s.Synced = synced && s.Pending == 0
	return s
}

// Publish makes rec the record retained at Topics.Instance(rec.Service, rec.Gateway,
// rec.ID), QoS 1. It never blocks: the record is encoded now (later changes to its maps
// do not leak in), kept in memory as the latest state of that instance, replacing any
// not yet published, and published by Run's worker (again after every reconnect).
//
// An empty rec.Gateway is set to this gateway, an empty rec.Schema to contract.Schema.
// A record of another gateway, or one EncodeRecord refuses, is logged, counted in
// Stats().Rejected and dropped. If the instance's topic changed (another service), the
// old topic gets an empty record. Records published before Run are sent once it
// connects; after Run returned nothing is sent.
func (p *Publisher) Publish(rec contract.Record) {
	if rec.Gateway == "" {
		rec.Gateway = p.o.Gateway.Gateway
	}
	if contract.Slug(rec.Gateway) != p.gwSlug {
		p.rejected.Add(1)
		p.log.Error("mqtt: record of another gateway not published", "instance", rec.ID, "record_gateway", rec.Gateway)
		return
	}
	payload, err := contract.EncodeRecord(rec)
	if err == nil && p.o.SigningKey != nil {
		payload, err = contract.Sign(p.o.SigningKey, contract.KindInstance, payload)
	}
	if err != nil {
		p.rejected.Add(1)
		p.log.Error("mqtt: record not published", "instance", rec.ID, "err", err)
		return
	}
	topic := p.o.Topics.Instance(rec.Service, rec.Gateway, rec.ID)
	idSlug := contract.Slug(rec.ID)
	p.mu.Lock()
	if old, ok := p.current[idSlug]; ok && old != topic {
		p.setLocked(old, rec.ID, nil)
	}
	p.current[idSlug] = topic
	p.setLocked(topic, rec.ID, payload)
	p.mu.Unlock()
	signal(p.kick)
}

// Deregister publishes an empty retained payload (QoS 1) at Topics.Instance(service,
// <this gateway>, id), which removes the retained record from the broker, and at the
// topic of the instance's current record if that differs. It never blocks; the
// instance is dropped from memory once the broker acknowledged the empty record, and
// until then it is republished after every reconnect.
func (p *Publisher) Deregister(service, id string) {
	topic := p.o.Topics.Instance(service, p.o.Gateway.Gateway, id)
	idSlug := contract.Slug(id)
	p.mu.Lock()
	p.setLocked(topic, id, nil)
	if cur, ok := p.current[idSlug]; ok {
		if cur != topic {
			p.setLocked(cur, id, nil)
		}
		delete(p.current, idSlug)
	}
	p.mu.Unlock()
	signal(p.kick)
}

// Clear publishes an empty retained payload (QoS 1) on topic, an instance topic of this
// gateway's subtree that it does not vouch for (a stale, foreign or malformed record
// found by ReadBack), unless the topic holds one of its current records. Like Publish
// it never blocks, and the clearing is retried until the broker acknowledges it. It
// reports false, doing nothing, for a topic outside the gateway's subtree or current.
func (p *Publisher) Clear(topic string) bool {
	_, gw, inst, ok := p.o.Topics.ParseInstanceTopic(topic)
	if !ok || gw != p.gwSlug {
		return false
	}
	p.mu.Lock()
	if cur, ok := p.current[inst]; ok && cur == topic {
		p.mu.Unlock()
		return false
	}
	if e := p.entries[topic]; e != nil && e.payload == nil {
		p.mu.Unlock()
		return true // already being cleared
	}
	p.setLocked(topic, inst, nil)
	p.mu.Unlock()
	signal(p.kick)
	return true
}

// setLocked records a new wanted state for topic; p.mu must be held.
func (p *Publisher) setLocked(topic, instance string, payload []byte) {
	e := p.entries[topic]
	if e == nil {
		e = &entry{}
		p.entries[topic] = e
	}
	p.seq++
	e.prev = e.payload
	if e.echoed {
		e.prev = nil // its echo is in: a copy arriving now would not be ours
	}
	e.instance, e.payload, e.echoed, e.rev, e.changed = instance, payload, false, p.seq, time.Now()
}

// Run connects to the broker and publishes until ctx ends; it blocks until then and
// returns nil (or ErrAlreadyRun if called twice). The broker may be unreachable at
// first: paho keeps trying every MaxReconnectInterval at most.
//
// On ctx end (clean shutdown, docs/contract.md, "Shutdown and crash"): if connected, it publishes
// status "offline" (retained, QoS 1) and waits for the acknowledgement, then flushes
// pending records, all within ShutdownTimeout; then it disconnects (the broker drops
// the will on a clean DISCONNECT). If not connected, the will of the last connection
// (if there was one) reports "offline". Run returns after its worker stopped and
// paho's connection goroutines ended (waiting at most ConnectTimeout +
// MaxReconnectInterval + 1 s for those).
func (p *Publisher) Run(ctx context.Context) error {
	if !p.started.CompareAndSwap(false, true) {
		return ErrAlreadyRun
	}
	p.log.Info("mqtt: connecting", "broker", p.broker, "client_id", p.o.ClientID)
	connectTok := p.client.Connect()
	p.work(ctx)
	p.shutdown(ctx)
	close(p.stopWait)
	if !StopClient(p.client, connectTok, 250, p.o.ConnectTimeout+p.o.MaxReconnectInterval+time.Second) {
		p.log.Warn("mqtt: client still connecting after shutdown; giving up waiting", "broker", p.broker)
	}
	p.log.Info("mqtt: publisher stopped", "broker", p.broker)
	return nil
}

// work is the worker loop: it runs in Run's goroutine until ctx ends.
func (p *Publisher) work(ctx context.Context) {
	var (
		syncedGen uint64 // connection generation whose resync completed
		retry     *time.Timer
		retryC    <-chan time.Time
	)
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		if ctx.Err() != nil {
			return
		}
		p.logLoss()
		gen := p.connGen.Load()
		if gen > 0 && p.client.IsConnectionOpen() {
			ok := true
			if gen != syncedGen {
				if ok = p.resync(ctx, gen); ok {
					syncedGen = gen
					p.syncedGen.Store(gen)
				}
			}
			if ok {
				ok = p.healStatus(ctx)
			}
			if d, lease := p.renewDue(); ok && lease && d <= 0 {
				ok = p.publishOnline(ctx)
			}
			if ok && !p.held.Load() {
				ok = p.flush(ctx, gen)
			}
			if !ok && ctx.Err() == nil && retryC == nil {
				if retry == nil {
					retry = time.NewTimer(p.o.RetryInterval)
				} else {
					retry.Reset(p.o.RetryInterval)
				}
				retryC = retry.C
			}
		}
		var renew *time.Timer // renews the status lease while connected
		var renewC <-chan time.Time
		if d, lease := p.renewDue(); lease && gen > 0 && gen == syncedGen && p.client.IsConnectionOpen() {
			renew = time.NewTimer(max(d, 0))
			renewC = renew.C
		}
		select {
		case <-ctx.Done():
		case <-p.kick:
		case <-p.connEv:
		case <-retryC:
			retryC = nil
		case <-renewC:
		}
		if renew != nil {
			renew.Stop()
		}
	}
}

// logLoss logs a lost connection once, from the worker (paho's handler only records it).
func (p *Publisher) logLoss() {
	p.mu.Lock()
	err, logged := p.lostErr, p.lostLogged
	p.lostLogged = true
	p.mu.Unlock()
	if err != nil && !logged {
		p.log.Warn("mqtt: connection to broker lost; reconnecting", "broker", p.broker, "err", err)
	}
}

// resumeBase is how many times paho v1.5.1 calls Store.All inside Connect itself
// (reserveStoredPublishIDs, done with ConnectRetry and a persistent session), before
// the first connection's resume.
const resumeBase = 1

// waitResumed waits until paho's resume() of connection gen has taken its snapshot of
// the store and the broker acknowledged every PUBLISH stored before (see trackingStore),
// so that nothing we publish next is resent by paho or overtaken by a stale record.
// It returns false if ctx ended or the connection changed; after PublishTimeout it logs
// and returns true anyway.
func (p *Publisher) waitResumed(ctx context.Context, gen uint64) bool {
	wctx, cancel := context.WithTimeout(ctx, p.o.PublishTimeout)
	defer cancel()
	for {
		calls, outstanding, changed := p.store.State()
		if calls >= resumeBase+gen && outstanding == 0 {
			return true
		}
		select {
		case <-changed:
		case <-p.connEv:
			if !p.client.IsConnectionOpen() || p.connGen.Load() != gen {
				signal(p.connEv) // let the worker loop re-evaluate
				return false
			}
		case <-wctx.Done():
			if ctx.Err() != nil {
				return false
			}
			p.resumeTimeouts.Add(1)
			p.log.Warn("mqtt: paho did not finish resending stored publications; publishing anyway",
				"broker", p.broker, "store_snapshots", calls, "outstanding", outstanding)
			return true
		}
	}
}

// resync runs once per connection, before anything else is published on it: it waits
// for paho's resume (waitResumed), publishes status "online", and marks every known
// instance for republishing. It reports success; on failure the worker retries.
func (p *Publisher) resync(ctx context.Context, gen uint64) bool {
	if !p.waitResumed(ctx, gen) {
		return false
	}
	// Watch our own status topic, to repair a stale "offline" (see healStatus).
	sctx, cancel := context.WithTimeoutCause(ctx, p.o.PublishTimeout, errors.New("no SUBACK within PublishTimeout"))
	// QoS 0: nothing is queued for us while disconnected, and the broker has no QoS 1
	// delivery to us in flight (mochi v2.7.9 shares one packet-id space between both
	// directions and mishandles a collision).
	tok := p.client.Subscribe(p.statusTop, 0, nil)
	err := await(sctx, tok)
	if err == nil {
		err = subscribeError(tok)
	}
	cancel()
	if err != nil && ctx.Err() == nil {
		p.log.Warn("mqtt: cannot watch own status topic; a late will would not be repaired",
			"topic", p.statusTop, "err", err)
	}
	// Watch our own records too (see onRecordMessage).
	filter := p.o.Topics.GatewayCatalogFilter(p.o.Gateway.Gateway)
	sctx, cancel = context.WithTimeoutCause(ctx, p.o.PublishTimeout, errors.New("no SUBACK within PublishTimeout"))
	tok = p.client.Subscribe(filter, 0, p.onRecordMessage)
	err = await(sctx, tok)
	if err == nil {
		err = subscribeError(tok)
	}
	cancel()
	if err != nil && ctx.Err() == nil {
		p.log.Warn("mqtt: cannot watch own records; an overwritten record is repaired only at the next reconnect",
			"filter", filter, "err", err)
	}
	p.statusStale.Store(false)
	p.healUntil.Store(time.Now().Add(p.o.PublishTimeout + healWindow*p.o.KeepAlive).UnixNano())
	if !p.publishOnline(ctx) {
		return false
	}
	p.mu.Lock()
	n := len(p.entries)
	for _, e := range p.entries {
		e.done = 0
	}
	p.mu.Unlock()
	node, _ := p.attempt.Load().(string)
	p.log.Info("mqtt: connected; status online, republishing instances",
		"broker", node, "topic", p.statusTop, "connects", gen, "instances", n)
	return true
}

// publishOnline publishes status "online" and waits for the acknowledgement.
func (p *Publisher) publishOnline(ctx context.Context) bool {
	if p.withdrawn.Load() {
		return true
	}
	sctx, cancel := context.WithTimeoutCause(ctx, p.o.PublishTimeout, errors.New("no PUBACK within PublishTimeout"))
	defer cancel()
	payload := p.online
	now := time.Now()
	if p.o.StatusLease > 0 {
		g := p.o.Gateway
		g.State, g.ValidUntil = contract.StateOnline, contract.Time{Time: now.Add(p.o.StatusLease)}
		payload, _ = p.encodeStatus(g) // the same record NewPublisher checked
	}
	if err := await(sctx, p.client.Publish(p.statusTop, 1, true, payload)); err != nil {
		p.failed.Add(1)
		if ctx.Err() == nil {
			p.log.Warn("mqtt: publishing status online failed", "topic", p.statusTop, "err", err)
		}
		return false
	}
	p.published.Add(1)
	p.onlineAt.Store(now.UnixNano())
	return true
}

// renewDue returns how long until the status lease must be renewed (≤ 0: now), or a
// negative value and false when there is no lease.
func (p *Publisher) renewDue() (time.Duration, bool) {
	if p.o.StatusLease <= 0 || p.withdrawn.Load() {
		return 0, false
	}
	return time.Until(time.Unix(0, p.onlineAt.Load()).Add(p.o.StatusLease / 3)), true
}

// healWindow is how long after publishing "online" on a new connection a live
// non-online status is taken for a late will of our previous connection, in units of
// KeepAlive.
const healWindow = 2

// onStatusMessage is paho's handler for messages on our own status topic (it runs in a
// paho goroutine: only look and signal). A live message that is not "online" shortly
// after we published "online" on a new connection means our status was overwritten by
// the will of our previous connection: a broker may publish it after our new
// session's "online" when we reconnected before it noticed the old connection died
// (mochi v2.7.9 does, on session takeover; the embedded broker suppresses that, and
// Mosquitto 2.0 does not publish wills of taken-over sessions). Later "offline"
// messages are left alone: Mosquitto publishes the wills of connected clients when it
// shuts down, and re-asserting "online" to a broker going down could leave a stale
// "online" behind. Retained messages are the state before our resync, which publishes
// "online" anyway. The order of handler calls does not matter (OrderMatters(false)):
// each such message triggers one republish.
func (p *Publisher) onStatusMessage(_ paho.Client, m paho.Message) {
	if m.Topic() != p.statusTop || m.Retained() {
		return
	}
	g, err := contract.DecodeGatewayRecord(m.Payload())
	if err == nil && g != nil && g.State == contract.StateOnline {
		own := p.o.Gateway
		if p.replayedStatus(m.Payload(), g) {
			p.log.Warn("mqtt: an old status record of this gateway was replayed on its status topic; republishing online",
				"topic", p.statusTop, "their_epoch", g.Epoch, "our_epoch", own.Epoch)
			p.overwrite.Add(1)
			p.statusStale.Store(true)
			signal(p.kick)
			return
		}
		if g.Epoch != own.Epoch || g.Started.UnixMilli() != own.Started.UnixMilli() || g.Key != own.Key {
			p.log.Warn("mqtt: another gateway is online under this gateway's id", "topic", p.statusTop,
				"their_epoch", g.Epoch, "their_start", g.Started, "their_key", g.Key,
				"our_epoch", own.Epoch, "our_start", own.Started)
			if p.o.OnForeignOnline != nil {
				p.o.OnForeignOnline(*g)
			}
		}
		return
	}
	if time.Now().UnixNano() > p.healUntil.Load() {
		return
	}
	p.statusStale.Store(true)
	signal(p.kick)
}

// replayedStatus reports whether an "online" record g (raw payload) on our status topic
// is one of our own earlier runs' records played back by someone: signed with our key,
// of an earlier epoch, its lease run out. A live gateway under our id (a clone) renews
// its lease, so it is never taken for a replay.
func (p *Publisher) replayedStatus(payload []byte, g *contract.GatewayRecord) bool {
	if p.ownKeys == nil || g.Epoch >= p.o.Gateway.Epoch || g.ValidUntil.IsZero() || !g.ValidUntil.Before(time.Now()) {
		return false
	}
	_, err := p.ownKeys.Verify(p.gwSlug, contract.KindGateway, payload)
	return err == nil
}

// onRecordMessage is paho's handler for live messages on our own instance topics (it
// runs in a paho goroutine: only look and signal). Our own publications come back
// here; anything else — a forged record, an old record of ours played back, an empty
// record we did not send, a record on a topic we do not hold — makes the worker
// publish what we want there again (our current record, or an empty record), so no
// consumer that connects later is handed it. Retained messages are the broker's state
// before our resync, which the gateway's read-back reconciles. Nothing is done once
// withdrawn (the topics are another gateway's).
func (p *Publisher) onRecordMessage(_ paho.Client, m paho.Message) {
	if m.Retained() || p.withdrawn.Load() {
		return
	}
	topic, payload := m.Topic(), m.Payload()
	_, gw, inst, ok := p.o.Topics.ParseInstanceTopic(topic)
	if !ok || gw != p.gwSlug {
		return // not an instance topic: no consumer reads it
	}
	p.mu.Lock()
	e := p.entries[topic]
	switch {
	case e == nil && len(payload) == 0:
		p.mu.Unlock()
		return
	case e == nil:
		p.setLocked(topic, inst, nil) // every current record has an entry: not ours
	case bytes.Equal(payload, e.payload):
		e.prev, e.echoed = nil, true // the broker keeps our order: no older echo can follow
		p.mu.Unlock()
		return // our own publication coming back
	case e.prev != nil && bytes.Equal(payload, e.prev):
		p.mu.Unlock()
		return // the echo of the one before, still on its way
	default:
		e.done = 0 // publish ours again
	}
	p.mu.Unlock()
	p.overwrite.Add(1)
	if now := time.Now().UnixNano(); now-p.overLog.Load() > int64(time.Second) {
		p.overLog.Store(now)
		p.log.Warn("mqtt: a record on this gateway's own topic was not its own; publishing its own again",
			"topic", topic, "bytes", len(payload), "overwritten_total", p.overwrite.Load())
	}
	signal(p.kick)
}

// healStatus republishes "online" if onStatusMessage saw our status overwritten.
func (p *Publisher) healStatus(ctx context.Context) bool {
	if !p.statusStale.Swap(false) {
		return true
	}
	p.log.Warn("mqtt: own status overwritten while connected (late will?); republishing online", "topic", p.statusTop)
	if !p.publishOnline(ctx) {
		p.statusStale.Store(true)
		return false
	}
	return true
}

// flush publishes pending changes in batches until none is left (true) or a
// publication failed, the connection changed, or ctx ended (false).
func (p *Publisher) flush(ctx context.Context, gen uint64) bool {
	for {
		if ctx.Err() != nil || !p.client.IsConnectionOpen() || p.connGen.Load() != gen {
			return false
		}
		batch := p.pending(publishBatch)
		if len(batch) == 0 {
			return true
		}
		if !p.publishBatch(ctx, batch) {
			return false
		}
	}
}

// pending returns up to max pending publications.
func (p *Publisher) pending(max int) []outgoing {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []outgoing
	for topic, e := range p.entries {
		if e.rev == e.done {
			continue
		}
		out = append(out, outgoing{topic: topic, instance: e.instance, payload: e.payload, rev: e.rev, changed: e.changed})
		if len(out) == max {
			break
		}
	}
	return out
}

// publishBatch publishes a batch and waits for every acknowledgement (bounded by
// PublishTimeout). It reports whether all were acknowledged.
func (p *Publisher) publishBatch(ctx context.Context, batch []outgoing) bool {
	toks := make([]paho.Token, len(batch))
	for i, it := range batch {
		payload := it.payload
		if payload == nil {
			payload = []byte{}
		}
		toks[i] = p.client.Publish(it.topic, 1, true, payload)
	}
	bctx, cancel := context.WithTimeoutCause(ctx, p.o.PublishTimeout, errors.New("no PUBACK within PublishTimeout"))
	defer cancel()
	ok := true
	for i, tok := range toks {
		it := batch[i]
		if err := await(bctx, tok); err != nil {
			p.failed.Add(1)
			ok = false
			if ctx.Err() == nil {
				p.log.Warn("mqtt: publication failed; will retry", "instance", it.instance, "topic", it.topic, "err", err)
			}
			continue
		}
		p.published.Add(1)
		if p.o.OnPublished != nil && !it.changed.IsZero() {
			p.o.OnPublished(time.Since(it.changed))
		}
		p.confirm(it)
	}
	return ok
}

// confirm marks a publication acknowledged; a deregistration is then forgotten.
func (p *Publisher) confirm(it outgoing) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.entries[it.topic]
	if e == nil || e.rev != it.rev {
		return // changed meanwhile: still pending
	}
	e.done = e.rev
	if e.payload == nil {
		delete(p.entries, it.topic)
	}
}

// shutdown is the clean shutdown of Run (ctx has ended).
func (p *Publisher) shutdown(parent context.Context) {
	ctx, cancel := context.WithTimeoutCause(context.WithoutCancel(parent), p.o.ShutdownTimeout,
		errors.New("ShutdownTimeout reached"))
	defer cancel()
	if !p.client.IsConnectionOpen() {
		p.log.Info("mqtt: not connected at shutdown; the will of the last connection, if any, reports offline", "broker", p.broker)
		return
	}
	if p.withdrawn.Load() {
		// Another gateway publishes under this id: its status and records are not ours
		// to overwrite. The clean DISCONNECT that follows also discards our will.
		p.log.Warn("mqtt: withdrawn: leaving the status topic and the records to the other gateway", "topic", p.statusTop)
		return
	}
	p.waitResumed(ctx, p.connGen.Load())
	if err := await(ctx, p.client.Publish(p.statusTop, 1, true, p.offline)); err != nil {
		p.failed.Add(1)
		p.log.Warn("mqtt: publishing status offline failed", "topic", p.statusTop, "err", err)
	} else {
		p.published.Add(1)
		p.log.Info("mqtt: status offline published", "topic", p.statusTop)
	}
	if !p.flush(ctx, p.connGen.Load()) {
		p.log.Warn("mqtt: shutdown with unpublished changes", "pending", p.Stats().Pending)
	}
}

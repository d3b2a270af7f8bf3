package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/protocols/mqtt"
)

// Defaults of Options; a zero duration in Options takes the matching default.
const (
	// DefaultCacheInterval is the shortest time between two writes of the cache file.
	DefaultCacheInterval = 5 * time.Second
	// DefaultSyncTimeout is how long after its SUBSCRIBE was acknowledged the client
	// waits for its sync marker before it takes the catalog as complete anyway.
	DefaultSyncTimeout = 5 * time.Second
	// DefaultKeepAlive is the MQTT keep-alive: a dead broker connection is noticed
	// within about KeepAlive + 3 s (paho's ping timeout).
	DefaultKeepAlive = mqtt.DefaultKeepAlive
	// DefaultConnectTimeout bounds one connection attempt to one broker.
	DefaultConnectTimeout = mqtt.DefaultConnectTimeout
	// DefaultMaxReconnectInterval caps the back-off between reconnection attempts.
	DefaultMaxReconnectInterval = mqtt.DefaultMaxReconnectInterval
)

// subscriptionQoS is the QoS of every subscription of the client: 0. A broker sends the
// retained catalog of a SUBSCRIBE all at once, and Mosquitto 2.0 with its defaults
// (max_inflight_messages 20, max_queued_messages 1000) drops QoS 1 deliveries beyond
// its per-client queue, retained records and the sync marker included: a catalog of more
// than about 1000 records would arrive incomplete, and the records missing from it be
// removed at the sync. QoS 0 deliveries are written out in order and not queued. QoS 1
// would add nothing: the session is clean, so nothing is redelivered after a
// reconnection, which resynchronises from the retained records anyway, and a
// connection's messages arrive in order over TCP. (It also keeps clear of mochi
// v2.7.9's packet-id collision between a QoS 1 delivery and a SUBSCRIBE.) All filters
// share it, so the sync marker stays behind the retained records.
const subscriptionQoS = 0

// CacheSchema is the "schema" field of the cache file.
const CacheSchema = "rollcall.client-cache/v1"

// ErrAlreadyRun is returned by a second call of Client.Run.
var ErrAlreadyRun = errors.New("client: Run called more than once")

// ErrStopped is returned by Client.Register when Run has returned (before Register was
// called, or while it ran): the client has no broker connection any more.
var ErrStopped = errors.New("client: Run has returned")

// Options configures a Client. Only Brokers is required.
type Options struct {
	// Brokers are the broker URLs, scheme://host:port with scheme tcp, ssl (TLS), ws or
	// wss (paho's aliases mqtt, mqtts, tls, tcps and unix work too). Every connection
	// attempt tries them in this order and keeps the first that accepts (see the
	// package documentation, "Failover"). At least one is required. Passwords in URLs
	// are never logged.
	Brokers []string
	// ClientID is the MQTT client identifier. It must be unique among the broker's
	// clients (a second connection with the same id disconnects the first). Default
	// "rollcall-client-" + 12 random hex digits. The session is always clean: every
	// (re)connection receives the retained catalog again.
	ClientID string
	// Topics gives the topic prefix (zero value: rollcall/v1).
	Topics contract.Topics
	// Services restricts the catalog to these services (each slugged); empty means
	// every service. Pick and Wait for a service outside this list find nothing.
	Services []string
	// Username and Password authenticate to the broker when Username is not empty.
	Username, Password string
	// TLSConfig is used for ssl/wss brokers; nil means Go's defaults.
	TLSConfig *tls.Config
	// CacheFile, if not empty, is the path of the local catalog cache (JSON). It is read
	// by New, so that Pick (with AllowStale) answers before any broker was reached, and
	// written atomically (temporary file + rename, in the same directory, which must
	// exist) at most every CacheInterval while something changed, and when Run returns.
	CacheFile string
	// CacheInterval is the shortest time between two cache writes (default 5 s).
	CacheInterval time.Duration
	// StaleAfter, if > 0, also marks Stale the entries that have not been confirmed by
	// a broker for longer than this, i.e. during a broker outage longer than
	// StaleAfter. Zero (default): only entries read from the cache file and not yet
	// confirmed by a broker are stale; during an outage the entries the client
	// received keep answering Pick, with a growing Age.
	StaleAfter time.Duration
	// MaxClockSkew is how far this host's clock may differ from the gateways' before
	// their leases are judged wrongly (contract.Lease): a record is taken as expired
	// MaxClockSkew after its valid_until. 0: contract.DefaultMaxClockSkew (1 s); negative:
	// none.
	MaxClockSkew time.Duration
	// TrustedKeys, if it holds any key, makes the client check signatures
	// (docs/contract.md, "Signed records"): an instance record or gateway status record
	// that is unsigned, or not signed with a trusted key of the gateway named by its
	// topic, is ignored — counted in Status (Unsigned, BadSignatures) and logged once
	// per gateway and reason — so a forger who can publish on the broker can hide
	// instances (empty records cannot be signed) but never add, alter or revive one.
	// nil or empty: records are not authenticated, and Run logs one warning saying so.
	// The ring must not be changed once the client was created.
	TrustedKeys *contract.KeyRing
	// SyncTopic is where the client publishes its sync marker (QoS 1, not retained)
	// after each SUBSCRIBE, to learn when the broker has sent every retained record.
	// Default <prefix>/consumers/<slug(ClientID)>/sync. The broker's ACL must let the
	// client publish and subscribe there; without that the catalog is taken as
	// complete SyncTimeout after the SUBSCRIBE.
	SyncTopic string
	// DisableSyncMarker turns the sync marker off: the catalog is taken as complete
	// SyncTimeout after each SUBACK.
	DisableSyncMarker bool
	// SyncTimeout bounds the wait for the sync marker (default 5 s).
	SyncTimeout time.Duration
	// KeepAlive is the MQTT keep-alive (whole seconds, ≥ 1 s; default 5 s).
	KeepAlive time.Duration
	// ConnectTimeout bounds one connection attempt to one broker (default 5 s).
	ConnectTimeout time.Duration
	// MaxReconnectInterval caps the back-off between reconnection rounds (default 2 s).
	// After a lost connection the client tries again at once (jittered over 0–50 ms),
	// then after 50–100 ms, 100–200 ms and so on, doubling up to this cap, each wait
	// jittered so that the consumers of a restarted broker do not reconnect in step
	// (mqtt.Timing.MinReconnectInterval): it is back within about the outage's own
	// length, at most this cap, after the broker is.
	MaxReconnectInterval time.Duration
	// Logger receives connection events, skipped messages and cache errors (keys:
	// broker, service, gateway, instance, topic, err). Default slog.Default().
	Logger *slog.Logger
	// Fallback lists endpoints that Pick and Wait return for a service only when the
	// catalog cannot be reached and nothing at all is known of that service (see
	// Fallback for the exact conditions); several of one service are chosen by the
	// Strategy. Each needs a Service (in Services, when Services is not empty) and an
	// Endpoint.Transport; New reports the first that does not.
	Fallback []Fallback
}

// brokerScheme reports whether paho v1.5.1 dials URLs of this scheme.
func brokerScheme(s string) bool {
	switch s {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "tcps", "ws", "wss", "unix":
		return true
	}
	return false
}

// redactBroker checks a broker URL and returns it with any password redacted.
func redactBroker(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("client: broker URL: %w", err)
	}
	if !brokerScheme(u.Scheme) {
		return "", fmt.Errorf("client: broker URL %q: scheme must be tcp, ssl, ws or wss (or mqtt, mqtts, tls, tcps, unix)", u.Redacted())
	}
	if u.Host == "" && u.Scheme != "unix" {
		return "", fmt.Errorf("client: broker URL %q: no host", u.Redacted())
	}
	return u.Redacted(), nil
}

// Client keeps a live copy of the rollcall catalog and picks instances from it. Create
// it with New, run it once with Run; every method is safe for concurrent use, and
// Pick, Live, Instances, Wait, Subscribe, Status and Ready work before and after Run
// (on the cached catalog, if any).
type Client struct {
	o         Options
	log       *slog.Logger
	brokers   map[string]string // raw URL → redacted
	services  map[string]bool   // service slugs; empty = all
	filters   map[string]byte   // subscription filters → QoS
	syncTopic string            // "" when the marker is disabled
	ran       atomic.Bool
	fallbacks map[string][]Instance // service slug → Options.Fallback, as instances

	// paho goroutines → loop.
	qmu     sync.Mutex
	queue   []inbound
	wake    chan struct{} // 1-slot: queue not empty
	lost    chan struct{} // 1-slot: paho reported a lost connection
	connGen atomic.Uint64 // connections so far; tags inbound messages
	attempt atomic.Value  // string: URL of the latest connection attempt
	failLog atomic.Bool   // a failed connection round was logged at Warn since the last connection
	failed  chan struct{} // 1-slot: paho reported a failed round of connection attempts

	mu       sync.Mutex
	entries  map[string]*entry   // instance topic → entry
	gateways map[string]*gwEntry // gateway slug → status
	rr       map[string]uint64   // service slug → round-robin counter
	conn     connState           // the loop's view of the connection
	// gwComplete: every gateway status the broker had at the last completed sync is
	// known, so a gateway without one really has none. False from each new connection
	// until its sync, and before the first.
	gwComplete bool
	changed    chan struct{} // closed and replaced on every catalog change
	subs       map[*subscription]struct{}
	ready      chan struct{} // closed at the first completed sync
	isReady    bool
	done       bool // Run has returned: subscriptions are closed
	// unreachable: the client is not connected and has found no broker reachable since
	// its last connection (a round of attempts failed, the connection was lost, or Run
	// returned); the condition of Options.Fallback besides knowing nothing.
	unreachable bool
	pc          paho.Client                // Run's MQTT client (Register publishes with it); nil before Run
	regs        map[*registration]struct{} // running Register calls
	linkChanged chan struct{}              // closed and replaced when the connection or a gateway status changes
	dirty       bool                       // changed since the last cache write
	// Signature checks (Options.TrustedKeys): counters, and the (gateway, reason)
	// pairs already logged.
	unsigned, badSigs uint64
	sigLogged         map[string]bool
	tombs             map[string]tombstone // instance topic → last removed record (see buryLocked)
}

// connState is the connection as the loop last saw it.
type connState struct {
	connected bool
	gen       uint64 // generation of the current (or last) connection
	broker    string // redacted URL
	synced    bool   // the retained catalog of this connection is complete
	since     time.Time
}

// inbound is a message copied out of paho's handler, or a connection event.
type inbound struct {
	topic   string
	payload []byte
	gen     uint64 // connection generation when received
	up      bool   // a connection event, not a message
	broker  string // up: redacted URL of the connected broker
	tok     paho.Token
}

// New validates o, fills in defaults and reads the cache file (a missing file is not an
// error; an unreadable or malformed one is logged and ignored: the client then starts
// with an empty catalog). Errors: no broker, an invalid broker URL or topic prefix, a
// KeepAlive below 1 s, negative durations, or a CacheFile whose directory does not
// exist, or an invalid Options.Fallback entry.
func New(o Options) (*Client, error) {
	if len(o.Brokers) == 0 {
		return nil, errors.New("client: Options.Brokers is empty")
	}
	brokers := map[string]string{}
	for _, b := range o.Brokers {
		r, err := redactBroker(b)
		if err != nil {
			return nil, err
		}
		brokers[b] = r
	}
	if err := o.Topics.Validate(); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	for name, d := range map[string]*time.Duration{
		"CacheInterval": &o.CacheInterval, "SyncTimeout": &o.SyncTimeout, "KeepAlive": &o.KeepAlive,
		"ConnectTimeout": &o.ConnectTimeout, "MaxReconnectInterval": &o.MaxReconnectInterval, "StaleAfter": &o.StaleAfter,
	} {
		if *d < 0 {
			return nil, fmt.Errorf("client: Options.%s is negative (%v)", name, *d)
		}
	}
	if o.CacheInterval == 0 {
		o.CacheInterval = DefaultCacheInterval
	}
	if o.SyncTimeout == 0 {
		o.SyncTimeout = DefaultSyncTimeout
	}
	timing := mqtt.Timing{KeepAlive: o.KeepAlive, ConnectTimeout: o.ConnectTimeout, MaxReconnectInterval: o.MaxReconnectInterval}.WithDefaults()
	if err := timing.Validate(); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	o.KeepAlive, o.ConnectTimeout, o.MaxReconnectInterval = timing.KeepAlive, timing.ConnectTimeout, timing.MaxReconnectInterval
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ClientID == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		o.ClientID = "rollcall-client-" + hex.EncodeToString(b[:])
	}
	if o.CacheFile != "" {
		dir := filepath.Dir(o.CacheFile)
		if fi, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("client: CacheFile directory: %w", err)
		} else if !fi.IsDir() {
			return nil, fmt.Errorf("client: CacheFile directory %s is not a directory", dir)
		}
	}
	services := map[string]bool{}
	for _, s := range o.Services {
		services[contract.Slug(s)] = true
	}
	fallbacks, err := checkFallbacks(o.Fallback, services)
	if err != nil {
		return nil, err
	}
	c := &Client{
		o:        o,
		log:      o.Logger,
		brokers:  brokers,
		services: services,
		filters:  map[string]byte{},
		wake:     make(chan struct{}, 1),
		lost:     make(chan struct{}, 1),
		failed:   make(chan struct{}, 1),
		entries:  map[string]*entry{},
		gateways: map[string]*gwEntry{},
		rr:       map[string]uint64{},
		changed:  make(chan struct{}),
		subs:     map[*subscription]struct{}{},
		ready:    make(chan struct{}),

		fallbacks:   fallbacks,
		regs:        map[*registration]struct{}{},
		linkChanged: make(chan struct{}),
	}
	// Every filter at QoS 0 (subscriptionQoS).
	if len(o.Services) == 0 {
		c.filters[o.Topics.CatalogFilter("")] = subscriptionQoS
	}
	for _, s := range o.Services {
		c.filters[o.Topics.CatalogFilter(s)] = subscriptionQoS
	}
	c.filters[o.Topics.GatewayStatusFilter()] = subscriptionQoS
	if !o.DisableSyncMarker {
		c.syncTopic = o.SyncTopic
		if c.syncTopic == "" {
			c.syncTopic = o.Topics.ConsumerSyncTopic(o.ClientID)
		}
		c.filters[c.syncTopic] = subscriptionQoS
	}
	c.attempt.Store("")
	if o.CacheFile != "" {
		c.loadCache()
	}
	return c, nil
}

// Run connects to the brokers (paho, every broker added in order, automatic
// reconnection with back-off), subscribes in the OnConnect handler to
// <prefix>/catalog/<service>/+/+ for each of Options.Services (or <prefix>/catalog/+/+/+),
// <prefix>/gateways/+/status and the sync topic, and keeps the catalog current until
// ctx ends. A broker that cannot be reached is not an error: Run keeps trying, and the
// catalog (from memory or the cache file) keeps answering.
//
// Run returns after ctx ended and every goroutine it started, paho's included, has
// ended; subscriptions (Subscribe) are closed then. It returns nil, the error of the
// final cache write, or ErrAlreadyRun when called a second time.
func (c *Client) Run(ctx context.Context) error {
	if !c.ran.CompareAndSwap(false, true) {
		return ErrAlreadyRun
	}
	// Ordered delivery: paho calls the handler from one goroutine in arrival order,
	// which the sync marker relies on. The handler only copies and enqueues.
	co := mqtt.Session{Brokers: c.o.Brokers, ClientID: c.o.ClientID, CleanSession: true, OrderMatters: true,
		Reconnect: true, OnNotification: c.onNotification, Stop: ctx.Done(),
		Username: c.o.Username, Password: c.o.Password, TLSConfig: c.o.TLSConfig,
		Timing: mqtt.Timing{KeepAlive: c.o.KeepAlive, ConnectTimeout: c.o.ConnectTimeout,
			MaxReconnectInterval: c.o.MaxReconnectInterval}}.Options().
		SetDefaultPublishHandler(c.onMessage).
		SetConnectionAttemptHandler(func(broker *url.URL, cfg *tls.Config) *tls.Config {
			c.attempt.Store(broker.Redacted())
			return cfg
		}).
		SetOnConnectHandler(c.onConnect).
		SetConnectionLostHandler(func(paho.Client, error) { signal(c.lost) })
	pc := paho.NewClient(co)
	c.mu.Lock()
	c.pc = pc
	c.mu.Unlock()
	redacted := make([]string, 0, len(c.o.Brokers))
	for _, b := range c.o.Brokers {
		redacted = append(redacted, c.brokers[b])
	}
	c.log.Info("client: connecting", "brokers", redacted, "client_id", c.o.ClientID, "services", c.o.Services,
		"trusted_keys", c.o.TrustedKeys.Len())
	if c.o.TrustedKeys.Len() == 0 {
		c.log.Warn("client: no trusted gateway keys: records are not authenticated, and anyone who can publish on the broker can forge the catalog (give the gateways' keys: rollcall key)")
	}

	var wg sync.WaitGroup
	saveCtx, stopSaver := context.WithCancel(ctx)
	if c.o.CacheFile != "" {
		wg.Add(1)
		go func() { defer wg.Done(); c.saveLoop(saveCtx) }()
	}
	connectTok := pc.Connect()
	(&session{c: c, pc: pc}).loop(ctx)
	c.awaitDeregistrations()
	stopSaver()
	if !mqtt.StopClient(pc, connectTok, 250, c.o.ConnectTimeout*time.Duration(len(c.o.Brokers))+c.o.MaxReconnectInterval+time.Second) {
		c.log.Warn("client: MQTT client still connecting after shutdown; gave up waiting")
	}
	wg.Wait()

	c.mu.Lock()
	if c.conn.connected {
		c.markLostLocked(time.Now())
	}
	c.done = true
	c.unreachable = true
	c.linkNotifyLocked()
	c.notifyLocked()
	for s := range c.subs {
		s.close()
	}
	c.subs = map[*subscription]struct{}{}
	c.mu.Unlock()
	if c.o.CacheFile != "" {
		if err := c.saveCache(); err != nil {
			c.log.Error("client: writing the cache file failed", "path", c.o.CacheFile, "err", err)
			return fmt.Errorf("client: cache file: %w", err)
		}
	}
	return nil
}

// onMessage is paho's message handler: copy, enqueue, signal; never block.
func (c *Client) onMessage(_ paho.Client, m paho.Message) {
	c.enqueue(inbound{topic: m.Topic(), payload: bytes.Clone(m.Payload()), gen: c.connGen.Load()})
}

// onNotification logs failed connection rounds: the first after a connection (or at
// start) at Warn, later ones at Debug, so a long outage does not flood the log.
func (c *Client) onNotification(_ paho.Client, n paho.ConnectionNotification) {
	f, ok := n.(paho.ConnectionNotificationFailed)
	if !ok {
		return
	}
	signal(c.failed)
	if c.failLog.CompareAndSwap(false, true) {
		c.log.Warn("client: no broker reachable; retrying with back-off", "err", f.Reason)
		return
	}
	c.log.Debug("client: connection attempt failed", "err", f.Reason)
}

// onConnect is paho's OnConnect handler (its own goroutine): subscribe, hand the token
// to the loop, return.
func (c *Client) onConnect(pc paho.Client) {
	gen := c.connGen.Add(1)
	c.failLog.Store(false)
	broker, _ := c.attempt.Load().(string)
	tok := pc.SubscribeMultiple(c.filters, nil)
	c.enqueue(inbound{up: true, gen: gen, broker: broker, tok: tok})
}

func (c *Client) enqueue(in inbound) {
	c.qmu.Lock()
	c.queue = append(c.queue, in)
	c.qmu.Unlock()
	signal(c.wake)
}

// subscribeRetry is the pause before a failed SUBSCRIBE is retried.
const subscribeRetry = time.Second

// leaseCheck is how often the client looks for expired leases to report them to
// subscribers (Pick checks leases at the moment it is called, whatever this period).
const leaseCheck = 100 * time.Millisecond

// session is the state of the loop goroutine (Run's own).
type session struct {
	c       *Client
	pc      paho.Client
	subGen  uint64 // connection generation of the outstanding SUBSCRIBE
	subTok  paho.Token
	subDone <-chan struct{}
	retry   *time.Timer
	retryC  <-chan time.Time
	syncT   *time.Timer
	syncC   <-chan time.Time
	marker  string // payload of the expected sync marker; "" when none
}

func (s *session) loop(ctx context.Context) {
	s.retry = time.NewTimer(time.Hour)
	s.retry.Stop()
	s.syncT = time.NewTimer(time.Hour)
	s.syncT.Stop()
	defer s.retry.Stop()
	defer s.syncT.Stop()
	leases := time.NewTicker(leaseCheck)
	defer leases.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-leases.C:
			s.c.mu.Lock()
			s.c.expireLocked(now)
			s.c.mu.Unlock()
		case <-s.c.wake:
			s.drain(ctx)
		case <-s.c.lost:
			s.checkLost()
		case <-s.c.failed:
			s.connectFailed()
		case <-s.subDone:
			s.subscribed()
		case <-s.retryC:
			s.retryC = nil
			s.resubscribe()
		case <-s.syncC:
			s.syncC = nil
			s.syncTimeout()
		}
	}
}

// drain handles every queued message and connection event.
func (s *session) drain(ctx context.Context) {
	c := s.c
	c.qmu.Lock()
	q := c.queue
	c.queue = nil
	c.qmu.Unlock()
	for _, in := range q {
		if ctx.Err() != nil {
			return
		}
		if in.up {
			s.connected(in)
			continue
		}
		if s.c.syncTopic != "" && in.topic == s.c.syncTopic {
			if s.marker != "" && string(in.payload) == s.marker {
				s.marker = ""
				s.syncT.Stop()
				s.syncC = nil
				c.sweep(in.gen)
			}
			continue
		}
		c.apply(in)
	}
}

// connected handles a new connection: bookkeeping, then wait for its SUBACK.
func (s *session) connected(in inbound) {
	c := s.c
	now := time.Now()
	c.mu.Lock()
	if c.conn.connected {
		c.markLostLocked(now)
	}
	c.conn = connState{connected: true, gen: in.gen, broker: in.broker, since: now}
	c.gwComplete = false
	c.unreachable = false
	c.dirty = true
	c.notifyLocked()
	c.linkNotifyLocked()
	c.mu.Unlock()
	c.log.Info("client: connected", "broker", in.broker)
	s.subGen, s.subTok, s.subDone = in.gen, in.tok, in.tok.Done()
	s.marker = ""
	s.retry.Stop()
	s.retryC = nil
	s.syncT.Stop()
	s.syncC = nil
}

// checkLost notes a lost connection (unless paho already reconnected: the pending
// connection event then does the bookkeeping).
func (s *session) checkLost() {
	c := s.c
	if s.pc.IsConnectionOpen() {
		return
	}
	c.mu.Lock()
	was := c.conn.connected
	if was {
		c.markLostLocked(time.Now())
		c.unreachable = true
		c.notifyLocked()
		c.linkNotifyLocked()
	}
	broker := c.conn.broker
	c.mu.Unlock()
	if was {
		c.log.Warn("client: broker connection lost; reconnecting, answering from memory meanwhile", "broker", broker)
	}
	s.subDone, s.retryC, s.syncC, s.marker = nil, nil, nil, ""
}

// connectFailed notes that a round of connection attempts failed: while no connection
// is up, the catalog is unreachable (Options.Fallback may apply), and Wait re-checks.
func (s *session) connectFailed() {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.conn.connected && !c.unreachable {
		c.unreachable = true
		c.notifyLocked()
	}
}

// current reports whether gen is the generation of the connection that is up.
func (s *session) current(gen uint64) bool {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.c.conn.connected && s.c.conn.gen == gen && s.pc.IsConnectionOpen()
}

// subscribed handles the completion of the SUBSCRIBE of connection subGen.
func (s *session) subscribed() {
	s.subDone = nil
	c := s.c
	if !s.current(s.subGen) {
		return
	}
	granted, err := subscribeResult(s.subTok, c.syncTopic)
	if err != nil {
		c.log.Error("client: subscribe failed; retrying", "err", err)
		s.retry.Reset(subscribeRetry)
		s.retryC = s.retry.C
		return
	}
	if c.syncTopic != "" && granted {
		var b [8]byte
		_, _ = rand.Read(b[:])
		s.marker = fmt.Sprintf(`{"sync":"%s-%d"}`, hex.EncodeToString(b[:]), s.subGen)
		s.pc.Publish(c.syncTopic, 1, false, s.marker) // not awaited: SyncTimeout covers a loss
	} else if c.syncTopic != "" {
		c.log.Warn("client: broker refused the sync topic; the catalog counts as complete after SyncTimeout", "topic", c.syncTopic)
	}
	s.syncT.Reset(c.o.SyncTimeout)
	s.syncC = s.syncT.C
}

func (s *session) resubscribe() {
	if !s.current(s.subGen) {
		return
	}
	s.subTok = s.pc.SubscribeMultiple(s.c.filters, nil)
	s.subDone = s.subTok.Done()
}

func (s *session) syncTimeout() {
	if !s.current(s.subGen) {
		return
	}
	if s.marker != "" {
		s.c.log.Warn("client: sync marker did not come back within SyncTimeout; taking the catalog as complete",
			"topic", s.c.syncTopic, "timeout", s.c.o.SyncTimeout)
	}
	s.marker = ""
	s.c.sweep(s.subGen)
}

// subscribeResult returns the SUBSCRIBE's error (the catalog or status filter refused,
// or the token failed) and whether syncTopic was granted.
func subscribeResult(tok paho.Token, syncTopic string) (syncGranted bool, err error) {
	refused, err := mqtt.Refused(tok)
	if err != nil {
		return false, err
	}
	syncGranted = true
	for _, filter := range refused {
		if filter != syncTopic {
			return false, fmt.Errorf("broker refused subscription %q (SUBACK 0x80)", filter)
		}
		syncGranted = false
	}
	return syncGranted, nil
}

// signal does a non-blocking send on a 1-slot channel (a coalescing trigger).
func signal(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Status is the client's connection as seen by its catalog.
type Status struct {
	// Connected: a broker connection is up.
	Connected bool
	// Broker is the redacted URL of the broker of the current connection, or of the
	// last one while disconnected; "" before the first connection.
	Broker string
	// Synced: the broker has sent the whole retained catalog on the current
	// connection (the sync marker came back, or SyncTimeout passed); entries it did
	// not confirm have been removed.
	Synced bool
	// Since is when Connected last changed (zero before the first connection).
	Since time.Time
	// Instances is the number of catalog entries, of any status, stale ones included.
	Instances int
	// Unsigned counts records ignored because they carried no signature, and
	// BadSignatures those whose signature did not verify with a trusted key of their
	// gateway (or whose gateway has none); both stay 0 without Options.TrustedKeys.
	Unsigned, BadSignatures uint64
}

// Status returns the connection status.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Status{
		Connected: c.conn.connected, Broker: c.conn.broker, Synced: c.conn.connected && c.conn.synced,
		Since: c.conn.since, Instances: len(c.entries),
		Unsigned: c.unsigned, BadSignatures: c.badSigs,
	}
}

// Ready returns a channel closed once the client has received a complete retained
// catalog from a broker for the first time (Status.Synced was true once). It never
// closes while no broker is reachable.
func (c *Client) Ready() <-chan struct{} { return c.ready }

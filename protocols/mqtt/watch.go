package mqtt

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rollcall-edge/rollcall/contract"
)

// CatalogEvent is one message on an instance topic (DESIGN.md, "MQTT contract (v1)").
type CatalogEvent struct {
	Topic    string // full topic
	Service  string // service level of the topic (a slug)
	Gateway  string // gateway level of the topic (a slug)
	Instance string // instance level of the topic (a slug)
	// Record is the decoded record, or nil when the payload was empty: the instance was
	// deregistered (or, with Retained, never existed). A non-nil record's service,
	// gateway and id slug to the topic's levels.
	Record *contract.Record
	// Retained is set for a retained message the broker sent on subscription (the
	// catalog as it stands), clear for a live change.
	Retained bool
}

// GatewayEvent is one message on a gateway status topic.
type GatewayEvent struct {
	Topic   string // full topic
	Gateway string // gateway level of the topic (a slug)
	// Record is the decoded gateway record, nil for an empty payload (status cleared).
	// State "offline" comes from a clean shutdown or from the broker's will.
	Record   *contract.GatewayRecord
	Retained bool // as CatalogEvent.Retained
}

// WatchOptions configures Watch. Zero durations take the documented default.
type WatchOptions struct {
	// BrokerURL is the broker, as PublisherOptions.BrokerURL. Required.
	BrokerURL string
	// ClientID is the MQTT client identifier. Default "rollcall-watch-" + 12 random
	// hex digits. The session is clean: every (re)connection receives the retained
	// catalog again.
	ClientID string
	// Topics gives the topic prefix (zero value: DefaultPrefix).
	Topics contract.Topics
	// Service restricts the catalog to one service (slugged); "" = all services.
	Service string
	// Logger receives connection events and skipped messages (keys: broker, topic,
	// err). Default slog.Default().
	Logger *slog.Logger
	// Username and Password authenticate to the broker when Username is not empty.
	Username, Password string
	// TLSConfig is used for ssl/wss URLs; nil means Go's defaults.
	TLSConfig *tls.Config
	// KeepAlive is the MQTT keep-alive (whole seconds, ≥ 1 s; default 5 s).
	KeepAlive time.Duration
	// ConnectTimeout bounds one connection attempt (default 5 s).
	ConnectTimeout time.Duration
	// MaxReconnectInterval caps the back-off between connection attempts (default 2 s).
	MaxReconnectInterval time.Duration
	// OnConnection, if set, is called with true after each (re)connection, before any
	// message of that connection is delivered, and with false when it is lost. It is
	// called from the same goroutine as the event callbacks.
	OnConnection func(connected bool)
}

// inbound is a message copied out of paho's handler.
type inbound struct {
	topic    string
	payload  []byte
	retained bool
}

// subscribeRetry is the pause before a failed SUBSCRIBE is retried.
const subscribeRetry = time.Second

// Watch subscribes to the catalog (CatalogFilter(o.Service)) and to every gateway's
// status (GatewayStatusFilter()) and calls onCatalog and onGateway for each message,
// decoded, in the order the broker sent them, from one goroutine. It subscribes again
// after every reconnect (clean session), so the retained catalog is delivered again.
// Malformed payloads and records that do not match their topic are logged and
// skipped. paho's handler only copies each message into an unbounded in-memory queue,
// so a slow callback never stalls the MQTT connection (but does grow that queue).
//
// Callbacks must return promptly: while one runs, no other event is delivered, and
// Watch returns only after the one in progress returned.
//
// A nil callback means "not interested": its filter is not subscribed. Watch blocks
// until ctx ends and returns nil after its goroutines and the client's have ended
// (messages still queued are dropped). Errors are returned at once for an invalid
// BrokerURL or prefix, a KeepAlive below 1 s, or two nil callbacks.
func Watch(ctx context.Context, o WatchOptions, onCatalog func(CatalogEvent), onGateway func(GatewayEvent)) error {
	broker, err := parseBrokerURL(o.BrokerURL)
	if err != nil {
		return err
	}
	if err := o.Topics.Validate(); err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}
	if onCatalog == nil && onGateway == nil {
		return errors.New("mqtt: Watch needs onCatalog or onGateway")
	}
	setDefault(&o.KeepAlive, DefaultKeepAlive)
	setDefault(&o.ConnectTimeout, DefaultConnectTimeout)
	setDefault(&o.MaxReconnectInterval, DefaultMaxReconnectInterval)
	if o.KeepAlive < time.Second {
		return fmt.Errorf("mqtt: KeepAlive %v is below the MQTT minimum of 1s", o.KeepAlive)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ClientID == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		o.ClientID = "rollcall-watch-" + hex.EncodeToString(b[:])
	}
	filters := map[string]byte{}
	if onCatalog != nil {
		filters[o.Topics.CatalogFilter(o.Service)] = 1
	}
	if onGateway != nil {
		filters[o.Topics.GatewayStatusFilter()] = 1
	}

	w := &watcher{
		o:         o,
		broker:    broker,
		log:       o.Logger,
		filters:   filters,
		onCatalog: onCatalog,
		onGateway: onGateway,
		wake:      make(chan struct{}, 1),
		connEv:    make(chan struct{}, 1),
	}
	co := paho.NewClientOptions().
		AddBroker(o.BrokerURL).
		SetClientID(o.ClientID).
		SetProtocolVersion(4).
		SetCleanSession(true).
		// Ordered delivery: paho calls the handler from one goroutine in arrival order
		// (with false it starts a goroutine per message). The handler never blocks.
		SetOrderMatters(true).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(min(time.Second, o.MaxReconnectInterval)).
		SetMaxReconnectInterval(o.MaxReconnectInterval).
		SetConnectTimeout(o.ConnectTimeout).
		SetKeepAlive(o.KeepAlive).
		SetPingTimeout(DefaultPingTimeout).
		SetResumeSubs(false).
		SetDefaultPublishHandler(w.handle).
		SetOnConnectHandler(func(paho.Client) {
			w.connGen.Add(1)
			signal(w.connEv)
		}).
		SetConnectionLostHandler(func(paho.Client, error) { signal(w.connEv) })
	if o.Username != "" {
		co.SetUsername(o.Username).SetPassword(o.Password)
	}
	if o.TLSConfig != nil {
		co.SetTLSConfig(o.TLSConfig)
	}
	w.client = paho.NewClient(co)
	w.log.Info("mqtt: watching", "broker", broker, "client_id", o.ClientID, "service", o.Service)
	connectTok := w.client.Connect()
	w.loop(ctx)
	if !StopClient(w.client, connectTok, 250, o.ConnectTimeout+o.MaxReconnectInterval+time.Second) {
		w.log.Warn("mqtt: client still connecting after shutdown; giving up waiting", "broker", broker)
	}
	return nil
}

type watcher struct {
	o         WatchOptions
	broker    string
	log       *slog.Logger
	filters   map[string]byte
	onCatalog func(CatalogEvent)
	onGateway func(GatewayEvent)
	client    paho.Client
	connGen   atomic.Uint64
	connEv    chan struct{}
	wake      chan struct{}
	mu        sync.Mutex
	queue     []inbound
}

// handle is paho's message handler: copy, enqueue, signal; never block.
func (w *watcher) handle(_ paho.Client, m paho.Message) {
	in := inbound{topic: m.Topic(), payload: bytes.Clone(m.Payload()), retained: m.Retained()}
	w.mu.Lock()
	w.queue = append(w.queue, in)
	w.mu.Unlock()
	signal(w.wake)
}

// loop is the delivery goroutine (Watch's own): connection bookkeeping, SUBSCRIBE,
// and delivery of queued messages, until ctx ends.
func (w *watcher) loop(ctx context.Context) {
	var (
		reportedGen  uint64 // connection generation last reported as up
		reportedOpen bool
		subGen       uint64 // generation the current/last SUBSCRIBE belongs to
		subTok       paho.Token
		subDone      <-chan struct{}
		retry        = time.NewTimer(time.Hour)
		retryC       <-chan time.Time
	)
	retry.Stop()
	defer retry.Stop()
	for {
		gen, open := w.connGen.Load(), w.client.IsConnectionOpen()
		open = open && gen > 0
		if open && gen != reportedGen {
			if reportedOpen {
				w.connection(false)
			}
			w.log.Info("mqtt: connected", "broker", w.broker)
			w.connection(true)
			reportedGen, reportedOpen = gen, true
		} else if !open && reportedOpen {
			w.log.Warn("mqtt: connection lost; reconnecting", "broker", w.broker)
			w.connection(false)
			reportedOpen = false
		}
		if open && gen != subGen && subDone == nil && retryC == nil {
			subGen = gen
			subTok = w.client.SubscribeMultiple(w.filters, nil)
			subDone = subTok.Done()
		}
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
			w.deliver(ctx)
		case <-w.connEv:
		case <-subDone:
			subDone = nil
			if err := subscribeError(subTok); err != nil {
				subGen = 0 // subscribe again
				if w.client.IsConnectionOpen() && w.connGen.Load() == gen {
					w.log.Error("mqtt: subscribe failed; retrying", "broker", w.broker, "err", err)
					retry.Reset(subscribeRetry)
					retryC = retry.C
				}
			}
		case <-retryC:
			retryC = nil
		}
	}
}

func subscribeError(tok paho.Token) error {
	if err := tok.Error(); err != nil {
		return err
	}
	st, ok := tok.(*paho.SubscribeToken)
	if !ok {
		return nil
	}
	for filter, code := range st.Result() {
		if code >= 0x80 {
			return fmt.Errorf("broker refused subscription %q (SUBACK 0x%02x)", filter, code)
		}
	}
	return nil
}

func (w *watcher) connection(up bool) {
	if w.o.OnConnection != nil {
		w.o.OnConnection(up)
	}
}

// deliver decodes and delivers every queued message, stopping early if ctx ends.
func (w *watcher) deliver(ctx context.Context) {
	w.mu.Lock()
	q := w.queue
	w.queue = nil
	w.mu.Unlock()
	for _, in := range q {
		if ctx.Err() != nil {
			return
		}
		w.deliverOne(in)
	}
}

func (w *watcher) deliverOne(in inbound) {
	t := w.o.Topics
	if svc, gw, inst, ok := t.ParseInstanceTopic(in.topic); ok {
		if w.onCatalog == nil {
			return
		}
		rec, err := contract.DecodeRecord(in.payload)
		if err != nil {
			w.log.Warn("mqtt: malformed instance record skipped", "topic", in.topic, "err", err)
			return
		}
		if rec != nil && (contract.Slug(rec.Service) != svc || contract.Slug(rec.Gateway) != gw || contract.Slug(rec.ID) != inst) {
			w.log.Warn("mqtt: instance record does not match its topic; skipped", "topic", in.topic,
				"instance", rec.ID, "service", rec.Service, "gateway", rec.Gateway)
			return
		}
		w.onCatalog(CatalogEvent{Topic: in.topic, Service: svc, Gateway: gw, Instance: inst, Record: rec, Retained: in.retained})
		return
	}
	if gw, ok := t.ParseGatewayStatusTopic(in.topic); ok {
		if w.onGateway == nil {
			return
		}
		rec, err := contract.DecodeGatewayRecord(in.payload)
		if err != nil {
			w.log.Warn("mqtt: malformed gateway record skipped", "topic", in.topic, "err", err)
			return
		}
		if rec != nil && contract.Slug(rec.Gateway) != gw {
			w.log.Warn("mqtt: gateway record does not match its topic; skipped", "topic", in.topic, "gateway", rec.Gateway)
			return
		}
		w.onGateway(GatewayEvent{Topic: in.topic, Gateway: gw, Record: rec, Retained: in.retained})
		return
	}
	w.log.Debug("mqtt: message on an unexpected topic skipped", "topic", in.topic)
}

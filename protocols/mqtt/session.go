package mqtt

import (
	"crypto/tls"
	"fmt"
	"slices"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Timing holds the connection timings of an MQTT client. A zero (or negative) field
// means its default (Timing.WithDefaults).
type Timing struct {
	// KeepAlive is the MQTT keep-alive (MQTT 3.1.1 §3.1.2.10; whole seconds, ≥ 1 s).
	// Default DefaultKeepAlive (5 s).
	KeepAlive time.Duration
	// PingTimeout is how long paho waits for a PINGRESP before it drops the connection.
	// Default DefaultPingTimeout (3 s).
	PingTimeout time.Duration
	// ConnectTimeout bounds one connection attempt to one broker. Default
	// DefaultConnectTimeout (5 s).
	ConnectTimeout time.Duration
	// MinReconnectInterval is the first step of the reconnection back-off
	// (Session.Reconnect). After a lost connection the first attempt is made at once,
	// up to MinReconnectInterval/2 later (jitter); while attempts fail, the next ones
	// wait MinReconnectInterval, then twice as long each time up to
	// MaxReconnectInterval, every wait a random point of the upper half of its step
	// ([d/2, d)), so that the clients of a restarted broker neither wait long nor
	// reconnect in step. Default DefaultMinReconnectInterval (100 ms). With the
	// defaults the waits are 0–50 ms, 50–100, 100–200, 200–400, 400–800 ms,
	// 0.8–1.6 s, then 1–2 s: a client reconnects within about the outage's own length
	// (at most 2 s) after the broker is back.
	MinReconnectInterval time.Duration
	// MaxReconnectInterval caps the back-off between connection attempts. Default
	// DefaultMaxReconnectInterval (2 s).
	MaxReconnectInterval time.Duration
	// WriteTimeout bounds one write to the network (a publication). Default
	// DefaultPublishTimeout (5 s).
	WriteTimeout time.Duration
}

// WithDefaults returns t with every zero or negative duration replaced by its default.
// It is the one defaulting rule for MQTT timings: the publisher, the read-back and the
// consumer library all use it.
func (t Timing) WithDefaults() Timing {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.KeepAlive, DefaultKeepAlive)
	def(&t.PingTimeout, DefaultPingTimeout)
	def(&t.ConnectTimeout, DefaultConnectTimeout)
	def(&t.MinReconnectInterval, DefaultMinReconnectInterval)
	def(&t.MaxReconnectInterval, DefaultMaxReconnectInterval)
	def(&t.WriteTimeout, DefaultPublishTimeout)
	return t
}

// Validate reports a KeepAlive below the MQTT minimum of one second (after defaults).
func (t Timing) Validate() error {
	if t.KeepAlive < time.Second {
		return fmt.Errorf("mqtt: KeepAlive %v is below the MQTT minimum of 1s", t.KeepAlive)
	}
	return nil
}

// Session describes one MQTT 3.1.1 client connection of rollcall's: to which brokers,
// as whom, and how it behaves when the connection drops. Options turns it into paho
// options; every rollcall client (publisher, read-back, consumer library, bench) is
// built this way, so the protocol version, reconnection and credentials rules live in
// one place.
type Session struct {
	// Brokers are tried in order (paho v1.5.1 moves to the next on a failed attempt).
	Brokers []string
	// ClientID is the MQTT client identifier (MQTT 3.1.1 §3.1.3.1).
	ClientID string
	// CleanSession false keeps the broker-side session (QoS 1 in flight) across
	// reconnects (MQTT 3.1.1 §3.1.2.4).
	CleanSession bool
	// OrderMatters true makes paho call message handlers from one goroutine in arrival
	// order (needed by anything relying on the broker's ordering, e.g. a sync marker);
	// the handler must then never block.
	OrderMatters bool
	// Reconnect turns on paho's automatic reconnection and connect retry, with the
	// jittered back-off of Timing.MinReconnectInterval and MaxReconnectInterval: the
	// first attempt after a loss within MinReconnectInterval/2, the second within
	// MinReconnectInterval, and so on, doubling, up to MaxReconnectInterval. The very
	// first connection attempt is made at once.
	Reconnect bool
	// OnNotification, if set, receives paho's connection notifications
	// (paho.ConnectionNotification: connecting, broker, broker failed, failed,
	// connected, lost). Options installs its own notification handler for the
	// back-off, which calls this one: callers must not replace it with
	// SetConnectionNotificationHandler.
	OnNotification paho.ConnectionNotificationHandler
	// Stop, once closed, ends a back-off wait at once, so that paho's connecting
	// goroutine ends promptly after Disconnect (close it first, e.g. pass the Done
	// channel of the context that ends the client). nil: a wait always runs its course
	// (at most MaxReconnectInterval).
	Stop <-chan struct{}
	// Username and Password authenticate when Username is not empty.
	Username, Password string
	// TLSConfig is used for ssl/tls/wss brokers; nil means Go's defaults.
	TLSConfig *tls.Config
	// Timing: zero fields take their defaults (Timing.WithDefaults).
	Timing Timing
}

// Options returns paho client options for s: MQTT 3.1.1 with no silent fallback to 3.1,
// no resumed subscriptions (rollcall subscribes in its OnConnect handler, since paho's
// ResumeSubs does not re-subscribe after a clean session), the timings of
// s.Timing.WithDefaults(), and with Reconnect the back-off described there (paho's own
// is turned off: its MaxReconnectInterval and ConnectRetryInterval are 0, and the
// waits happen in the connection notification handler), and a CopyStore, which keeps
// paho's resent PUBLISH packets free of data races. Callers add their own handlers and
// will (and may replace the store), but not a connection notification handler (see
// OnNotification).
func (s Session) Options() *paho.ClientOptions {
	t := s.Timing.WithDefaults()
	co := paho.NewClientOptions().
		SetClientID(s.ClientID).
		SetProtocolVersion(4).
		SetCleanSession(s.CleanSession).
		SetOrderMatters(s.OrderMatters).
		SetAutoReconnect(s.Reconnect).
		SetConnectRetry(s.Reconnect).
		SetConnectRetryInterval(0).
		SetMaxReconnectInterval(0).
		SetConnectTimeout(t.ConnectTimeout).
		SetKeepAlive(t.KeepAlive).
		SetPingTimeout(t.PingTimeout).
		SetWriteTimeout(t.WriteTimeout).
		SetResumeSubs(false).
		SetStore(NewCopyStore())
	switch {
	case s.Reconnect:
		b := &backoff{min: t.MinReconnectInterval, max: t.MaxReconnectInterval, stop: s.Stop, next: s.OnNotification}
		co.SetConnectionNotificationHandler(b.notify)
	case s.OnNotification != nil:
		co.SetConnectionNotificationHandler(s.OnNotification)
	}
	for _, b := range s.Brokers {
		co.AddBroker(b)
	}
	if s.Username != "" {
		co.SetUsername(s.Username).SetPassword(s.Password)
	}
	if s.TLSConfig != nil {
		co.SetTLSConfig(s.TLSConfig)
	}
	return co
}

// Refused returns the filters of a completed SUBSCRIBE that the broker refused (SUBACK
// return code 0x80, MQTT 3.1.1 §3.9.3, e.g. denied by an ACL), sorted, or the token's
// error when the SUBSCRIBE itself failed.
func Refused(tok paho.Token) ([]string, error) {
	if err := tok.Error(); err != nil {
		return nil, err
	}
	st, ok := tok.(*paho.SubscribeToken)
	if !ok {
		return nil, nil
	}
	var refused []string
	for filter, code := range st.Result() {
		if code >= 0x80 {
			refused = append(refused, filter)
		}
	}
	slices.Sort(refused)
	return refused, nil
}

// subscribeError is Refused as one error: the token's, or the first refused filter.
func subscribeError(tok paho.Token) error {
	refused, err := Refused(tok)
	if err != nil {
		return err
	}
	if len(refused) > 0 {
		return fmt.Errorf("broker refused subscription %q (SUBACK 0x80)", refused[0])
	}
	return nil
}

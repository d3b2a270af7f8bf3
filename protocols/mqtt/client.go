package mqtt

import (
	"context"
	"fmt"
	"net/url"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// brokerSchemes are the URL schemes paho v1.5.1 dials.
var brokerSchemes = map[string]bool{
	"tcp": true, "mqtt": true, "ssl": true, "tls": true, "mqtts": true, "tcps": true,
	"ws": true, "wss": true, "unix": true,
}

// parseBrokerURL checks a broker URL and returns it with any password redacted, for logs.
func parseBrokerURL(raw string) (redacted string, err error) {
	if raw == "" {
		return "", fmt.Errorf("mqtt: empty broker URL")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("mqtt: broker URL: %w", err)
	}
	if !brokerSchemes[u.Scheme] {
		return "", fmt.Errorf("mqtt: broker URL %q: scheme must be tcp, ssl, ws or wss (or mqtt, mqtts, tls, tcps, unix)", u.Redacted())
	}
	if u.Host == "" && u.Scheme != "unix" {
		return "", fmt.Errorf("mqtt: broker URL %q: no host", u.Redacted())
	}
	return u.Redacted(), nil
}

// await waits for a paho token, for ctx, whichever comes first. A completed token
// proves only what paho says it proves (paho v1.5.1; docs/libraries.md): for QoS 1 a PUBACK, except that
// paho also completes, without error, the token of a publication it takes over for
// resending after a reconnect.
func await(ctx context.Context, tok paho.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// stopClient disconnects a paho client and waits, at most bound, until paho's own
// connect/reconnect goroutines have finished, so that nothing of this client runs on
// after the caller returns. quiesce is passed to Disconnect (ms); with no open
// connection it is forced to 0, since no DISCONNECT can be written. It reports whether
// paho settled within bound.
func StopClient(c paho.Client, connectTok paho.Token, quiesce uint, bound time.Duration) bool {
	if !c.IsConnectionOpen() {
		quiesce = 0
	}
	c.Disconnect(quiesce)
	deadline := time.NewTimer(bound)
	defer deadline.Stop()
	if connectTok != nil {
		select {
		case <-connectTok.Done():
		case <-deadline.C:
			return false
		}
	}
	// paho exposes no completion signal for an abandoned reconnect loop; IsConnected
	// turns false once its status reaches "disconnected".
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for c.IsConnected() {
		select {
		case <-tick.C:
		case <-deadline.C:
			return false
		}
	}
	return true
}

// signal does a non-blocking send on a 1-slot channel (a coalescing trigger).
func signal(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

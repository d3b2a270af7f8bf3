package testutil

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/rollcall-edge/rollcall/contract"
)

// RetainedOptions configures Retained. The zero value reads anonymously.
type RetainedOptions struct {
	Username, Password string
	// ClientID of the reader; default "rollcall-test-read-" + 12 random hex digits.
	ClientID string
	// Marker is the topic of the reader's end marker; default the reader's consumer
	// sync topic (contract.Topics.ConsumerSyncTopic), which the broker ACLs of the
	// contract let every consumer write.
	Marker string
}

// Retained returns the payloads (by topic) the broker at url retains under filter, as
// a plain MQTT 3.1.1 client (not rollcall's code) reads them: it subscribes to filter
// and to a marker topic, then sends itself a non-retained marker; the broker delivers
// the retained messages first (MQTT 3.1.1 §3.3.1.3), so the marker ends the read.
// Failures end the test.
func Retained(t testing.TB, url, filter string, o RetainedOptions) map[string][]byte {
	t.Helper()
	if o.ClientID == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		o.ClientID = "rollcall-test-read-" + hex.EncodeToString(b[:])
	}
	if o.Marker == "" {
		o.Marker = contract.Topics{}.ConsumerSyncTopic(o.ClientID)
	}
	var (
		mu   sync.Mutex
		got  = map[string][]byte{}
		done = make(chan struct{})
		once sync.Once
	)
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(o.ClientID).SetProtocolVersion(4).
		SetCleanSession(true).SetOrderMatters(true).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second).
		SetUsername(o.Username).SetPassword(o.Password).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			if m.Topic() == o.Marker {
				once.Do(func() { close(done) })
				return
			}
			if m.Retained() {
				mu.Lock()
				got[m.Topic()] = bytes.Clone(m.Payload())
				mu.Unlock()
			}
		}))
	if tok := c.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("retained reader: connect %s: %v", url, tok.Error())
	}
	defer c.Disconnect(0)
	if tok := c.SubscribeMultiple(map[string]byte{filter: 0, o.Marker: 0}, nil); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("retained reader: subscribe: %v", tok.Error())
	}
	if tok := c.Publish(o.Marker, 1, false, "marker"); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("retained reader: marker: %v", tok.Error())
	}
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("retained reader: the marker did not come back")
	}
	mu.Lock()
	defer mu.Unlock()
	return got
}

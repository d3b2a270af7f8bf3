package mqtt

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"go.uber.org/goleak"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/mosquitto"
	"github.com/rollcall-edge/rollcall/protocols/mqtt/embedded"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitFor is the deadline of every wait in these tests.
const waitFor = 15 * time.Second

// broker is a running broker under test.
type broker struct {
	url, addr string
	mosq      *mosquitto.Mosquitto // nil for the embedded broker
}

// forEachBroker runs fn as a subtest against the embedded broker (port 0) and against
// Mosquitto.
func forEachBroker(t *testing.T, fn func(t *testing.T, b broker)) {
	t.Run("embedded", func(t *testing.T) {
		fn(t, startEmbedded(t))
	})
	t.Run("mosquitto", func(t *testing.T) {
		fn(t, startMosquitto(t))
	})
}

func startMosquitto(t *testing.T) broker {
	m := mosquitto.Start(t)
	return broker{url: m.URL(), addr: m.Addr(), mosq: m}
}

func startEmbedded(t *testing.T) broker {
	t.Helper()
	b, err := embedded.Start(embedded.Options{Listen: "127.0.0.1:0", Logger: testutil.Logger(t, slog.LevelError)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return broker{url: b.URL(), addr: b.Addr()}
}

func testGateway(id string, epoch int64) contract.GatewayRecord {
	return contract.GatewayRecord{
		Gateway: id, Epoch: epoch, Version: "test-1.0",
		Started: contract.Time{Time: time.Date(2025, 6, 7, 8, 9, 10, 11_000_000, time.UTC)},
	}
}

// startPublisher creates a publisher and runs it until the returned stop is called
// (or the test ends). stop returns once Run returned and fails the test if Run did
// not return nil within waitFor.
func startPublisher(t *testing.T, o PublisherOptions, before func(*Publisher)) (*Publisher, func()) {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testutil.Logger(t, slog.LevelInfo)
	}
	p, err := NewPublisher(o)
	if err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(p)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v", err)
				}
			case <-time.After(waitFor):
				t.Errorf("Run did not return within %v of cancel", waitFor)
			}
			if n := p.resumeTimeouts.Load(); n != 0 {
				t.Errorf("waitResumed timed out %d times: paho's resume did not behave as expected", n)
			}
		})
	}
	t.Cleanup(stop)
	return p, stop
}

// catalogEvent is one message on an instance topic, as a subscriber on the wire sees it.
type catalogEvent struct {
	Topic                      string
	Service, Gateway, Instance string           // topic levels
	Record                     *contract.Record // nil: empty payload (deregistered)
	Retained                   bool
}

// gatewayEvent is one message on a gateway status topic.
type gatewayEvent struct {
	Topic    string
	Gateway  string                  // topic level
	Record   *contract.GatewayRecord // nil: empty payload
	Retained bool
}

// testWatch is a plain paho subscriber to the catalog and gateway status topics: the
// publisher's tests look at the wire, not at a consumer library's interpretation of it.
type testWatch struct {
	cat     chan catalogEvent
	gw      chan gatewayEvent // without the readiness markers of startWatch
	markers chan gatewayEvent
	conn    chan bool
	// events received but not yet taken (test goroutine only)
	catBacklog []catalogEvent
	gwBacklog  []gatewayEvent
}

// handle decodes one message; it runs on paho's (ordered) delivery goroutine and never
// blocks for long: the channels are large.
func (w *testWatch) handle(t *testing.T, _ paho.Client, m paho.Message) {
	if svc, gw, inst, ok := topics.ParseInstanceTopic(m.Topic()); ok {
		rec, err := contract.DecodeRecord(m.Payload())
		if err != nil {
			t.Errorf("watch: %s: %v", m.Topic(), err)
			return
		}
		w.cat <- catalogEvent{Topic: m.Topic(), Service: svc, Gateway: gw, Instance: inst, Record: rec, Retained: m.Retained()}
		return
	}
	if gw, ok := topics.ParseGatewayStatusTopic(m.Topic()); ok {
		rec, err := contract.DecodeGatewayRecord(m.Payload())
		if err != nil {
			t.Errorf("watch: %s: %v", m.Topic(), err)
			return
		}
		ev := gatewayEvent{Topic: m.Topic(), Gateway: gw, Record: rec, Retained: m.Retained()}
		if strings.HasPrefix(gw, "watch-ready-") {
			w.markers <- ev
			return
		}
		w.gw <- ev
	}
}

// startWatch subscribes until the test ends (again after every reconnect: clean
// session) and waits until it is subscribed.
func startWatch(t *testing.T, url, service string) *testWatch {
	t.Helper()
	w := &testWatch{
		cat: make(chan catalogEvent, 4096), gw: make(chan gatewayEvent, 4096),
		markers: make(chan gatewayEvent, 64), conn: make(chan bool, 64),
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	marker := "watch-ready-" + hex.EncodeToString(rnd[:])
	mp, err := contract.EncodeGatewayRecord(contract.GatewayRecord{State: contract.StateOnline, Gateway: marker})
	if err != nil {
		t.Fatal(err)
	}
	rawPublish(t, url, topics.GatewayStatus(marker), true, mp)
	filters := map[string]byte{topics.CatalogFilter(service): 1, topics.GatewayStatusFilter(): 1}
	handler := func(c paho.Client, m paho.Message) { w.handle(t, c, m) }
	co := Session{Brokers: []string{url}, ClientID: "test-watch-" + hex.EncodeToString(rnd[:]), CleanSession: true,
		OrderMatters: true, Reconnect: true, Timing: Timing{MaxReconnectInterval: 200 * time.Millisecond}}.Options().
		SetDefaultPublishHandler(handler).
		SetOnConnectHandler(func(c paho.Client) {
			c.SubscribeMultiple(filters, handler) // its SUBACK is awaited through the marker below
			w.conn <- true
		}).
		SetConnectionLostHandler(func(paho.Client, error) { w.conn <- false })
	c := paho.NewClient(co)
	tok := c.Connect()
	t.Cleanup(func() {
		if !StopClient(c, tok, 0, waitFor) {
			t.Errorf("watch client did not stop within %v", waitFor)
		}
	})
	select {
	case up := <-w.conn:
		if !up {
			t.Fatal("watch reported a lost connection before connecting")
		}
	case <-time.After(waitFor):
		t.Fatal("watch did not connect")
	}
	// Wait until the subscription is in place (and the broker's retained scan done):
	// the retained marker published before the watch started arrives. (mochi
	// acknowledges a publication before it forwards it, so the marker may also come once
	// more, live.)
	deadline := time.After(waitFor)
	for ready := false; !ready; {
		select {
		case e := <-w.markers:
			ready = e.Gateway == marker && e.Record != nil && e.Retained
		case <-deadline:
			t.Fatal("watch did not subscribe")
		}
	}
	rawPublish(t, url, topics.GatewayStatus(marker), true, nil)
	return w
}

// gateway returns the first gateway event not yet taken that matches pred, waiting
// for it if needed. Events that do not match stay available for later calls.
func (w *testWatch) gateway(t *testing.T, what string, pred func(gatewayEvent) bool) gatewayEvent {
	t.Helper()
	return take(t, "gateway event "+what, w.gw, &w.gwBacklog, pred)
}

// catalog is gateway for catalog events.
func (w *testWatch) catalog(t *testing.T, what string, pred func(catalogEvent) bool) catalogEvent {
	t.Helper()
	return take(t, "catalog event "+what, w.cat, &w.catBacklog, pred)
}

func take[E any](t *testing.T, what string, ch <-chan E, backlog *[]E, pred func(E) bool) E {
	t.Helper()
	for i, e := range *backlog {
		if pred(e) {
			*backlog = append((*backlog)[:i:i], (*backlog)[i+1:]...)
			return e
		}
	}
	deadline := time.After(waitFor)
	for {
		select {
		case e := <-ch:
			if pred(e) {
				return e
			}
			*backlog = append(*backlog, e)
		case <-deadline:
			t.Fatalf("no %s within %v", what, waitFor)
		}
	}
}

func isState(gateway, state string) func(gatewayEvent) bool {
	return func(e gatewayEvent) bool {
		return e.Gateway == contract.Slug(gateway) && e.Record != nil && e.Record.State == state
	}
}

func isRecord(topic string, revision int64) func(catalogEvent) bool {
	return func(e catalogEvent) bool {
		return e.Topic == topic && e.Record != nil && e.Record.Revision == revision
	}
}

func isGone(topic string) func(catalogEvent) bool {
	return func(e catalogEvent) bool { return e.Topic == topic && e.Record == nil }
}

// retained returns the retained messages a fresh subscriber to filters receives, by
// topic. It ends the collection with a barrier: after the SUBACK for filters it
// subscribes to a topic holding a retained marker of its own; brokers deliver the
// retained messages of one SUBSCRIBE before handling the next, so once the marker
// arrives every retained message of filters has been received.
func retained(t *testing.T, url string, filters ...string) map[string][]byte {
	t.Helper()
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	barrier := "test/barrier/" + hex.EncodeToString(rnd[:])
	var (
		mu   sync.Mutex
		got  = map[string][]byte{}
		done = make(chan struct{})
		once sync.Once
	)
	o := paho.NewClientOptions().AddBroker(url).SetClientID("snapshot-" + hex.EncodeToString(rnd[:])).
		SetCleanSession(true).SetOrderMatters(true).SetProtocolVersion(4).SetAutoReconnect(false).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			if m.Topic() == barrier {
				once.Do(func() { close(done) })
				return
			}
			if m.Retained() {
				mu.Lock()
				got[m.Topic()] = bytes.Clone(m.Payload())
				mu.Unlock()
			}
		})
	c := paho.NewClient(o)
	mustToken(t, "connect", c.Connect())
	defer c.Disconnect(250)
	mustToken(t, "publish barrier", c.Publish(barrier, 1, true, "x"))
	defer func() { mustToken(t, "clear barrier", c.Publish(barrier, 1, true, "")) }()
	// QoS 0: mochi v2.7.9 refuses (SUBACK 0x80) a SUBSCRIBE whose packet id equals one
	// of its unacknowledged QoS 1 deliveries to the same client.
	f := map[string]byte{}
	for _, fl := range filters {
		f[fl] = 0
	}
	mustSubscribe(t, "subscribe", c.SubscribeMultiple(f, nil))
	mustSubscribe(t, "subscribe barrier", c.Subscribe(barrier, 0, nil))
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatal("retained: barrier message not received")
	}
	mu.Lock()
	defer mu.Unlock()
	return got
}

func mustToken(t *testing.T, what string, tok paho.Token) {
	t.Helper()
	if !tok.WaitTimeout(waitFor) {
		t.Fatalf("%s: timeout", what)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// mustSubscribe is mustToken plus a check of the SUBACK return codes.
func mustSubscribe(t *testing.T, what string, tok paho.Token) {
	t.Helper()
	mustToken(t, what, tok)
	if err := subscribeError(tok); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// rawPublish publishes one message with a plain paho client.
func rawPublish(t *testing.T, url, topic string, retained bool, payload []byte) {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetProtocolVersion(4).SetAutoReconnect(false))
	mustToken(t, "connect", c.Connect())
	defer c.Disconnect(250)
	mustToken(t, "publish "+topic, c.Publish(topic, 1, retained, payload))
}

func decodeRetained(t *testing.T, snap map[string][]byte, topic string) *contract.Record {
	t.Helper()
	b, ok := snap[topic]
	if !ok {
		t.Fatalf("no retained record at %s; retained topics: %s", topic, keys(snap))
	}
	rec, err := contract.DecodeRecord(b)
	if err != nil || rec == nil {
		t.Fatalf("retained record at %s: %v, %v", topic, rec, err)
	}
	return rec
}

func decodeStatus(t *testing.T, snap map[string][]byte, topic string) *contract.GatewayRecord {
	t.Helper()
	b, ok := snap[topic]
	if !ok {
		t.Fatalf("no retained status at %s; retained topics: %s", topic, keys(snap))
	}
	g, err := contract.DecodeGatewayRecord(b)
	if err != nil || g == nil {
		t.Fatalf("retained status at %s: %v, %v", topic, g, err)
	}
	return g
}

func keys(m map[string][]byte) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return fmt.Sprintf("[%s]", strings.Join(ks, " "))
}

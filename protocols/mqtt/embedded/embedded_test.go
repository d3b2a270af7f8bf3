package embedded

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/packets"
	"go.uber.org/goleak"

	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/tcpproxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func start(t *testing.T, o Options) *Broker {
	t.Helper()
	if o.Logger == nil {
		o.Logger = quiet
	}
	b, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func client(t *testing.T, url, id string, h paho.MessageHandler) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(id).SetProtocolVersion(4).
		SetAutoReconnect(false).SetDefaultPublishHandler(h))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", url, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(250) })
	return c
}

func TestStartPortZeroRetained(t *testing.T) {
	b := start(t, Options{Listen: "127.0.0.1:0"})
	host, port, err := net.SplitHostPort(b.Addr())
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("Addr() = %q (%v), want 127.0.0.1 and a real port", b.Addr(), err)
	}
	if b.URL() != "tcp://"+b.Addr() {
		t.Fatalf("URL() = %q", b.URL())
	}
	if got := b.srv.Options.Capabilities.MaximumMessageExpiryInterval; got != 0 {
		t.Fatalf("MaximumMessageExpiryInterval = %d, want 0 (retained messages never expire)", got)
	}

	pub := client(t, b.URL(), "pub", nil)
	if tok := pub.Publish("rollcall/v1/x", 1, true, "kept"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	got := make(chan string, 1)
	sub := client(t, b.URL(), "sub", func(_ paho.Client, m paho.Message) {
		if m.Retained() {
			got <- string(m.Payload())
		}
	})
	if tok := sub.Subscribe("rollcall/v1/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	select {
	case p := <-got:
		if p != "kept" {
			t.Fatalf("retained payload %q", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no retained message")
	}
}

func TestClose(t *testing.T) {
	b, err := Start(Options{Listen: "127.0.0.1:0", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	lost := make(chan struct{})
	c := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetAutoReconnect(false).
		SetConnectionLostHandler(func(paho.Client, error) { close(lost) }))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("client not disconnected by Close")
	}
	c.Disconnect(0)
	if conn, err := net.DialTimeout("tcp", b.Addr(), time.Second); err == nil {
		conn.Close()
		t.Fatal("still listening after Close")
	}
}

func TestStartErrors(t *testing.T) {
	b := start(t, Options{Listen: "127.0.0.1:0"})
	if _, err := Start(Options{Listen: b.Addr(), Logger: quiet}); err == nil || !strings.Contains(err.Error(), b.Addr()) {
		t.Fatalf("second broker on %s: %v, want a listen error naming the address", b.Addr(), err)
	}
}

// denyHook refuses every connection: proves Options.Auth replaces the allow-all hook.
type denyHook struct{ auth.AllowHook }

func (*denyHook) ID() string                                               { return "deny" }
func (*denyHook) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return false }

func TestAuthSeam(t *testing.T) {
	b := start(t, Options{Listen: "127.0.0.1:0", Auth: &denyHook{}})
	c := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetProtocolVersion(4).SetAutoReconnect(false))
	tok := c.Connect()
	if !tok.WaitTimeout(5 * time.Second) {
		t.Fatal("connect did not complete")
	}
	if tok.Error() == nil {
		c.Disconnect(0)
		t.Fatal("connected through a deny-all auth hook")
	}
}

// TestTakeoverWillSuppressed: a client that reconnects with the same id before the
// broker noticed its old connection died takes the session over; the old connection's
// will is not published (as with Mosquitto), while a real death still publishes it.
func TestTakeoverWillSuppressed(t *testing.T) {
	b := start(t, Options{Listen: "127.0.0.1:0"})
	wills := make(chan string, 16)
	sub := client(t, b.URL(), "watcher", func(_ paho.Client, m paho.Message) { wills <- string(m.Payload()) })
	if tok := sub.Subscribe("will/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	withWill := func(url, payload string, lost chan struct{}) paho.Client {
		c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID("same-id").SetProtocolVersion(4).
			SetCleanSession(false).SetAutoReconnect(false).SetBinaryWill("will/x", []byte(payload), 1, true).
			SetConnectionLostHandler(func(paho.Client, error) { close(lost) }))
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("connect: %v", tok.Error())
		}
		return c
	}
	proxyA, proxyB := tcpproxy.Start(t, b.Addr()), tcpproxy.Start(t, b.Addr())
	lostA, lostB := make(chan struct{}), make(chan struct{})
	a := withWill(proxyA.URL(), "dead-A", lostA)
	defer a.Disconnect(0)
	bc := withWill(proxyB.URL(), "dead-B", lostB)
	defer bc.Disconnect(0)
	select {
	case <-lostA: // taken over
	case <-time.After(5 * time.Second):
		t.Fatal("old connection not closed by the takeover")
	}
	proxyB.SetDown(true) // the new connection dies for real
	select {
	case w := <-wills:
		if w != "dead-B" {
			t.Fatalf("first will %q, want dead-B (the taken-over connection's will must not be published)", w)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no will after the connection died")
	}
}

func TestConsistencyHookWill(t *testing.T) {
	h := new(consistencyHook)
	oldC, newC := &mochi.Client{ID: "x"}, &mochi.Client{ID: "x"}
	will := mochi.Will{TopicName: "t", Payload: []byte("dead"), Retain: true}
	h.OnSessionEstablish(oldC, packets.Packet{})
	if got, _ := h.OnWill(oldC, will); got.TopicName != "t" {
		t.Fatalf("will of the only connection changed: %+v", got)
	}
	h.OnRetainMessage(oldC, packets.Packet{}, 1) // mochi stores the retained will next
	h.OnSessionEstablish(newC, packets.Packet{})
	if got, _ := h.OnWill(oldC, will); got.TopicName != "" || got.Retain {
		t.Fatalf("will of a taken-over connection kept: %+v", got)
	}
	h.OnDisconnect(oldC, nil, false)
	if got, _ := h.OnWill(newC, will); got.TopicName != "t" {
		t.Fatalf("will of the newest connection changed: %+v", got)
	}
	h.OnRetainMessage(newC, packets.Packet{}, 1)
	if !h.retained.TryLock() {
		t.Fatal("retained lock still held after the retained wills were stored")
	}
	h.retained.Unlock()
	h.OnDisconnect(newC, nil, false)
	if len(h.newest) != 0 {
		t.Fatalf("connections not forgotten: %v", h.newest)
	}
}

// TestRetainedIndexRace: wildcard subscriptions (whose retained scan reads the topic
// tree) run while other clients create and clear retained topics (which write it). With
// the race detector on, this reports mochi v2.7.9's unlocked read of retainPath unless
// consistencyHook orders the two; without it, it checks that every subscriber still gets
// a complete retained set of the topics that were never cleared.
func TestRetainedIndexRace(t *testing.T) {
	b := start(t, Options{Listen: "127.0.0.1:0"})
	pub := client(t, b.URL(), "pub-stable", nil)
	const stable = 20
	for i := range stable {
		if tok := pub.Publish(fmt.Sprintf("r/stable/%d", i), 1, true, "s"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	churn := client(t, b.URL(), "pub-churn", nil)
	stop := make(chan struct{})
	churned := make(chan error, 1)
	go func() { // create and clear retained topics until told to stop
		defer close(churned)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			topic := fmt.Sprintf("r/churn/%d", i%50)
			payload := []byte("c")
			if i%2 == 1 {
				payload = nil // clears it: the particle's retainPath is written again
			}
			if tok := churn.Publish(topic, 1, true, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				churned <- fmt.Errorf("churn publish: %v", tok.Error())
				return
			}
		}
	}()
	for round := range 30 {
		var mu sync.Mutex
		seen := map[string]bool{}
		sub := client(t, b.URL(), fmt.Sprintf("sub-%d", round), func(_ paho.Client, m paho.Message) {
			if m.Retained() && strings.HasPrefix(m.Topic(), "r/stable/") {
				mu.Lock()
				seen[m.Topic()] = true
				mu.Unlock()
			}
		})
		if tok := sub.Subscribe("r/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe: %v", tok.Error())
		}
		testutil.Eventually(t, 5*time.Second, "every stable retained topic delivered", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(seen) == stable
		})
		sub.Disconnect(0)
	}
	close(stop)
	if err := <-churned; err != nil {
		t.Fatal(err)
	}
}

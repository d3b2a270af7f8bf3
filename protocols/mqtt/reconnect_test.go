package mqtt

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/internal/testutil/restart"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/mosquitto"
)

// TestReconnectDelay: the back-off schedule. The first attempt after a loss comes at
// once, up to MinReconnectInterval/2 later; each later one waits a random point of the
// upper half of its step, the steps doubling from MinReconnectInterval up to
// MaxReconnectInterval.
func TestReconnectDelay(t *testing.T) {
	const lo, hi = 100 * time.Millisecond, 2 * time.Second
	steps := []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond,
		400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond, 2 * time.Second}
	for fails, step := range steps {
		low, high := step/2, step
		if fails == 0 {
			low = 0
		}
		if got := reconnectDelay(lo, hi, fails, 0); got != low {
			t.Errorf("fails %d, u 0: %v, want %v", fails, got, low)
		}
		if got := reconnectDelay(lo, hi, fails, 0.999999); got >= high || got < high-time.Millisecond {
			t.Errorf("fails %d, u → 1: %v, want just below %v", fails, got, high)
		}
	}
	for _, fails := range []int{8, 40, 64, 1 << 20} {
		if got := reconnectDelay(lo, hi, fails, 0.5); got != 1500*time.Millisecond {
			t.Errorf("fails %d: %v, want the cap's 1.5 s", fails, got)
		}
	}
	// Long steps do not overflow.
	if got := reconnectDelay(time.Hour, 2*time.Hour, 40, 0); got != time.Hour {
		t.Errorf("1 h..2 h, fails 40: %v, want 1 h", got)
	}
	// A cap below the first step caps every wait.
	if got := reconnectDelay(lo, 40*time.Millisecond, 3, 0.999999); got >= 40*time.Millisecond {
		t.Errorf("cap 40 ms: %v", got)
	}
	// The defaults of Timing give this schedule.
	if d := (Timing{}).WithDefaults(); d.MinReconnectInterval != lo || d.MaxReconnectInterval != hi {
		t.Errorf("default back-off %v..%v, want %v..%v", d.MinReconnectInterval, d.MaxReconnectInterval, lo, hi)
	}
}

// TestBackoffState: failed rounds raise the back-off, a connection that lasted resets
// it, one dropped at once (a flap) counts as a failure; the first connection attempt
// waits for nothing.
func TestBackoffState(t *testing.T) {
	b := &backoff{min: 100 * time.Millisecond, max: 2 * time.Second}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	round := func(at time.Time, reconnect bool, attempt int, fail bool) time.Duration {
		d := b.delay(reconnect, attempt, at, 0.999999)
		b.roundAt = at.Add(d)
		if fail {
			b.fails++
		}
		return d.Round(time.Millisecond)
	}
	want := func(what string, got, w time.Duration) {
		t.Helper()
		if got != w {
			t.Errorf("%s: wait %v, want (just below) %v", what, got, w)
		}
	}
	want("first connection", round(t0, false, 0, true), 0)
	want("its retry", round(t0, false, 1, true), 100*time.Millisecond)
	want("second retry", round(t0, false, 2, false), 200*time.Millisecond) // connects
	at := t0.Add(time.Minute)
	want("after a long connection", round(at, true, 0, true), 50*time.Millisecond)
	want("broker still down", round(at, true, 1, true), 100*time.Millisecond)
	want("broker still down", round(at, true, 2, false), 200*time.Millisecond) // connects
	// Dropped right after connecting, over and over: the waits grow to the cap.
	at = b.roundAt.Add(10 * time.Millisecond)
	var last time.Duration
	for range 8 {
		last = round(at, true, 0, false)
		at = b.roundAt.Add(10 * time.Millisecond)
	}
	want("flapping", last, 2*time.Second)
	// A connection that lasted resets it.
	want("after a long connection", round(b.roundAt.Add(flapWindow), true, 0, false), 50*time.Millisecond)
}

// TestPublisherBrokerRestart: the broker restarts on the same port, with or without its
// retained store; the publisher reconnects, and the broker ends up holding every record
// of it again, exactly as published, and its status "online".
func TestPublisherBrokerRestart(t *testing.T) {
	restart.EachBroker(t, func(t *testing.T, b restart.Broker, keeps bool) {
		const gw = "gw-restart-many"
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := startPublisher(t, PublisherOptions{BrokerURL: b.URL, Gateway: testGateway(gw, 3), SigningKey: key,
			Logger: testutil.Logger(t, slog.LevelWarn)}, nil)
		for i := range restart.Records {
			p.Publish(testutil.FullRecord(gw, fmt.Sprintf("d%04d", i), 1))
		}
		synced := func(connects uint64) func() error {
			return func() error {
				if s := p.Stats(); s.Connects < connects || !s.Synced {
					return fmt.Errorf("stats %+v", s)
				}
				return nil
			}
		}
		testutil.EventuallyNil(t, waitFor, "records published", synced(1))
		want := retained(t, b.URL, topics.GatewayCatalogFilter(gw))
		if len(want) != restart.Records {
			t.Fatalf("%d records retained, want %d", len(want), restart.Records)
		}

		b.Stop()
		testutil.EventuallyNil(t, waitFor, "publisher disconnected", func() error {
			if p.Connected() {
				return fmt.Errorf("still connected")
			}
			return nil
		})
		b.Start()
		back := time.Now()
		testutil.EventuallyNil(t, waitFor, "publisher reconnected and resynchronised", synced(2))
		t.Logf("broker back → publisher resynchronised (%d records, store kept: %v): %v", restart.Records, keeps,
			time.Since(back).Round(time.Millisecond))
		got := retained(t, b.URL, topics.GatewayCatalogFilter(gw), topics.GatewayStatusFilter())
		for topic, payload := range want {
			if !bytes.Equal(got[topic], payload) {
				t.Fatalf("%s after the restart: %q, want %q", topic, got[topic], payload)
			}
		}
		if g := decodeStatus(t, got, topics.GatewayStatus(gw)); g.State != contract.StateOnline {
			t.Fatalf("status after the restart %+v", *g)
		}
	})
}

// TestReadBackLargeSubtree: ReadBack returns every record of a subtree larger than
// Mosquitto's default per-client queue (it subscribes at QoS 0), and its marker only
// after them.
func TestReadBackLargeSubtree(t *testing.T) {
	m := mosquitto.Start(t)
	const gw, n = "gw-readback-large", restart.Records
	c := paho.NewClient(paho.NewClientOptions().AddBroker(m.URL()).SetClientID("readback-filler").SetProtocolVersion(4).
		SetAutoReconnect(false))
	mustToken(t, "connect", c.Connect())
	defer c.Disconnect(100)
	var toks []paho.Token
	for i := range n {
		rec := testutil.FullRecord(gw, fmt.Sprintf("d%04d", i), int64(i+1))
		b, err := contract.EncodeRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, c.Publish(topics.Instance(rec.Service, gw, rec.ID), 1, true, b))
		if len(toks) == 100 || i == n-1 {
			for _, tok := range toks {
				mustToken(t, "publish", tok)
			}
			toks = toks[:0]
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	res, err := ReadBack(ctx, ReadBackOptions{BrokerURL: m.URL(), Gateway: gw, Timeout: waitFor,
		Logger: testutil.Logger(t, slog.LevelWarn)})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range res.Records {
		if r.Err != nil {
			t.Fatalf("%s: %v", r.Topic, r.Err)
		}
		seen[r.Topic] = true
	}
	if len(seen) != n {
		t.Fatalf("read back %d records, want %d", len(seen), n)
	}
}

// TestSessionNotificationHandler: with Reconnect, Options installs the back-off as the
// connection notification handler and forwards every notification to OnNotification;
// without it, OnNotification is the handler itself.
func TestSessionNotificationHandler(t *testing.T) {
	for _, reconnect := range []bool{true, false} {
		var got []paho.ConnectionNotification
		co := Session{Brokers: []string{"tcp://127.0.0.1:1"}, Reconnect: reconnect,
			OnNotification: func(_ paho.Client, n paho.ConnectionNotification) { got = append(got, n) }}.Options()
		if co.OnConnectionNotification == nil {
			t.Fatalf("reconnect %v: no notification handler", reconnect)
		}
		co.OnConnectionNotification(nil, paho.ConnectionNotificationConnecting{})
		co.OnConnectionNotification(nil, paho.ConnectionNotificationFailed{})
		if len(got) != 2 {
			t.Errorf("reconnect %v: %d notifications forwarded, want 2", reconnect, len(got))
		}
		if reconnect && (co.MaxReconnectInterval != 0 || co.ConnectRetryInterval != 0) {
			t.Errorf("paho's own back-off not off: %v, %v", co.MaxReconnectInterval, co.ConnectRetryInterval)
		}
	}
}

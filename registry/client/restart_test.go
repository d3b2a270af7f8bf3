package client_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/internal/testutil/restart"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/mosquitto"
	"github.com/rollcall-edge/rollcall/internal/testutil/tcpproxy"
	"github.com/rollcall-edge/rollcall/protocols/mqtt"
	"github.com/rollcall-edge/rollcall/registry/client"
)

// TestResyncAfterBrokerRestart: a gateway publisher (the gateway's mqtt.Publisher,
// signing) and a consumer with its key; the broker restarts on the same port, with or
// without its retained store. Once it is back, the consumer holds every record again,
// confirmed by the new connection, and every one is live; the catalog rules stay: the
// instances of the gateway are live only once its status says "online" again.
func TestResyncAfterBrokerRestart(t *testing.T) {
	restart.EachBroker(t, func(t *testing.T, b restart.Broker, keeps bool) {
		const gw, svc = "gw-restart", "servo-drive"
		pub, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ring := &contract.KeyRing{}
		ring.Add(gw, pub)
		p, err := mqtt.NewPublisher(mqtt.PublisherOptions{BrokerURL: b.URL, SigningKey: key, StatusLease: time.Minute,
			Gateway: contract.GatewayRecord{Gateway: gw, Epoch: 1, Version: "test", Started: contract.Time{Time: time.Now()}},
			Logger:  testutil.Logger(t, slog.LevelWarn)})
		if err != nil {
			t.Fatal(err)
		}
		for i := range restart.Records {
			rec := testutil.FullRecord(gw, fmt.Sprintf("d%04d", i), 1<<32+1)
			rec.Epoch, rec.Status = 1, contract.Passing
			rec.ValidUntil = contract.Time{Time: time.Now().Add(10 * time.Minute)}
			p.Publish(rec)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); _ = p.Run(ctx) }()
		t.Cleanup(func() { cancel(); wg.Wait() })

		c, _ := runClient(t, client.Options{Brokers: []string{b.URL}, TrustedKeys: ring,
			Logger: testutil.Logger(t, slog.LevelWarn)})
		complete := func(after time.Time) func() error {
			return func() error {
				st := c.Status()
				if !st.Connected || !st.Synced || !st.Since.After(after) || st.Instances != restart.Records {
					return fmt.Errorf("status %+v", st)
				}
				if n := len(c.Live(svc)); n != restart.Records {
					return fmt.Errorf("%d live", n)
				}
				return nil
			}
		}
		testutil.EventuallyNil(t, waitFor, "every record live", complete(time.Time{}))

		stopped := time.Now()
		b.Stop()
		testutil.Eventually(t, waitFor, "both clients disconnected", func() bool {
			return !c.Status().Connected && !p.Connected()
		})
		// The records are held meanwhile (Mosquitto publishes the gateway's will
		// "offline" as it shuts down, so they need not be live).
		if st := c.Status(); st.Instances != restart.Records {
			t.Fatalf("%d records held during the outage, want %d", st.Instances, restart.Records)
		}
		b.Start()
		back := time.Now()
		testutil.EventuallyNil(t, waitFor, "every record live again", complete(stopped))
		t.Logf("broker back → consumer with all %d records live again (store kept: %v): %v", restart.Records, keeps,
			time.Since(back).Round(time.Millisecond))
		if st := c.Status(); st.Unsigned != 0 || st.BadSignatures != 0 {
			t.Errorf("signature failures: %+v", st)
		}
		checkInvariants(t, c, svc)
	})
}

// TestSweptRecordComesBack: records the broker no longer has at a resynchronisation are
// removed. The very record removed so, republished by its gateway (as to a broker that
// lost its store), is taken again; an older one is not; and once an empty record (a
// deregistration) came for it, not even the very record is (a replay).
func TestSweptRecordComesBack(t *testing.T) {
	const svc, gw = "servo-drive", "gw"
	m := mosquitto.Start(t)
	proxy := tcpproxy.Start(t, m.Addr())
	pubKey, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ring := &contract.KeyRing{}
	ring.Add(gw, pubKey)
	sign := func(msg retained, kind contract.SignedKind) retained {
		var err error
		if msg.payload, err = contract.Sign(key, kind, msg.payload); err != nil {
			t.Fatal(err)
		}
		return msg
	}
	leased := func(id string, rev int64) retained {
		d := drive(gw, 2, id, 1, contract.Passing, 1, rev)
		d.ValidUntil = contract.Time{Time: time.Now().Add(time.Minute)}
		return sign(instanceMsg(d), contract.KindInstance)
	}
	x5, y5, z4, z5 := leased("x", 5), leased("y", 5), leased("z", 4), leased("z", 5)
	if err := publish(m.URL(), sign(gatewayMsg(gw, "online", 2), contract.KindGateway), x5, y5, z5); err != nil {
		t.Fatal(err)
	}
	c, _ := runClient(t, client.Options{Brokers: []string{proxy.URL()}, TrustedKeys: ring, KeepAlive: time.Second})
	waitReady(t, c)
	if n := len(c.Live(svc)); n != 3 {
		t.Fatalf("%d live, want 3", n)
	}

	// While the consumer is cut off, the records disappear from the broker.
	proxy.SetDown(true)
	testutil.Eventually(t, waitFor, "consumer disconnected", func() bool { return !c.Status().Connected })
	cut := time.Now()
	if err := publish(m.URL(), clearMsg(svc, gw, "x"), clearMsg(svc, gw, "y"), clearMsg(svc, gw, "z")); err != nil {
		t.Fatal(err)
	}
	changes, cancel := c.Subscribe(64)
	defer cancel()
	proxy.SetDown(false)
	testutil.EventuallyNil(t, waitFor, "resynchronised without them", func() error {
		if st := c.Status(); !st.Connected || !st.Synced || !st.Since.After(cut) || st.Instances != 0 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})

	// y is deregistered (its empty record arrives late); then y and the older z are
	// played back, and a marker record follows: once it is in, they were handled.
	marker := leased("marker", 1)
	if err := publish(m.URL(), clearMsg(svc, gw, "y"), y5, z4, marker); err != nil {
		t.Fatal(err)
	}
	nextChange(t, changes, func(ch client.Change) bool {
		if ch.Kind == client.Added && ch.Instance.ID != "marker" {
			t.Fatalf("taken after the resynchronisation: %s revision %#x", ch.Instance.ID, ch.Instance.Revision)
		}
		return ch.Instance.ID == "marker"
	})
	// The gateway republishes x and z as they were: both are back.
	if err := publish(m.URL(), x5, z5); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"x", "z"} {
		if _, err := c.Wait(waitCtx(t), svc, client.WithID(id)); err != nil {
			t.Fatalf("%s not taken again: %v", id, err)
		}
	}
	if _, err := c.Pick(svc, client.WithID("y")); err == nil {
		t.Fatal("the played-back record of the deregistered y was taken")
	}
	checkInvariants(t, c, svc)
}

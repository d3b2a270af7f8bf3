package mqtt

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
	"github.com/rollcall-edge/rollcall/internal/testutil"
	"github.com/rollcall-edge/rollcall/internal/testutil/tcpproxy"
)

var topics contract.Topics // default prefix

// TestPublisherContract: online status with epoch, a retained record with every
// field, an empty retained payload after Deregister, offline on clean shutdown.
func TestPublisherContract(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b broker) {
		const gw = "Cell2-GW"
		w := startWatch(t, b.url, "")
		rec := testutil.FullRecord(gw, "ACME SN/0001", 1)
		instTopic := topics.Instance(rec.Service, gw, rec.ID)
		statusTopic := topics.GatewayStatus(gw)
		p, stop := startPublisher(t, PublisherOptions{BrokerURL: b.url, Gateway: testGateway(gw, 7)}, nil)
		p.Publish(rec)

		on := w.gateway(t, "online", isState(gw, contract.StateOnline))
		want := testGateway(gw, 7)
		want.State = contract.StateOnline
		if on.Topic != statusTopic || !reflect.DeepEqual(*on.Record, want) {
			t.Fatalf("online event %s %+v, want %s %+v", on.Topic, *on.Record, statusTopic, want)
		}
		ev := w.catalog(t, "record", isRecord(instTopic, 1))
		if ev.Service != "servo-drive" || ev.Gateway != "cell2-gw" || ev.Instance != "acme-sn-0001" {
			t.Fatalf("event levels %q %q %q", ev.Service, ev.Gateway, ev.Instance)
		}
		if !reflect.DeepEqual(*ev.Record, rec) {
			t.Fatalf("record event:\n got %+v\nwant %+v", *ev.Record, rec)
		}
		if !p.Connected() {
			t.Fatal("Connected() = false while publishing")
		}

		snap := retained(t, b.url, topics.CatalogFilter(""), topics.GatewayStatusFilter())
		if got := decodeRetained(t, snap, instTopic); !reflect.DeepEqual(*got, rec) {
			t.Fatalf("retained record:\n got %+v\nwant %+v", *got, rec)
		}
		if g := decodeStatus(t, snap, statusTopic); g.State != contract.StateOnline || g.Epoch != 7 {
			t.Fatalf("retained status %+v", *g)
		}

		p.Deregister(rec.Service, rec.ID)
		w.catalog(t, "deregistration", isGone(instTopic))
		snap = retained(t, b.url, topics.CatalogFilter(""), topics.GatewayStatusFilter())
		if _, ok := snap[instTopic]; ok {
			t.Fatalf("record still retained after Deregister: %s", snap[instTopic])
		}
		testutil.EventuallyNil(t, waitFor, "deregistered instance dropped from memory", func() error {
			if s := p.Stats(); s.Instances != 0 || s.Pending != 0 {
				return fmt.Errorf("stats %+v", s)
			}
			return nil
		})

		stop()
		off := w.gateway(t, "offline after clean shutdown", isState(gw, contract.StateOffline))
		want.State = contract.StateOffline
		if !reflect.DeepEqual(*off.Record, want) {
			t.Fatalf("offline record %+v, want %+v", *off.Record, want)
		}
		if g := decodeStatus(t, retained(t, b.url, topics.GatewayStatusFilter()), statusTopic); g.State != contract.StateOffline || g.Epoch != 7 {
			t.Fatalf("retained status after shutdown %+v", *g)
		}
		if s := p.Stats(); s.Connects != 1 || s.Reconnects != 0 || s.Published < 4 || s.Rejected != 0 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// TestPublisherWillOnCut: the TCP connection is reset under the publisher (no
// DISCONNECT): the broker publishes the will; the publisher reconnects and is online
// again with its records.
func TestPublisherWillOnCut(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b broker) {
		const gw = "gw-cut"
		proxy := tcpproxy.Start(t, b.addr)
		w := startWatch(t, b.url, "")
		rec := testutil.FullRecord(gw, "drive-1", 1)
		p, _ := startPublisher(t, PublisherOptions{BrokerURL: proxy.URL(), Gateway: testGateway(gw, 3)}, nil)
		p.Publish(rec)
		w.gateway(t, "online", isState(gw, contract.StateOnline))
		w.catalog(t, "record", isRecord(topics.Instance(rec.Service, gw, rec.ID), 1))

		// Reset the connection and refuse new ones until the will is seen: a gateway
		// that reconnects before the broker noticed would take its session over first.
		if proxy.Links() != 1 {
			t.Fatalf("%d proxied connections, want 1", proxy.Links())
		}
		proxy.SetDown(true)
		off := w.gateway(t, "offline from the will", isState(gw, contract.StateOffline))
		want := testGateway(gw, 3)
		want.State = contract.StateOffline
		if !reflect.DeepEqual(*off.Record, want) {
			t.Fatalf("will record %+v, want %+v", *off.Record, want)
		}
		proxy.SetDown(false)
		w.gateway(t, "online after reconnect", isState(gw, contract.StateOnline))
		testutil.EventuallyNil(t, waitFor, "reconnected and in sync", func() error {
			if s := p.Stats(); s.Reconnects < 1 || !s.Synced {
				return fmt.Errorf("stats %+v", s)
			}
			return nil
		})
		snap := retained(t, b.url, topics.CatalogFilter(""), topics.GatewayStatusFilter())
		decodeRetained(t, snap, topics.Instance(rec.Service, gw, rec.ID))
		if g := decodeStatus(t, snap, topics.GatewayStatus(gw)); g.State != contract.StateOnline {
			t.Fatalf("status after reconnect %+v", *g)
		}
	})
}

// TestPublisherFastReconnect: the connection is reset and the publisher reconnects at
// once, possibly before the broker noticed (a session takeover): it ends up "online",
// whatever the broker did with the old connection's will.
func TestPublisherFastReconnect(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b broker) {
		const gw = "gw-fast"
		proxy := tcpproxy.Start(t, b.addr)
		rec := testutil.FullRecord(gw, "drive-1", 1)
		p, _ := startPublisher(t, PublisherOptions{BrokerURL: proxy.URL(), Gateway: testGateway(gw, 5)}, nil)
		p.Publish(rec)
		testutil.EventuallyNil(t, waitFor, "in sync", func() error {
			if s := p.Stats(); !s.Synced {
				return fmt.Errorf("stats %+v", s)
			}
			return nil
		})
		for i := 1; i <= 3; i++ {
			proxy.Cut()
			testutil.EventuallyNil(t, waitFor, "reconnected and in sync", func() error {
				if s := p.Stats(); s.Reconnects < uint64(i) || !s.Synced {
					return fmt.Errorf("stats %+v", s)
				}
				return nil
			})
		}
		snap := retained(t, b.url, topics.CatalogFilter(""), topics.GatewayStatusFilter())
		if g := decodeStatus(t, snap, topics.GatewayStatus(gw)); g.State != contract.StateOnline || g.Epoch != 5 {
			t.Fatalf("status after fast reconnects %+v", *g)
		}
		decodeRetained(t, snap, topics.Instance(rec.Service, gw, rec.ID))
	})
}

// TestPublisherHealsStatus: while the publisher runs, its status topic is overwritten
// with "offline" (as by the will of its previous connection, published late after a
// session takeover): the publisher republishes "online".
func TestPublisherHealsStatus(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b broker) {
		const gw = "gw-heal"
		w := startWatch(t, b.url, "")
		p, _ := startPublisher(t, PublisherOptions{BrokerURL: b.url, Gateway: testGateway(gw, 2)}, nil)
		w.gateway(t, "online", isState(gw, contract.StateOnline))
		testutil.EventuallyNil(t, waitFor, "idle", func() error {
			if s := p.Stats(); !s.Synced {
				return fmt.Errorf("stats %+v", s)
			}
			return nil
		})
		stale := testGateway(gw, 2)
		stale.State = contract.StateOffline
		payload, err := contract.EncodeGatewayRecord(stale)
		if err != nil {
			t.Fatal(err)
		}
		rawPublish(t, b.url, topics.GatewayStatus(gw), true, payload)
		w.gateway(t, "stale offline", isState(gw, contract.StateOffline))
		w.gateway(t, "online again", isState(gw, contract.StateOnline))
		if g := decodeStatus(t, retained(t, b.url, topics.GatewayStatusFilter()), topics.GatewayStatus(gw)); g.State != contract.StateOnline {
			t.Fatalf("retained status %+v", *g)
		}
	})
}

// TestPublisherWillOnSilence: the link goes silent (no FIN, no RST): the broker
// declares the gateway dead after 1.5 × keep-alive and publishes the will. The
// publisher's ping timeout is long, so the will cannot come from its side closing.
func TestPublisherWillOnSilence(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b broker) {
		const gw = "gw-silent"
		proxy := tcpproxy.Start(t, b.addr)
		w := startWatch(t, b.url, "")
		_, _ = startPublisher(t, PublisherOptions{
			BrokerURL: proxy.URL(), Gateway: testGateway(gw, 9),
			KeepAlive: time.Second, PingTimeout: time.Minute,
		}, nil)
		w.gateway(t, "online", isState(gw, contract.StateOnline))
		if n := proxy.Freeze(); n != 1 {
			t.Fatalf("froze %d connections, want 1", n)
		}
		frozen := time.Now()
		w.gateway(t, "offline from the will", isState(gw, contract.StateOffline))
		// 1.5 × keep-alive, plus the broker's sweep granularity: mochi reads with a
		// deadline; Mosquitto 2.0 checks keep-alives only every 5 s.
		bound := 4 * time.Second
		if b.mosq != nil {
			bound = 9 * time.Second
		}
		if d := time.Since(frozen); d > bound {
			t.Fatalf("will after %v; want 1.5 × keep-alive (+ sweep), at most %v", d, bound)
		}
		t.Logf("will published %v after the link went silent", time.Since(frozen).Round(time.Millisecond))
		proxy.Cut() // let the publisher notice and reconnect, for a quick clean shutdown
		w.gateway(t, "online after reconnect", isState(gw, contract.StateOnline))
	})
}

// TestPublisherResyncAfterOutage: the network to the broker is down for a while; the
// broker keeps its retained messages. Changes made meanwhile are published on
// reconnect: the new record, the new instance, and the empty record of the instance
// deregistered while disconnected.
func TestPublisherResyncAfterOutage(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b broker) {
		const gw = "gw-outage"
		proxy := tcpproxy.Start(t, b.addr)
		w := startWatch(t, b.url, "")
		a1, b1 := testutil.FullRecord(gw, "a", 1), testutil.FullRecord(gw, "b", 1)
		ta, tb := topics.Instance(a1.Service, gw, "a"), topics.Instance(b1.Service, gw, "b")
		p, _ := startPublisher(t, PublisherOptions{BrokerURL: proxy.URL(), Gateway: testGateway(gw, 1)}, nil)
		p.Publish(a1)
		p.Publish(b1)
		w.gateway(t, "online", isState(gw, contract.StateOnline))
		w.catalog(t, "a rev 1", isRecord(ta, 1))
		w.catalog(t, "b rev 1", isRecord(tb, 1))

		proxy.SetDown(true)
		w.gateway(t, "offline from the will", isState(gw, contract.StateOffline))
		testutil.EventuallyNil(t, waitFor, "publisher disconnected", func() error {
			if p.Connected() {
				return errors.New("still connected")
			}
			return nil
		})
		a2 := testutil.FullRecord(gw, "a", 2)
		a2.Status = contract.Critical
		c1 := testutil.FullRecord(gw, "c", 1)
		tc := topics.Instance(c1.Service, gw, "c")
		p.Publish(a2)
		p.Deregister(b1.Service, "b")
		p.Publish(c1)
		if s := p.Stats(); s.Pending < 3 {
			t.Fatalf("pending while down: %+v", s)
		}

		proxy.SetDown(false)
		w.gateway(t, "online after the outage", isState(gw, contract.StateOnline))
		testutil.EventuallyNil(t, waitFor, "everything confirmed", func() error {
			if s := p.Stats(); !s.Synced || s.Instances != 2 || s.Reconnects < 1 {
				return fmt.Errorf("stats %+v", s)
			}
			return nil
		})
		snap := retained(t, b.url, topics.CatalogFilter(""))
		if got := decodeRetained(t, snap, ta); got.Revision != 2 || got.Status != contract.Critical {
			t.Fatalf("a after outage: %+v", *got)
		}
		decodeRetained(t, snap, tc)
		if _, ok := snap[tb]; ok {
			t.Fatalf("b still retained after being deregistered during the outage")
		}
	})
}

// TestPublisherMosquittoRestart: Mosquitto restarts (persistence off, so it forgets
// every retained message); on reconnect the publisher republishes status and records.
func TestPublisherMosquittoRestart(t *testing.T) {
	b := startMosquitto(t)
	const gw = "gw-restart"
	a1, b1 := testutil.FullRecord(gw, "a", 1), testutil.FullRecord(gw, "b", 1)
	ta, tb := topics.Instance(a1.Service, gw, "a"), topics.Instance(b1.Service, gw, "b")
	p, _ := startPublisher(t, PublisherOptions{BrokerURL: b.url, Gateway: testGateway(gw, 4)}, nil)
	p.Publish(a1)
	p.Publish(b1)
	testutil.EventuallyNil(t, waitFor, "records confirmed", func() error {
		if s := p.Stats(); !s.Synced || s.Connects != 1 {
			return fmt.Errorf("stats %+v", s)
		}
		return nil
	})

	b.mosq.Stop()
	testutil.EventuallyNil(t, waitFor, "publisher disconnected", func() error {
		if p.Connected() {
			return errors.New("still connected")
		}
		return nil
	})
	a2 := testutil.FullRecord(gw, "a", 2)
	p.Publish(a2)
	b.mosq.Restart()

	testutil.EventuallyNil(t, waitFor, "republished after restart", func() error {
		if s := p.Stats(); s.Reconnects < 1 || !s.Synced {
			return fmt.Errorf("stats %+v", s)
		}
		return nil
	})
	snap := retained(t, b.url, topics.CatalogFilter(""), topics.GatewayStatusFilter())
	if got := decodeRetained(t, snap, ta); got.Revision != 2 {
		t.Fatalf("a after restart: revision %d, want 2", got.Revision)
	}
	if got := decodeRetained(t, snap, tb); !reflect.DeepEqual(*got, b1) {
		t.Fatalf("b after restart:\n got %+v\nwant %+v", *got, b1)
	}
	if g := decodeStatus(t, snap, topics.GatewayStatus(gw)); g.State != contract.StateOnline || g.Epoch != 4 {
		t.Fatalf("status after restart %+v", *g)
	}
}

// TestPublisherCoalesces: many changes of one instance before the worker runs are one
// publication of the latest.
func TestPublisherCoalesces(t *testing.T) {
	b := startEmbedded(t)
	const gw = "gw-co"
	p, _ := startPublisher(t, PublisherOptions{BrokerURL: b.url, Gateway: testGateway(gw, 1)}, func(p *Publisher) {
		for i := int64(1); i <= 200; i++ {
			rec := testutil.FullRecord(gw, "x", i)
			p.Publish(rec)
			rec.Meta["cell"] = "mutated after Publish" // must not leak into the published record
		}
		if s := p.Stats(); s.Instances != 1 || s.Pending != 1 {
			t.Fatalf("before Run: %+v", s)
		}
	})
	testutil.EventuallyNil(t, waitFor, "published", func() error {
		if s := p.Stats(); !s.Synced {
			return fmt.Errorf("stats %+v", s)
		}
		return nil
	})
	got := decodeRetained(t, retained(t, b.url, topics.CatalogFilter("")), topics.Instance("servo-drive", gw, "x"))
	if got.Revision != 200 || got.Meta["cell"] != "2" {
		t.Fatalf("retained revision %d meta %v, want 200 and the original meta", got.Revision, got.Meta)
	}
	if s := p.Stats(); s.Published != 2 { // status online + one record
		t.Fatalf("published %d, want 2 (coalesced)", s.Published)
	}
}

// TestPublisherServiceChange: an instance whose service changes leaves no stale
// record at its old topic.
func TestPublisherServiceChange(t *testing.T) {
	b := startEmbedded(t)
	const gw = "gw-svc"
	p, _ := startPublisher(t, PublisherOptions{BrokerURL: b.url, Gateway: testGateway(gw, 1)}, nil)
	rec := testutil.FullRecord(gw, "dev", 1)
	rec.Service = "modbus-device"
	p.Publish(rec)
	rec.Service, rec.Revision = "servo-drive", 2
	p.Publish(rec)
	testutil.EventuallyNil(t, waitFor, "published", func() error {
		if s := p.Stats(); !s.Synced || s.Instances != 1 {
			return fmt.Errorf("stats %+v", s)
		}
		return nil
	})
	snap := retained(t, b.url, topics.CatalogFilter(""))
	if _, ok := snap[topics.Instance("modbus-device", gw, "dev")]; ok {
		t.Fatal("stale record at the old service's topic")
	}
	decodeRetained(t, snap, topics.Instance("servo-drive", gw, "dev"))
}

func TestPublisherRejects(t *testing.T) {
	p, err := NewPublisher(PublisherOptions{BrokerURL: "tcp://127.0.0.1:1", Gateway: testGateway("gw", 1), Logger: testutil.Logger(t, 100)})
	if err != nil {
		t.Fatal(err)
	}
	p.Publish(testutil.FullRecord("other-gw", "x", 1))
	p.Publish(testutil.FullRecord("gw", "", 1))
	bad := testutil.FullRecord("gw", "y", 1)
	bad.Schema = "rollcall.instance/v2"
	p.Publish(bad)
	ok := testutil.FullRecord("", "z", 1) // empty gateway: this one's
	p.Publish(ok)
	if s := p.Stats(); s.Rejected != 3 || s.Instances != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestNewPublisherErrors(t *testing.T) {
	gw := testGateway("gw", 1)
	for name, o := range map[string]PublisherOptions{
		"no url":       {Gateway: gw},
		"bad scheme":   {BrokerURL: "http://127.0.0.1:1883", Gateway: gw},
		"no host":      {BrokerURL: "tcp://", Gateway: gw},
		"no gateway":   {BrokerURL: "tcp://127.0.0.1:1883"},
		"bad prefix":   {BrokerURL: "tcp://127.0.0.1:1883", Gateway: gw, Topics: contract.Topics{Prefix: "a/#"}},
		"keepalive ms": {BrokerURL: "tcp://127.0.0.1:1883", Gateway: gw, KeepAlive: 500 * time.Millisecond},
	} {
		if _, err := NewPublisher(o); err == nil {
			t.Errorf("%s: NewPublisher succeeded", name)
		}
	}
	_, err := NewPublisher(PublisherOptions{BrokerURL: "tcp://user:s3cret@127.0.0.1:1883/", Gateway: gw, Topics: contract.Topics{Prefix: "a/+"}})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error %v", err)
	}
	_, err = NewPublisher(PublisherOptions{BrokerURL: "http://user:s3cret@127.0.0.1:1883/", Gateway: gw})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error %v leaks the password", err)
	}
}

// TestPublisherNoBroker: Run against an address nobody listens on keeps trying, and
// returns promptly when cancelled, with nothing left running (goleak in TestMain).
func TestPublisherNoBroker(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "tcp://" + l.Addr().String()
	_ = l.Close()
	p, err := NewPublisher(PublisherOptions{BrokerURL: url, Gateway: testGateway("gw", 1), Logger: testutil.Logger(t, 0)})
	if err != nil {
		t.Fatal(err)
	}
	p.Publish(testutil.FullRecord("gw", "x", 1))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	if p.Connected() {
		t.Fatal("connected to nothing")
	}
	cancel()
	start := time.Now()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Run did not return")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Run took %v to stop", d)
	}
	if err := p.Run(context.Background()); !errors.Is(err, ErrAlreadyRun) {
		t.Fatalf("second Run = %v, want ErrAlreadyRun", err)
	}
	if s := p.Stats(); s.Pending != 1 || s.Connects != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestPublisherHoldAndClear: with HoldRecords the status goes out but records wait for
// Release; Clear empties a stale topic of the gateway's subtree, and refuses the topic of
// a current record and another gateway's topic.
func TestPublisherHoldAndClear(t *testing.T) {
	b := startEmbedded(t)
	gw := "hold-gw"
	w := startWatch(t, b.url, "")
	stale := topics.Instance("servo-drive", gw, "gone-1")
	foreign := topics.Instance("servo-drive", "other-gw", "x-1")
	for topic, rec := range map[string]contract.Record{stale: testutil.FullRecord(gw, "gone-1", 1), foreign: testutil.FullRecord("other-gw", "x-1", 1)} {
		payload, err := contract.EncodeRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		rawPublish(t, b.url, topic, true, payload)
	}
	p, _ := startPublisher(t, PublisherOptions{BrokerURL: b.url, Gateway: testGateway(gw, 1), HoldRecords: true}, nil)
	rec := testutil.FullRecord(gw, "drive-1", 1)
	p.Publish(rec)
	w.gateway(t, "online", isState(gw, contract.StateOnline))
	instTopic := topics.Instance(rec.Service, gw, rec.ID)
	if _, ok := retained(t, b.url, topics.CatalogFilter(""))[instTopic]; ok {
		t.Fatal("record published while held")
	}
	p.Release()
	w.catalog(t, "record after Release", isRecord(instTopic, 1))

	if p.Clear(instTopic) {
		t.Error("Clear took the topic of a current record")
	}
	if p.Clear(foreign) {
		t.Error("Clear took another gateway's topic")
	}
	if !p.Clear(stale) {
		t.Fatal("Clear refused a stale topic of the gateway's subtree")
	}
	w.catalog(t, "stale topic cleared", isGone(stale))
	snap := retained(t, b.url, topics.CatalogFilter(""))
	if _, ok := snap[stale]; ok {
		t.Fatal("stale topic still retained")
	}
	if _, ok := snap[foreign]; !ok {
		t.Fatal("another gateway's topic was cleared")
	}
	if _, ok := snap[instTopic]; !ok {
		t.Fatal("the current record was cleared")
	}
}

// TestPublisherStatusLease: the "online" status carries valid_until = publication +
// StatusLease and is renewed every third of the lease, each renewal extending it.
func TestPublisherStatusLease(t *testing.T) {
	b := startEmbedded(t)
	const gw, lease = "lease-gw", 1200 * time.Millisecond
	w := startWatch(t, b.url, "")
	startPublisher(t, PublisherOptions{BrokerURL: b.url, Gateway: testGateway(gw, 1), StatusLease: lease}, nil)
	first := w.gateway(t, "online with a lease", isState(gw, contract.StateOnline))
	if first.Record.ValidUntil.IsZero() {
		t.Fatalf("online status without valid_until: %+v", first.Record)
	}
	if d := time.Until(first.Record.ValidUntil.Time); d > lease || d < -lease {
		t.Fatalf("valid_until %v is not about %v from now", first.Record.ValidUntil, lease)
	}
	renewed := w.gateway(t, "the lease renewed", func(e gatewayEvent) bool {
		return isState(gw, contract.StateOnline)(e) && e.Record.ValidUntil.After(first.Record.ValidUntil.Time)
	})
	if gap := renewed.Record.ValidUntil.Sub(first.Record.ValidUntil.Time); gap > lease {
		t.Fatalf("renewed %v later than the first lease; want within a lease (renewal every %v)", gap, lease/3)
	}
}

// TestPublisherForeignOnline: a live "online" status of another start on our status
// topic is reported (our own renewals are not); after Withdraw nothing more is
// published, not even "offline" at shutdown.
func TestPublisherForeignOnline(t *testing.T) {
	b := startEmbedded(t)
	const gw = "twin-gw"
	foreign := make(chan contract.GatewayRecord, 16)
	w := startWatch(t, b.url, "")
	p, stop := startPublisher(t, PublisherOptions{BrokerURL: b.url, Gateway: testGateway(gw, 3), StatusLease: time.Second,
		OnForeignOnline: func(g contract.GatewayRecord) { foreign <- g }}, nil)
	w.gateway(t, "online", isState(gw, contract.StateOnline))
	w.gateway(t, "a renewal", isState(gw, contract.StateOnline)) // our own, echoed back
	select {
	case g := <-foreign:
		t.Fatalf("own status reported as foreign: %+v", g)
	default:
	}
	twin := testGateway(gw, 3)
	twin.State, twin.Started = contract.StateOnline, contract.Time{Time: twin.Started.Add(-time.Hour)}
	payload, err := contract.EncodeGatewayRecord(twin)
	if err != nil {
		t.Fatal(err)
	}
	rawPublish(t, b.url, topics.GatewayStatus(gw), false, payload)
	select {
	case g := <-foreign:
		if !g.Started.Equal(twin.Started.Time) {
			t.Fatalf("reported %+v, want the twin's record", g)
		}
	case <-time.After(waitFor):
		t.Fatal("the other gateway's online status was not reported")
	}
	p.Withdraw()
	p.Publish(testutil.FullRecord(gw, "after-withdraw", 1))
	stop()
	snap := retained(t, b.url, topics.CatalogFilter(""), topics.GatewayStatusFilter())
	if _, ok := snap[topics.Instance("servo-drive", gw, "after-withdraw")]; ok {
		t.Error("a record was published after Withdraw")
	}
	if g := decodeStatus(t, snap, topics.GatewayStatus(gw)); g.State != contract.StateOnline {
		t.Errorf("status after a withdrawn shutdown: %+v, want the last online left in place", g)
	}
}

// TestPublisherSigns: with a SigningKey every payload the publisher leaves on the broker
// verifies with its public key — the instance record, the status record with the key in
// it, and the will the broker publishes when the link is cut — and a record that is not
// its own, written on its topics while it runs (a forgery, an empty record, an old
// record of its own played back, a record on a topic it does not hold), is replaced by
// its own at once and counted.
func TestPublisherSigns(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b broker) {
		const gw = "gw-signed"
		pub, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ring := &contract.KeyRing{}
		ring.Add(gw, pub)
		proxy := tcpproxy.Start(t, b.addr)
		w := startWatch(t, b.url, "")
		p, _ := startPublisher(t, PublisherOptions{BrokerURL: proxy.URL(), Gateway: testGateway(gw, 3), SigningKey: key}, nil)
		rec := testutil.FullRecord(gw, "drive-1", 1)
		topic := topics.Instance(rec.Service, gw, rec.ID)
		p.Publish(rec)
		w.catalog(t, "record", isRecord(topic, 1))
		first := retained(t, b.url, topics.CatalogFilter(""))[topic]
		rec.Revision = 2
		p.Publish(rec)
		w.catalog(t, "record 2", isRecord(topic, 2))
		snap := retained(t, b.url, topics.CatalogFilter(""), topics.GatewayStatusFilter())
		if _, err := ring.Verify(gw, contract.KindInstance, snap[topic]); err != nil {
			t.Fatalf("instance record: %v", err)
		}
		body, err := ring.Verify(gw, contract.KindGateway, snap[topics.GatewayStatus(gw)])
		if err != nil {
			t.Fatalf("status record: %v", err)
		}
		if g, _ := contract.DecodeGatewayRecord(body); g == nil || g.Key != contract.FormatPublicKey(pub) {
			t.Fatalf("status record %s does not carry the key", body)
		}

		// Writes on its own topics that are not its own.
		stray := topics.Instance(rec.Service, gw, "stray")
		forged := bytes.Replace(snap[topic], []byte(`"revision":2`), []byte(`"revision":99`), 1)
		for i, m := range []struct {
			topic   string
			payload []byte
		}{{topic, forged}, {topic, nil}, {topic, first}, {stray, snap[topic]}} {
			rawPublish(t, b.url, m.topic, true, m.payload)
			testutil.EventuallyNil(t, waitFor, "the publisher's own records back", func() error {
				now := retained(t, b.url, topics.CatalogFilter(""))
				if _, there := now[stray]; there {
					return fmt.Errorf("the record on %s is still there", stray)
				}
				if !bytes.Equal(now[topic], snap[topic]) {
					return fmt.Errorf("write %d: %s holds %q", i, topic, now[topic])
				}
				return nil
			})
		}
		// At least one count per foreign write (a write the broker delivers to us while
		// our own repair of the previous one is still on its way may count twice).
		if n := p.Stats().Overwritten; n < 4 {
			t.Errorf("Overwritten = %d, want at least 4", n)
		}

		proxy.SetDown(true)
		w.gateway(t, "offline from the will", isState(gw, contract.StateOffline))
		will := retained(t, b.url, topics.GatewayStatusFilter())[topics.GatewayStatus(gw)]
		if _, err := ring.Verify(gw, contract.KindGateway, will); err != nil {
			t.Fatalf("will: %v (%s)", err, will)
		}
		proxy.SetDown(false)
	})
}

// TestPublisherFailover: with two brokers listed, the publisher connects to the first;
// when that one goes away it connects to the next and resynchronises there: status
// online and every current record, as on any reconnect.
func TestPublisherFailover(t *testing.T) {
	first, second := startMosquitto(t), startMosquitto(t)
	proxy := tcpproxy.Start(t, first.addr)
	const gw = "gw-failover"
	w1, w2 := startWatch(t, first.url, ""), startWatch(t, second.url, "")
	p, _ := startPublisher(t, PublisherOptions{Brokers: []string{proxy.URL(), second.url}, Gateway: testGateway(gw, 3)}, nil)
	rec := testutil.FullRecord(gw, "drive-1", 1)
	topic := topics.Instance(rec.Service, gw, rec.ID)
	p.Publish(rec)
	w1.catalog(t, "record on the first broker", isRecord(topic, 1))
	proxy.SetDown(true)
	w2.gateway(t, "online on the second broker", isState(gw, contract.StateOnline))
	w2.catalog(t, "record on the second broker", isRecord(topic, 1))
	rec.Revision = 2
	p.Publish(rec)
	w2.catalog(t, "a later record on the second broker", isRecord(topic, 2))
	if s := p.Stats(); s.Connects < 2 {
		t.Fatalf("stats %+v: want a second connection", s)
	}
}
